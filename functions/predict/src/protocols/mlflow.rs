//! MLflow / SageMaker scoring: `GET /ping` and `POST /invocations`, as MLflow's pyfunc
//! scoring server (and so SageMaker) speaks them.
//!
//! JSON bodies carry exactly one of `dataframe_split` (pandas `orient="split"`),
//! `dataframe_records` (pandas `orient="records"`), `instances` or `inputs` (rows as lists
//! or as records; `inputs` may also be columnar, `{column: [values]}`); `params` is
//! accepted and ignored. `text/csv` bodies are rows of numbers, with or without a header.
//! Columns are matched to the model's features by name; unnamed columns (pandas' `0, 1,
//! ...`) are positional. The answer is `{"predictions": [...]}`, one label a row, as
//! MLflow's scikit-learn flavour answers for a classifier.
//!
//! Errors have MLflow's shape, `{"error_code": "...", "message": "..."}`, with the status
//! `POST /predict` would give the same mistake.

use std::collections::HashMap;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::{Predicted, is_json, json_error, label_value, media_type};
use crate::read_limited;
use crate::{AppError, AppState};

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

fn invalid(msg: String) -> AppError {
    AppError::InvalidBody(msg)
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
/// Errors: 400 malformed JSON or CSV syntax; 408 body not in within the timeout; 413 body
/// over the limit; 415 neither JSON nor CSV; 422 unknown or missing columns, a wrong
/// number of features or a non-finite value (the message names the row and the feature
/// or column).
#[utoipa::path(post, path = "/invocations", tag = "MLflow / SageMaker scoring",
    request_body(
        description = "A JSON frame (one of the keys) or CSV rows",
        content(
            (InvocationsRequest = "application/json"),
            (String = "text/csv", example = "pixel_0,pixel_1\n0,1\n")
        )),
    responses(
        (status = 200, description = "One label a row", body = Predictions),
        (status = 400, description = "Malformed JSON", body = MlflowError),
        (status = 408, description = "The body did not arrive within the timeout", body = MlflowError),
        (status = 413, description = "Body over the limit", body = MlflowError),
        (status = 415, description = "Unsupported content type", body = MlflowError),
        (status = 422, description = "Bad columns, feature count or values", body = MlflowError)))]
pub(crate) async fn invocations(
    State(state): State<AppState>,
    req: Request,
) -> Result<Response, MlflowError> {
    let (parts, body) = req.into_parts();
    let csv = match media_type(&parts.headers)? {
        None => false,
        Some(m) if is_json(&m) => false,
        Some(m) if m == "text/csv" => true,
        Some(m) => return Err(AppError::UnsupportedMediaType(m).into()),
    };
    let bytes = read_limited(&state, &parts.headers, body).await?;
    let features = Features::new(&state);
    let rows = if csv {
        parse_csv(&bytes, &features)?
    } else {
        let v: Value = serde_json::from_slice(&bytes).map_err(|e| json_error(&e))?;
        parse_json(v, &features)?
    };
    let preds = state.model().predict_batch(&rows).map_err(AppError::from)?;
    let answer = Predictions {
        predictions: preds
            .iter()
            .map(|p| label_value(&state, p.class_index))
            .collect(),
    };
    let body = serde_json::to_vec(&answer).map_err(|e| AppError::BodyRead(e.to_string()))?;
    let mut res = (StatusCode::OK, body).into_response();
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    res.extensions_mut().insert(Predicted::Many(
        preds.iter().map(|p| p.class_index).collect(),
    ));
    Ok(res)
}

/// The model's feature names, to map named columns to positions.
struct Features<'a> {
    names: &'a [String],
    index: HashMap<&'a str, usize>,
}

impl<'a> Features<'a> {
    fn new(state: &'a AppState) -> Self {
        let names = &state.model().artifact().feature_names;
        Self {
            names,
            index: names
                .iter()
                .enumerate()
                .map(|(i, n)| (n.as_str(), i))
                .collect(),
        }
    }

    /// The feature a column key names: its name, or else its position (`3` or `"3"`).
    fn position(&self, key: &Value) -> Result<usize, AppError> {
        let found = match key {
            Value::String(s) => self
                .index
                .get(s.as_str())
                .copied()
                .or_else(|| s.parse::<usize>().ok().filter(|&i| i < self.names.len())),
            Value::Number(n) => n
                .as_u64()
                .and_then(|i| usize::try_from(i).ok())
                .filter(|&i| i < self.names.len()),
            _ => None,
        };
        found.ok_or_else(|| invalid(format!("unknown column {key}; {}", self.describe())))
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

    /// Positions of `columns`, which must name every feature exactly once.
    fn order(&self, columns: &[Value]) -> Result<Vec<usize>, AppError> {
        let mut seen = vec![false; self.names.len()];
        let mut order = Vec::with_capacity(columns.len());
        for c in columns {
            let i = self.position(c)?;
            if std::mem::replace(&mut seen[i], true) {
                return Err(invalid(format!(
                    "column {c} repeats feature {:?}",
                    self.names[i]
                )));
            }
            order.push(i);
        }
        if let Some(i) = seen.iter().position(|s| !s) {
            return Err(invalid(format!(
                "missing column {:?}: {} columns given, the model needs {}",
                self.names[i],
                columns.len(),
                self.names.len()
            )));
        }
        Ok(order)
    }
}

/// A feature value: a number, or `null` (pandas' NaN), which the model rejects by row
/// and feature.
fn number(v: &Value, row: usize, column: &dyn std::fmt::Display) -> Result<f64, AppError> {
    match v {
        Value::Number(n) => n.as_f64().ok_or_else(|| {
            AppError::NonFinite(format!("row {row}: column {column} is not finite"))
        }),
        Value::Null => Ok(f64::NAN),
        other => Err(invalid(format!(
            "row {row}: column {column}: {other} is not a number"
        ))),
    }
}

fn parse_json(v: Value, features: &Features<'_>) -> Result<Vec<Vec<f64>>, AppError> {
    let Value::Object(mut map) = v else {
        return Err(invalid(
            "expected a JSON object with one of `dataframe_split`, `dataframe_records`, `instances` or `inputs`".into(),
        ));
    };
    map.remove("params");
    let keys: Vec<&String> = map.keys().collect();
    let (key, value) = match (map.len(), keys.first()) {
        (1, Some(k)) => {
            let k = (*k).clone();
            let v = map.remove(&k).unwrap_or(Value::Null);
            (k, v)
        }
        _ => {
            return Err(invalid(format!(
                "expected exactly one of `dataframe_split`, `dataframe_records`, `instances` or `inputs`, got {keys:?}"
            )));
        }
    };
    match key.as_str() {
        "dataframe_split" => dataframe_split(value, features),
        "dataframe_records" => match value {
            Value::Array(rows) => records(&rows, features),
            _ => Err(invalid(
                "`dataframe_records` must be a list of objects".into(),
            )),
        },
        "instances" | "inputs" => match value {
            Value::Array(rows) => rows_of_any(&rows, features),
            Value::Object(columns) if key == "inputs" => columnar(&columns, features),
            _ => Err(invalid(format!("`{key}` must be a list of rows"))),
        },
        other => Err(invalid(format!(
            "unknown key {other:?}; expected one of `dataframe_split`, `dataframe_records`, `instances` or `inputs`"
        ))),
    }
}

fn dataframe_split(value: Value, features: &Features<'_>) -> Result<Vec<Vec<f64>>, AppError> {
    let Value::Object(mut frame) = value else {
        return Err(invalid(
            "`dataframe_split` must be an object with `columns` and `data`".into(),
        ));
    };
    let order = match frame.remove("columns") {
        None | Some(Value::Null) => None,
        Some(Value::Array(columns)) => Some(features.order(&columns)?),
        Some(_) => return Err(invalid("`dataframe_split.columns` must be a list".into())),
    };
    let Some(Value::Array(data)) = frame.remove("data") else {
        return Err(invalid(
            "`dataframe_split.data` must be a list of rows".into(),
        ));
    };
    let mut rows = Vec::with_capacity(data.len());
    for (r, row) in data.iter().enumerate() {
        let Value::Array(cells) = row else {
            return Err(invalid(format!("row {r}: expected a list of values")));
        };
        rows.push(match &order {
            None => cells
                .iter()
                .enumerate()
                .map(|(j, v)| number(v, r, &j))
                .collect::<Result<Vec<f64>, _>>()?,
            Some(order) => {
                if cells.len() != order.len() {
                    return Err(AppError::InvalidBody(format!(
                        "row {r}: expected {} values (one a column), got {}",
                        order.len(),
                        cells.len()
                    )));
                }
                let mut out = vec![0.0; order.len()];
                for (v, &i) in cells.iter().zip(order) {
                    out[i] = number(v, r, &features.names[i])?;
                }
                out
            }
        });
    }
    Ok(rows)
}

fn record(
    obj: &serde_json::Map<String, Value>,
    r: usize,
    features: &Features<'_>,
) -> Result<Vec<f64>, AppError> {
    let n = features.names.len();
    let mut out = vec![f64::NAN; n];
    let mut seen = vec![false; n];
    for (k, v) in obj {
        let i = features
            .position(&Value::String(k.clone()))
            .map_err(|e| AppError::InvalidBody(format!("row {r}: {e}")))?;
        out[i] = number(v, r, &features.names[i])?;
        seen[i] = true;
    }
    if let Some(i) = seen.iter().position(|s| !s) {
        return Err(invalid(format!(
            "row {r}: missing feature {:?}",
            features.names[i]
        )));
    }
    Ok(out)
}

fn records(rows: &[Value], features: &Features<'_>) -> Result<Vec<Vec<f64>>, AppError> {
    rows.iter()
        .enumerate()
        .map(|(r, row)| match row {
            Value::Object(obj) => record(obj, r, features),
            _ => Err(invalid(format!("row {r}: expected an object (a record)"))),
        })
        .collect()
}

/// Rows as lists of numbers or as records.
fn rows_of_any(rows: &[Value], features: &Features<'_>) -> Result<Vec<Vec<f64>>, AppError> {
    rows.iter()
        .enumerate()
        .map(|(r, row)| match row {
            Value::Array(cells) => cells
                .iter()
                .enumerate()
                .map(|(j, v)| number(v, r, &j))
                .collect(),
            Value::Object(obj) => record(obj, r, features),
            _ => Err(invalid(format!(
                "row {r}: expected a list of numbers or an object"
            ))),
        })
        .collect()
}

/// `{"column": [values], ...}`: every column the same length.
fn columnar(
    columns: &serde_json::Map<String, Value>,
    features: &Features<'_>,
) -> Result<Vec<Vec<f64>>, AppError> {
    let keys: Vec<Value> = columns.keys().map(|k| Value::String(k.clone())).collect();
    let order = features.order(&keys)?;
    let mut n_rows = None;
    let mut rows: Vec<Vec<f64>> = Vec::new();
    for ((name, values), &i) in columns.iter().zip(&order) {
        let Value::Array(values) = values else {
            return Err(invalid(format!(
                "column {name:?}: expected a list of values"
            )));
        };
        match n_rows {
            None => {
                n_rows = Some(values.len());
                rows = vec![vec![0.0; features.names.len()]; values.len()];
            }
            Some(n) if n != values.len() => {
                return Err(invalid(format!(
                    "column {name:?} has {} values, the first column {n}",
                    values.len()
                )));
            }
            Some(_) => {}
        }
        for (r, v) in values.iter().enumerate() {
            rows[r][i] = number(v, r, &features.names[i])?;
        }
    }
    Ok(rows)
}

/// CSV: comma-separated, one row a line; a first line with any non-numeric cell, or
/// exactly `0,1,2,...` (pandas' header for unnamed columns), is a header naming the
/// columns. Cells may be double-quoted.
fn parse_csv(bytes: &[u8], features: &Features<'_>) -> Result<Vec<Vec<f64>>, AppError> {
    let text = std::str::from_utf8(bytes)
        .map_err(|e| AppError::BodyRead(format!("the CSV body is not UTF-8: {e}")))?;
    let unquote = |c: &str| -> String {
        let c = c.trim();
        c.strip_prefix('"')
            .and_then(|c| c.strip_suffix('"'))
            .map_or_else(|| c.to_string(), |c| c.replace("\"\"", "\""))
    };
    let mut lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .peekable();
    let mut order = None;
    if let Some((_, first)) = lines.peek() {
        let cells: Vec<String> = first.split(',').map(unquote).collect();
        // pandas writes the header `0,1,2,...` for a frame without column names.
        let positions =
            cells.len() > 1 && cells.iter().enumerate().all(|(i, c)| *c == i.to_string());
        if positions || cells.iter().any(|c| c.parse::<f64>().is_err()) {
            let names: Vec<Value> = cells.into_iter().map(Value::String).collect();
            order = Some(features.order(&names)?);
            lines.next();
        }
    }
    let mut rows = Vec::new();
    for (r, (line_no, line)) in lines.enumerate() {
        let mut row = match &order {
            Some(o) => vec![0.0; o.len()],
            None => Vec::new(),
        };
        let mut count = 0;
        for (j, cell) in line.split(',').enumerate() {
            let cell = unquote(cell);
            let x = cell.parse::<f64>().map_err(|_| {
                invalid(format!(
                    "CSV line {}, column {}: {cell:?} is not a number",
                    line_no + 1,
                    j + 1
                ))
            })?;
            count += 1;
            match &order {
                Some(o) => {
                    if let Some(&i) = o.get(j) {
                        row[i] = x;
                    }
                }
                None => row.push(x),
            }
        }
        if let Some(o) = order.as_ref().filter(|o| count != o.len()) {
            return Err(invalid(format!(
                "row {r} (CSV line {}): expected {} values (one a column), got {count}",
                line_no + 1,
                o.len()
            )));
        }
        rows.push(row);
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_header_is_detected_and_reordered() {
        let names = vec!["a".to_string(), "b".to_string()];
        let features = Features {
            names: &names,
            index: [("a", 0), ("b", 1)].into_iter().collect(),
        };
        let rows = parse_csv(b"b,\"a\"\n1,2\n\n3,4\n", &features).unwrap_or_default();
        assert_eq!(rows, vec![vec![2.0, 1.0], vec![4.0, 3.0]]);
        let rows = parse_csv(b"1,2\r\n3,4\r\n", &features).unwrap_or_default();
        assert_eq!(rows, vec![vec![1.0, 2.0], vec![3.0, 4.0]]);
        let e = parse_csv(b"a,c\n1,2\n", &features)
            .err()
            .map(|e| e.to_string());
        assert!(e.is_some_and(|e| e.contains("unknown column \"c\"")));
        // A first line with a non-number is a header; later, it is an error naming the cell.
        let e = parse_csv(b"1,2\n3,x\n", &features)
            .err()
            .map(|e| e.to_string());
        assert!(e.is_some_and(|e| e.contains("CSV line 2, column 2")));
    }
}
