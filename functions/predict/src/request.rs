//! Parsing `POST /predict` bodies straight from bytes, in one pass, without an
//! intermediate `serde_json::Value` or serde's buffering untagged enums.
//!
//! Accepted: `{"image": [..]}` (the original's shape), `{"features": [..]}` and
//! `{"instances": [[..], ..]}`. Other keys are ignored, as the original (pydantic) did.
//! A number too large for an `f64` (`1e999`) is reported as a non-finite feature, naming
//! its row and index; JSON has no other way to spell NaN or infinity.
//!
//! Memory is bounded by the body: a batch row is checked against the model's feature
//! count as it is read (a short or long row stops the parse at once, naming the row), so
//! every stored row took at least two bytes of body per 8-byte value, and the number of
//! rows is capped before the next row is read.

use std::cell::RefCell;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use crate::config::DEFAULT_MAX_BATCH_ROWS;
use crate::error::AppError;
use model::ModelError;

/// A parsed `/predict` body.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// One row (`image` or `features`).
    One(Vec<f64>),
    /// A batch (`instances`).
    Many(Vec<Vec<f64>>),
}

/// Phrase of our own non-finite messages; the classifier below looks for it.
const NON_FINITE: &str = "is not a finite number";
const SHAPE: &str = "expected a JSON object with exactly one of `image`, `features` (a list of numbers) or `instances` (a list of lists of numbers)";

/// Parse a body for a model of `features` features, with at most
/// [`DEFAULT_MAX_BATCH_ROWS`] rows in a batch.
pub fn parse(bytes: &[u8], features: usize) -> Result<Input, AppError> {
    parse_with_max_rows(bytes, features, DEFAULT_MAX_BATCH_ROWS)
}

/// Parse a body for a model of `features` features, with at most `max_rows` rows in a
/// batch. A batch row of another length is refused as the model would refuse it
/// (naming the row), but before any later row is read.
pub fn parse_with_max_rows(
    bytes: &[u8],
    features: usize,
    max_rows: usize,
) -> Result<Input, AppError> {
    let stop = RefCell::new(None);
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let seed = InputSeed {
        hint: features,
        max_rows,
        stop: &stop,
    };
    let parsed = seed.deserialize(&mut de).and_then(|v| de.end().map(|()| v));
    match (parsed, stop.into_inner()) {
        (_, Some(e)) => Err(e),
        (Ok(input), None) => Ok(input),
        (Err(e), None) => Err(classify(&e)),
    }
}

/// Set `stop` to the error the request gets, and stop the parse.
fn stop_with<E: de::Error>(stop: &RefCell<Option<AppError>>, e: AppError) -> E {
    let msg = e.to_string();
    *stop.borrow_mut() = Some(e);
    E::custom(msg)
}

fn classify(e: &serde_json::Error) -> AppError {
    use serde_json::error::Category;
    match e.classify() {
        Category::Data if e.to_string().contains(NON_FINITE) => AppError::NonFinite(e.to_string()),
        Category::Data => AppError::InvalidBody(format!("{SHAPE}: {e}")),
        Category::Syntax | Category::Eof | Category::Io => AppError::MalformedJson(e.to_string()),
    }
}

/// Strip serde_json's " at line L column C" so an outer message does not repeat it.
fn without_position(msg: &str) -> &str {
    msg.find(" at line ").map_or(msg, |i| &msg[..i])
}

struct InputSeed<'s> {
    hint: usize,
    max_rows: usize,
    stop: &'s RefCell<Option<AppError>>,
}

impl<'de> DeserializeSeed<'de> for InputSeed<'_> {
    type Value = Input;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Input, D::Error> {
        d.deserialize_map(self)
    }
}

enum Key {
    Image,
    Features,
    Instances,
    Other,
}

impl<'de> de::Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl Visitor<'_> for KeyVisitor {
            type Value = Key;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key, E> {
                Ok(match v {
                    "image" => Key::Image,
                    "features" => Key::Features,
                    "instances" => Key::Instances,
                    _ => Key::Other,
                })
            }
        }
        d.deserialize_identifier(KeyVisitor)
    }
}

impl<'de> Visitor<'de> for InputSeed<'_> {
    type Value = Input;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object with `image`, `features` or `instances`")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Input, A::Error> {
        let mut found: Option<Input> = None;
        while let Some(key) = map.next_key::<Key>()? {
            let value = match key {
                Key::Image | Key::Features => Input::One(map.next_value_seed(RowSeed {
                    hint: self.hint,
                    row: None,
                })?),
                Key::Instances => Input::Many(map.next_value_seed(RowsSeed {
                    features: self.hint,
                    max_rows: self.max_rows,
                    stop: self.stop,
                })?),
                Key::Other => {
                    map.next_value::<IgnoredAny>()?;
                    continue;
                }
            };
            if found.replace(value).is_some() {
                return Err(de::Error::custom(
                    "give only one of `image`, `features` or `instances`",
                ));
            }
        }
        found.ok_or_else(|| de::Error::custom("missing `image`, `features` or `instances`"))
    }
}

/// One row of numbers; `row` is its index within a batch.
struct RowSeed {
    hint: usize,
    row: Option<usize>,
}

impl<'de> DeserializeSeed<'de> for RowSeed {
    type Value = Vec<f64>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Vec<f64>, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for RowSeed {
    type Value = Vec<f64>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of numbers")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<f64>, A::Error> {
        // The hint is a capacity only; a hostile length is bounded by the body limit.
        let mut v = Vec::with_capacity(self.hint.min(4096));
        loop {
            match seq.next_element::<f64>() {
                Ok(Some(x)) => v.push(x),
                Ok(None) => return Ok(v),
                Err(e) => {
                    let msg = e.to_string();
                    if msg.starts_with("number out of range") {
                        let index = v.len();
                        return Err(de::Error::custom(match self.row {
                            Some(r) => format!("row {r}: feature {index} {NON_FINITE}"),
                            None => format!("feature {index} {NON_FINITE}"),
                        }));
                    }
                    return Err(e);
                }
            }
        }
    }
}

struct RowsSeed<'s> {
    features: usize,
    max_rows: usize,
    stop: &'s RefCell<Option<AppError>>,
}

impl<'de> DeserializeSeed<'de> for RowsSeed<'_> {
    type Value = Vec<Vec<f64>>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Vec<Vec<f64>>, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for RowsSeed<'_> {
    type Value = Vec<Vec<f64>>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of lists of numbers")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<Vec<f64>>, A::Error> {
        let mut rows = Vec::new();
        loop {
            let r = rows.len();
            let seed = RowSeed {
                hint: self.features,
                row: Some(r),
            };
            match seq.next_element_seed(seed) {
                Ok(Some(row)) => {
                    if row.len() != self.features {
                        let e = ModelError::FeatureCount {
                            expected: self.features,
                            got: row.len(),
                            row: Some(r),
                        };
                        return Err(stop_with(self.stop, AppError::FeatureCount(e)));
                    }
                    if r == self.max_rows {
                        let e = AppError::TooManyRows {
                            rows: u64::try_from(r + 1).unwrap_or(u64::MAX),
                            limit: self.max_rows,
                        };
                        return Err(stop_with(self.stop, e));
                    }
                    rows.push(row);
                }
                Ok(None) => return Ok(rows),
                Err(e) => {
                    let msg = e.to_string();
                    // Our own non-finite message already names the row; drop the position
                    // serde_json appended so it is not repeated.
                    if msg.contains(NON_FINITE) {
                        return Err(de::Error::custom(without_position(&msg)));
                    }
                    return Err(e);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> Input {
        match parse(s.as_bytes(), 3) {
            Ok(i) => i,
            Err(e) => panic!("{s}: {e}"),
        }
    }

    fn err(s: &str) -> AppError {
        match parse(s.as_bytes(), 3) {
            Ok(i) => panic!("{s} parsed as {i:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn accepted_shapes() {
        assert_eq!(
            ok(r#"{"image": [1, 2.5, 0]}"#),
            Input::One(vec![1.0, 2.5, 0.0])
        );
        assert_eq!(ok(r#"{"features": []}"#), Input::One(vec![]));
        assert_eq!(
            ok(r#"{"x": {"y": [1]}, "instances": [[1, 2, 3], [4, 5, 6]]}"#),
            Input::Many(vec![vec![1.0, 2.0, 3.0], vec![4.0, 5.0, 6.0]])
        );
        assert_eq!(ok(r#"{"instances": []}"#), Input::Many(vec![]));
    }

    #[test]
    fn a_batch_row_of_another_length_stops_the_parse_naming_it() {
        let e = err(r#"{"instances": [[1, 2, 3], [], [1, 2, 3]]}"#);
        assert_eq!(e.code(), "wrong_feature_count", "{e}");
        assert_eq!(e.to_string(), "row 1: expected 3 features, got 0");
        let e = err(r#"{"instances": [[1, 2, 3, 4]]}"#);
        assert_eq!(e.to_string(), "row 0: expected 3 features, got 4");
        let many = format!(r#"{{"instances": [{}[1, 2, 3]]}}"#, "[1, 2, 3],".repeat(4));
        assert!(parse_with_max_rows(many.as_bytes(), 3, 5).is_ok());
        let e = parse_with_max_rows(many.as_bytes(), 3, 4).expect_err("5 rows > 4");
        assert_eq!(e.code(), "too_many_rows", "{e}");
    }

    #[test]
    fn errors_are_classified() {
        assert!(matches!(err("{"), AppError::MalformedJson(_)));
        assert!(matches!(
            err(r#"{"image": [1,]}"#),
            AppError::MalformedJson(_)
        ));
        assert!(matches!(
            err(r#"{"image": [1]} x"#),
            AppError::MalformedJson(_)
        ));
        assert!(matches!(
            err(r#"{"image": [NaN]}"#),
            AppError::MalformedJson(_)
        ));
        assert!(matches!(err("[1, 2]"), AppError::InvalidBody(_)));
        assert!(matches!(err("{}"), AppError::InvalidBody(_)));
        assert!(matches!(
            err(r#"{"image": ["a"]}"#),
            AppError::InvalidBody(_)
        ));
        assert!(matches!(
            err(r#"{"image": [1], "features": [2]}"#),
            AppError::InvalidBody(_)
        ));
        let e = err(r#"{"image": [1, 1e999]}"#);
        assert!(matches!(e, AppError::NonFinite(_)), "{e:?}");
        assert!(
            e.to_string()
                .starts_with("feature 1 is not a finite number"),
            "{e}"
        );
        let e = err(r#"{"instances": [[1, 2, 3], [3, -1e400, 0]]}"#);
        assert!(matches!(e, AppError::NonFinite(_)), "{e:?}");
        assert!(
            e.to_string()
                .starts_with("row 1: feature 1 is not a finite number"),
            "{e}"
        );
    }

    mod properties {
        use super::super::*;
        use proptest::prelude::*;

        fn rows(features: usize) -> impl Strategy<Value = Vec<Vec<f64>>> {
            let value = prop_oneof![any::<i32>().prop_map(f64::from), -1e300..1e300_f64];
            proptest::collection::vec(proptest::collection::vec(value, features), 0..20)
        }

        proptest! {
            #[test]
            fn valid_bodies_parse_back_to_their_rows(rows in rows(3)) {
                let body = serde_json::json!({"instances": rows}).to_string();
                let parsed = parse_with_max_rows(body.as_bytes(), 3, 100).map_err(|e| TestCaseError::fail(e.to_string()))?;
                prop_assert_eq!(parsed, Input::Many(rows.clone()));
                if let Some(first) = rows.first() {
                    let body = serde_json::json!({"image": first}).to_string();
                    prop_assert_eq!(parse(body.as_bytes(), 3).ok(), Some(Input::One(first.clone())));
                }
            }

            #[test]
            fn random_bytes_never_panic(body in proptest::collection::vec(any::<u8>(), 0..200), features in 0_usize..70, max_rows in 0_usize..5) {
                let _ = parse_with_max_rows(&body, features, max_rows);
            }

            #[test]
            fn json_like_text_never_panics_and_stays_within_the_caps(body in "[\\[\\]{}:,\"a-z0-9.eE+-]{0,200}", max_rows in 0_usize..4) {
                let text = format!("{{\"instances\": {body}");
                if let Ok(Input::Many(rows)) = parse_with_max_rows(text.as_bytes(), 2, max_rows) {
                    prop_assert!(rows.len() <= max_rows);
                    prop_assert!(rows.iter().all(|r| r.len() == 2));
                }
            }
        }
    }
}
