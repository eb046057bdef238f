//! Messages waiting for a broker: QoS 1/2 publishes made while the broker is
//! unreachable, kept on disk and sent in order once it is back, also after a
//! daemon restart.
//!
//! Each message is one file, `<sequence>.msg` (a JSON header line, then the
//! payload), written with fsync and atomic rename before `publish` returns, so
//! what a plugin was told is queued survives a power cut. A message is deleted
//! once handed to the connection; a crash between the two sends it twice,
//! which QoS 1 allows. When the outbox is full the oldest messages make room
//! and are counted as dropped.

use std::collections::VecDeque;
use std::fs::{self, File};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

/// A message as it waits in the outbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    pub topic: String,
    pub qos: u8,
    pub retain: bool,
}

/// What is kept in memory per waiting message (payloads stay on disk).
struct Entry {
    sequence: u64,
    header: Header,
    size: u64,
}

/// Bounds of one broker's outbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    pub messages: usize,
    pub bytes: u64,
}

pub struct Outbox {
    dir: PathBuf,
    bounds: Bounds,
    queue: VecDeque<Entry>,
    bytes: u64,
    next_sequence: u64,
    /// Messages dropped to make room (or unreadable after a crash), since start.
    pub dropped: AtomicU64,
}

impl Outbox {
    /// Opens (creating) the outbox in `dir`, loading what an earlier run left.
    pub fn open(dir: &Path, bounds: Bounds) -> std::io::Result<Outbox> {
        fs::create_dir_all(dir)?;
        let mut found = Vec::new();
        for entry in fs::read_dir(dir)? {
            let path = entry?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            match name.strip_suffix(".msg").map(|n| n.parse::<u64>()) {
                Some(Ok(sequence)) => found.push((sequence, path)),
                // A write that a crash interrupted before its rename.
                _ if name.starts_with(".tmp-") => fs::remove_file(&path)?,
                _ => {}
            }
        }
        found.sort_unstable_by_key(|(sequence, _)| *sequence);
        let mut outbox = Outbox {
            dir: dir.to_path_buf(),
            bounds,
            queue: VecDeque::new(),
            bytes: 0,
            next_sequence: found.last().map_or(0, |(sequence, _)| sequence + 1),
            dropped: AtomicU64::new(0),
        };
        for (sequence, path) in found {
            match read_header(&path) {
                Ok((header, size)) => {
                    outbox.bytes += size;
                    outbox.queue.push_back(Entry {
                        sequence,
                        header,
                        size,
                    });
                }
                Err(err) => {
                    tracing::warn!("mqtt outbox: dropping unreadable {}: {err}", path.display());
                    outbox.dropped.fetch_add(1, Ordering::Relaxed);
                    fs::remove_file(&path)?;
                }
            }
        }
        outbox.make_room(0, 0)?;
        Ok(outbox)
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// Stores a message durably at the back, dropping the oldest ones if needed.
    pub fn push(&mut self, header: Header, payload: &[u8]) -> std::io::Result<()> {
        let size = payload.len() as u64;
        if size > self.bounds.bytes {
            return Err(std::io::Error::other(format!(
                "a {size}-byte message does not fit an outbox of {} bytes",
                self.bounds.bytes
            )));
        }
        self.make_room(1, size)?;
        let sequence = self.next_sequence;
        let temporary = self.dir.join(format!(".tmp-{sequence}"));
        let mut file = File::create(&temporary)?;
        serde_json::to_writer(&mut file, &header)?;
        file.write_all(b"\n")?;
        file.write_all(payload)?;
        file.sync_all()?;
        fs::rename(&temporary, self.path(sequence))?;
        File::open(&self.dir)?.sync_all()?;
        self.next_sequence += 1;
        self.bytes += size;
        self.queue.push_back(Entry {
            sequence,
            header,
            size,
        });
        Ok(())
    }

    /// The oldest message: its sequence number, header and payload.
    pub fn front(&self) -> std::io::Result<Option<(u64, Header, Vec<u8>)>> {
        let Some(entry) = self.queue.front() else {
            return Ok(None);
        };
        let payload = read_payload(&self.path(entry.sequence))?;
        Ok(Some((entry.sequence, entry.header.clone(), payload)))
    }

    /// Forgets the oldest message if it is still `sequence` (it may have been
    /// dropped to make room meanwhile).
    pub fn remove_front(&mut self, sequence: u64) -> std::io::Result<()> {
        if self.queue.front().is_some_and(|e| e.sequence == sequence) {
            self.pop_front()?;
        }
        Ok(())
    }

    /// Drops the oldest messages until `messages` more of `bytes` in all fit.
    fn make_room(&mut self, messages: usize, bytes: u64) -> std::io::Result<()> {
        while !self.queue.is_empty()
            && (self.queue.len() + messages > self.bounds.messages
                || self.bytes + bytes > self.bounds.bytes)
        {
            if let Some(entry) = self.queue.front() {
                tracing::warn!(topic = %entry.header.topic, "mqtt outbox full: dropping the oldest message");
            }
            self.pop_front()?;
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    fn pop_front(&mut self) -> std::io::Result<()> {
        if let Some(entry) = self.queue.pop_front() {
            self.bytes -= entry.size;
            match fs::remove_file(self.path(entry.sequence)) {
                Err(err) if err.kind() != std::io::ErrorKind::NotFound => return Err(err),
                _ => {}
            }
        }
        Ok(())
    }

    fn path(&self, sequence: u64) -> PathBuf {
        self.dir.join(format!("{sequence:020}.msg"))
    }
}

/// Opens a message file and reads its header line; the reader is left at the
/// payload, and the header line's length comes back with it.
fn open_message(path: &Path) -> std::io::Result<(BufReader<File>, Header, u64)> {
    let mut reader = BufReader::new(File::open(path)?);
    let mut line = String::new();
    let header_len = reader.read_line(&mut line)?;
    let header = serde_json::from_str(&line).map_err(std::io::Error::other)?;
    Ok((reader, header, header_len as u64))
}

fn read_header(path: &Path) -> std::io::Result<(Header, u64)> {
    let (reader, header, header_len) = open_message(path)?;
    let size = reader.get_ref().metadata()?.len() - header_len;
    Ok((header, size))
}

fn read_payload(path: &Path) -> std::io::Result<Vec<u8>> {
    let (mut reader, _, _) = open_message(path)?;
    let mut payload = Vec::new();
    reader.read_to_end(&mut payload)?;
    Ok(payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(topic: &str) -> Header {
        Header {
            topic: topic.into(),
            qos: 1,
            retain: false,
        }
    }

    fn drain(outbox: &mut Outbox) -> Vec<(String, Vec<u8>)> {
        let mut out = Vec::new();
        while let Some((sequence, header, payload)) = outbox.front().unwrap() {
            out.push((header.topic, payload));
            outbox.remove_front(sequence).unwrap();
        }
        out
    }

    const ROOMY: Bounds = Bounds {
        messages: 100,
        bytes: 1 << 20,
    };

    #[test]
    fn messages_survive_reopening_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut outbox = Outbox::open(dir.path(), ROOMY).unwrap();
        for n in 0..5 {
            outbox
                .push(header(&format!("t/{n}")), format!("p{n}\n").as_bytes())
                .unwrap();
        }
        outbox.remove_front(0).unwrap();
        drop(outbox);
        // A write cut short before its rename is discarded.
        fs::write(dir.path().join(".tmp-99"), b"half").unwrap();
        let mut reopened = Outbox::open(dir.path(), ROOMY).unwrap();
        assert_eq!(reopened.len(), 4);
        reopened.push(header("t/5"), b"p5").unwrap();
        let drained = drain(&mut reopened);
        let topics: Vec<&str> = drained.iter().map(|(t, _)| t.as_str()).collect();
        assert_eq!(topics, ["t/1", "t/2", "t/3", "t/4", "t/5"]);
        assert_eq!(drained[0].1, b"p1\n");
        assert!(!dir.path().join(".tmp-99").exists());
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn a_full_outbox_drops_the_oldest_and_counts_them() {
        let dir = tempfile::tempdir().unwrap();
        let bounds = Bounds {
            messages: 3,
            bytes: 10,
        };
        let mut outbox = Outbox::open(dir.path(), bounds).unwrap();
        for n in 0..5 {
            outbox.push(header(&format!("t/{n}")), b"12").unwrap();
        }
        assert_eq!(outbox.dropped.load(Ordering::Relaxed), 2);
        outbox.push(header("t/big"), b"123456").unwrap();
        assert_eq!(outbox.dropped.load(Ordering::Relaxed), 3);
        outbox.push(header("t/empty"), b"").unwrap();
        assert_eq!(outbox.dropped.load(Ordering::Relaxed), 4);
        assert!(outbox.push(header("t/huge"), &[0; 11]).is_err());
        let topics: Vec<String> = drain(&mut outbox).into_iter().map(|(t, _)| t).collect();
        assert_eq!(topics, ["t/4", "t/big", "t/empty"]);
    }

    #[test]
    fn unreadable_leftovers_are_dropped_and_counted() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(
            dir.path().join(format!("{:020}.msg", 3)),
            b"not json\npayload",
        )
        .unwrap();
        let mut outbox = Outbox::open(dir.path(), ROOMY).unwrap();
        assert_eq!(outbox.dropped.load(Ordering::Relaxed), 1);
        outbox.push(header("t/next"), b"x").unwrap();
        assert!(dir.path().join(format!("{:020}.msg", 4)).exists());
    }
}
