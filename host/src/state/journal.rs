//! The journal of installed plugins: which release of each plugin is active, which one
//! a rollback would return to, and what happened recently.
//!
//! The whole set is one JSON file, `<state_dir>/installed.json`, replaced atomically on
//! every change, so the daemon restarts into exactly the last committed state.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Journal files written (fsynced and renamed into place) since the process started.
pub static JOURNAL_WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

use super::atomic::{create_private_dir, io_context, remove_tmp_files, write_atomic};
use super::digest::Digest;

/// File name of the journal inside the state directory.
pub const JOURNAL_FILE: &str = "installed.json";

/// Version of the journal's JSON layout written by this build.
pub const FORMAT: u32 = 1;

/// How many history entries a plugin keeps; older ones are dropped first.
pub const HISTORY_CAP: usize = 32;

/// One installed release of a plugin.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Release {
    /// The plugin's version.
    pub version: semver::Version,
    /// Digest of the component in the blob store.
    pub digest: Digest,
    /// The detached signature it was installed with, if any (base64).
    pub signature: Option<String>,
    /// When it was installed, in seconds since the Unix epoch.
    pub installed_at: u64,
    /// Where it came from when installed from a registry; its cosign signatures
    /// are kept locally so it can be verified again without the network.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<RegistryOrigin>,
}

/// A release's registry of origin.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct RegistryOrigin {
    /// The reference it was installed from, as given.
    pub reference: String,
    /// The manifest digest its signatures cover.
    pub manifest_digest: Digest,
}

/// One event in a plugin's life.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct HistoryEntry {
    /// When it happened, in seconds since the Unix epoch.
    pub at: u64,
    /// `install`, `upgrade`, `downgrade`, `rollback`, `auto-rollback` or `remove`.
    pub action: String,
    /// The version the action concerned.
    pub version: String,
    /// Why, when it was not an operator's plain request (e.g. the failure that
    /// triggered an automatic rollback).
    pub reason: Option<String>,
}

/// Everything recorded about one installed plugin.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct PluginRecord {
    /// The release that runs.
    pub active: Release,
    /// The release a rollback returns to.
    pub previous: Option<Release>,
    /// Recent events, oldest first, at most [`HISTORY_CAP`].
    #[serde(default)]
    pub history: Vec<HistoryEntry>,
}

impl PluginRecord {
    /// A record for a freshly installed release, with no history yet.
    pub fn new(active: Release) -> Self {
        PluginRecord {
            active,
            previous: None,
            history: Vec::new(),
        }
    }

    /// Appends `entry`, dropping the oldest entries beyond [`HISTORY_CAP`] so the journal
    /// (rewritten whole on every commit) stays small on a long-lived device.
    pub fn push_history(&mut self, entry: HistoryEntry) {
        self.history.push(entry);
        let excess = self.history.len().saturating_sub(HISTORY_CAP);
        self.history.drain(..excess);
    }
}

/// The complete installed state, as stored in the journal file.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct InstalledSet {
    /// Layout version of the file ([`FORMAT`]).
    pub format: u32,
    /// Incremented by every commit; lets readers tell which state they saw.
    pub generation: u64,
    /// Installed plugins by name.
    pub plugins: BTreeMap<String, PluginRecord>,
}

/// Why the journal could not be read or written.
#[derive(thiserror::Error, Debug)]
pub enum JournalError {
    /// File system failure; the message names the path.
    #[error(transparent)]
    Io(#[from] io::Error),
    /// The file exists but is not a valid journal. It is never replaced automatically,
    /// because doing so would forget every installed plugin.
    #[error(
        "journal {} is not valid JSON of the expected shape: {source}; it was left untouched: \
         repair it or restore a backup (moving it aside starts with no plugins installed)",
        .path.display()
    )]
    Corrupt {
        /// The journal file.
        path: PathBuf,
        /// The parse error, with line and column.
        source: serde_json::Error,
    },
    /// The file was written by a build with a layout this one does not know.
    #[error(
        "journal {} has format {found}, this build understands format {supported}",
        .path.display()
    )]
    UnsupportedFormat {
        /// The journal file.
        path: PathBuf,
        /// The format found in the file.
        found: u32,
        /// The format this build writes.
        supported: u32,
    },
    /// The set could not be serialised (not expected with the types above).
    #[error("serialising the journal for {}: {source}", .path.display())]
    Serialize {
        /// The journal file.
        path: PathBuf,
        /// The serialisation error.
        source: serde_json::Error,
    },
}

/// Handle on the journal file; the contents are held by the caller as an
/// [`InstalledSet`] and written back with [`Journal::commit`].
#[derive(Debug, Clone)]
pub struct Journal {
    path: PathBuf,
}

impl Journal {
    /// Opens `<state_dir>/installed.json`, creating the directory (mode 0700) and an
    /// empty set (generation 0) if absent. A file that fails to parse is an error naming
    /// the path (never silently replaced). Temporary files left by an interrupted commit
    /// are removed.
    pub fn open(state_dir: &Path) -> Result<(Journal, InstalledSet), JournalError> {
        create_private_dir(state_dir)?;
        remove_tmp_files(state_dir, Some(JOURNAL_FILE))?;
        let journal = Journal {
            path: state_dir.join(JOURNAL_FILE),
        };
        let bytes = match fs::read(&journal.path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let set = InstalledSet {
                    format: FORMAT,
                    generation: 0,
                    plugins: BTreeMap::new(),
                };
                journal.write(&set)?;
                return Ok((journal, set));
            }
            Err(e) => return Err(io_context(e, "reading journal", &journal.path).into()),
        };
        let set: InstalledSet =
            serde_json::from_slice(&bytes).map_err(|source| JournalError::Corrupt {
                path: journal.path.clone(),
                source,
            })?;
        if set.format == 0 || set.format > FORMAT {
            return Err(JournalError::UnsupportedFormat {
                path: journal.path.clone(),
                found: set.format,
                supported: FORMAT,
            });
        }
        Ok((journal, set))
    }

    /// Writes `set` with generation+1 atomically; returns the new generation and stores
    /// it in `set.generation`. On error `set` is left as it was.
    pub fn commit(&self, set: &mut InstalledSet) -> Result<u64, JournalError> {
        let before = (set.format, set.generation);
        set.format = FORMAT;
        set.generation += 1;
        if let Err(e) = self.write(set) {
            (set.format, set.generation) = before;
            return Err(e);
        }
        Ok(set.generation)
    }

    /// The journal file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn write(&self, set: &InstalledSet) -> Result<(), JournalError> {
        let mut bytes =
            serde_json::to_vec_pretty(set).map_err(|source| JournalError::Serialize {
                path: self.path.clone(),
                source,
            })?;
        bytes.push(b'\n');
        write_atomic(&self.path, &bytes)?;
        JOURNAL_WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::crash_test;
    use std::time::Duration;

    fn release(major: u64, tag: &str) -> Release {
        Release {
            version: semver::Version::new(major, 0, 0),
            digest: Digest::of(tag.as_bytes()),
            signature: Some(format!("sig-{tag}")),
            installed_at: 1_700_000_000 + major,
            origin: None,
        }
    }

    fn entry(i: u64) -> HistoryEntry {
        HistoryEntry {
            at: i,
            action: "upgrade".into(),
            version: format!("{i}.0.0"),
            reason: i.is_multiple_of(2).then(|| format!("reason {i}")),
        }
    }

    #[test]
    fn open_creates_empty_then_commit_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let (journal, mut set) = Journal::open(&state).unwrap();
        assert_eq!(set.generation, 0);
        assert!(set.plugins.is_empty());
        assert!(journal.path().exists());

        let mut rec = PluginRecord::new(release(2, "b"));
        rec.previous = Some(release(1, "a"));
        rec.push_history(entry(1));
        set.plugins.insert("counter".into(), rec);
        assert_eq!(journal.commit(&mut set).unwrap(), 1);
        assert_eq!(journal.commit(&mut set).unwrap(), 2);
        assert_eq!(set.generation, 2);

        let (_, reread) = Journal::open(&state).unwrap();
        assert_eq!(reread, set);
    }

    #[test]
    fn history_keeps_newest_32() {
        let mut rec = PluginRecord::new(release(1, "a"));
        for i in 0..40 {
            rec.push_history(entry(i));
        }
        assert_eq!(rec.history.len(), HISTORY_CAP);
        assert_eq!(rec.history[0].at, 8);
        assert_eq!(rec.history[31].at, 39);
    }

    #[test]
    fn corrupt_file_is_an_error_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(JOURNAL_FILE);
        fs::write(&path, b"{\"format\":1,").unwrap();
        let err = Journal::open(dir.path()).unwrap_err();
        assert!(matches!(err, JournalError::Corrupt { .. }));
        assert!(
            err.to_string().contains(&path.display().to_string()),
            "{err}"
        );
        assert_eq!(fs::read(&path).unwrap(), b"{\"format\":1,");
    }

    #[test]
    fn newer_format_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(JOURNAL_FILE);
        fs::write(&path, br#"{"format":99,"generation":3,"plugins":{}}"#).unwrap();
        let err = Journal::open(dir.path()).unwrap_err();
        assert!(
            matches!(err, JournalError::UnsupportedFormat { found: 99, .. }),
            "{err}"
        );
    }

    #[test]
    fn failed_commit_leaves_set_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let (journal, mut set) = Journal::open(&state).unwrap();
        fs::remove_dir_all(&state).unwrap();
        assert!(journal.commit(&mut set).is_err());
        assert_eq!(set.generation, 0);
    }

    /// The set written as generation `g`: its contents are a function of `g`, so a reader
    /// can tell a real generation from a mix of two.
    fn set_for(g: u64) -> InstalledSet {
        let mut plugins = BTreeMap::new();
        for k in 0..(g % 23 + 1) {
            let mut rec = PluginRecord::new(release(g, &format!("{g}-{k}")));
            rec.previous = Some(release(k, "prev"));
            for i in 0..HISTORY_CAP as u64 {
                rec.push_history(entry(g * 100 + i));
            }
            plugins.insert(format!("plugin-{k}"), rec);
        }
        InstalledSet {
            format: FORMAT,
            generation: g,
            plugins,
        }
    }

    #[test]
    fn commit_survives_sigkill() {
        if let Some((dir, _)) = crash_test::child() {
            let (journal, mut set) = Journal::open(&dir).unwrap();
            crash_test::say(crash_test::READY);
            loop {
                let mut next = set_for(set.generation + 1);
                next.generation = set.generation;
                let g = journal.commit(&mut next).unwrap();
                crash_test::say(&format!("{}{g}", crash_test::ACK));
                set = next;
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let name = crash_test::test_name(module_path!(), "commit_survives_sigkill");
        let mut last_seen = 0;
        crash_test::kill_rounds(
            &name,
            dir.path(),
            60,
            Duration::from_millis(40),
            |_, acks| {
                let (_, set) = Journal::open(dir.path()).unwrap();
                let g = set.generation;
                if g > 0 {
                    assert_eq!(set, set_for(g), "generation {g} is not what was written");
                }
                let last_ack = acks.last().map_or(last_seen, |a| a.parse().unwrap());
                // Acknowledged commits are durable; at most one more was in flight.
                assert!(
                    g >= last_ack && g <= last_ack + 1,
                    "found {g}, acked {last_ack}"
                );
                last_seen = g;
                let names: Vec<_> = fs::read_dir(dir.path())
                    .unwrap()
                    .map(|e| e.unwrap().file_name())
                    .collect();
                assert_eq!(names, [JOURNAL_FILE], "leftover files");
            },
        );
        assert!(
            last_seen >= 10,
            "children committed too little: {last_seen}"
        );
    }
}
