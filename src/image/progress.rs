//! Progress of long steps: a spinner with elapsed time on a terminal, plain
//! "==>" lines otherwise (CI logs, pipes).
use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::time::{Duration, Instant};

pub struct Step {
    name: String,
    started: Instant,
    bar: Option<ProgressBar>,
    quiet: bool,
}

impl Step {
    pub fn start(name: impl Into<String>, quiet: bool) -> Step {
        let name = name.into();
        let bar = if !quiet && std::io::stderr().is_terminal() {
            Some(spinner(&name))
        } else {
            if !quiet {
                eprintln!("==> {name}");
            }
            None
        };
        Step {
            name,
            started: Instant::now(),
            bar,
            quiet,
        }
    }

    pub fn done(self, detail: &str) -> Duration {
        let took = self.started.elapsed();
        let line = format!(
            "{} {}({:.1} s)",
            self.name,
            detail_text(detail),
            took.as_secs_f64()
        );
        match &self.bar {
            Some(bar) => bar.finish_with_message(line),
            None if !self.quiet => eprintln!("    {line}"),
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
