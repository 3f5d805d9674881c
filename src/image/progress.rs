//! Progress of long steps: a spinner with elapsed time on a terminal, plain
//! "==>" lines otherwise (CI logs, pipes). Every finished step is also
//! timed into a per-thread log that `hardroot image --json` reports.
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use std::cell::RefCell;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

/// One finished step: a stable key (documented in docs/json.md) and its time.
#[derive(Debug, Clone, Serialize)]
pub struct Timing {
    pub step: &'static str,
    pub seconds: f64,
}

thread_local! {
    // Steps happen deep in the base, disk and output layers; a per-thread log
    // spares threading a collector through all of them. One image is built per
    // thread at a time (vm-test builds its machines' images one after another).
    static LOG: RefCell<Vec<Timing>> = const { RefCell::new(Vec::new()) };
    // The profile this thread builds when `image` builds several at once:
    // its lines are prefixed with it, and no spinner redraws over another's.
    static LABEL: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Prefixes this thread's progress lines with `[label]` (None: no prefix).
pub fn set_label(label: Option<String>) {
    LABEL.with(|l| *l.borrow_mut() = label);
}

/// A line of this thread's progress, with its label if it has one.
pub fn line(text: &str) -> String {
    LABEL.with(|l| match &*l.borrow() {
        Some(label) => format!("[{label}] {text}"),
        None => text.to_string(),
    })
}

/// A warning on stderr, as a line of this thread's progress.
pub fn warn(text: &str) {
    eprintln!("{}", line(&format!("warning: {text}")));
}

fn labelled() -> bool {
    LABEL.with(|l| l.borrow().is_some())
}

/// The steps finished on this thread since the last call, in order.
pub fn take_timings() -> Vec<Timing> {
    LOG.with(|log| std::mem::take(&mut *log.borrow_mut()))
}

/// Seconds to the millisecond, as every JSON document of hardroot gives them.
pub fn round_ms(secs: f64) -> f64 {
    (secs * 1000.0).round() / 1000.0
}

pub struct Step {
    key: &'static str,
    name: String,
    started: Instant,
    bar: Option<ProgressBar>,
    quiet: bool,
}

impl Step {
    /// `key` names the step in JSON output; `name` is what a person reads.
    pub fn start(key: &'static str, name: impl Into<String>, quiet: bool) -> Step {
        let name = name.into();
        let bar = if !quiet && std::io::stderr().is_terminal() && !labelled() {
            Some(spinner(&name))
        } else {
            if !quiet {
                eprintln!("{}", line(&format!("==> {name}")));
            }
            None
        };
        Step {
            key,
            name,
            started: Instant::now(),
            bar,
            quiet,
        }
    }

    pub fn done(self, detail: &str) -> Duration {
        let took = self.started.elapsed();
        LOG.with(|log| {
            log.borrow_mut().push(Timing {
                step: self.key,
                seconds: round_ms(took.as_secs_f64()),
            })
        });
        let line = format!(
            "{} {}({:.1} s)",
            self.name,
            detail_text(detail),
            took.as_secs_f64()
        );
        match &self.bar {
            Some(bar) => bar.finish_with_message(line),
            None if !self.quiet => eprintln!("{}", self::line(&format!("    {line}"))),
            None => {}
        }
        took
    }
}

impl Drop for Step {
    fn drop(&mut self) {
        // A step dropped without done() failed: leave no spinner behind.
        if let Some(bar) = &self.bar
            && !bar.is_finished()
        {
            bar.abandon_with_message(format!("{} failed", self.name));
        }
    }
}

fn detail_text(detail: &str) -> String {
    if detail.is_empty() {
        String::new()
    } else {
        format!("— {detail} ")
    }
}

fn spinner(name: &str) -> ProgressBar {
    let bar = ProgressBar::new_spinner();
    let style = ProgressStyle::with_template("{spinner} {msg} [{elapsed}]")
        .unwrap_or_else(|_| ProgressStyle::default_spinner());
    bar.set_style(style);
    bar.set_message(name.to_string());
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}
