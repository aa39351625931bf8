//! MLflow / SageMaker scoring: `GET /ping` and `POST /invocations`, as MLflow's pyfunc
//! scoring server (and so SageMaker) speaks them.
//!
//! JSON bodies carry exactly one of `dataframe_split` (pandas `orient="split"`, with or
//! without `columns`), `dataframe_records` (pandas `orient="records"`), `instances` or
//! `inputs` (rows as lists or as records; `inputs` may also be columnar, `{column:
//! [values]}`); `params` is accepted and ignored, any other key is refused. Columns are
//! matched to the model's features by name, or by position (`3` or `"3"`, pandas' names
//! for unnamed columns); every feature must be named exactly once. `null` is pandas' NaN,
//! which the model refuses naming the row and the feature.
//!
//! `text/csv` bodies are read as MLflow reads them, with pandas' `read_csv`: the first
//! line is always the header (feature names, or positions `0,1,...`; pandas writes those
//! for a frame without names), every later line a row. A UTF-8 byte-order mark is
//! dropped, fields may be quoted (`"a,b"`, `""` for a quote), lines may end in LF, CRLF
//! or a bare CR, blank lines are skipped and an empty field is NaN. Errors name the CSV
//! line and column. The parser is the `csv` crate's.
//!
//! The answer is `{"predictions": [...]}`, one label a row, as MLflow's scikit-learn
//! flavour answers for a classifier. Errors have MLflow's shape, `{"error_code": "...",
//! "message": "..."}`, with the status `POST /predict` would give the same mistake.
//!
//! # Memory
//!
//! Every allocation a request causes is sized before it is made, from the body actually
//! received (B bytes, after any content coding) and the limits; nothing is sized by a
//! count the client declares. Bodies are parsed straight from the bytes (serde visitors,
//! no `serde_json::Value` tree) into one flat buffer of `f64`, row-major in the model's
//! feature order (the columnar `inputs` form stays column-major and is gathered 256 rows
//! at a time). Each row is checked as it is read (its length, its columns, its values
//! when their features are known, and the row count against `MAX_BATCH_ROWS`), so an
//! invalid row stops the parse before any later row is read.
//!
//! Every stored value is a token of at least one byte followed by a separator (`,` `]`
//! `}` in JSON; `,` or a line end in CSV), so the buffer is reserved once, before the
//! parse, for `min(separators in the body, B / 2) + 1 + F` values (F = feature count,
//! the row being read) and never grows: at most 4 B + 8 F + 8 bytes. Besides the body
//! itself a request then holds at most: 8 bytes a row for the predicted class (a row is
//! at least 2 F bytes of body, so at most 4 B / F); the answer, a label and a comma a
//! row; per 256-row chunk, the model's probabilities and row slices (a constant per
//! model); for JSON, serde_json's scratch for the longest escaped string or number (at
//! most twice its length, and such a token stores no value); for CSV, the `csv`
//! reader's 8 KiB buffer and one record, which may not exceed a length F fields of
//! numbers (or the header's names) can take. So the peak is about 5 B (+ 4 B / F) for
//! well-formed bodies, at most 7 B (+ 4 B / F) for JSON and 5 B (+ 4 B / F) for CSV,
//! plus a constant per model: for the digits model (F = 64) and a 1 MiB body, about
//! 5 MiB, 7 MiB at worst, over the process's idle size.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::fmt;
use std::io::Read;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use model::ModelError;
use serde::Serialize;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;
use utoipa::ToSchema;

use super::metrics::Predicted;
use crate::body::{is_json, json_error, media_type, read_limited};
use crate::error::AppError;
use crate::model_version::HEADER as MODEL_VERSION;
use crate::served::Served;
use crate::state::AppState;

/// The scoring routes.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/ping", get(ping))
        .route("/invocations", post(invocations))
}

/// An MLflow scoring error.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"error_code": "INVALID_PARAMETER_VALUE", "message": "row 0: expected 64 features, got 3"}))]
pub(crate) struct MlflowError {
    /// `MALFORMED_REQUEST` (400), `DEADLINE_EXCEEDED` (408), `REQUEST_LIMIT_EXCEEDED`
    /// (413), `BAD_REQUEST` (415) or `INVALID_PARAMETER_VALUE` (422).
    error_code: &'static str,
    /// What went wrong, for people; names the row and the feature or column.
    message: String,
    #[serde(skip)]
    status: StatusCode,
}

impl From<AppError> for MlflowError {
    fn from(e: AppError) -> Self {
        let status = e.status();
        let error_code = match status {
            StatusCode::BAD_REQUEST => "MALFORMED_REQUEST",
            StatusCode::PAYLOAD_TOO_LARGE => "REQUEST_LIMIT_EXCEEDED",
            StatusCode::REQUEST_TIMEOUT => "DEADLINE_EXCEEDED",
            StatusCode::UNPROCESSABLE_ENTITY => "INVALID_PARAMETER_VALUE",
            _ => "BAD_REQUEST",
        };
        Self {
            error_code,
            message: e.to_string(),
            status,
        }
    }
}

impl MlflowError {
    /// The 415 of `/invocations`. MLflow answers an unsupported content type (or a charset
    /// other than UTF-8) with 415 and a plain-text message listing JSON and CSV; here the
    /// message is the same in MLflow's error shape, with the code its parse errors use.
    fn unsupported(message: String) -> Self {
        Self {
            error_code: "BAD_REQUEST",
            message,
            status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
        }
    }
}

impl IntoResponse for MlflowError {
    fn into_response(self) -> Response {
        let body = serde_json::to_vec(&self).unwrap_or_default();
        let mut res = (self.status, body).into_response();
        res.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        res
    }
}

/// Liveness for MLflow and SageMaker: 200 once the model is loaded.
#[utoipa::path(get, path = "/ping", tag = "MLflow / SageMaker scoring",
    responses((status = 200, description = "The model is loaded", body = String, content_type = "text/plain", example = "\n")))]
pub(crate) async fn ping() -> Response {
    let mut res = "\n".into_response();
    res.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    res
}

/// A pandas `orient="split"` frame.
#[derive(Debug, ToSchema)]
#[allow(dead_code)] // A schema only: the body is read as JSON values.
pub(crate) struct DataframeSplit {
    /// Column names (feature names) or positions; optional.
    columns: Option<Vec<Value>>,
    /// Rows, one value a column.
    data: Vec<Vec<f64>>,
    /// Row labels; ignored.
    index: Option<Vec<Value>>,
}

/// `POST /invocations` JSON body: exactly one of the four keys.
#[derive(Debug, ToSchema)]
#[allow(dead_code)] // A schema only: the body is read as JSON values.
pub(crate) struct InvocationsRequest {
    /// pandas `DataFrame.to_json(orient="split")`.
    dataframe_split: Option<DataframeSplit>,
    /// pandas `DataFrame.to_json(orient="records")`: one object a row, keyed by feature name.
    #[schema(value_type = Option<Vec<Object>>)]
    dataframe_records: Option<Vec<Value>>,
    /// Rows: lists of numbers, or records.
    #[schema(value_type = Option<Vec<Vec<f64>>>)]
    instances: Option<Vec<Value>>,
    /// Rows (lists or records), or columns (`{name: [values]}`).
    inputs: Option<Value>,
    /// Inference parameters; accepted and ignored.
    #[schema(value_type = Option<Object>)]
    params: Option<Value>,
}

/// `POST /invocations` answer.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"predictions": [0, 4]}))]
pub(crate) struct Predictions {
    /// One predicted label a row: an integer when every class label is one, else a string.
    #[schema(value_type = Vec<PredictedLabel>)]
    predictions: Vec<Value>,
}

/// A predicted label (a schema only: answers are built as JSON values).
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
pub(crate) enum PredictedLabel {
    /// When every class label is an integer.
    Integer(i64),
    /// Otherwise.
    Label(String),
}

/// Score rows; the answer is one label a row.
///
/// Errors: 400 malformed JSON; 408 body not in within the timeout; 413 body over the
/// limit or more rows than `MAX_BATCH_ROWS`; 415 neither JSON nor CSV (or a charset other
/// than UTF-8); 422 unknown, missing or repeated columns, a wrong number of values, a
/// value that is not a number or not finite, a CSV line that does not parse (the message
/// names the row and the feature or column, and for CSV the line).
#[utoipa::path(post, path = "/invocations", tag = "MLflow / SageMaker scoring",
    request_body(
        description = "A JSON frame (exactly one of the keys), or CSV whose first line is always the header (feature names or positions `0,1,...`, as pandas' `to_csv(index=False)` writes) and every later line a row",
        content(
            (InvocationsRequest = "application/json"),
            (String = "text/csv", example = "pixel_0,pixel_1\n0,1\n")
        )),
    responses(
        (status = 200, description = "One label a row", body = Predictions),
        (status = 400, description = "Malformed JSON", body = MlflowError),
        (status = 408, description = "The body did not arrive within the timeout", body = MlflowError),
        (status = 413, description = "Body over the limit, or more rows than MAX_BATCH_ROWS", body = MlflowError),
        (status = 415, description = "Neither JSON nor CSV, or not UTF-8", body = MlflowError),
        (status = 422, description = "Bad columns, feature count, values or CSV", body = MlflowError)))]
pub(crate) async fn invocations(
    State(state): State<AppState>,
    req: Request,
) -> Result<Response, MlflowError> {
    let (parts, body) = req.into_parts();
    let csv = content_is_csv(&parts.headers)?;
    let bytes = read_limited(&state, &parts.headers, body).await?;
    let served = state.served();
    let features = Features::new(&served);
    let max_rows = state.max_batch_rows();
    let frame = if csv {
        parse_csv(&bytes, &features, max_rows)?
    } else {
        parse_json(&bytes, &features, max_rows)?
    };
    drop(bytes);
    let classes = predict(&served, &frame)?;
    drop(frame);
    let mut res = (StatusCode::OK, answer(&served, &classes)).into_response();
    res.headers_mut()
        .insert(MODEL_VERSION, served.version_header());
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    res.extensions_mut().insert(Predicted::Many(classes));
    Ok(res)
}

/// True for CSV, false for JSON (also when no content type is given); a 415 naming both
/// otherwise, or for a charset other than UTF-8 (MLflow's server refuses those too).
fn content_is_csv(headers: &HeaderMap) -> Result<bool, MlflowError> {
    let raw = headers
        .get(header::CONTENT_TYPE)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let unsupported = |ct: &str| {
        MlflowError::unsupported(format!(
            "content-type {:?} is not supported; send application/json or text/csv",
            shown(ct)
        ))
    };
    let csv = match media_type(headers) {
        Ok(None) => false,
        Ok(Some(m)) if is_json(&m) => false,
        Ok(Some(m)) if m == "text/csv" => true,
        Ok(Some(_)) | Err(_) => return Err(unsupported(raw.as_deref().unwrap_or(""))),
    };
    let params = raw.as_deref().unwrap_or("").split(';').skip(1);
    for (key, value) in params.filter_map(|p| p.split_once('=')) {
        let value = value.trim().trim_matches('"');
        if key.trim().eq_ignore_ascii_case("charset")
            && !value.eq_ignore_ascii_case("utf-8")
            && !value.eq_ignore_ascii_case("utf8")
        {
            return Err(MlflowError::unsupported(format!(
                "charset {:?} is not supported; send the body as UTF-8",
                shown(value)
            )));
        }
    }
    Ok(csv)
}

/// The predicted class of every row, predicted 256 rows at a time so that the model's
/// per-row results (probabilities) never exist for the whole batch at once.
fn predict(state: &Served, frame: &Frame) -> Result<Vec<usize>, AppError> {
    let n = frame.features;
    let mut classes = Vec::with_capacity(frame.rows);
    let mut scratch = Vec::new();
    let mut start = 0;
    while start < frame.rows {
        let end = start.saturating_add(CHUNK_ROWS).min(frame.rows);
        let chunk = frame.chunk(start, end, &mut scratch);
        let rows: Vec<&[f64]> = if n == 0 {
            vec![&[][..]; end - start]
        } else {
            chunk.chunks_exact(n).collect()
        };
        let preds = state
            .model()
            .predict_batch(&rows)
            .map_err(|e| AppError::from(shift_row(e, start)))?;
        classes.extend(preds.iter().map(|p| p.class_index));
        start = end;
    }
    Ok(classes)
}

/// A model error on row `i` of a chunk that starts at row `start`, renamed for the batch.
fn shift_row(e: ModelError, start: usize) -> ModelError {
    let row = match &e {
        ModelError::FeatureCount { row, .. } | ModelError::NonFinite { row, .. } => *row,
        _ => None,
    };
    match row {
        Some(i) => e.at_row(start.saturating_add(i)),
        None => e,
    }
}

/// `{"predictions":[...]}`, written directly (one label and a comma a row) into a buffer
/// sized exactly beforehand.
fn answer(state: &Served, classes: &[usize]) -> Vec<u8> {
    let labels: Vec<Vec<u8>> = (0..state.model().classes().len())
        .map(|i| serde_json::to_vec(&state.label_value(i)).unwrap_or_else(|_| b"null".to_vec()))
        .collect();
    let label = |c: usize| labels.get(c).map_or(&b"null"[..], Vec::as_slice);
    let size = classes.iter().fold(18_usize, |acc, &c| {
        acc.saturating_add(label(c).len()).saturating_add(1)
    });
    let mut body = Vec::with_capacity(size);
    body.extend_from_slice(b"{\"predictions\":[");
    for (k, &c) in classes.iter().enumerate() {
        if k > 0 {
            body.push(b',');
        }
        body.extend_from_slice(label(c));
    }
    body.extend_from_slice(b"]}");
    body
}

/// Rows predicted this many at a time.
const CHUNK_ROWS: usize = 256;
/// The keys of a JSON body, for messages.
const FORMATS: &str = "`dataframe_split`, `dataframe_records`, `instances` or `inputs`";
/// Longest client text (a name, a field) quoted back in a message, in characters.
const SHOWN_CHARS: usize = 64;

/// `s`, cut to [`SHOWN_CHARS`] characters, to quote it in a message.
fn shown(s: &str) -> String {
    match s.char_indices().nth(SHOWN_CHARS) {
        Some((i, _)) => format!("{}...", s.get(..i).unwrap_or("")),
        None => s.to_string(),
    }
}

/// The model's feature names, to map named columns to positions.
struct Features<'a> {
    names: &'a [String],
    index: HashMap<&'a str, usize>,
}

impl<'a> Features<'a> {
    fn new(served: &'a Served) -> Self {
        Self::of(&served.artifact().feature_names)
    }

    fn of(names: &'a [String]) -> Self {
        Self {
            names,
            index: names
                .iter()
                .enumerate()
                .map(|(i, n)| (n.as_str(), i))
                .collect(),
        }
    }

    fn len(&self) -> usize {
        self.names.len()
    }

    fn name(&self, i: usize) -> &str {
        self.names.get(i).map_or("", String::as_str)
    }

    /// The feature a column named `s` is: by name, or else by position (`"3"`).
    fn by_name(&self, s: &str) -> Option<usize> {
        self.index
            .get(s)
            .copied()
            .or_else(|| s.parse::<usize>().ok().filter(|&i| i < self.len()))
    }

    /// The feature at position `i`, if there is one.
    fn by_position(&self, i: u64) -> Option<usize> {
        usize::try_from(i).ok().filter(|&i| i < self.len())
    }

    fn describe(&self) -> String {
        match self.names {
            [] => "the model has no features".to_string(),
            [only] => format!("the model's one feature is {only:?}"),
            [first, .., last] => format!(
                "the model's {} features are {first:?} .. {last:?} (or positions 0 .. {})",
                self.names.len(),
                self.names.len() - 1
            ),
        }
    }

    /// The first feature `seen` does not mark.
    fn missing(&self, seen: &[bool]) -> Option<&str> {
        seen.iter().position(|s| !s).map(|i| self.name(i))
    }
}

/// Parsed rows.
#[derive(Debug)]
struct Frame {
    /// Row-major in the model's feature order, or column-major when `columns` is set.
    values: Vec<f64>,
    rows: usize,
    features: usize,
    /// Column-major (the columnar `inputs` form): column `k` is feature `columns[k]`.
    columns: Option<Vec<usize>>,
}

impl Frame {
    /// Rows `start..end`, row-major in feature order: a slice of the buffer, or gathered
    /// into `scratch` from the columns.
    fn chunk<'a>(&'a self, start: usize, end: usize, scratch: &'a mut Vec<f64>) -> &'a [f64] {
        let n = self.features;
        let Some(order) = &self.columns else {
            return self
                .values
                .get(start.saturating_mul(n)..end.saturating_mul(n))
                .unwrap_or(&[]);
        };
        scratch.clear();
        scratch.resize(end.saturating_sub(start).saturating_mul(n), f64::NAN);
        for (k, &i) in order.iter().enumerate() {
            let column = k.saturating_mul(self.rows);
            for r in start..end {
                let at = (r - start).saturating_mul(n).saturating_add(i);
                if let (Some(&x), Some(slot)) = (
                    self.values.get(column.saturating_add(r)),
                    scratch.get_mut(at),
                ) {
                    *slot = x;
                }
            }
        }
        scratch
    }

    /// Every row, in feature order (tests).
    #[cfg(test)]
    fn to_rows(&self) -> Vec<Vec<f64>> {
        let mut scratch = Vec::new();
        let chunk = self.chunk(0, self.rows, &mut scratch);
        chunk
            .chunks(self.features.max(1))
            .map(<[f64]>::to_vec)
            .collect()
    }
}

/// Values to reserve for a body of `body` bytes: every value a completed row stores is
/// at least one byte followed by its own separator, so no more than
/// `min(separators, len / 2) + 1` of them, and no more than `max_rows` rows of them; plus
/// one row being read.
fn reserve(body: &[u8], features: usize, max_rows: usize) -> usize {
    let separators = body
        .iter()
        .filter(|b| matches!(b, b',' | b']' | b'}' | b'\n' | b'\r'))
        .count();
    let by_body = separators.min(body.len() / 2).saturating_add(1);
    let by_rows = max_rows.saturating_mul(features);
    by_body.min(by_rows).saturating_add(features)
}

/// What a parse writes: the values, the rows completed and a reusable flag per feature.
struct Out {
    values: Vec<f64>,
    rows: usize,
    columns: Option<Vec<usize>>,
    seen: Vec<bool>,
}

impl Out {
    fn new(body: &[u8], features: usize, max_rows: usize) -> Self {
        Self {
            values: Vec::with_capacity(reserve(body, features, max_rows)),
            rows: 0,
            columns: None,
            seen: vec![false; features],
        }
    }

    fn into_frame(self, features: usize) -> Frame {
        Frame {
            values: self.values,
            rows: self.rows,
            features,
            columns: self.columns,
        }
    }
}

/// What every visitor shares: the features, the row cap and the error that stops the
/// parse (serde's own error carries only a message; this keeps the status).
#[derive(Clone, Copy)]
struct Ctx<'c> {
    f: &'c Features<'c>,
    max_rows: usize,
    stop: &'c RefCell<Option<AppError>>,
}

impl Ctx<'_> {
    fn n(&self) -> usize {
        self.f.len()
    }

    /// Record `e` as the request's error (the first one wins) and stop the parse.
    fn fail<E: de::Error>(&self, e: AppError) -> E {
        let msg = e.to_string();
        let mut slot = self.stop.borrow_mut();
        if slot.is_none() {
            *slot = Some(e);
        }
        E::custom(msg)
    }

    fn invalid<E: de::Error>(&self, msg: String) -> E {
        self.fail(AppError::InvalidBody(msg))
    }

    /// A cell's error: serde_json's "number out of range" (`1e999`) becomes the
    /// non-finite error naming the row and the feature (or column).
    fn cell_error<E: de::Error>(&self, e: E, r: usize, col: Col<'_>, feature: Option<usize>) -> E {
        let stopped = self.stop.borrow().is_some();
        if !stopped && e.to_string().starts_with("number out of range") {
            let msg = match feature {
                Some(i) => format!("row {r}: feature {i} is not a finite number"),
                None => format!("row {r}: {col} is not a finite number"),
            };
            return self.fail(AppError::NonFinite(msg));
        }
        e
    }

    /// A row is complete: check the row cap, then (when its values are in feature order)
    /// that they are finite, as the model would, naming the row and the feature.
    fn finish_row<E: de::Error>(
        &self,
        out: &mut Out,
        start: usize,
        check_finite: bool,
    ) -> Result<(), E> {
        let r = out.rows;
        if r >= self.max_rows {
            return Err(self.fail(AppError::TooManyRows {
                rows: u64::try_from(r).unwrap_or(u64::MAX).saturating_add(1),
                limit: self.max_rows,
            }));
        }
        if check_finite {
            let row = out.values.get(start..).unwrap_or(&[]);
            if let Some(index) = row.iter().position(|x| !x.is_finite()) {
                let e = ModelError::NonFinite {
                    index,
                    row: Some(r),
                };
                return Err(self.fail(AppError::from(e)));
            }
        }
        out.rows = r.saturating_add(1);
        Ok(())
    }
}

/// A column, as messages name it.
#[derive(Clone, Copy)]
enum Col<'a> {
    /// By position in the row.
    Pos(usize),
    /// By feature name.
    Name(&'a str),
}

impl fmt::Display for Col<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Pos(j) => write!(f, "column {j}"),
            Self::Name(n) => write!(f, "column {}", shown(n)),
        }
    }
}

/// Implements the visitor methods of every JSON type but the listed ones as
/// `self.wrong(what)`: a message of the visitor's own, through `Ctx::fail`.
macro_rules! refuse_scalars {
    () => {
        fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
            Err(self.wrong(&v.to_string()))
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
            Err(self.wrong(&v.to_string()))
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
            Err(self.wrong(&v.to_string()))
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
            Err(self.wrong(&v.to_string()))
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Err(self.wrong(&format!("{:?}", shown(v))))
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Err(self.wrong("null"))
        }
    };
}

/// Parse a JSON body for `f`'s features, at most `max_rows` rows.
fn parse_json(bytes: &[u8], f: &Features<'_>, max_rows: usize) -> Result<Frame, AppError> {
    let stop = RefCell::new(None);
    let ctx = Ctx {
        f,
        max_rows,
        stop: &stop,
    };
    let mut out = Out::new(bytes, f.len(), max_rows);
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let parsed = de
        .deserialize_any(Top { ctx, out: &mut out })
        .and_then(|()| de.end());
    match (parsed, stop.into_inner()) {
        (_, Some(e)) => Err(e),
        (Ok(()), None) => Ok(out.into_frame(f.len())),
        (Err(e), None) => Err(json_error(&e)),
    }
}

/// The body: an object with exactly one of the four keys.
struct Top<'c, 'o> {
    ctx: Ctx<'c>,
    out: &'o mut Out,
}

impl Top<'_, '_> {
    fn wrong<E: de::Error>(&self, _got: &str) -> E {
        self.ctx
            .invalid(format!("expected a JSON object with one of {FORMATS}"))
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Format {
    Split,
    Records,
    Instances,
    Inputs,
}

impl Format {
    fn key(self) -> &'static str {
        match self {
            Self::Split => "dataframe_split",
            Self::Records => "dataframe_records",
            Self::Instances => "instances",
            Self::Inputs => "inputs",
        }
    }
}

impl<'de> Visitor<'de> for Top<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a JSON object with one of {FORMATS}")
    }

    refuse_scalars!();

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        // Read to the end first, so that a syntax error is still a 400.
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Err(self.wrong("a list"))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let ctx = self.ctx;
        let mut found: Option<Format> = None;
        while let Some(key) = map.next_key_seed(TopKey { ctx })? {
            let Some(format) = key else {
                map.next_value::<IgnoredAny>()?;
                continue;
            };
            if let Some(first) = found {
                return Err(ctx.invalid(format!(
                    "expected exactly one of {FORMATS}, got both `{}` and `{}`",
                    first.key(),
                    format.key()
                )));
            }
            found = Some(format);
            map.next_value_seed(Body {
                ctx,
                out: &mut *self.out,
                format,
            })?;
        }
        match found {
            Some(_) => Ok(()),
            None => Err(ctx.invalid(format!("expected exactly one of {FORMATS}, got none"))),
        }
    }
}

/// A top-level key: `Some(format)`, or `None` for `params` (ignored).
struct TopKey<'c> {
    ctx: Ctx<'c>,
}

impl<'de> DeserializeSeed<'de> for TopKey<'_> {
    type Value = Option<Format>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl Visitor<'_> for TopKey<'_> {
    type Value = Option<Format>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a key")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Some(match v {
            "params" => return Ok(None),
            "dataframe_split" => Format::Split,
            "dataframe_records" => Format::Records,
            "instances" => Format::Instances,
            "inputs" => Format::Inputs,
            other => {
                return Err(self.ctx.invalid(format!(
                    "unknown key {:?}; expected one of {FORMATS}",
                    shown(other)
                )));
            }
        }))
    }
}

/// The value of one of the four keys.
struct Body<'c, 'o> {
    ctx: Ctx<'c>,
    out: &'o mut Out,
    format: Format,
}

impl<'de> DeserializeSeed<'de> for Body<'_, '_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl Body<'_, '_> {
    fn wrong<E: de::Error>(&self, _got: &str) -> E {
        self.ctx.invalid(
            match self.format {
                Format::Split => "`dataframe_split` must be an object with `columns` and `data`",
                Format::Records => "`dataframe_records` must be a list of objects",
                Format::Instances => "`instances` must be a list of rows",
                Format::Inputs => "`inputs` must be a list of rows, or an object of columns",
            }
            .to_string(),
        )
    }
}

impl<'de> Visitor<'de> for Body<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the value of `{}`", self.format.key())
    }

    refuse_scalars!();

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<(), A::Error> {
        let kind = match self.format {
            Format::Split => return Err(self.wrong("a list")),
            Format::Records => RowKind::Record,
            Format::Instances | Format::Inputs => RowKind::Any,
        };
        read_rows(seq, self.ctx, self.out, kind, None, true)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<(), A::Error> {
        match self.format {
            Format::Split => split(map, self.ctx, self.out),
            Format::Inputs => columnar(map, self.ctx, self.out),
            Format::Records | Format::Instances => Err(self.wrong("an object")),
        }
    }
}

/// What a row may be.
#[derive(Clone, Copy, PartialEq, Eq)]
enum RowKind {
    /// A list of values or a record (`instances`, `inputs`).
    Any,
    /// A record (`dataframe_records`).
    Record,
    /// A list of values (`dataframe_split.data`).
    List,
}

/// Read a list of rows into `out`. `perm` maps a list's positions to features (a
/// `dataframe_split` with `columns`); `check_finite` is false only when the features of
/// the positions are not known yet (`data` before `columns`).
fn read_rows<'de, A: SeqAccess<'de>>(
    mut seq: A,
    ctx: Ctx<'_>,
    out: &mut Out,
    kind: RowKind,
    perm: Option<&[usize]>,
    check_finite: bool,
) -> Result<(), A::Error> {
    while seq
        .next_element_seed(Row {
            ctx,
            out: &mut *out,
            kind,
            perm,
            check_finite,
        })?
        .is_some()
    {}
    Ok(())
}

/// One row, written to the end of `out.values` and checked before the next is read.
struct Row<'c, 'o, 'p> {
    ctx: Ctx<'c>,
    out: &'o mut Out,
    kind: RowKind,
    perm: Option<&'p [usize]>,
    check_finite: bool,
}

impl<'de> DeserializeSeed<'de> for Row<'_, '_, '_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl Row<'_, '_, '_> {
    fn wrong<E: de::Error>(&self, _got: &str) -> E {
        let r = self.out.rows;
        self.ctx.invalid(match self.kind {
            RowKind::Any => format!("row {r}: expected a list of numbers or an object"),
            RowKind::Record => format!("row {r}: expected an object (a record)"),
            RowKind::List => format!("row {r}: expected a list of values"),
        })
    }
}

impl<'de> Visitor<'de> for Row<'_, '_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a row")
    }

    refuse_scalars!();

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        if self.kind == RowKind::Record {
            return Err(self.wrong("a list"));
        }
        let r = self.out.rows;
        let (ctx, n) = (self.ctx, self.ctx.n());
        let out = self.out;
        let start = out.values.len();
        out.values.resize(start.saturating_add(n), f64::NAN);
        let mut got = 0_usize;
        loop {
            if got >= n {
                // Past the model's width: count the rest, store nothing.
                if seq.next_element::<IgnoredAny>()?.is_none() {
                    break;
                }
                got = got.saturating_add(1);
                continue;
            }
            let (col, feature) = match self.perm {
                None if self.check_finite => (Col::Pos(got), Some(got)),
                None => (Col::Pos(got), None),
                Some(p) => {
                    let i = p.get(got).copied().unwrap_or(got);
                    (Col::Name(ctx.f.name(i)), Some(i))
                }
            };
            match seq.next_element_seed(Number { ctx, r, col }) {
                Ok(Some(x)) => {
                    let at = start.saturating_add(feature.unwrap_or(got));
                    if let Some(slot) = out.values.get_mut(at) {
                        *slot = x;
                    }
                    got += 1;
                }
                Ok(None) => break,
                Err(e) => return Err(ctx.cell_error(e, r, col, feature)),
            }
        }
        if got != n {
            return Err(ctx.fail(match self.perm {
                None => AppError::FeatureCount(ModelError::FeatureCount {
                    expected: n,
                    got,
                    row: Some(r),
                }),
                Some(_) => AppError::InvalidBody(format!(
                    "row {r}: expected {n} values (one a column), got {got}"
                )),
            }));
        }
        ctx.finish_row(out, start, self.check_finite)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        if self.kind == RowKind::List {
            return Err(self.wrong("an object"));
        }
        let r = self.out.rows;
        let (ctx, n) = (self.ctx, self.ctx.n());
        let out = self.out;
        let start = out.values.len();
        out.values.resize(start.saturating_add(n), f64::NAN);
        out.seen.fill(false);
        while let Some(i) = map.next_key_seed(FeatureKey {
            ctx,
            row: Some(r),
            seen: &mut out.seen,
        })? {
            let col = Col::Name(ctx.f.name(i));
            let x = map
                .next_value_seed(Number { ctx, r, col })
                .map_err(|e| ctx.cell_error(e, r, col, Some(i)))?;
            if let Some(slot) = out.values.get_mut(start.saturating_add(i)) {
                *slot = x;
            }
        }
        if let Some(name) = ctx.f.missing(&out.seen) {
            return Err(ctx.invalid(format!("row {r}: missing feature {name:?}")));
        }
        ctx.finish_row(out, start, true)
    }
}

/// A key naming a feature (a record's key, a columnar `inputs` key): its feature, which
/// must be known and not named before (`seen`).
struct FeatureKey<'c, 's> {
    ctx: Ctx<'c>,
    row: Option<usize>,
    seen: &'s mut [bool],
}

impl<'de> DeserializeSeed<'de> for FeatureKey<'_, '_> {
    type Value = usize;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<usize, D::Error> {
        d.deserialize_str(self)
    }
}

impl Visitor<'_> for FeatureKey<'_, '_> {
    type Value = usize;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a column name")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<usize, E> {
        let prefix = self.row.map(|r| format!("row {r}: ")).unwrap_or_default();
        let Some(i) = self.ctx.f.by_name(v) else {
            return Err(self.ctx.invalid(format!(
                "{prefix}unknown column {:?}; {}",
                shown(v),
                self.ctx.f.describe()
            )));
        };
        match self.seen.get_mut(i) {
            Some(seen) if !*seen => *seen = true,
            _ => {
                return Err(self.ctx.invalid(format!(
                    "{prefix}column {:?} repeats feature {:?}",
                    shown(v),
                    self.ctx.f.name(i)
                )));
            }
        }
        Ok(i)
    }
}

/// One value: a number, or `null` (pandas' NaN).
struct Number<'c, 'n> {
    ctx: Ctx<'c>,
    r: usize,
    col: Col<'n>,
}

impl<'de> DeserializeSeed<'de> for Number<'_, '_> {
    type Value = f64;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<f64, D::Error> {
        d.deserialize_any(self)
    }
}

impl Number<'_, '_> {
    fn not_a_number<E: de::Error>(&self, got: &str) -> E {
        self.ctx.invalid(format!(
            "row {}: {}: {got} is not a number",
            self.r, self.col
        ))
    }
}

impl<'de> Visitor<'de> for Number<'_, '_> {
    type Value = f64;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a number or null")
    }

    #[allow(clippy::cast_precision_loss)] // A JSON integer is read as the nearest f64.
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<f64, E> {
        Ok(v as f64)
    }

    #[allow(clippy::cast_precision_loss)]
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<f64, E> {
        Ok(v as f64)
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<f64, E> {
        Ok(v)
    }

    fn visit_unit<E: de::Error>(self) -> Result<f64, E> {
        Ok(f64::NAN)
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<f64, E> {
        Err(self.not_a_number(&v.to_string()))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<f64, E> {
        Err(self.not_a_number(&format!("{:?}", shown(v))))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<f64, A::Error> {
        Err(self.not_a_number("a list"))
    }

    fn visit_map<A: MapAccess<'de>>(self, _: A) -> Result<f64, A::Error> {
        Err(self.not_a_number("an object"))
    }
}

/// `dataframe_split`: `columns` (optional, before or after `data`), `data`; `index` and
/// any other key ignored.
fn split<'de, A: MapAccess<'de>>(mut map: A, ctx: Ctx<'_>, out: &mut Out) -> Result<(), A::Error> {
    let mut perm: Option<Vec<usize>> = None;
    let (mut has_columns, mut has_data, mut data_first) = (false, false, false);
    while let Some(key) = map.next_key::<SplitKey>()? {
        match key {
            SplitKey::Columns => {
                if std::mem::replace(&mut has_columns, true) {
                    return Err(ctx.invalid("`dataframe_split` has `columns` twice".into()));
                }
                perm = map.next_value_seed(Columns {
                    ctx,
                    seen: &mut out.seen,
                })?;
                data_first = has_data;
            }
            SplitKey::Data => {
                if std::mem::replace(&mut has_data, true) {
                    return Err(ctx.invalid("`dataframe_split` has `data` twice".into()));
                }
                map.next_value_seed(Data {
                    ctx,
                    out: &mut *out,
                    perm: perm.as_deref(),
                })?;
            }
            SplitKey::Other => {
                map.next_value::<IgnoredAny>()?;
            }
        }
    }
    if !has_data {
        return Err(ctx.invalid("`dataframe_split.data` must be a list of rows".into()));
    }
    if let (true, Some(perm)) = (data_first, &perm) {
        // `data` came first: its rows are in column order; put them in feature order.
        permute(&mut out.values, ctx.n(), perm);
    }
    Ok(())
}

/// Rows of `n` values in column order, rewritten in place in feature order.
fn permute(values: &mut [f64], n: usize, perm: &[usize]) {
    if n == 0 {
        return;
    }
    let mut row_copy = vec![0.0; n];
    for row in values.chunks_exact_mut(n) {
        row_copy.copy_from_slice(row);
        for (&x, &i) in row_copy.iter().zip(perm) {
            if let Some(slot) = row.get_mut(i) {
                *slot = x;
            }
        }
    }
}

enum SplitKey {
    Columns,
    Data,
    Other,
}

impl<'de> de::Deserialize<'de> for SplitKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl Visitor<'_> for KeyVisitor {
            type Value = SplitKey;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a key")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<SplitKey, E> {
                Ok(match v {
                    "columns" => SplitKey::Columns,
                    "data" => SplitKey::Data,
                    _ => SplitKey::Other,
                })
            }
        }
        d.deserialize_str(KeyVisitor)
    }
}

/// `dataframe_split.data`.
struct Data<'c, 'o, 'p> {
    ctx: Ctx<'c>,
    out: &'o mut Out,
    perm: Option<&'p [usize]>,
}

impl<'de> DeserializeSeed<'de> for Data<'_, '_, '_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl Data<'_, '_, '_> {
    fn wrong<E: de::Error>(&self, _got: &str) -> E {
        self.ctx
            .invalid("`dataframe_split.data` must be a list of rows".into())
    }
}

impl<'de> Visitor<'de> for Data<'_, '_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of rows")
    }

    refuse_scalars!();

    fn visit_map<A: MapAccess<'de>>(self, _: A) -> Result<(), A::Error> {
        Err(self.wrong("an object"))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<(), A::Error> {
        // Without `columns` (yet), positions are features only if no `columns` follows:
        // the finite check then waits for the model.
        let check_finite = self.perm.is_some();
        read_rows(
            seq,
            self.ctx,
            self.out,
            RowKind::List,
            self.perm,
            check_finite,
        )
    }
}

/// `dataframe_split.columns`: `None` for `null`, else the feature of each position;
/// every feature exactly once.
struct Columns<'c, 's> {
    ctx: Ctx<'c>,
    seen: &'s mut [bool],
}

impl<'de> DeserializeSeed<'de> for Columns<'_, '_> {
    type Value = Option<Vec<usize>>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl Columns<'_, '_> {
    fn wrong<E: de::Error>(&self, _got: &str) -> E {
        self.ctx
            .invalid("`dataframe_split.columns` must be a list".into())
    }
}

impl<'de> Visitor<'de> for Columns<'_, '_> {
    type Value = Option<Vec<usize>>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of column names")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Err(self.wrong("a boolean"))
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Err(self.wrong("a number"))
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Err(self.wrong("a number"))
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Err(self.wrong("a number"))
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Err(self.wrong("a string"))
    }

    fn visit_map<A: MapAccess<'de>>(self, _: A) -> Result<Self::Value, A::Error> {
        Err(self.wrong("an object"))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let (ctx, n) = (self.ctx, self.ctx.n());
        self.seen.fill(false);
        let mut order = Vec::with_capacity(n);
        while let Some(i) = seq.next_element_seed(ColumnKey {
            ctx,
            seen: &mut *self.seen,
        })? {
            order.push(i);
        }
        if let Some(name) = ctx.f.missing(self.seen) {
            return Err(ctx.invalid(format!(
                "missing column {name:?}: {} columns given, the model needs {n}",
                order.len()
            )));
        }
        Ok(Some(order))
    }
}

/// One entry of `dataframe_split.columns`: a name, or a position (`3` or `"3"`).
struct ColumnKey<'c, 's> {
    ctx: Ctx<'c>,
    seen: &'s mut [bool],
}

impl<'de> DeserializeSeed<'de> for ColumnKey<'_, '_> {
    type Value = usize;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<usize, D::Error> {
        d.deserialize_any(self)
    }
}

impl ColumnKey<'_, '_> {
    fn found<E: de::Error>(self, i: Option<usize>, shown: &str) -> Result<usize, E> {
        let Some(i) = i else {
            return Err(self
                .ctx
                .invalid(format!("unknown column {shown}; {}", self.ctx.f.describe())));
        };
        match self.seen.get_mut(i) {
            Some(seen) if !*seen => {
                *seen = true;
                Ok(i)
            }
            _ => Err(self.ctx.invalid(format!(
                "column {shown} repeats feature {:?}",
                self.ctx.f.name(i)
            ))),
        }
    }

    fn wrong<E: de::Error>(self, got: &str) -> E {
        match self.found::<E>(None, got) {
            Err(e) => e,
            Ok(_) => E::custom("unreachable"),
        }
    }
}

impl<'de> Visitor<'de> for ColumnKey<'_, '_> {
    type Value = usize;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a column name or position")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<usize, E> {
        let i = self.ctx.f.by_name(v);
        self.found(i, &format!("{:?}", shown(v)))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<usize, E> {
        let i = self.ctx.f.by_position(v);
        self.found(i, &v.to_string())
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<usize, E> {
        Err(self.wrong(&v.to_string()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<usize, E> {
        Err(self.wrong(&v.to_string()))
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<usize, E> {
        Err(self.wrong(&v.to_string()))
    }

    fn visit_unit<E: de::Error>(self) -> Result<usize, E> {
        Err(self.wrong("null"))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<usize, A::Error> {
        Err(self.wrong("(a list)"))
    }

    fn visit_map<A: MapAccess<'de>>(self, _: A) -> Result<usize, A::Error> {
        Err(self.wrong("(an object)"))
    }
}

/// Columnar `inputs`, `{name: [values], ...}`: every feature once, every column as long as
/// the first (which may not be longer than `MAX_BATCH_ROWS`). Stored column-major.
fn columnar<'de, A: MapAccess<'de>>(
    mut map: A,
    ctx: Ctx<'_>,
    out: &mut Out,
) -> Result<(), A::Error> {
    let n = ctx.n();
    out.seen.fill(false);
    let mut order = Vec::with_capacity(n);
    let mut rows: Option<usize> = None;
    while let Some(i) = map.next_key_seed(FeatureKey {
        ctx,
        row: None,
        seen: &mut out.seen,
    })? {
        order.push(i);
        let count = map.next_value_seed(Column {
            ctx,
            values: &mut out.values,
            feature: i,
            rows,
        })?;
        rows.get_or_insert(count);
    }
    if let Some(name) = ctx.f.missing(&out.seen) {
        return Err(ctx.invalid(format!(
            "missing column {name:?}: {} columns given, the model needs {n}",
            order.len()
        )));
    }
    out.rows = rows.unwrap_or(0);
    out.columns = Some(order);
    Ok(())
}

/// One column of columnar `inputs`; `rows` is the first column's length, once known.
struct Column<'c, 'v> {
    ctx: Ctx<'c>,
    values: &'v mut Vec<f64>,
    feature: usize,
    rows: Option<usize>,
}

impl<'de> DeserializeSeed<'de> for Column<'_, '_> {
    type Value = usize;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<usize, D::Error> {
        d.deserialize_any(self)
    }
}

impl Column<'_, '_> {
    fn name(&self) -> &str {
        self.ctx.f.name(self.feature)
    }

    fn wrong<E: de::Error>(&self, _got: &str) -> E {
        self.ctx.invalid(format!(
            "column {:?}: expected a list of values",
            self.name()
        ))
    }

    fn mismatch<E: de::Error>(&self, got: usize, first: usize) -> E {
        self.ctx.invalid(format!(
            "column {:?} has {got} values, the first column {first}",
            self.name()
        ))
    }
}

impl<'de> Visitor<'de> for Column<'_, '_> {
    type Value = usize;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of values")
    }

    refuse_scalars!();

    fn visit_map<A: MapAccess<'de>>(self, _: A) -> Result<usize, A::Error> {
        Err(self.wrong("an object"))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<usize, A::Error> {
        let ctx = self.ctx;
        let col = Col::Name(ctx.f.name(self.feature));
        let cap = self.rows.unwrap_or(ctx.max_rows);
        let mut count = 0_usize;
        loop {
            if count >= cap {
                // Past the first column's length (or the row cap): count, store nothing.
                let mut extra = 0_usize;
                while seq.next_element::<IgnoredAny>()?.is_some() {
                    extra = extra.saturating_add(1);
                }
                let total = count.saturating_add(extra);
                return match self.rows {
                    Some(first) if total != first => Err(self.mismatch(total, first)),
                    None if extra > 0 => Err(ctx.fail(AppError::TooManyRows {
                        rows: u64::try_from(total).unwrap_or(u64::MAX),
                        limit: ctx.max_rows,
                    })),
                    _ => Ok(count),
                };
            }
            match seq.next_element_seed(Number { ctx, r: count, col }) {
                Ok(Some(x)) => {
                    self.values.push(x);
                    count += 1;
                }
                Ok(None) => break,
                Err(e) => return Err(ctx.cell_error(e, count, col, Some(self.feature))),
            }
        }
        match self.rows {
            Some(first) if count != first => Err(self.mismatch(count, first)),
            _ => Ok(count),
        }
    }
}

/// Longest CSV field a number may take, in bytes: pandas writes at most 25, an `f64` in
/// fixed notation (Rust's `Display`) up to about 330.
const CSV_NUMBER_BYTES: usize = 512;

/// Parse a CSV body for `f`'s features, at most `max_rows` rows: the first line is the
/// header, as pandas' `read_csv` (and so MLflow) reads it.
fn parse_csv(bytes: &[u8], f: &Features<'_>, max_rows: usize) -> Result<Frame, AppError> {
    let body = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let n = f.len();
    // No record may be longer than the header's names or n numbers can take (each
    // quoted, quotes doubled); the `csv` reader holds one record at a time.
    let longest_name = f.names.iter().map(String::len).max().unwrap_or(0);
    let per_field = longest_name
        .saturating_mul(2)
        .max(CSV_NUMBER_BYTES)
        .saturating_add(3);
    let record_cap = n.saturating_add(1).saturating_mul(per_field);
    let record_start = Cell::new(0_usize);
    let source = CappedRecords {
        body,
        pos: 0,
        record_start: &record_start,
        cap: record_cap,
    };
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(source);
    let mut record = csv::ByteRecord::new();
    let mut lines = Lines::new(body);

    let read = |reader: &mut csv::Reader<CappedRecords<'_>>,
                record: &mut csv::ByteRecord,
                lines: &mut Lines<'_>|
     -> Result<Option<u64>, AppError> {
        let at = usize::try_from(reader.position().byte()).unwrap_or(usize::MAX);
        record_start.set(at);
        match reader.read_byte_record(record) {
            Ok(true) => {
                let byte = record.position().map_or(at as u64, csv::Position::byte);
                Ok(Some(
                    lines.line_at(usize::try_from(byte).unwrap_or(usize::MAX)),
                ))
            }
            Ok(false) => Ok(None),
            Err(e) => {
                let line = lines.line_at(at);
                Err(AppError::InvalidBody(match e.kind() {
                    csv::ErrorKind::Io(_) => format!(
                        "CSV line {line}: a record longer than {record_cap} bytes (more than {n} numbers or the model's column names take)"
                    ),
                    _ => format!("CSV line {line}: {e}"),
                }))
            }
        }
    };

    let Some(header_line) = read(&mut reader, &mut record, &mut lines)? else {
        return Err(AppError::InvalidBody(
            "the CSV body is empty: its first line must be the header naming the columns".into(),
        ));
    };
    let perm = csv_header(&record, f, header_line)?;

    let mut values = Vec::with_capacity(reserve(body, n, max_rows));
    let mut rows = 0_usize;
    while let Some(line) = read(&mut reader, &mut record, &mut lines)? {
        if record.len() != n {
            return Err(AppError::InvalidBody(format!(
                "row {rows} (CSV line {line}): expected {n} values (one a column), got {}",
                record.len()
            )));
        }
        if rows >= max_rows {
            return Err(AppError::TooManyRows {
                rows: u64::try_from(rows).unwrap_or(u64::MAX).saturating_add(1),
                limit: max_rows,
            });
        }
        let start = values.len();
        values.resize(start.saturating_add(n), f64::NAN);
        for ((c, field), &i) in record.iter().enumerate().zip(&perm) {
            let text = std::str::from_utf8(field).map(str::trim);
            let x = match text {
                Ok("") => Some(f64::NAN),
                Ok(t) => t.parse::<f64>().ok(),
                Err(_) => None,
            }
            .ok_or_else(|| {
                let field = String::from_utf8_lossy(field);
                AppError::InvalidBody(format!(
                    "CSV line {line}, column {}: {:?} is not a number",
                    c + 1,
                    shown(&field)
                ))
            })?;
            if let Some(slot) = values.get_mut(start.saturating_add(i)) {
                *slot = x;
            }
        }
        let row = values.get(start..).unwrap_or(&[]);
        if let Some(i) = row.iter().position(|x| !x.is_finite()) {
            let c = perm.iter().position(|&p| p == i).unwrap_or(i);
            return Err(AppError::NonFinite(format!(
                "row {rows}: feature {i} is not a finite number (CSV line {line}, column {})",
                c + 1
            )));
        }
        rows += 1;
    }
    Ok(Frame {
        values,
        rows,
        features: n,
        columns: None,
    })
}

/// The feature of each column the CSV header names; every feature exactly once.
fn csv_header(
    record: &csv::ByteRecord,
    f: &Features<'_>,
    line: u64,
) -> Result<Vec<usize>, AppError> {
    let rule = "the first line of a CSV body is always its header, as pandas reads it";
    let mut seen = vec![false; f.len()];
    let mut perm = Vec::with_capacity(f.len());
    for (c, field) in record.iter().enumerate() {
        let at = format!("CSV line {line}, column {}", c + 1);
        let name = std::str::from_utf8(field)
            .map_err(|_| AppError::InvalidBody(format!("{at}: the column name is not UTF-8")))?
            .trim();
        let Some(i) = f.by_name(name) else {
            let hint = if name.is_empty() {
                " (an unnamed column: pandas' index? write the frame with to_csv(index=False))"
            } else {
                ""
            };
            return Err(AppError::InvalidBody(format!(
                "{at}: unknown column {:?}{hint}; {}; {rule}",
                shown(name),
                f.describe()
            )));
        };
        match seen.get_mut(i) {
            Some(s) if !*s => *s = true,
            _ => {
                return Err(AppError::InvalidBody(format!(
                    "{at}: column {:?} repeats feature {:?}; {rule}",
                    shown(name),
                    f.name(i)
                )));
            }
        }
        perm.push(i);
    }
    if let Some(name) = f.missing(&seen) {
        return Err(AppError::InvalidBody(format!(
            "CSV line {line}: missing column {name:?}: {} columns given, the model needs {}; {rule}",
            perm.len(),
            f.len()
        )));
    }
    Ok(perm)
}

/// The body as the `csv` reader reads it, refusing to give it more than `cap` bytes past
/// the start of the record it is reading: a record longer than a valid one can be stops
/// the parse (an I/O error) instead of growing the reader's record buffers.
struct CappedRecords<'a> {
    body: &'a [u8],
    pos: usize,
    record_start: &'a Cell<usize>,
    cap: usize,
}

impl Read for CappedRecords<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let rest = self.body.get(self.pos..).unwrap_or(&[]);
        if rest.is_empty() {
            return Ok(0);
        }
        let limit = self.record_start.get().saturating_add(self.cap);
        let allowed = limit.saturating_sub(self.pos);
        if allowed == 0 {
            return Err(std::io::Error::other("CSV record too long"));
        }
        let k = buf.len().min(allowed).min(rest.len());
        match (buf.get_mut(..k), rest.get(..k)) {
            (Some(dst), Some(src)) => dst.copy_from_slice(src),
            _ => return Ok(0),
        }
        self.pos = self.pos.saturating_add(k);
        Ok(k)
    }
}

/// Line numbers of byte offsets, counting LF, CRLF and a bare CR each as one line end
/// (the `csv` crate counts LF only). Offsets must not decrease.
struct Lines<'a> {
    body: &'a [u8],
    pos: usize,
    line: u64,
    after_cr: bool,
}

impl<'a> Lines<'a> {
    fn new(body: &'a [u8]) -> Self {
        Self {
            body,
            pos: 0,
            line: 1,
            after_cr: false,
        }
    }

    /// The line of the first byte at or after `at` that does not end a line (a record's
    /// position may point at the blank lines before it).
    fn line_at(&mut self, at: usize) -> u64 {
        let mut target = at.max(self.pos);
        while matches!(self.body.get(target), Some(b'\r' | b'\n')) {
            target += 1;
        }
        for &b in self.body.get(self.pos..target).unwrap_or(&[]) {
            match b {
                b'\n' if self.after_cr => self.after_cr = false,
                b'\n' => self.line = self.line.saturating_add(1),
                b'\r' => {
                    self.line = self.line.saturating_add(1);
                    self.after_cr = true;
                }
                _ => self.after_cr = false,
            }
        }
        self.pos = target.max(self.pos);
        self.line
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("f{i}")).collect()
    }

    fn json(body: &str, names: &[String]) -> Result<Vec<Vec<f64>>, AppError> {
        parse_json(body.as_bytes(), &Features::of(names), 1000).map(|f| f.to_rows())
    }

    fn csv(body: &str, names: &[String]) -> Result<Vec<Vec<f64>>, AppError> {
        parse_csv(body.as_bytes(), &Features::of(names), 1000).map(|f| f.to_rows())
    }

    fn err(r: Result<Vec<Vec<f64>>, AppError>) -> (u16, String) {
        match r {
            Ok(rows) => panic!("parsed as {rows:?}"),
            Err(e) => (e.status().as_u16(), e.to_string()),
        }
    }

    #[test]
    fn every_json_shape_gives_the_same_rows() {
        let n = names(2);
        let want = vec![vec![1.0, 2.0], vec![3.0, 4.5]];
        for body in [
            r#"{"dataframe_split": {"columns": ["f1", "f0"], "index": [0, 1], "data": [[2, 1], [4.5, 3]]}}"#,
            r#"{"dataframe_split": {"data": [[2, 1], [4.5, 3]], "columns": ["f1", "f0"]}}"#,
            r#"{"dataframe_split": {"columns": [1, "0"], "data": [[2, 1], [4.5, 3]]}}"#,
            r#"{"dataframe_split": {"columns": null, "data": [[1, 2], [3, 4.5]]}}"#,
            r#"{"dataframe_records": [{"f1": 2, "f0": 1}, {"f0": 3, "f1": 4.5}]}"#,
            r#"{"params": {"a": [1, {"b": null}]}, "instances": [[1, 2], {"1": 4.5, "0": 3}]}"#,
            r#"{"inputs": [[1, 2], [3, 4.5]], "params": null}"#,
            r#"{"inputs": {"f1": [2, 4.5], "f0": [1, 3]}}"#,
        ] {
            assert_eq!(json(body, &n).ok(), Some(want.clone()), "{body}");
        }
        assert_eq!(json(r#"{"instances": []}"#, &n).ok(), Some(vec![]));
        assert_eq!(
            json(r#"{"inputs": {"f1": [], "f0": []}}"#, &n).ok(),
            Some(vec![])
        );
    }

    #[test]
    fn json_errors_name_the_row_and_the_column() {
        let n = names(2);
        for (body, status, message) in [
            ("{", 400, "malformed JSON"),
            ("[", 400, "malformed JSON"),
            ("[1]", 422, "expected a JSON object"),
            ("null", 422, "expected a JSON object"),
            ("{}", 422, "got none"),
            (r#"{"x": 1}"#, 422, "unknown key \"x\""),
            (r#"{"inputs": [], "instances": []}"#, 422, "exactly one of"),
            (
                r#"{"instances": [[1, 2], [1]]}"#,
                422,
                "row 1: expected 2 features, got 1",
            ),
            (
                r#"{"instances": [[1, 2, 3, [4]]]}"#,
                422,
                "row 0: expected 2 features, got 4",
            ),
            (
                r#"{"instances": [[1, "x"]]}"#,
                422,
                "row 0: column 1: \"x\" is not a number",
            ),
            (
                r#"{"instances": [[1, null]]}"#,
                422,
                "row 0: feature 1 is not a finite number",
            ),
            (
                r#"{"instances": [[1, 1e999]]}"#,
                422,
                "row 0: feature 1 is not a finite number",
            ),
            (
                r#"{"instances": [1]}"#,
                422,
                "row 0: expected a list of numbers or an object",
            ),
            (
                r#"{"instances": {"f0": [1]}}"#,
                422,
                "`instances` must be a list of rows",
            ),
            (
                r#"{"dataframe_records": [[1, 2]]}"#,
                422,
                "row 0: expected an object",
            ),
            (
                r#"{"dataframe_records": [{"f0": 1}]}"#,
                422,
                "row 0: missing feature \"f1\"",
            ),
            (
                r#"{"dataframe_records": [{"f0": 1, "g": 2}]}"#,
                422,
                "row 0: unknown column \"g\"",
            ),
            (
                r#"{"dataframe_records": [{"f0": 1, "0": 2}]}"#,
                422,
                "row 0: column \"0\" repeats feature \"f0\"",
            ),
            (
                r#"{"dataframe_split": {"columns": ["a"], "data": [[1]]}}"#,
                422,
                "unknown column \"a\"",
            ),
            (
                r#"{"dataframe_split": {"columns": ["f0", 0], "data": []}}"#,
                422,
                "column 0 repeats feature \"f0\"",
            ),
            (
                r#"{"dataframe_split": {"columns": ["f0"], "data": []}}"#,
                422,
                "missing column \"f1\"",
            ),
            (
                r#"{"dataframe_split": {"columns": ["f1", "f0"], "data": [[1]]}}"#,
                422,
                "row 0: expected 2 values (one a column), got 1",
            ),
            (
                r#"{"dataframe_split": {"columns": ["f1", "f0"], "data": [[1, null]]}}"#,
                422,
                "row 0: feature 0 is not a finite number",
            ),
            (
                r#"{"dataframe_split": {"columns": ["f1", "f0"]}}"#,
                422,
                "`dataframe_split.data` must be a list of rows",
            ),
            (
                r#"{"dataframe_split": [[1, 2]]}"#,
                422,
                "`dataframe_split` must be an object",
            ),
            (
                r#"{"inputs": {"f0": [1, 2], "f1": [1]}}"#,
                422,
                "column \"f1\" has 1 values, the first column 2",
            ),
            (
                r#"{"inputs": {"f0": [1], "f1": [1, 2, 3]}}"#,
                422,
                "column \"f1\" has 3 values, the first column 1",
            ),
            (r#"{"inputs": {"f0": [1]}}"#, 422, "missing column \"f1\""),
            (
                r#"{"inputs": {"f0": 1, "f1": [1]}}"#,
                422,
                "column \"f0\": expected a list of values",
            ),
        ] {
            let (s, m) = err(json(body, &n));
            assert_eq!(s, status, "{body}: {m}");
            assert!(m.contains(message), "{body}: {m:?} lacks {message:?}");
        }
    }

    #[test]
    fn a_bad_row_stops_the_parse_before_later_rows_and_the_row_cap_holds() {
        let n = names(2);
        let f = Features::of(&n);
        // The bad row comes first: later rows (not even valid JSON) are never read.
        let e = parse_json(br#"{"instances": [[1], [1, 2], nonsense"#, &f, 10).err();
        assert_eq!(
            e.map(|e| e.to_string()),
            Some("row 0: expected 2 features, got 1".into())
        );
        let body = br#"{"instances": [[1, 2], [3, 4], [5, 6]]}"#;
        assert!(parse_json(body, &f, 3).is_ok());
        let e = parse_json(body, &f, 2).err();
        assert_eq!(e.map(|e| e.status().as_u16()), Some(413));
        let e = parse_json(br#"{"inputs": {"f0": [1, 2, 3], "f1": [1, 2, 3]}}"#, &f, 2).err();
        assert_eq!(e.map(|e| e.status().as_u16()), Some(413));
        let e = parse_csv(b"f0,f1\n1,2\n3,4\n5,6\n", &f, 2).err();
        assert_eq!(e.map(|e| e.status().as_u16()), Some(413));
    }

    #[test]
    fn columnar_inputs_allocate_by_the_body_not_by_the_first_column() {
        // The old parser allocated rows x features from the first column's length.
        let n = names(64);
        let f = Features::of(&n);
        let first = vec!["0"; 100_000].join(",");
        let body = format!(r#"{{"inputs": {{"f0": [{first}], "f1": [0]}}}}"#);
        let e = parse_json(body.as_bytes(), &f, 1_000_000).err();
        assert_eq!(e.map(|e| e.status().as_u16()), Some(422));
        assert!(reserve(body.as_bytes(), 64, 1_000_000) <= body.len() / 2 + 65);
    }

    #[test]
    fn csv_header_rule_quotes_line_ends_and_bom() {
        let n = names(2);
        let want = vec![vec![1.0, 2.0], vec![3.0, 4.0]];
        for body in [
            "f0,f1\n1,2\n3,4\n",
            "f1,f0\r\n2,1\r\n4,3",
            "f1,f0\r2,1\r\r4,3\r",
            "\u{feff}f1,f0\n2,1\n\n4,3\n",
            "\u{feff}\"f1\",\"f0\"\n\"2\",1\n4,\" 3 \"\n",
            "0,1\n1,2\n3,4\n",
            "1,0\n2,1\n4,3\n",
        ] {
            assert_eq!(csv(body, &n).ok(), Some(want.clone()), "{body:?}");
        }
        assert_eq!(csv("f0,f1\n", &n).ok(), Some(vec![]));
        // Quoted names may hold commas, quotes and line ends.
        let odd = vec!["a,b".to_string(), "say \"hi\"\nthere".to_string()];
        let rows = csv("\"say \"\"hi\"\"\nthere\",\"a,b\"\n2,1\n", &odd).ok();
        assert_eq!(rows, Some(vec![vec![1.0, 2.0]]));
    }

    #[test]
    fn csv_errors_name_the_line_and_column() {
        let n = names(2);
        for (body, message) in [
            ("", "the CSV body is empty"),
            // The first line is always the header: a data row there is not one.
            (
                "1.5,2\n3,4\n",
                "CSV line 1, column 1: unknown column \"1.5\"",
            ),
            (
                "1,1\n3,4\n",
                "CSV line 1, column 2: column \"1\" repeats feature \"f1\"",
            ),
            ("f0\n1\n", "CSV line 1: missing column \"f1\""),
            (",f0,f1\n0,1,2\n", "an unnamed column"),
            (
                "f0,f1\n1,2\n3,x\n",
                "CSV line 3, column 2: \"x\" is not a number",
            ),
            (
                "f0,f1\r1,2\r\r3\r",
                "row 1 (CSV line 4): expected 2 values (one a column), got 1",
            ),
            (
                "f0,f1\r\n1,2\r\n3,4,5\r\n",
                "row 1 (CSV line 3): expected 2 values",
            ),
            (
                "f1,f0\n1,\n",
                "row 0: feature 0 is not a finite number (CSV line 2, column 2)",
            ),
            (
                "f0,f1\n1,NaN\n",
                "row 0: feature 1 is not a finite number (CSV line 2, column 2)",
            ),
            ("f0,f1\n\"1\n\",2\n3,inf\n", "(CSV line 4, column 2)"),
        ] {
            let (s, m) = err(csv(body, &n));
            assert_eq!(s, 422, "{body:?}: {m}");
            assert!(m.contains(message), "{body:?}: {m:?} lacks {message:?}");
        }
        // A record longer than any valid one stops the reader early.
        let long = format!("f0,f1\n{}\n", ",".repeat(1 << 20));
        let (_, m) = err(csv(&long, &n));
        assert!(m.contains("CSV line 2: a record longer than"), "{m}");
        let long = format!("{}\n", "f".repeat(1 << 20));
        let (_, m) = err(csv(&long, &n));
        assert!(m.contains("CSV line 1: a record longer than"), "{m}");
    }

    /// A frame of `rows` x `features` finite values, and a column order.
    fn frame() -> impl Strategy<Value = (usize, Vec<Vec<f64>>, Vec<usize>)> {
        (1_usize..6).prop_flat_map(|features| {
            let value = prop_oneof![
                (-1000_i32..1000).prop_map(f64::from),
                any::<f64>().prop_filter("finite", |x| x.is_finite()),
            ];
            let rows = proptest::collection::vec(proptest::collection::vec(value, features), 0..12);
            let order = Just((0..features).collect::<Vec<usize>>()).prop_shuffle();
            (Just(features), rows, order)
        })
    }

    fn to_json<T: Serialize>(v: &T) -> String {
        serde_json::to_string(v).unwrap_or_default()
    }

    proptest! {
        #[test]
        fn every_shape_parses_back_to_the_rows((features, rows, order) in frame(), ending in 0_usize..3, bom: bool) {
            let n = names(features);
            let f = Features::of(&n);
            let cols: Vec<&String> = order.iter().filter_map(|&i| n.get(i)).collect();
            let by_order: Vec<Vec<f64>> = rows
                .iter()
                .map(|r| order.iter().filter_map(|&i| r.get(i).copied()).collect())
                .collect();
            let records: Vec<serde_json::Map<String, Value>> = rows
                .iter()
                .map(|r| order.iter().filter_map(|&i| Some((n.get(i)?.clone(), Value::from(*r.get(i)?)))).collect())
                .collect();
            let columns: serde_json::Map<String, Value> = order
                .iter()
                .filter_map(|&i| Some((n.get(i)?.clone(), Value::from(rows.iter().filter_map(|r| r.get(i).copied()).collect::<Vec<f64>>()))))
                .collect();
            let bodies = [
                format!(r#"{{"dataframe_split": {{"columns": {}, "data": {}}}}}"#, to_json(&cols), to_json(&by_order)),
                format!(r#"{{"dataframe_split": {{"data": {}, "index": [], "columns": {}}}}}"#, to_json(&by_order), to_json(&order)),
                format!(r#"{{"dataframe_split": {{"data": {}}}}}"#, to_json(&rows)),
                format!(r#"{{"dataframe_records": {}}}"#, to_json(&records)),
                format!(r#"{{"instances": {}}}"#, to_json(&rows)),
                format!(r#"{{"instances": {}, "params": {{}}}}"#, to_json(&records)),
                format!(r#"{{"inputs": {}}}"#, to_json(&rows)),
                format!(r#"{{"inputs": {}}}"#, to_json(&columns)),
            ];
            for body in &bodies {
                let parsed = parse_json(body.as_bytes(), &f, 100);
                let frame = parsed.map_err(|e| TestCaseError::fail(format!("{body}: {e}")))?;
                prop_assert!(frame.values.capacity() <= reserve(body.as_bytes(), features, 100));
                prop_assert_eq!(frame.to_rows(), rows.clone(), "{}", body);
            }
            let mut w = csv::WriterBuilder::new()
                .terminator(match ending { 0 => csv::Terminator::CRLF, 1 => csv::Terminator::Any(b'\r'), _ => csv::Terminator::Any(b'\n') })
                .from_writer(if bom { b"\xEF\xBB\xBF".to_vec() } else { Vec::new() });
            let mut ok = w.write_record(cols.iter().map(|c| c.as_bytes())).is_ok();
            for r in &by_order {
                ok &= w.write_record(r.iter().map(f64::to_string)).is_ok();
            }
            let body = w.into_inner().unwrap_or_default();
            prop_assert!(ok);
            let frame = parse_csv(&body, &f, 100).map_err(|e| TestCaseError::fail(format!("{}: {e}", String::from_utf8_lossy(&body))))?;
            prop_assert!(frame.values.capacity() <= reserve(&body, features, 100));
            prop_assert_eq!(frame.to_rows(), rows);
        }

        #[test]
        fn random_bytes_never_panic_and_stay_in_the_reservation(body in proptest::collection::vec(any::<u8>(), 0..300)) {
            let n = names(3);
            let f = Features::of(&n);
            for frame in [parse_json(&body, &f, 5), parse_csv(&body, &f, 5)].into_iter().flatten() {
                prop_assert!(frame.values.capacity() <= reserve(&body, 3, 5));
            }
        }

        #[test]
        fn json_like_text_never_panics(body in r#"[\[\]{}",:0-9a-z_ .eE+-]{0,200}"#, key in 0_usize..4) {
            let n = names(3);
            let f = Features::of(&n);
            let key = ["dataframe_split", "dataframe_records", "instances", "inputs"].get(key).copied().unwrap_or("inputs");
            for text in [body.clone(), format!(r#"{{"{key}": {body}"#), format!(r#"{{"{key}": {{"columns": ["f2", "f0", "f1"], "data": {body}"#)] {
                if let Ok(frame) = parse_json(text.as_bytes(), &f, 5) {
                    prop_assert!(frame.values.capacity() <= reserve(text.as_bytes(), 3, 5));
                    prop_assert!(frame.rows <= 5);
                }
            }
        }

        #[test]
        fn csv_like_text_never_panics(body in "[\"f0-9,\r\n .e]{0,200}") {
            let n = names(3);
            let f = Features::of(&n);
            let text = format!("f0,f1,f2\n{body}");
            if let Ok(frame) = parse_csv(text.as_bytes(), &f, 5) {
                prop_assert!(frame.values.capacity() <= reserve(text.as_bytes(), 3, 5));
                prop_assert!(frame.rows <= 5);
            }
        }
    }
}
