//! S3 events, as Lambda receives them: only the fields scoring needs. Two shapes: S3's
//! own event notifications (`{"Records": [...]}`), and the `Object Created` events S3
//! sends through EventBridge (what infra/template.yaml wires up: a bucket notification
//! straight to the function would make the bucket and the function depend on each other).
//! [`parse_event`] turns either into an [`S3Event`].
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

/// S3's `Object Created` event as EventBridge delivers it.
#[derive(Debug, Deserialize)]
struct BridgeEvent {
    #[serde(rename = "detail-type", default)]
    detail_type: String,
    #[serde(default)]
    source: String,
    detail: BridgeDetail,
}

#[derive(Debug, Deserialize)]
struct BridgeDetail {
    bucket: S3Bucket,
    object: BridgeObject,
    #[serde(default)]
    reason: Option<String>,
}

#[derive(Debug, Deserialize)]
struct BridgeObject {
    key: String,
    #[serde(default)]
    size: Option<u64>,
    #[serde(default)]
    etag: Option<String>,
    #[serde(default, rename = "version-id")]
    version_id: Option<String>,
}

/// Read an invocation payload: an S3 event notification, or an S3 event through
/// EventBridge (an `Object Created` one becomes an `ObjectCreated:<reason>` record; any
/// other S3 event a record the handler ignores).
pub fn parse_event(payload: serde_json::Value) -> Result<S3Event, String> {
    if payload.get("detail-type").is_some() {
        let ev: BridgeEvent = serde_json::from_value(payload)
            .map_err(|e| format!("an EventBridge event, but not an S3 one: {e}"))?;
        let created = ev.detail_type == "Object Created";
        return Ok(S3Event {
            records: vec![S3EventRecord {
                event_source: if ev.source == "aws.s3" {
                    "aws:s3".into()
                } else {
                    ev.source
                },
                event_name: if created {
                    format!(
                        "ObjectCreated:{}",
                        ev.detail.reason.as_deref().unwrap_or("Put")
                    )
                } else {
                    ev.detail_type
                },
                s3: S3Entity {
                    bucket: ev.detail.bucket,
                    object: S3Object {
                        key: ev.detail.object.key,
                        size: ev.detail.object.size,
                        e_tag: ev.detail.object.etag,
                        version_id: ev.detail.object.version_id,
                    },
                },
            }],
        });
    }
    serde_json::from_value(payload).map_err(|e| format!("not an S3 event notification: {e}"))
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
    fn eventbridge_object_created_becomes_a_record() {
        let ev = parse_event(serde_json::json!({
            "version": "0", "detail-type": "Object Created", "source": "aws.s3",
            "detail": {"version": "0", "bucket": {"name": "b"},
                "object": {"key": "in/a+b.csv", "size": 5, "etag": "e1", "version-id": "v1"},
                "reason": "CompleteMultipartUpload"}
        }))
        .expect("parsed");
        let r = &ev.records[0];
        assert_eq!(r.event_source, "aws:s3");
        assert_eq!(r.event_name, "ObjectCreated:CompleteMultipartUpload");
        assert_eq!(r.s3.object.version_id.as_deref(), Some("v1"));
        assert_eq!(r.s3.object.e_tag.as_deref(), Some("e1"));
        let deleted = parse_event(serde_json::json!({
            "detail-type": "Object Deleted", "source": "aws.s3",
            "detail": {"bucket": {"name": "b"}, "object": {"key": "k"}}
        }))
        .expect("parsed");
        assert_eq!(deleted.records[0].event_name, "Object Deleted");
        assert!(parse_event(serde_json::json!({"detail-type": "x", "detail": {}})).is_err());
        assert!(parse_event(serde_json::json!([1])).is_err());
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
