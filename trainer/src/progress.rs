//! Progress of long work: an indicatif bar when stderr is a terminal, a few plain log
//! lines otherwise (CI logs, pipes), or nothing at all.

use std::io::IsTerminal;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use indicatif::{ProgressBar, ProgressStyle};

/// Reports progress of counted steps (e.g. cross-validation fits).
#[derive(Debug)]
pub struct Progress {
    bar: Option<ProgressBar>,
    plain: bool,
    total: AtomicUsize,
    last_quarter: AtomicUsize,
    phase: Mutex<String>,
}

impl Progress {
    /// A bar on a terminal, plain lines on stderr otherwise.
    pub fn auto() -> Self {
        if std::io::stderr().is_terminal() {
            let bar = ProgressBar::new(0);
            let style = ProgressStyle::with_template(
                "{msg:>18} [{bar:40}] {pos}/{len} fits {elapsed_precise}",
            )
            .map(|s| s.progress_chars("=> "))
            .unwrap_or_else(|_| ProgressStyle::default_bar());
            bar.set_style(style);
            Self::with(Some(bar), false)
        } else {
            Self::with(None, true)
        }
    }

    /// No output at all.
    pub fn hidden() -> Self {
        Self::with(None, false)
    }

    fn with(bar: Option<ProgressBar>, plain: bool) -> Self {
        Self {
            bar,
            plain,
            total: AtomicUsize::new(0),
            last_quarter: AtomicUsize::new(0),
            phase: Mutex::new(String::new()),
        }
    }

    /// Begin a phase of `total` steps.
    pub fn start(&self, phase: &str, total: usize) {
        self.total.store(total, Ordering::Relaxed);
        self.last_quarter.store(0, Ordering::Relaxed);
        if let Ok(mut p) = self.phase.lock() {
            *p = phase.to_string();
        }
        if let Some(bar) = &self.bar {
            bar.set_length(total as u64);
            bar.set_position(0);
            bar.set_message(phase.to_string());
        } else if self.plain {
            eprintln!("trainer: {phase}: {total} fits");
        }
    }

    /// `done` steps of the phase are finished.
    pub fn tick(&self, done: usize) {
        if let Some(bar) = &self.bar {
            bar.inc(1);
        } else if self.plain {
            let total = self.total.load(Ordering::Relaxed).max(1);
            let quarter = done * 4 / total;
            if quarter > self.last_quarter.fetch_max(quarter, Ordering::Relaxed) && quarter < 4 {
                let phase = self.phase.lock().map(|p| p.clone()).unwrap_or_default();
                eprintln!("trainer: {phase}: {done}/{total} fits done");
            }
        }
    }

    /// The work is over (the final refit included).
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
