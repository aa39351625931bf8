//! Settings: every flag is also an environment variable (the Lambda reads only those).

use std::sync::Arc;

use clap::Parser;
use model::store::Location;
use storage::{DEFAULT_PART_SIZE, ReadCondition, S3Options};

use crate::engine::{DEFAULT_MAX_RECORD_BYTES, Format, Settings};
use crate::error::ScoreError;
use crate::job::{Job, LoadedModel, Outcome, Scorer, Stores, load_model, outputs_for};
use crate::lambda::{Handler, Prefixes};

/// Score CSV / JSON Lines files with a stored model: `score --model URI --input FILE|s3://...
/// --output FILE|s3://...` here, or S3 events under AWS Lambda (`AWS_LAMBDA_RUNTIME_API`
/// set; then INPUT_PREFIX and OUTPUT_PREFIX say what to score and where).
#[derive(Debug, Clone, Parser)]
#[command(name = "score", version)]
pub struct Args {
    /// The model: `<store>/<name>` (follows `latest`) or `<store>/<name>/<version>`; a
    /// local path or `s3://bucket/prefix/...`.
    #[arg(long = "model", env = "MODEL_URI")]
    pub model_uri: String,
    /// The file to score (CSV with a header, or JSON Lines; `.gz` too): a path or
    /// `s3://bucket/key`.
    #[arg(long, env = "INPUT_URI")]
    pub input: Option<String>,
    /// Where the scored rows go (a path or `s3://bucket/key`), published whole at the end.
    /// The errors file and the manifest go beside it: `<base>.errors.csv` and
    /// `<base>.manifest.json`, where `<base>` is OUTPUT without `.out.csv` / `.out.jsonl`.
    #[arg(long, env = "OUTPUT_URI")]
    pub output: Option<String>,
    /// The input's format, when its name does not say (`.csv`, `.jsonl`, `.ndjson`,
    /// `.json`, each optionally `.gz`); otherwise guessed from its first byte.
    #[arg(long, env = "INPUT_FORMAT", value_parser = parse_format)]
    pub format: Option<Format>,
    /// Columns copied from each input row to its output row, comma-separated. Without
    /// any, the output starts with `line`, the row's input line number.
    #[arg(long, env = "ID_COLUMNS", value_delimiter = ',')]
    pub id_columns: Vec<String>,
    /// Worker threads (0: one per core).
    #[arg(long, env = "THREADS", default_value_t = 0)]
    pub threads: usize,
    /// Longest input line (record) in bytes; a longer one is a refused row.
    #[arg(long, env = "MAX_RECORD_BYTES", default_value_t = DEFAULT_MAX_RECORD_BYTES)]
    pub max_record_bytes: usize,
    /// S3 multipart part size in MiB (at least 5).
    #[arg(long, env = "PART_SIZE_MIB", default_value_t = DEFAULT_PART_SIZE >> 20)]
    pub part_size_mib: usize,
    /// Lambda: only keys under this prefix of the event's bucket are scored.
    #[arg(long, env = "INPUT_PREFIX")]
    pub input_prefix: Option<String>,
    /// Lambda: outputs go under this prefix of the same bucket (never inside INPUT_PREFIX).
    #[arg(long, env = "OUTPUT_PREFIX")]
    pub output_prefix: Option<String>,
    /// Lambda: check the model's `latest` pointer at most this often (0: never; ignored
    /// when MODEL_URI names a version).
    #[arg(long, env = "MODEL_REFRESH_SECONDS", default_value_t = 60)]
    pub model_refresh_seconds: u64,
}

fn parse_format(s: &str) -> Result<Format, String> {
    match s.to_ascii_lowercase().as_str() {
        "csv" => Ok(Format::Csv),
        "jsonl" | "ndjson" | "json" => Ok(Format::Jsonl),
        other => Err(format!("{other:?}: expected csv or jsonl")),
    }
}

impl Args {
    fn scorer(&self, stores: Arc<Stores>) -> Result<Scorer, ScoreError> {
        let settings = Settings {
            id_columns: self
                .id_columns
                .iter()
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect(),
            max_record_bytes: self.max_record_bytes,
            ..Settings::default()
        };
        let threads = if self.threads == 0 {
            std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
        } else {
            self.threads
        };
        let settings = Settings {
            blocks_per_batch: threads * 2,
            ..settings
        };
        if self.part_size_mib < 5 || self.part_size_mib > 5 * 1024 {
            return Err(ScoreError::Config(format!(
                "PART_SIZE_MIB must be 5 to 5120, not {}",
                self.part_size_mib
            )));
        }
        Scorer::new(settings, threads, stores, self.part_size_mib << 20)
    }

    /// The command: score `--input` into `--output` and return the outcome.
    pub fn run_command(&self) -> Result<Outcome, ScoreError> {
        let (Some(input), Some(output)) = (&self.input, &self.output) else {
            return Err(ScoreError::Config(
                "give --input and --output (INPUT_URI, OUTPUT_URI)".into(),
            ));
        };
        let input = Location::parse(input)?;
        let output_loc = Location::parse(output)?;
        let format = self
            .format
            .or_else(|| Format::from_name(&input.to_string()));
        let stores = Arc::new(Stores::new(S3Options::default()));
        let scorer = self.scorer(Arc::clone(&stores))?;
        let model = load_model(&self.model_uri, &S3Options::default())?;
        let base = strip_output_suffix(&output_loc);
        let (_, errors, manifest) = outputs_for(&base, format.unwrap_or(Format::Csv));
        let job = Job {
            input,
            condition: ReadCondition::default(),
            output: output_loc,
            errors,
            manifest,
            format,
        };
        scorer.run(&model, &job)
    }

    /// The Lambda: check the prefixes, load the model, build the handler.
    pub fn lambda_handler(&self) -> Result<Handler, ScoreError> {
        let (Some(i), Some(o)) = (&self.input_prefix, &self.output_prefix) else {
            return Err(ScoreError::Config(
                "under Lambda, INPUT_PREFIX and OUTPUT_PREFIX must be set".into(),
            ));
        };
        let prefixes = Prefixes::new(i, o)?;
        let stores = Arc::new(Stores::new(S3Options::default()));
        let scorer = self.scorer(stores)?;
        let model: LoadedModel = load_model(&self.model_uri, &S3Options::default())?;
        Ok(Handler::new(
            scorer,
            prefixes,
            model,
            self.model_refresh_seconds,
            S3Options::default(),
        ))
    }
}

/// `x.out.csv` -> `x` (so its errors file is `x.errors.csv`); other names stay.
fn strip_output_suffix(loc: &Location) -> Location {
    let strip = |s: &str| -> String {
        [".out.csv", ".out.jsonl"]
            .iter()
            .find_map(|suf| s.strip_suffix(suf))
            .unwrap_or(s)
            .to_string()
    };
    match loc {
        Location::Local(p) => Location::Local(strip(&p.to_string_lossy()).into()),
        Location::S3 { bucket, key } => Location::S3 {
            bucket: bucket.clone(),
            key: strip(key),
        },
    }
}
