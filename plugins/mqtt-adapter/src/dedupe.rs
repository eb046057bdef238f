//! Commands are executed once per correlation id: the ids of recent commands
//! and their replies are kept in kv (so a restart or a swap remembers them),
//! and a command arriving again gets the first reply again.

use std::collections::VecDeque;

use cairn_sdk::kv;
use serde::{Deserialize, Serialize};

const PREFIX: &str = "seen/";

/// What is remembered of one command.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Seen {
    sequence: u64,
    /// The reply's topic and payload; `None` while the command still runs
    /// (an install in the background).
    reply: Option<(String, Vec<u8>)>,
}

/// What to do with an arriving command.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Never seen: run it.
    New,
    /// Done before: send this reply again.
    Replay(String, Vec<u8>),
    /// Still running: its reply will come.
    Running,
}

/// The remembered commands' ids, oldest first.
pub struct Remembered {
    capacity: usize,
    order: VecDeque<String>,
    next_sequence: u64,
}

impl Remembered {
    /// Loads what earlier runs remembered.
    pub fn load(capacity: usize) -> cairn_sdk::Result<Remembered> {
        let mut found = Vec::new();
        for key in kv::list_keys(PREFIX)? {
            if let Some(seen) = kv::get_json::<Seen>(&key)? {
                found.push((seen.sequence, key[PREFIX.len()..].to_string()));
            }
        }
        found.sort();
        let next_sequence = found.last().map_or(0, |(sequence, _)| sequence + 1);
        let mut remembered = Remembered {
            capacity: capacity.max(1),
            order: found.into_iter().map(|(_, id)| id).collect(),
            next_sequence,
        };
        remembered.trim()?;
        Ok(remembered)
    }

    /// Looks `id` up.
    pub fn check(&self, id: &str) -> cairn_sdk::Result<Verdict> {
        Ok(match kv::get_json::<Seen>(&format!("{PREFIX}{id}"))? {
            Some(Seen {
                reply: Some((topic, payload)),
                ..
            }) => Verdict::Replay(topic, payload),
            Some(Seen { reply: None, .. }) => Verdict::Running,
            None => Verdict::New,
        })
    }

    /// Records that `id` runs in the background (its reply comes later).
    pub fn running(&mut self, id: &str) -> cairn_sdk::Result<()> {
        self.store(id, None)
    }

    /// Records the reply sent for `id`.
    pub fn finish(&mut self, id: &str, topic: &str, payload: &[u8]) -> cairn_sdk::Result<()> {
        self.store(id, Some((topic.to_string(), payload.to_vec())))
    }

    fn store(&mut self, id: &str, reply: Option<(String, Vec<u8>)>) -> cairn_sdk::Result<()> {
        let seen = Seen {
            sequence: self.next_sequence,
            reply,
        };
        self.next_sequence += 1;
        kv::set_json(&format!("{PREFIX}{id}"), &seen)?;
        if !self.order.iter().any(|known| known == id) {
            self.order.push_back(id.to_string());
        }
        self.trim()
    }

    fn trim(&mut self) -> cairn_sdk::Result<()> {
        while self.order.len() > self.capacity {
            if let Some(oldest) = self.order.pop_front() {
                kv::delete(&format!("{PREFIX}{oldest}"))?;
            }
        }
        Ok(())
    }
}
