//! S3 event notifications, as Lambda receives them: only the fields scoring needs.
//! (Our own serde types: aws_lambda_events' would add chrono and every event type.)

use serde::Deserialize;

/// An S3 event notification. An `s3:TestEvent` (sent when a notification is set up) has
/// no records.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
pub struct S3Event {
    /// The records; S3 sends one per object today, but the format allows several.
    #[serde(rename = "Records", default)]
    pub records: Vec<S3EventRecord>,
}

/// One record of an [`S3Event`].
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct S3EventRecord {
    /// `aws:s3`.
    #[serde(default)]
    pub event_source: String,
    /// E.g. `ObjectCreated:Put`, `ObjectCreated:CompleteMultipartUpload`.
    #[serde(default)]
    pub event_name: String,
    /// The bucket and object.
    pub s3: S3Entity,
}

/// The `s3` part of a record.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
pub struct S3Entity {
    /// The bucket.
    pub bucket: S3Bucket,
    /// The object.
    pub object: S3Object,
}

/// The bucket of a record.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
pub struct S3Bucket {
    /// Its name.
    pub name: String,
}

/// The object of a record.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct S3Object {
    /// The key, URL-encoded as S3 sends it (`+` for a space); see [`decode_key`].
    pub key: String,
    /// Its size in bytes.
    #[serde(default)]
    pub size: Option<u64>,
    /// Its ETag, without quotes.
    #[serde(default, rename = "eTag")]
    pub e_tag: Option<String>,
    /// Its version id, on a versioned bucket.
    #[serde(default)]
    pub version_id: Option<String>,
}

/// Decode an event's object key: `+` is a space, `%XX` a byte; the result must be UTF-8.
pub fn decode_key(raw: &str) -> Result<String, String> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| format!("key {raw:?}: bad %-escape at byte {i}"))?;
                out.push(hex);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| format!("key {raw:?} does not decode to UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_url_decoded() {
        assert_eq!(
            decode_key("in/a+b%2Bc%C3%A9.csv").as_deref(),
            Ok("in/a b+cé.csv")
        );
        assert!(decode_key("in/%zz").is_err());
        assert!(decode_key("in/%4").is_err());
        assert!(decode_key("in/%ff").is_err());
    }

    #[test]
    fn events_parse_and_test_events_have_no_records() {
        let ev: S3Event = serde_json::from_str(
            r#"{"Records":[{"eventVersion":"2.1","eventSource":"aws:s3","eventName":"ObjectCreated:Put",
            "s3":{"bucket":{"name":"b","arn":"arn:aws:s3:::b"},"object":{"key":"in/x.csv","size":3,"eTag":"abc","sequencer":"0"}}}]}"#,
        )
        .expect("event");
        assert_eq!(ev.records.len(), 1);
        assert_eq!(ev.records[0].s3.object.e_tag.as_deref(), Some("abc"));
        let test: S3Event = serde_json::from_str(
            r#"{"Service":"Amazon S3","Event":"s3:TestEvent","Time":"2026-01-01T00:00:00.000Z","Bucket":"b"}"#,
        )
        .expect("test event");
        assert!(test.records.is_empty());
    }
}
