//! S3 events, as Lambda receives them: only the fields scoring needs. Three shapes: S3's
//! own event notifications (`{"Records": [...]}`), the `Object Created` events S3 sends
//! through EventBridge (what infra/template.yaml wires up: a bucket notification straight
//! to the function would make the bucket and the function depend on each other), and a
//! direct invocation naming one object, `{"bucket": "...", "key": "...", "version_id":
//! "..."}` ([`DirectInvocation`]; what ScoreWorkflow sends). The first two carry keys
//! URL-encoded; a direct invocation's key is the key itself, as a listing returns it, and
//! is never decoded. [`parse_event`] turns any of them into an [`S3Event`].
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
    /// A direct invocation ([`DirectInvocation`]): the key is literal (not URL-encoded),
    /// and there is no event source or name to check.
    #[serde(skip)]
    pub direct: bool,
}

impl S3EventRecord {
    /// The object key: decoded ([`decode_key`]) from an S3 event, as is from a direct
    /// invocation.
    pub fn key(&self) -> Result<String, String> {
        if self.direct {
            Ok(self.s3.object.key.clone())
        } else {
            decode_key(&self.s3.object.key)
        }
    }
}

/// A direct invocation: one object, its key taken literally (a `+`, a `%` or a space is
/// itself). For callers that hold raw keys, such as a Step Functions Map over an S3
/// listing, which has no way to URL-encode a key into a faked S3 event. Unknown fields
/// are refused.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct DirectInvocation {
    /// The bucket.
    pub bucket: String,
    /// The object key, exactly as stored.
    pub key: String,
    /// The version to score, on a versioned bucket (absent or null: the current one).
    #[serde(default)]
    pub version_id: Option<String>,
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
    /// The key: URL-encoded as S3 sends it (`+` for a space; see [`decode_key`]), or
    /// literal in a direct invocation; read it with [`S3EventRecord::key`].
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

/// Read an invocation payload: an S3 event notification, an S3 event through
/// EventBridge (an `Object Created` one becomes an `ObjectCreated:<reason>` record; any
/// other S3 event a record the handler ignores), or a direct invocation (an object with
/// a `bucket` or `key` field and neither `Records` nor `detail-type`; one record, its key
/// literal).
pub fn parse_event(payload: serde_json::Value) -> Result<S3Event, String> {
    let direct = payload.get("Records").is_none()
        && payload.get("detail-type").is_none()
        && (payload.get("bucket").is_some() || payload.get("key").is_some());
    if direct {
        let d: DirectInvocation = serde_json::from_value(payload).map_err(|e| {
            format!(
                "a direct invocation ({{\"bucket\": ..., \"key\": ..., \"version_id\": \
                 optional}}), but {e}"
            )
        })?;
        for (field, value) in [("bucket", &d.bucket), ("key", &d.key)] {
            if value.is_empty() {
                return Err(format!("a direct invocation: field `{field}` is empty"));
            }
        }
        return Ok(S3Event {
            records: vec![S3EventRecord {
                event_source: "direct".into(),
                event_name: "direct invocation".into(),
                s3: S3Entity {
                    bucket: S3Bucket { name: d.bucket },
                    object: S3Object {
                        key: d.key,
                        size: None,
                        e_tag: None,
                        version_id: d.version_id,
                    },
                },
                direct: true,
            }],
        });
    }
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
                direct: false,
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

    fn direct_key(key: &str) -> String {
        let ev = parse_event(serde_json::json!({"bucket": "b", "key": key})).expect("direct");
        assert_eq!(ev.records.len(), 1);
        let r = &ev.records[0];
        assert!(r.direct);
        assert_eq!(r.s3.bucket.name, "b");
        r.key().expect("a literal key")
    }

    #[test]
    fn direct_invocation_keys_are_literal() {
        assert_eq!(direct_key("in/a+b.csv"), "in/a+b.csv");
        assert_eq!(direct_key("in/a%2Bb.csv"), "in/a%2Bb.csv");
        assert_eq!(direct_key("in/with space.csv"), "in/with space.csv");
        // Not even a bad %-escape is an error: nothing is decoded.
        assert_eq!(direct_key("in/100%.csv"), "in/100%.csv");
        // The same key in an S3 event is decoded.
        let ev = parse_event(serde_json::json!({"Records": [{"eventSource": "aws:s3",
            "eventName": "ObjectCreated:Put",
            "s3": {"bucket": {"name": "b"}, "object": {"key": "in/a+b%2Bc.csv"}}}]}))
        .expect("event");
        assert!(!ev.records[0].direct);
        assert_eq!(ev.records[0].key().as_deref(), Ok("in/a b+c.csv"));
        let v =
            parse_event(serde_json::json!({"bucket": "b", "key": "in/x.csv", "version_id": "v7"}))
                .expect("with a version");
        assert_eq!(v.records[0].s3.object.version_id.as_deref(), Some("v7"));
        let null =
            parse_event(serde_json::json!({"bucket": "b", "key": "in/x.csv", "version_id": null}))
                .expect("a null version");
        assert_eq!(null.records[0].s3.object.version_id, None);
    }

    #[test]
    fn direct_invocation_fields_are_checked_by_name() {
        let err = |v: serde_json::Value| parse_event(v).expect_err("refused");
        let missing = err(serde_json::json!({"key": "in/x.csv"}));
        assert!(
            missing.contains("direct invocation") && missing.contains("missing field `bucket`"),
            "{missing}"
        );
        let missing = err(serde_json::json!({"bucket": "b"}));
        assert!(missing.contains("missing field `key`"), "{missing}");
        let unknown = err(serde_json::json!({"bucket": "b", "key": "in/x.csv", "etag": "e"}));
        assert!(unknown.contains("unknown field `etag`"), "{unknown}");
        let wrong = err(serde_json::json!({"bucket": "b", "key": 5}));
        assert!(
            wrong.contains("direct invocation") && wrong.contains("invalid type"),
            "{wrong}"
        );
        let empty = err(serde_json::json!({"bucket": "b", "key": ""}));
        assert!(empty.contains("field `key` is empty"), "{empty}");
        let empty = err(serde_json::json!({"bucket": "", "key": "in/x.csv"}));
        assert!(empty.contains("field `bucket` is empty"), "{empty}");
    }

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
