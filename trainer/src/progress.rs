//! Progress of long work: an indicatif bar when stderr is a terminal, a few plain log
//! lines otherwise (CI logs, pipes), or nothing at all.

use std::fmt::Arguments;
use std::io::IsTerminal;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use indicatif::{ProgressBar, ProgressStyle};

/// What goes to stderr when it is not a terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lines {
    /// Nothing.
    Off,
    /// A line when a phase starts and at each quarter of it: one long run.
    Steps,
    /// One line per finished run, from [`Progress::run_done`]: many short runs.
    Runs,
}

/// Reports progress of counted steps (e.g. cross-validation fits).
#[derive(Debug)]
pub struct Progress {
    bar: Option<ProgressBar>,
    lines: Lines,
    total: AtomicUsize,
    last_quarter: AtomicUsize,
    phase: Mutex<String>,
}

impl Progress {
    /// A bar on a terminal; otherwise plain lines on stderr as a phase starts and at each
    /// quarter of it.
    pub fn auto() -> Self {
        Self::on_terminal_or(Lines::Steps)
    }

    /// A bar on a terminal; otherwise one plain line per run, written by
    /// [`Progress::run_done`] (for `compare`, whose rounds would each print a phase's
    /// lines).
    pub fn auto_per_run() -> Self {
        Self::on_terminal_or(Lines::Runs)
    }

    /// No output at all.
    pub fn hidden() -> Self {
        Self::with(None, Lines::Off)
    }

    fn on_terminal_or(lines: Lines) -> Self {
        if std::io::stderr().is_terminal() {
            let bar = ProgressBar::new(0);
            let style = ProgressStyle::with_template(
                "{msg:>18} [{bar:40}] {pos}/{len} fits {elapsed_precise}",
            )
            .map(|s| s.progress_chars("=> "))
            .unwrap_or_else(|_| ProgressStyle::default_bar());
            bar.set_style(style);
            Self::with(Some(bar), Lines::Off)
        } else {
            Self::with(None, lines)
        }
    }

    fn with(bar: Option<ProgressBar>, lines: Lines) -> Self {
        Self {
            bar,
            lines,
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
        } else if self.lines == Lines::Steps {
            eprintln!("trainer: {phase}: {total} fits");
        }
    }

    /// `done` steps of the phase are finished.
    pub fn tick(&self, done: usize) {
        if let Some(bar) = &self.bar {
            bar.inc(1);
        } else if self.lines == Lines::Steps {
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

    /// One run of many is over: a line saying `what`, when this progress writes one line
    /// per run (see [`Progress::auto_per_run`]); nothing otherwise.
    pub fn run_done(&self, what: Arguments<'_>) {
        if self.lines == Lines::Runs {
            eprintln!("trainer: {what}");
        }
    }
}
