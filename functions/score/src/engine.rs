//! The scoring core: records in, scored rows and refused rows out, in input order.
//!
//! The input is read in blocks of records (bounded in rows and bytes, each record bounded
//! by `max_record_bytes`); a batch of blocks is parsed and scored in parallel on a rayon
//! pool while the previous batch's results are written and the next batch is read. So the
//! memory in use is a few batches, whatever the size of the file, and the output is in
//! input order, byte for byte the same for the same input and model.
//!
//! Probabilities come from [`model::Model::predict`], the code `predict` answers with, and
//! are written in the shortest form that reads back as the same `f64`.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::io::{self, BufRead, Write};

use model::Model;
use rayon::prelude::*;
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use crate::records::{Block, Record, RecordReader};

/// The input's (and so the output's) format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// CSV with a header.
    Csv,
    /// JSON Lines: one object a line.
    Jsonl,
}

impl Format {
    /// From a file name: `.csv` / `.tsv`-less CSV, `.jsonl` / `.ndjson` / `.json`, either
    /// optionally followed by `.gz`. `None` when the name says neither.
    pub fn from_name(name: &str) -> Option<Self> {
        let lower = name.to_ascii_lowercase();
        let base = lower.strip_suffix(".gz").unwrap_or(&lower);
        if base.ends_with(".csv") || base.ends_with(".txt") {
            Some(Self::Csv)
        } else if base.ends_with(".jsonl") || base.ends_with(".ndjson") || base.ends_with(".json") {
            Some(Self::Jsonl)
        } else {
            None
        }
    }

    /// The scored file's suffix: `.out.csv` or `.out.jsonl`.
    pub fn output_suffix(self) -> &'static str {
        match self {
            Self::Csv => ".out.csv",
            Self::Jsonl => ".out.jsonl",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Csv => "csv",
            Self::Jsonl => "jsonl",
        })
    }
}

/// Limits and layout of a scoring run.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Columns copied from each input row to its output row. When empty, the output's
    /// first column is `line`, the row's input line number.
    pub id_columns: Vec<String>,
    /// The longest record (line) kept; a longer one is a refused row (a longer CSV header
    /// makes the file unreadable).
    pub max_record_bytes: usize,
    /// Most records per block (one unit of parallel work).
    pub block_rows: usize,
    /// About this many input bytes per block.
    pub block_bytes: usize,
    /// Blocks read, scored and written together.
    pub blocks_per_batch: usize,
}

/// Default [`Settings::max_record_bytes`]: 1 MiB.
pub const DEFAULT_MAX_RECORD_BYTES: usize = 1 << 20;

impl Default for Settings {
    fn default() -> Self {
        Self {
            id_columns: Vec::new(),
            max_record_bytes: DEFAULT_MAX_RECORD_BYTES,
            block_rows: 2048,
            block_bytes: 512 << 10,
            blocks_per_batch: 4,
        }
    }
}

impl Settings {
    /// Check the settings before any work starts.
    pub fn check(&self) -> Result<(), String> {
        if self.max_record_bytes == 0 || self.block_rows == 0 || self.block_bytes == 0 {
            return Err("MAX_RECORD_BYTES, block rows and block bytes must be positive".into());
        }
        if self.blocks_per_batch == 0 {
            return Err("blocks per batch must be positive".into());
        }
        let mut seen = std::collections::HashSet::new();
        for id in &self.id_columns {
            if id.is_empty() {
                return Err("ID_COLUMNS has an empty column name".into());
            }
            if id == "label" || id == "line" || id.starts_with("proba_") {
                return Err(format!(
                    "ID_COLUMNS: {id:?} would clash with an output column (line, label, proba_*)"
                ));
            }
            if !seen.insert(id) {
                return Err(format!("ID_COLUMNS names {id:?} twice"));
            }
        }
        Ok(())
    }
}

/// What a run did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Rows written to the output.
    pub rows_scored: u64,
    /// Rows written to the errors file.
    pub rows_refused: u64,
    /// Input bytes read (after decompression).
    pub bytes_read: u64,
}

/// Why a run stopped.
#[derive(Debug)]
pub enum EngineError {
    /// The file cannot be scored at all (the reason names the line).
    Unreadable(String),
    /// Reading failed.
    Read(io::Error),
    /// Writing the output failed.
    WriteOutput(io::Error),
    /// Writing the errors file failed.
    WriteErrors(io::Error),
}

/// The column header of the errors file.
pub const ERRORS_HEADER: &str = "line,column,reason\n";

/// Where a row's values are found.
#[derive(Debug, Clone, Copy)]
enum Slot {
    Feature(usize),
    Id(usize),
}

/// The CSV header, resolved against the model.
#[derive(Debug)]
struct CsvLayout {
    n_fields: usize,
    /// Column position of feature `i`.
    feature_pos: Vec<usize>,
    /// Column position of id `j`.
    id_pos: Vec<usize>,
}

struct Ctx<'a> {
    model: &'a Model,
    format: Format,
    csv: Option<CsvLayout>,
    slots: HashMap<&'a str, Slot>,
    features: &'a [String],
    ids: &'a [String],
    max_record: usize,
}

/// One block's results.
#[derive(Default)]
struct BlockOut {
    out: Vec<u8>,
    errs: Vec<u8>,
    scored: u64,
    refused: u64,
}

/// A refused row: the column it is about (or none) and why.
struct Refusal {
    column: Option<String>,
    reason: String,
}

impl Refusal {
    fn row(reason: impl Into<String>) -> Self {
        Self {
            column: None,
            reason: reason.into(),
        }
    }
    fn col(column: &str, reason: impl Into<String>) -> Self {
        Self {
            column: Some(column.to_string()),
            reason: reason.into(),
        }
    }
}

/// An id value as it came: a CSV field or a JSON value.
enum IdValue<'r> {
    Text(Cow<'r, str>),
    Json(Value),
}

/// Run the model over `input` (already decompressed), writing scored rows to `out` and
/// refused rows to `errors`, both with their header. Works on `pool`.
pub fn run<R: BufRead + Send>(
    pool: &rayon::ThreadPool,
    model: &Model,
    settings: &Settings,
    input: R,
    format: Format,
    out: &mut (dyn Write + Send),
    errors: &mut (dyn Write + Send),
) -> Result<Counts, EngineError> {
    let max_record = settings.max_record_bytes;
    let mut reader = RecordReader::new(input, max_record, format == Format::Csv);
    let features = &model.artifact().feature_names;
    let ids = &settings.id_columns;
    let csv = match format {
        Format::Csv => Some(read_header(&mut reader, features, ids, max_record)?),
        Format::Jsonl => None,
    };
    let mut slots: HashMap<&str, Slot> = HashMap::new();
    for (i, f) in features.iter().enumerate() {
        slots.insert(f.as_str(), Slot::Feature(i));
    }
    for (j, id) in ids.iter().enumerate() {
        // An id that is also a feature is a feature first (and copied by the CSV layout).
        slots.entry(id.as_str()).or_insert(Slot::Id(j));
    }
    let ctx = Ctx {
        model,
        format,
        csv,
        slots,
        features,
        ids,
        max_record,
    };
    let mut head = Vec::new();
    ctx.write_header(&mut head);
    out.write_all(&head).map_err(EngineError::WriteOutput)?;
    errors
        .write_all(ERRORS_HEADER.as_bytes())
        .map_err(EngineError::WriteErrors)?;

    let mut counts = Counts::default();
    let batch_of = |reader: &mut RecordReader<R>| -> Result<Vec<Block>, EngineError> {
        let mut batch = Vec::with_capacity(settings.blocks_per_batch);
        while batch.len() < settings.blocks_per_batch {
            match reader
                .next_block(settings.block_rows, settings.block_bytes)
                .map_err(EngineError::Read)?
            {
                Some(b) => batch.push(b),
                None => break,
            }
        }
        Ok(batch)
    };
    pool.install(|| {
        let mut batch = batch_of(&mut reader)?;
        let mut pending: Vec<BlockOut> = Vec::new();
        while !(batch.is_empty() && pending.is_empty()) {
            let (next, scored) = rayon::join(
                || -> Result<Vec<Block>, EngineError> {
                    for o in pending.drain(..) {
                        out.write_all(&o.out).map_err(EngineError::WriteOutput)?;
                        errors
                            .write_all(&o.errs)
                            .map_err(EngineError::WriteErrors)?;
                        counts.rows_scored += o.scored;
                        counts.rows_refused += o.refused;
                    }
                    batch_of(&mut reader)
                },
                || {
                    batch
                        .par_iter()
                        .map(|b| ctx.score_block(b))
                        .collect::<Vec<_>>()
                },
            );
            batch = next?;
            pending = scored;
        }
        Ok::<(), EngineError>(())
    })?;
    counts.bytes_read = reader.consumed();
    Ok(counts)
}

fn read_header<R: BufRead>(
    reader: &mut RecordReader<R>,
    features: &[String],
    ids: &[String],
    max_record: usize,
) -> Result<CsvLayout, EngineError> {
    let mut buf = Vec::new();
    let (line, start, end) = loop {
        buf.clear();
        match reader.next_into(&mut buf).map_err(EngineError::Read)? {
            None => {
                return Err(EngineError::Unreadable(
                    "empty file: a CSV file needs a header line naming its columns".into(),
                ));
            }
            Some(Record::TooLong { line }) => {
                return Err(EngineError::Unreadable(format!(
                    "line {line}: the header is longer than {max_record} bytes (MAX_RECORD_BYTES)"
                )));
            }
            Some(Record::Data { line, start, end }) => {
                if buf[start..end].iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                break (line, start, end);
            }
        }
    };
    let text = std::str::from_utf8(&buf[start..end]).map_err(|e| {
        EngineError::Unreadable(format!("line {line}: the header is not valid UTF-8 ({e})"))
    })?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut fields = Vec::new();
    split_csv(text, &mut fields)
        .map_err(|e| EngineError::Unreadable(format!("line {line}: header: {e}")))?;
    let names: Vec<String> = fields.iter().map(|f| f.trim().to_string()).collect();
    let mut pos: HashMap<&str, usize> = HashMap::new();
    for (i, n) in names.iter().enumerate() {
        if pos.insert(n.as_str(), i).is_some()
            && (features.contains(n) || ids.iter().any(|id| id == n))
        {
            return Err(EngineError::Unreadable(format!(
                "line {line}: the header names column {n:?} twice"
            )));
        }
    }
    let find = |wanted: &[String], what: &str| -> Result<Vec<usize>, EngineError> {
        let missing: Vec<&str> = wanted
            .iter()
            .filter(|w| !pos.contains_key(w.as_str()))
            .map(String::as_str)
            .collect();
        if !missing.is_empty() {
            let shown: Vec<&str> = missing.iter().take(10).copied().collect();
            return Err(EngineError::Unreadable(format!(
                "line {line}: the header lacks {} {what} column(s): {}{}",
                missing.len(),
                shown.join(", "),
                if missing.len() > shown.len() {
                    ", ..."
                } else {
                    ""
                }
            )));
        }
        Ok(wanted.iter().map(|w| pos[w.as_str()]).collect())
    };
    let feature_pos = find(features, "feature")?;
    let id_pos = find(ids, "id (ID_COLUMNS)")?;
    Ok(CsvLayout {
        n_fields: names.len(),
        feature_pos,
        id_pos,
    })
}

/// Split one CSV record (RFC 4180 quoting) into fields.
pub fn split_csv<'r>(rec: &'r str, out: &mut Vec<Cow<'r, str>>) -> Result<(), String> {
    out.clear();
    if !rec.contains('"') {
        out.extend(rec.split(',').map(Cow::Borrowed));
        return Ok(());
    }
    let mut rest = rec;
    loop {
        if let Some(after) = rest.strip_prefix('"') {
            let mut field = String::new();
            let mut s = after;
            loop {
                match s.find('"') {
                    None => return Err("a quoted field is not closed".into()),
                    Some(i) => {
                        field.push_str(&s[..i]);
                        s = &s[i + 1..];
                        if let Some(more) = s.strip_prefix('"') {
                            field.push('"');
                            s = more;
                        } else {
                            break;
                        }
                    }
                }
            }
            out.push(Cow::Owned(field));
            if s.is_empty() {
                return Ok(());
            }
            match s.strip_prefix(',') {
                Some(next) => rest = next,
                None => return Err("text after a closing quote (expected a comma)".into()),
            }
        } else {
            match rest.find(',') {
                Some(i) => {
                    out.push(Cow::Borrowed(&rest[..i]));
                    rest = &rest[i + 1..];
                }
                None => {
                    out.push(Cow::Borrowed(rest));
                    return Ok(());
                }
            }
        }
    }
}

/// Write `field` to `out`, quoted when it must be.
pub fn csv_field(out: &mut Vec<u8>, field: &str) {
    if field.contains([',', '"', '\n', '\r']) {
        out.push(b'"');
        out.extend_from_slice(field.replace('"', "\"\"").as_bytes());
        out.push(b'"');
    } else {
        out.extend_from_slice(field.as_bytes());
    }
}

fn push_f64(out: &mut Vec<u8>, x: f64) {
    let mut b = ryu::Buffer::new();
    out.extend_from_slice(b.format(x).as_bytes());
}

fn shorten(s: &str) -> String {
    const MAX: usize = 40;
    if s.chars().count() <= MAX {
        format!("{s:?}")
    } else {
        let head: String = s.chars().take(MAX).collect();
        format!("{head:?}...")
    }
}

fn parse_number(column: &str, raw: &str) -> Result<f64, Refusal> {
    let t = raw.trim();
    if t.is_empty() {
        return Err(Refusal::col(column, "missing value"));
    }
    match t.parse::<f64>() {
        Ok(x) if x.is_finite() => Ok(x),
        Ok(_) => Err(Refusal::col(column, format!("not finite: {}", shorten(t)))),
        Err(_) => Err(Refusal::col(
            column,
            format!("not a number: {}", shorten(t)),
        )),
    }
}

impl Ctx<'_> {
    fn write_header(&self, out: &mut Vec<u8>) {
        let classes = self.model.classes();
        match self.format {
            Format::Csv => {
                if self.ids.is_empty() {
                    out.extend_from_slice(b"line,");
                }
                for id in self.ids {
                    csv_field(out, id);
                    out.push(b',');
                }
                out.extend_from_slice(b"label");
                for c in classes {
                    out.push(b',');
                    csv_field(out, &format!("proba_{c}"));
                }
                out.push(b'\n');
            }
            Format::Jsonl => {}
        }
    }

    fn score_block(&self, block: &Block) -> BlockOut {
        let mut o = BlockOut {
            out: Vec::with_capacity(block.bytes.len() / 2 + 64),
            ..BlockOut::default()
        };
        let mut row = vec![0.0; self.features.len()];
        let mut fields = Vec::new();
        let mut ids: Vec<IdValue<'_>> = Vec::new();
        for rec in &block.records {
            let (line, result) = match *rec {
                Record::TooLong { line } => (
                    line,
                    Err(Refusal::row(format!(
                        "record longer than {} bytes (MAX_RECORD_BYTES)",
                        self.max_record
                    ))),
                ),
                Record::Data { line, start, end } => {
                    let bytes = block.data(start, end);
                    if bytes.iter().all(u8::is_ascii_whitespace) {
                        continue;
                    }
                    ids.clear();
                    let r = match std::str::from_utf8(bytes) {
                        Err(_) => Err(Refusal::row("not valid UTF-8")),
                        Ok(text) => match self.format {
                            Format::Csv => self.parse_csv(text, &mut fields, &mut row, &mut ids),
                            Format::Jsonl => self.parse_json(text, &mut row, &mut ids),
                        },
                    };
                    (line, r.and_then(|()| self.predict(&row)))
                }
            };
            match result {
                Ok(p) => {
                    self.write_row(&mut o.out, line, &ids, &p);
                    o.scored += 1;
                }
                Err(r) => {
                    o.errs.extend_from_slice(line.to_string().as_bytes());
                    o.errs.push(b',');
                    csv_field(&mut o.errs, r.column.as_deref().unwrap_or(""));
                    o.errs.push(b',');
                    csv_field(&mut o.errs, &r.reason);
                    o.errs.push(b'\n');
                    o.refused += 1;
                }
            }
        }
        o
    }

    fn predict(&self, row: &[f64]) -> Result<model::Prediction, Refusal> {
        self.model
            .predict(row)
            .map_err(|e| Refusal::row(e.to_string()))
    }

    fn parse_csv<'r>(
        &self,
        text: &'r str,
        fields: &mut Vec<Cow<'r, str>>,
        row: &mut [f64],
        ids: &mut Vec<IdValue<'r>>,
    ) -> Result<(), Refusal> {
        let Some(layout) = &self.csv else {
            return Err(Refusal::row("internal: no CSV header"));
        };
        split_csv(text, fields).map_err(Refusal::row)?;
        if fields.len() != layout.n_fields {
            return Err(Refusal::row(format!(
                "{} fields, the header has {}",
                fields.len(),
                layout.n_fields
            )));
        }
        for (i, &p) in layout.feature_pos.iter().enumerate() {
            row[i] = parse_number(&self.features[i], &fields[p])?;
        }
        for &p in &layout.id_pos {
            ids.push(IdValue::Text(std::mem::take(&mut fields[p])));
        }
        Ok(())
    }

    fn parse_json<'r>(
        &self,
        text: &'r str,
        row: &mut [f64],
        ids: &mut Vec<IdValue<'r>>,
    ) -> Result<(), Refusal> {
        let seed = RowSeed {
            slots: &self.slots,
            n_features: self.features.len(),
            n_ids: self.ids.len(),
        };
        let mut de = serde_json::Deserializer::from_str(text);
        let parsed = seed
            .deserialize(&mut de)
            .and_then(|p| de.end().map(|()| p))
            .map_err(|e| {
                // The line is ours (the record's); serde_json's "line 1" would mislead.
                let msg = e.to_string().replace(" at line 1 column ", " at column ");
                Refusal::row(format!("invalid JSON: {msg}"))
            })?;
        if let Some(k) = parsed.duplicate {
            return Err(Refusal::col(&k, "key given twice"));
        }
        for (i, v) in parsed.values.into_iter().enumerate() {
            let name = &self.features[i];
            row[i] = match v {
                None => return Err(Refusal::col(name, "missing")),
                Some(Num::Val(x)) if x.is_finite() => x,
                Some(Num::Val(_)) => return Err(Refusal::col(name, "not finite")),
                Some(Num::Other(what)) => {
                    return Err(Refusal::col(name, format!("not a number: {what}")));
                }
            };
        }
        ids.extend(parsed.ids.into_iter().map(IdValue::Json));
        Ok(())
    }

    fn write_row(&self, out: &mut Vec<u8>, line: u64, ids: &[IdValue<'_>], p: &model::Prediction) {
        let label = self.model.label(p);
        match self.format {
            Format::Csv => {
                if self.ids.is_empty() {
                    out.extend_from_slice(line.to_string().as_bytes());
                    out.push(b',');
                }
                for id in ids {
                    match id {
                        IdValue::Text(t) => csv_field(out, t),
                        IdValue::Json(Value::String(s)) => csv_field(out, s),
                        IdValue::Json(Value::Null) => {}
                        IdValue::Json(v) => csv_field(out, &v.to_string()),
                    }
                    out.push(b',');
                }
                csv_field(out, label);
                for x in &p.probabilities {
                    out.push(b',');
                    push_f64(out, *x);
                }
                out.push(b'\n');
            }
            Format::Jsonl => {
                out.push(b'{');
                if self.ids.is_empty() {
                    out.extend_from_slice(b"\"line\":");
                    out.extend_from_slice(line.to_string().as_bytes());
                    out.push(b',');
                }
                for (name, id) in self.ids.iter().zip(ids) {
                    json_str(out, name);
                    out.push(b':');
                    match id {
                        IdValue::Json(v) => json_value(out, v),
                        IdValue::Text(t) => json_str(out, t),
                    }
                    out.push(b',');
                }
                out.extend_from_slice(b"\"label\":");
                json_str(out, label);
                for (c, x) in self.model.classes().iter().zip(&p.probabilities) {
                    out.push(b',');
                    json_str(out, &format!("proba_{c}"));
                    out.push(b':');
                    push_f64(out, *x);
                }
                out.extend_from_slice(b"}\n");
            }
        }
    }
}

fn json_str(out: &mut Vec<u8>, s: &str) {
    // Serialising a &str into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

fn json_value(out: &mut Vec<u8>, v: &Value) {
    let _ = serde_json::to_writer(&mut *out, v);
}

/// A JSON feature value.
enum Num {
    Val(f64),
    /// What it was instead ("a string", "null", ...).
    Other(&'static str),
}

struct Parsed {
    values: Vec<Option<Num>>,
    ids: Vec<Value>,
    duplicate: Option<String>,
}

struct RowSeed<'c> {
    slots: &'c HashMap<&'c str, Slot>,
    n_features: usize,
    n_ids: usize,
}

impl<'de> DeserializeSeed<'de> for RowSeed<'_> {
    type Value = Parsed;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Parsed, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for RowSeed<'_> {
    type Value = Parsed;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Parsed, A::Error> {
        let mut p = Parsed {
            values: (0..self.n_features).map(|_| None).collect(),
            ids: vec![Value::Null; self.n_ids],
            duplicate: None,
        };
        let mut seen_ids = vec![false; self.n_ids];
        while let Some(slot) = map.next_key_seed(KeySeed(self.slots))? {
            match slot {
                Some((Slot::Feature(i), key)) => {
                    let v = map.next_value_seed(NumSeed)?;
                    if p.values[i].is_some() {
                        p.duplicate.get_or_insert(key);
                    }
                    p.values[i] = Some(v);
                }
                Some((Slot::Id(j), key)) => {
                    if seen_ids[j] {
                        p.duplicate.get_or_insert(key);
                    }
                    seen_ids[j] = true;
                    p.ids[j] = map.next_value()?;
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(p)
    }
}

/// A key, looked up without allocating unless it is one we want.
struct KeySeed<'c>(&'c HashMap<&'c str, Slot>);

impl<'de> DeserializeSeed<'de> for KeySeed<'_> {
    type Value = Option<(Slot, String)>;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl Visitor<'_> for KeySeed<'_> {
    type Value = Option<(Slot, String)>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a key")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(self.0.get(v).map(|s| (*s, v.to_string())))
    }
}

struct NumSeed;

impl<'de> DeserializeSeed<'de> for NumSeed {
    type Value = Num;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Num, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for NumSeed {
    type Value = Num;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a number")
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Num, E> {
        Ok(Num::Val(v))
    }
    #[allow(clippy::cast_precision_loss)]
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Num, E> {
        Ok(Num::Val(v as f64))
    }
    #[allow(clippy::cast_precision_loss)]
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Num, E> {
        Ok(Num::Val(v as f64))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Num, E> {
        Ok(Num::Other("null"))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Num, E> {
        Ok(Num::Other("a boolean"))
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Num, E> {
        Ok(Num::Other("a string"))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Num, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Num::Other("an array"))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Num, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Num::Other("an object"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use model::{Artifact, FORMAT_VERSION, Scaler};

    pub(crate) fn tiny() -> Model {
        let mut a = Artifact {
            format_version: FORMAT_VERSION,
            model_id: String::new(),
            name: "tiny".into(),
            created_at: model::artifact::now_rfc3339(),
            classes: vec!["cat".into(), "dog".into(), "e,l".into()],
            feature_names: vec!["a".into(), "b".into()],
            scaler: Scaler {
                mean: vec![0.0, 0.0],
                scale: vec![1.0, 1.0],
            },
            coefficients: vec![vec![1.0, 0.0], vec![0.0, 1.0], vec![-1.0, -1.0]],
            intercepts: vec![0.0, 0.0, 0.0],
            training: serde_json::Map::new(),
            metrics: serde_json::Map::new(),
            data_sha256: "0".repeat(64),
        };
        a.seal();
        Model::new(a).expect("model")
    }

    fn score(
        input: &str,
        format: Format,
        ids: &[&str],
        threads: usize,
    ) -> Result<(String, String, Counts), EngineError> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .expect("pool");
        let settings = Settings {
            id_columns: ids.iter().map(|s| (*s).to_string()).collect(),
            max_record_bytes: 64,
            block_rows: 2,
            block_bytes: 16,
            blocks_per_batch: 3,
        };
        let (mut out, mut errs) = (Vec::new(), Vec::new());
        let c = run(
            &pool,
            &tiny(),
            &settings,
            input.as_bytes(),
            format,
            &mut out,
            &mut errs,
        )?;
        Ok((
            String::from_utf8(out).expect("utf8"),
            String::from_utf8(errs).expect("utf8"),
            c,
        ))
    }

    fn proba(m: &Model, a: f64, b: f64) -> Vec<String> {
        m.predict(&[a, b])
            .expect("predict")
            .probabilities
            .iter()
            .map(|p| ryu::Buffer::new().format(*p).to_string())
            .collect()
    }

    #[test]
    fn csv_columns_in_any_order_with_ids_and_extra_columns() {
        let input = "extra,b,id,a\nx,2,r1,1\ny,0.5,\"r,2\",-3\n";
        let (out, errs, c) = score(input, Format::Csv, &["id"], 2).expect("run");
        let m = tiny();
        let mut lines = out.lines();
        assert_eq!(
            lines.next(),
            Some("id,label,proba_cat,proba_dog,\"proba_e,l\"")
        );
        assert_eq!(
            lines.next().map(str::to_string),
            Some(format!("r1,dog,{}", proba(&m, 1.0, 2.0).join(",")))
        );
        assert_eq!(
            lines.next().map(str::to_string),
            Some(format!(
                "\"r,2\",\"e,l\",{}",
                proba(&m, -3.0, 0.5).join(",")
            ))
        );
        assert_eq!(errs, ERRORS_HEADER);
        assert_eq!((c.rows_scored, c.rows_refused), (2, 0));
    }

    #[test]
    fn bad_rows_are_refused_with_line_and_reason_and_the_rest_scored() {
        let long = "9".repeat(100);
        let input = format!("a,b\n1,2\n1\n,2\nx,2\n1,inf\n\n1,{long}\n3,4\n\"1\",\"2\"\n1,\"2\n");
        let (out, errs, c) = score(&input, Format::Csv, &[], 1).expect("run");
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "line,label,proba_cat,proba_dog,\"proba_e,l\"");
        let scored: Vec<&str> = lines[1..]
            .iter()
            .map(|l| l.split(',').next().unwrap_or(""))
            .collect();
        assert_eq!(scored, ["2", "9", "10"]);
        let e: Vec<&str> = errs.lines().collect();
        assert_eq!(e[0], "line,column,reason");
        assert_eq!(e[1], "3,,\"1 fields, the header has 2\"");
        assert_eq!(e[2], "4,a,missing value");
        assert_eq!(e[3], "5,a,\"not a number: \"\"x\"\"\"");
        assert_eq!(e[4], "6,b,\"not finite: \"\"inf\"\"\"");
        assert_eq!(e[5], "8,,record longer than 64 bytes (MAX_RECORD_BYTES)");
        assert_eq!(e[6], "11,,a quoted field is not closed");
        assert_eq!((c.rows_scored, c.rows_refused), (3, 6));
    }

    #[test]
    fn unreadable_files_fail_whole() {
        let err = |input: &str| match score(input, Format::Csv, &["id"], 1) {
            Err(EngineError::Unreadable(r)) => r,
            other => panic!("expected unreadable, got {:?}", other.map(|o| o.2)),
        };
        assert!(err("").contains("empty file"));
        assert!(
            err("id,a\n1,2\n").contains("lacks 1 feature column(s): b"),
            "{}",
            err("id,a\n1,2\n")
        );
        assert!(err("a,b\n1,2\n").contains("lacks 1 id (ID_COLUMNS) column(s): id"));
        assert!(err("id,a,b,a\n").contains("twice"));
        assert!(err(&format!("id,a,b,{}\n", "x".repeat(100))).contains("header is longer"));
    }

    #[test]
    fn json_lines_with_ids_and_bad_rows() {
        let input = concat!(
            "{\"a\": 1, \"b\": 2, \"id\": {\"k\": [1]}, \"other\": [1,2]}\n",
            "{\"b\": 2}\n",
            "{\"a\": \"1\", \"b\": 2}\n",
            "[1, 2]\n",
            "{\"a\": 1, \"b\": null}\n",
            "{\"a\": 1e999, \"b\": 0}\n",
            "{\"a\": 1, \"a\": 2, \"b\": 0}\n",
            "\n",
            "{\"b\": -1, \"a\": 0.25}\n",
        );
        let (out, errs, c) = score(input, Format::Jsonl, &["id"], 2).expect("run");
        let m = tiny();
        let lines: Vec<serde_json::Value> = out
            .lines()
            .map(|l| serde_json::from_str(l).expect("json"))
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["id"], serde_json::json!({"k": [1]}));
        assert_eq!(lines[0]["label"], "dog");
        let p = m.predict(&[0.25, -1.0]).expect("p").probabilities;
        assert_eq!(lines[1]["id"], serde_json::Value::Null);
        assert_eq!(lines[1]["proba_cat"].as_f64(), Some(p[0]));
        assert_eq!(lines[1]["proba_e,l"].as_f64(), Some(p[2]));
        let e: Vec<&str> = errs.lines().skip(1).collect();
        assert_eq!(e.len(), 6, "{errs}");
        assert!(e[0].starts_with("2,a,missing"), "{}", e[0]);
        assert!(e[1].starts_with("3,a,not a number: a string"), "{}", e[1]);
        assert!(
            e[2].starts_with(
                "4,,\"invalid JSON: invalid type: sequence, expected a JSON object at column"
            ),
            "{}",
            e[2]
        );
        assert!(e[3].starts_with("5,b,not a number: null"), "{}", e[3]);
        assert!(
            e[4].starts_with("6,,") && e[4].contains("invalid JSON"),
            "{}",
            e[4]
        );
        assert!(e[5].starts_with("7,a,key given twice"), "{}", e[5]);
        assert_eq!((c.rows_scored, c.rows_refused), (2, 6));
    }

    #[test]
    fn output_is_the_same_at_any_thread_count() {
        let mut input = String::from("a,b\n");
        for i in 0..500 {
            input.push_str(&format!(
                "{},{}\n",
                f64::from(i) * 0.01,
                1.0 - f64::from(i) * 0.003
            ));
            if i % 37 == 0 {
                input.push_str("oops,1\n");
            }
        }
        let one = score(&input, Format::Csv, &[], 1).expect("1");
        let four = score(&input, Format::Csv, &[], 4).expect("4");
        assert_eq!(one.0, four.0);
        assert_eq!(one.1, four.1);
        assert_eq!(one.2.rows_scored, 500);
        assert_eq!(one.2.rows_refused, 14);
    }

    #[test]
    fn csv_splitting() {
        let mut f = Vec::new();
        split_csv("a,\"b,c\",\"d\"\"e\",", &mut f).expect("ok");
        assert_eq!(f, ["a", "b,c", "d\"e", ""]);
        assert!(split_csv("\"a\"b", &mut f).is_err());
        assert!(split_csv("\"a", &mut f).is_err());
        let mut out = Vec::new();
        csv_field(&mut out, "x\"y");
        assert_eq!(out, b"\"x\"\"y\"");
    }

    #[test]
    fn formats_from_names() {
        assert_eq!(Format::from_name("in/a.CSV.gz"), Some(Format::Csv));
        assert_eq!(Format::from_name("a.ndjson"), Some(Format::Jsonl));
        assert_eq!(Format::from_name("a.parquet"), None);
    }
}
