//! Records out of a byte stream, each bounded in length before it is stored.
//!
//! A record is one line, or for CSV several physical lines while a quoted field is open
//! (RFC 4180 allows newlines inside quotes). A record longer than the limit is not read
//! into memory: it is skipped to its end and reported as [`Record::TooLong`], so a 1 GB
//! line costs one buffer, not a gigabyte. Line numbers are physical lines, 1-based, of
//! the record's first line.

use std::io::{self, BufRead};

/// One record's place in a [`Block`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Record {
    /// Bytes `start..end` of the block's buffer (line ending removed).
    Data {
        /// First physical line of the record.
        line: u64,
        /// Start offset in [`Block::bytes`].
        start: usize,
        /// End offset in [`Block::bytes`].
        end: usize,
    },
    /// The record was longer than the limit and was skipped.
    TooLong {
        /// First physical line of the record.
        line: u64,
    },
}

/// Records read together and scored as one unit of parallel work.
#[derive(Debug, Default)]
pub struct Block {
    /// The records' bytes, one after another.
    pub bytes: Vec<u8>,
    /// The records, in input order.
    pub records: Vec<Record>,
}

impl Block {
    /// The bytes of a data record.
    pub fn data(&self, start: usize, end: usize) -> &[u8] {
        self.bytes.get(start..end).unwrap_or_default()
    }
}

/// Reads records from `R`; see the module documentation.
#[derive(Debug)]
pub struct RecordReader<R> {
    inner: R,
    /// Physical lines consumed so far.
    lines: u64,
    max_record: usize,
    /// CSV: a newline inside quotes continues the record.
    quotes: bool,
    eof: bool,
    /// Bytes consumed so far (after decompression).
    consumed: u64,
}

impl<R: BufRead> RecordReader<R> {
    /// `max_record`: the longest record kept, in bytes; `quotes`: CSV quoting rules.
    pub fn new(inner: R, max_record: usize, quotes: bool) -> Self {
        Self {
            inner,
            lines: 0,
            max_record,
            quotes,
            eof: false,
            consumed: 0,
        }
    }

    /// Bytes read so far (after decompression).
    pub fn consumed(&self) -> u64 {
        self.consumed
    }

    /// Append the next record to `buf`. `Ok(None)` at the end of the input.
    pub fn next_into(&mut self, buf: &mut Vec<u8>) -> io::Result<Option<Record>> {
        if self.eof {
            return Ok(None);
        }
        let start = buf.len();
        let line = self.lines + 1;
        let mut len = 0usize;
        let mut too_long = false;
        let mut in_quotes = false;
        let mut any = false;
        loop {
            let avail = match self.inner.fill_buf() {
                Ok(a) => a,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if avail.is_empty() {
                self.eof = true;
                if !any {
                    return Ok(None);
                }
                self.lines += 1;
                break;
            }
            any = true;
            let (take, newline) = match memchr::memchr(b'\n', avail) {
                Some(i) => (i + 1, true),
                None => (avail.len(), false),
            };
            let piece = &avail[..take];
            if self.quotes {
                for _ in memchr::memchr_iter(b'"', piece) {
                    in_quotes = !in_quotes;
                }
            }
            if !too_long {
                if len + take > self.max_record + 2 {
                    // +2: the line ending does not count against the limit.
                    too_long = true;
                    buf.truncate(start);
                } else {
                    buf.extend_from_slice(piece);
                    len += take;
                }
            }
            self.inner.consume(take);
            self.consumed += take as u64;
            if newline {
                self.lines += 1;
                if !(self.quotes && in_quotes) {
                    break;
                }
            }
        }
        if too_long {
            return Ok(Some(Record::TooLong { line }));
        }
        // Drop the line ending (\n or \r\n).
        if buf.last() == Some(&b'\n') {
            buf.pop();
            if buf.last() == Some(&b'\r') {
                buf.pop();
            }
        }
        if buf.len() - start > self.max_record {
            buf.truncate(start);
            return Ok(Some(Record::TooLong { line }));
        }
        Ok(Some(Record::Data {
            line,
            start,
            end: buf.len(),
        }))
    }

    /// Read up to `max_rows` records or about `max_bytes` bytes into a new block; `Ok(None)`
    /// at the end of the input.
    pub fn next_block(&mut self, max_rows: usize, max_bytes: usize) -> io::Result<Option<Block>> {
        let mut block = Block::default();
        while block.records.len() < max_rows && block.bytes.len() < max_bytes {
            match self.next_into(&mut block.bytes)? {
                Some(r) => block.records.push(r),
                None => break,
            }
        }
        Ok(if block.records.is_empty() {
            None
        } else {
            Some(block)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(input: &[u8], max: usize, quotes: bool) -> Vec<(u64, Option<String>)> {
        let mut r = RecordReader::new(io::BufReader::with_capacity(4, input), max, quotes);
        let mut buf = Vec::new();
        let mut out = Vec::new();
        while let Some(rec) = r.next_into(&mut buf).expect("read") {
            out.push(match rec {
                Record::Data { line, start, end } => (
                    line,
                    Some(String::from_utf8_lossy(&buf[start..end]).into_owned()),
                ),
                Record::TooLong { line } => (line, None),
            });
        }
        out
    }

    #[test]
    fn lines_and_line_endings() {
        let got = all(b"a,b\r\n1,2\n\n3,4", 100, true);
        assert_eq!(
            got,
            vec![
                (1, Some("a,b".into())),
                (2, Some("1,2".into())),
                (3, Some(String::new())),
                (4, Some("3,4".into())),
            ]
        );
    }

    #[test]
    fn quoted_newlines_continue_a_csv_record() {
        let got = all(b"id,x\n\"a\nb\",1\nc,2\n", 100, true);
        assert_eq!(
            got,
            vec![
                (1, Some("id,x".into())),
                (2, Some("\"a\nb\",1".into())),
                (4, Some("c,2".into())),
            ]
        );
        // Not for JSON Lines: a quote there is inside a JSON string.
        let got = all(b"{\"a\":\"\\\"\"}\n{}\n", 100, false);
        assert_eq!(got.len(), 2);
    }

    #[test]
    fn long_records_are_skipped_not_stored() {
        let mut input = b"h\n".to_vec();
        input.extend(std::iter::repeat_n(b'x', 10_000));
        input.extend_from_slice(b"\nok\n");
        let got = all(&input, 100, true);
        assert_eq!(
            got,
            vec![(1, Some("h".into())), (2, None), (3, Some("ok".into()))]
        );
        // Exactly at the limit is kept, CRLF or not.
        let got = all(b"12345\r\n123456\n", 5, false);
        assert_eq!(got, vec![(1, Some("12345".into())), (2, None)]);
    }

    #[test]
    fn blocks_are_bounded() {
        let input = b"1\n2\n3\n4\n5\n".repeat(10);
        let mut r = RecordReader::new(&input[..], 10, true);
        let b = r.next_block(3, 1 << 20).expect("read").expect("block");
        assert_eq!(b.records.len(), 3);
        let mut n = 3;
        while let Some(b) = r.next_block(1000, 4).expect("read") {
            assert!(b.records.len() <= 4, "{}", b.records.len());
            n += b.records.len();
        }
        assert_eq!(n, 50);
    }
}
