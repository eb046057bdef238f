//! Progress of long operations (pulls, pushes, installs), reported as they go to
//! whoever waits on them: the CLI draws it, the admin socket streams it.

use serde::{Deserialize, Serialize};

/// The step an operation is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// Asking the registry which manifest a tag points at.
    Resolve,
    /// Fetching the signatures of that manifest.
    Signatures,
    /// Downloading the component; `done`/`total` are bytes.
    Download,
    /// Uploading the component; `done`/`total` are bytes.
    Upload,
    /// Checking format, policy, signatures and grants.
    Verify,
    /// Compiling the component to native code.
    Compile,
    /// Starting the release and switching traffic to it.
    Start,
}

impl Phase {
    /// What a person is told while the phase runs.
    pub fn label(self) -> &'static str {
        match self {
            Phase::Resolve => "resolving",
            Phase::Signatures => "fetching signatures",
            Phase::Download => "downloading",
            Phase::Upload => "uploading",
            Phase::Verify => "verifying",
            Phase::Compile => "compiling",
            Phase::Start => "starting",
        }
    }

    /// True for phases that move bytes, whose `done`/`total` are worth a bar.
    pub fn counts_bytes(self) -> bool {
        matches!(self, Phase::Download | Phase::Upload)
    }
}

/// One progress report. `total` is 0 when unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    pub phase: Phase,
    pub done: u64,
    pub total: u64,
}

impl Progress {
    /// The start of a phase whose size is unknown or meaningless.
    pub fn entering(phase: Phase) -> Self {
        Progress {
            phase,
            done: 0,
            total: 0,
        }
    }
}

/// Where reports go. Reporting must be cheap and must not block.
pub type Reporter<'a> = dyn Fn(Progress) + Send + Sync + 'a;

/// A reporter that drops everything, for callers nobody watches.
pub fn ignore(_: Progress) {}
