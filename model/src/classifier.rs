//! Inference: probabilities and classes for one row or a batch, from a validated artifact.
//! Input errors (wrong feature count, non-finite values) are values, never panics.

use crate::artifact::Artifact;
use crate::error::ModelError;

/// A validated artifact, ready to predict. Build it with [`Model::new`] or [`Model::from_json`].
#[derive(Debug, Clone)]
pub struct Model {
    artifact: Artifact,
}

/// One prediction.
#[derive(Debug, Clone, PartialEq)]
pub struct Prediction {
    /// Index into [`Model::classes`].
    pub class_index: usize,
    /// Probability of each class, in the order of [`Model::classes`]; sums to 1.
    pub probabilities: Vec<f64>,
}

impl Model {
    /// Validate an artifact and wrap it.
    pub fn new(artifact: Artifact) -> Result<Self, ModelError> {
        artifact.validate()?;
        Ok(Self { artifact })
    }

    /// Parse, validate and wrap a stored artifact.
    pub fn from_json(bytes: &[u8]) -> Result<Self, ModelError> {
        Ok(Self {
            artifact: Artifact::from_json(bytes)?,
        })
    }

    /// The underlying artifact.
    pub fn artifact(&self) -> &Artifact {
        &self.artifact
    }

    /// Class labels, sorted.
    pub fn classes(&self) -> &[String] {
        &self.artifact.classes
    }

    /// Number of input features.
    pub fn n_features(&self) -> usize {
        self.artifact.n_features()
    }

    /// Check a row's length and values without predicting.
    pub fn check_row(&self, row: &[f64]) -> Result<(), ModelError> {
        let expected = self.n_features();
        if row.len() != expected {
            return Err(ModelError::FeatureCount {
                expected,
                got: row.len(),
                row: None,
            });
        }
        if let Some(index) = row.iter().position(|x| !x.is_finite()) {
            return Err(ModelError::NonFinite { index, row: None });
        }
        Ok(())
    }

    /// Class probabilities for one row of raw (unscaled) features.
    pub fn predict_proba(&self, row: &[f64]) -> Result<Vec<f64>, ModelError> {
        self.check_row(row)?;
        let a = &self.artifact;
        let z: Vec<f64> = row
            .iter()
            .zip(a.scaler.mean.iter().zip(&a.scaler.scale))
            .map(|(x, (m, s))| (x - m) / s)
            .collect();
        let scores: Vec<f64> = a
            .coefficients
            .iter()
            .zip(&a.intercepts)
            .map(|(w, b)| b + dot(w, &z))
            .collect();
        Ok(if a.classes.len() == 2 {
            let p = sigmoid(scores[0]);
            vec![1.0 - p, p]
        } else {
            softmax(&scores)
        })
    }

    /// The most probable class and all probabilities for one row.
    pub fn predict(&self, row: &[f64]) -> Result<Prediction, ModelError> {
        let probabilities = self.predict_proba(row)?;
        Ok(Prediction {
            class_index: argmax(&probabilities),
            probabilities,
        })
    }

    /// Predict a batch; the first bad row fails the whole batch, and the error names it.
    pub fn predict_batch<R: AsRef<[f64]>>(
        &self,
        rows: &[R],
    ) -> Result<Vec<Prediction>, ModelError> {
        for (i, r) in rows.iter().enumerate() {
            self.check_row(r.as_ref()).map_err(|e| e.at_row(i))?;
        }
        rows.iter()
            .enumerate()
            .map(|(i, r)| self.predict(r.as_ref()).map_err(|e| e.at_row(i)))
            .collect()
    }

    /// The label of a prediction.
    pub fn label(&self, p: &Prediction) -> &str {
        self.artifact
            .classes
            .get(p.class_index)
            .map_or("", String::as_str)
    }
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Numerically stable logistic function.
pub fn sigmoid(t: f64) -> f64 {
    if t >= 0.0 {
        1.0 / (1.0 + (-t).exp())
    } else {
        let e = t.exp();
        e / (1.0 + e)
    }
}

/// Numerically stable softmax.
pub fn softmax(scores: &[f64]) -> Vec<f64> {
    let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let exps: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
    let sum: f64 = exps.iter().sum();
    exps.into_iter().map(|e| e / sum).collect()
}

/// Index of the largest value (the first one on ties).
pub fn argmax(v: &[f64]) -> usize {
    let mut best = 0;
    for (i, x) in v.iter().enumerate() {
        if *x > v[best] {
            best = i;
        }
    }
    best
}
