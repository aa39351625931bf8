//! One file scored end to end: open the input (local or S3, gzip or not), run the
//! [`engine`](crate::engine), publish the output and the errors file whole, then the
//! manifest. On any failure every output is abandoned (local temporary files removed, S3
//! multipart uploads aborted): nobody ever sees half an output.

use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use model::Model;
use model::StoreError;
use model::store::{Location, ObjectStore};
use serde::Serialize;
use storage::{ReadCondition, S3Options, S3Store, S3Writer};

use crate::engine::{self, Counts, EngineError, Format, Settings};
use crate::error::ScoreError;

/// A loaded model and where it came from.
#[derive(Debug, Clone)]
pub struct LoadedModel {
    /// The model.
    pub model: Arc<Model>,
    /// Its name in the store.
    pub name: String,
    /// The version loaded.
    pub version: String,
    /// The `MODEL_URI` it was loaded from.
    pub uri: String,
}

/// Load a model the way `predict` does: `MODEL_URI` names a version, or a model whose
/// `latest` pointer is followed (and its recorded checksum checked); the artifact is
/// validated whole.
pub fn load_model(uri: &str, s3: &S3Options) -> Result<LoadedModel, ScoreError> {
    let parsed = model::store::ModelUri::parse(uri)?;
    let store = storage::open_store_with(&parsed.root, s3)?;
    let (model, version) =
        model::store::load(store.as_ref(), &parsed.name, parsed.version.as_deref())?;
    Ok(LoadedModel {
        model: Arc::new(model),
        name: parsed.name,
        version,
        uri: uri.to_string(),
    })
}

/// S3 clients, one per bucket, sharing one connection pool; built on first use.
#[derive(Debug, Default)]
pub struct Stores {
    options: S3Options,
    base: Mutex<Option<S3Store>>,
    by_bucket: Mutex<HashMap<String, S3Store>>,
}

impl Stores {
    /// S3 settings over the default chain (see [`S3Options`]).
    pub fn new(options: S3Options) -> Self {
        Self {
            options,
            ..Self::default()
        }
    }

    /// The store for `bucket` (empty prefix).
    pub fn bucket(&self, bucket: &str) -> Result<S3Store, ScoreError> {
        let mut map = self
            .by_bucket
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(s) = map.get(bucket) {
            return Ok(s.clone());
        }
        let mut base = self
            .base
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let store = match &*base {
            Some(b) => b.with_bucket(bucket, ""),
            None => {
                let s = S3Store::connect(bucket, "", &self.options)?;
                *base = Some(s.clone());
                s
            }
        };
        map.insert(bucket.to_string(), store.clone());
        Ok(store)
    }
}

/// One file to score and where its results go.
#[derive(Debug, Clone)]
pub struct Job {
    /// The input file.
    pub input: Location,
    /// Which version of an S3 input to read (from the event).
    pub condition: ReadCondition,
    /// The scored rows.
    pub output: Location,
    /// The refused rows.
    pub errors: Location,
    /// The manifest.
    pub manifest: Location,
    /// The input's format; `None`: from its name, else from its first byte.
    pub format: Option<Format>,
}

/// How the outputs of a job are named from a base: `<base>.out.csv` (or `.out.jsonl`),
/// `<base>.errors.csv`, `<base>.manifest.json`.
pub fn outputs_for(base: &Location, format: Format) -> (Location, Location, Location) {
    let with = |suffix: &str| match base {
        Location::Local(p) => {
            let mut s = p.as_os_str().to_owned();
            s.push(suffix);
            Location::Local(PathBuf::from(s))
        }
        Location::S3 { bucket, key } => Location::S3 {
            bucket: bucket.clone(),
            key: format!("{key}{suffix}"),
        },
    };
    (
        with(format.output_suffix()),
        with(".errors.csv"),
        with(".manifest.json"),
    )
}

/// The manifest written beside the outputs of a job.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Manifest {
    /// The input file.
    pub input: String,
    /// Its ETag (S3), as read.
    pub input_etag: Option<String>,
    /// Its version id (versioned S3 bucket).
    pub input_version_id: Option<String>,
    /// CSV or JSON Lines.
    pub format: Format,
    /// Whether the input was gzip-compressed.
    pub gzip: bool,
    /// Input bytes after decompression.
    pub input_bytes: u64,
    /// The scored rows.
    pub output: String,
    /// The refused rows (line, column, reason).
    pub errors: String,
    /// Rows written to the output.
    pub rows_scored: u64,
    /// Rows written to the errors file.
    pub rows_refused: u64,
    /// The model used.
    pub model: ManifestModel,
    /// The columns copied through.
    pub id_columns: Vec<String>,
    /// Wall time of the job, reading to publishing.
    pub seconds: f64,
    /// When the job finished (RFC 3339, UTC).
    pub finished_at: String,
}

/// The model part of a [`Manifest`].
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ManifestModel {
    /// Its name.
    pub name: String,
    /// Its version.
    pub version: String,
    /// Its `model_id` (sha256 of its content).
    pub model_id: String,
}

/// What became of a job.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Scored and published.
    Scored(Box<Manifest>),
    /// The S3 object changed since the event (its ETag no longer matches): the newer
    /// version has an event of its own. Nothing written.
    Superseded,
    /// The input no longer exists. Nothing written.
    Missing,
}

/// A local output being written: `.<name>.<pid>.<n>.partial` beside its destination,
/// renamed into place by [`Partial::persist`], removed if dropped before.
struct Partial {
    file: std::fs::File,
    path: PathBuf,
    kept: bool,
}

impl Partial {
    fn create(dir: &Path, dest: &Path) -> io::Result<Self> {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let name = dest
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        loop {
            let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let path = dir.join(format!(".{name}.{}.{n}.partial", std::process::id()));
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
            {
                Ok(file) => {
                    return Ok(Self {
                        file,
                        path,
                        kept: false,
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e),
            }
        }
    }

    fn persist(mut self, dest: &Path) -> io::Result<()> {
        self.file.sync_all()?;
        std::fs::rename(&self.path, dest)?;
        self.kept = true;
        Ok(())
    }
}

impl Write for Partial {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl Drop for Partial {
    fn drop(&mut self) {
        if !self.kept {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Where an output is written until it is published.
enum Sink {
    Local {
        file: io::BufWriter<Partial>,
        dest: PathBuf,
    },
    S3(S3Writer),
}

impl Sink {
    fn create(loc: &Location, stores: &Stores, part_size: usize) -> Result<Self, ScoreError> {
        match loc {
            Location::Local(p) => {
                let dir = match p.parent() {
                    Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
                    _ => PathBuf::from("."),
                };
                std::fs::create_dir_all(&dir).map_err(|source| ScoreError::Write {
                    location: dir.display().to_string(),
                    source,
                })?;
                let tmp = Partial::create(&dir, p).map_err(|source| ScoreError::Write {
                    location: p.display().to_string(),
                    source,
                })?;
                Ok(Self::Local {
                    file: io::BufWriter::with_capacity(1 << 20, tmp),
                    dest: p.clone(),
                })
            }
            Location::S3 { bucket, key } => Ok(Self::S3(
                stores.bucket(bucket)?.create_writer(key, part_size),
            )),
        }
    }

    fn finish(self, loc: &Location) -> Result<(), ScoreError> {
        let werr = |source| ScoreError::Write {
            location: loc.to_string(),
            source,
        };
        match self {
            Self::Local { file, dest } => {
                let tmp = file.into_inner().map_err(|e| werr(e.into_error()))?;
                tmp.persist(&dest).map_err(werr)?;
                Ok(())
            }
            Self::S3(w) => {
                w.finish()?;
                Ok(())
            }
        }
    }

    /// Drop everything: the temporary file is removed, the upload aborted.
    fn abandon(self) {
        match self {
            Self::Local { .. } => {}
            Self::S3(w) => {
                if let Err(e) = w.abort() {
                    tracing::warn!(error = %e, "could not abort a multipart upload");
                }
            }
        }
    }
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Self::Local { file, .. } => file.write(buf),
            Self::S3(w) => w.write(buf),
        }
    }
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match self {
            Self::Local { file, .. } => file.write_all(buf),
            Self::S3(w) => w.write_all(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Self::Local { file, .. } => file.flush(),
            Self::S3(w) => w.flush(),
        }
    }
}

fn same_place(a: &Location, b: &Location) -> bool {
    match (a, b) {
        (Location::Local(x), Location::Local(y)) => {
            let canon = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
            canon(x) == canon(y)
        }
        _ => a == b,
    }
}

/// Runs jobs with one model, one thread pool and one set of S3 clients.
pub struct Scorer {
    pool: rayon::ThreadPool,
    settings: Settings,
    stores: Arc<Stores>,
    part_size: usize,
}

impl std::fmt::Debug for Scorer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scorer")
            .field("threads", &self.pool.current_num_threads())
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl Scorer {
    /// A scorer on `threads` threads (0: one per core). `part_size`: S3 multipart part size.
    pub fn new(
        settings: Settings,
        threads: usize,
        stores: Arc<Stores>,
        part_size: usize,
    ) -> Result<Self, ScoreError> {
        settings.check().map_err(ScoreError::Config)?;
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("score-{i}"))
            .build()
            .map_err(|e| ScoreError::Config(format!("cannot start {threads} threads: {e}")))?;
        Ok(Self {
            pool,
            settings,
            stores,
            part_size,
        })
    }

    /// The settings in use.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The S3 clients.
    pub fn stores(&self) -> &Stores {
        &self.stores
    }

    /// Score one file; see the module documentation.
    pub fn run(&self, model: &LoadedModel, job: &Job) -> Result<Outcome, ScoreError> {
        let started = Instant::now();
        for out in [&job.output, &job.errors, &job.manifest] {
            if same_place(&job.input, out) {
                return Err(ScoreError::Config(format!(
                    "{out}: an output would overwrite the input"
                )));
            }
        }
        let input_name = job.input.to_string();
        let (raw, etag, version_id): (Box<dyn Read + Send>, _, _) = match &job.input {
            Location::Local(p) => {
                let f = std::fs::File::open(p).map_err(|source| {
                    if source.kind() == io::ErrorKind::NotFound {
                        ScoreError::Store(StoreError::NotFound(p.display().to_string()))
                    } else {
                        ScoreError::Read {
                            location: input_name.clone(),
                            source,
                        }
                    }
                })?;
                (Box::new(f), None, None)
            }
            Location::S3 { bucket, key } => {
                let store = self.stores.bucket(bucket)?;
                match store.open_read(key, &job.condition) {
                    Ok(Some(r)) => {
                        let info = r.info().clone();
                        (Box::new(r), info.etag, info.version_id)
                    }
                    Ok(None) => return Ok(Outcome::Superseded),
                    Err(StoreError::NotFound(_)) => return Ok(Outcome::Missing),
                    Err(e) => return Err(e.into()),
                }
            }
        };
        let mut buffered = BufReader::with_capacity(256 << 10, raw);
        let head = buffered.fill_buf().map_err(|source| ScoreError::Read {
            location: input_name.clone(),
            source,
        })?;
        let gzip = head.starts_with(&[0x1f, 0x8b]) || input_name.ends_with(".gz");
        let format = match job.format.or_else(|| Format::from_name(&input_name)) {
            Some(f) => f,
            None if gzip => Format::Csv,
            None => sniff(head),
        };
        let input: Box<dyn BufRead + Send> = if gzip {
            Box::new(BufReader::with_capacity(
                256 << 10,
                flate2::bufread::MultiGzDecoder::new(buffered),
            ))
        } else {
            Box::new(buffered)
        };

        let mut out = Sink::create(&job.output, &self.stores, self.part_size)?;
        let mut errs = match Sink::create(&job.errors, &self.stores, self.part_size) {
            Ok(s) => s,
            Err(e) => {
                out.abandon();
                return Err(e);
            }
        };
        let result = engine::run(
            &self.pool,
            &model.model,
            &self.settings,
            input,
            format,
            &mut out,
            &mut errs,
        );
        let counts: Counts = match result {
            Ok(c) => c,
            Err(e) => {
                out.abandon();
                errs.abandon();
                return Err(match e {
                    EngineError::Unreadable(reason) => ScoreError::Unreadable {
                        location: input_name,
                        reason,
                    },
                    EngineError::Read(source) => ScoreError::Read {
                        location: input_name,
                        source,
                    },
                    EngineError::WriteOutput(source) => ScoreError::Write {
                        location: job.output.to_string(),
                        source,
                    },
                    EngineError::WriteErrors(source) => ScoreError::Write {
                        location: job.errors.to_string(),
                        source,
                    },
                });
            }
        };
        if let Err(e) = out.finish(&job.output) {
            errs.abandon();
            return Err(e);
        }
        errs.finish(&job.errors)?;
        let a = model.model.artifact();
        let manifest = Manifest {
            input: input_name,
            input_etag: etag,
            input_version_id: version_id,
            format,
            gzip,
            input_bytes: counts.bytes_read,
            output: job.output.to_string(),
            errors: job.errors.to_string(),
            rows_scored: counts.rows_scored,
            rows_refused: counts.rows_refused,
            model: ManifestModel {
                name: model.name.clone(),
                version: model.version.clone(),
                model_id: a.model_id.clone(),
            },
            id_columns: self.settings.id_columns.clone(),
            seconds: started.elapsed().as_secs_f64(),
            finished_at: model::artifact::now_rfc3339(),
        };
        let mut bytes = serde_json::to_vec_pretty(&manifest)
            .map_err(|e| ScoreError::Config(format!("cannot serialise the manifest: {e}")))?;
        bytes.push(b'\n');
        let mut sink = Sink::create(&job.manifest, &self.stores, self.part_size)?;
        if let Err(source) = sink.write_all(&bytes) {
            sink.abandon();
            return Err(ScoreError::Write {
                location: job.manifest.to_string(),
                source,
            });
        }
        sink.finish(&job.manifest)?;
        Ok(Outcome::Scored(Box::new(manifest)))
    }
}

/// CSV unless the first non-blank byte opens a JSON object.
fn sniff(head: &[u8]) -> Format {
    let first = head
        .iter()
        .copied()
        .find(|b| !(b.is_ascii_whitespace() || *b == 0xEF || *b == 0xBB || *b == 0xBF));
    if first == Some(b'{') {
        Format::Jsonl
    } else {
        Format::Csv
    }
}

/// Read a whole small object (a manifest, say) at `loc`.
pub fn read_small(loc: &Location, stores: &Stores) -> Result<Vec<u8>, ScoreError> {
    match loc {
        Location::Local(p) => std::fs::read(p).map_err(|source| ScoreError::Read {
            location: p.display().to_string(),
            source,
        }),
        Location::S3 { bucket, key } => Ok(stores.bucket(bucket)?.get(key)?),
    }
}
