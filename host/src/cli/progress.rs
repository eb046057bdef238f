//! Showing the progress of slow operations on stderr: a bar on a terminal, one
//! line per step otherwise (so logs of scripted runs still say what happened),
//! nothing with `--json`.

use std::io::{IsTerminal as _, Write as _};
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

use super::output::human_bytes;
use crate::progress::{Phase, Progress};

/// Draws the progress reports of one operation.
pub(crate) struct ProgressView {
    mode: Mode,
    state: Mutex<State>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Hidden,
    Lines,
    Bar,
}

#[derive(Default)]
struct State {
    phase: Option<Phase>,
    bar: Option<ProgressBar>,
}

impl ProgressView {
    /// A view that draws unless `quiet` (the `--json` output) is asked for.
    pub(crate) fn new(quiet: bool) -> Self {
        ProgressView {
            mode: Mode::for_stderr(quiet),
            state: Mutex::new(State::default()),
        }
    }

    /// Shows one report.
    pub(crate) fn report(&self, progress: Progress) {
        if self.mode == Mode::Hidden {
            return;
        }
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let entering = state.phase != Some(progress.phase);
        if entering {
            state.phase = Some(progress.phase);
            if let Some(bar) = state.bar.take() {
                bar.finish_and_clear();
            }
        }
        match self.mode {
            Mode::Hidden => {}
            Mode::Lines => {
                if entering {
                    let line = match (progress.phase.counts_bytes(), progress.total) {
                        (true, total) if total > 0 => {
                            format!("{} {}\n", progress.phase.label(), human_bytes(total))
                        }
                        _ => format!("{}\n", progress.phase.label()),
                    };
                    let _ = std::io::stderr().lock().write_all(line.as_bytes());
                }
            }
            Mode::Bar => {
                let bar = state.bar.get_or_insert_with(|| new_bar(progress));
                if progress.phase.counts_bytes() {
                    bar.set_length(progress.total);
                    bar.set_position(progress.done);
                }
            }
        }
    }

    /// Removes whatever is drawn, before the outcome is printed.
    pub(crate) fn finish(&self) {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(bar) = state.bar.take() {
            bar.finish_and_clear();
        }
    }
}

impl Drop for ProgressView {
    fn drop(&mut self) {
        self.finish();
    }
}

/// Draws the steps of an operation the CLI follows by polling: each step is a
/// line (above a spinner on a terminal), so the story stays on screen.
pub(crate) struct StepView {
    mode: Mode,
    spinner: Option<ProgressBar>,
}

impl StepView {
    /// A view that draws unless `quiet` (the `--json` output) is asked for;
    /// `waiting` labels the spinner.
    pub(crate) fn new(quiet: bool, waiting: &str) -> Self {
        let mode = Mode::for_stderr(quiet);
        let spinner = (mode == Mode::Bar).then(|| {
            let spinner = ProgressBar::new_spinner();
            spinner.enable_steady_tick(Duration::from_millis(100));
            spinner.set_message(waiting.to_string());
            spinner
        });
        StepView { mode, spinner }
    }

    /// Shows one step.
    pub(crate) fn line(&self, text: &str) {
        match (self.mode, &self.spinner) {
            (Mode::Bar, Some(spinner)) => spinner.println(text),
            (Mode::Hidden, _) => {}
            _ => {
                let _ = std::io::stderr()
                    .lock()
                    .write_all(format!("{text}\n").as_bytes());
            }
        }
    }

    /// Removes the spinner, before the outcome is printed.
    pub(crate) fn finish(&mut self) {
        if let Some(spinner) = self.spinner.take() {
            spinner.finish_and_clear();
        }
    }
}

impl Drop for StepView {
    fn drop(&mut self) {
        self.finish();
    }
}

impl Mode {
    fn for_stderr(quiet: bool) -> Self {
        if quiet {
            Mode::Hidden
        } else if std::io::stderr().is_terminal() {
            Mode::Bar
        } else {
            Mode::Lines
        }
    }
}

fn new_bar(progress: Progress) -> ProgressBar {
    let bar = if progress.phase.counts_bytes() {
        let bar = ProgressBar::new(progress.total);
        if let Ok(style) = ProgressStyle::with_template(
            "{msg:>20} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {eta}",
        ) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar
    } else {
        let bar = ProgressBar::new_spinner();
        bar.enable_steady_tick(Duration::from_millis(100));
        bar
    };
    bar.set_message(progress.phase.label());
    bar
}
