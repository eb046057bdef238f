//! Commands are executed once per correlation id: the ids of recent commands
//! and their replies are kept in kv (so a restart or a swap remembers them),
//! and a command arriving again gets the first reply again.
//!
//! The ids live in a ring of `capacity` kv slots (`seen/<slot>`): recording a
//! command overwrites the oldest slot, so each command costs one kv write.

use std::collections::HashMap;

use cairn_sdk::kv;
use serde::{Deserialize, Serialize};

const PREFIX: &str = "seen/";

/// What is remembered of one command, in its slot.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Seen {
    id: String,
    /// Orders the slots, so a restart continues after the newest.
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

/// The remembered commands: which slot holds which id.
pub struct Remembered {
    /// Each slot's id and sequence number.
    slots: Vec<Option<(String, u64)>>,
    by_id: HashMap<String, usize>,
    next_slot: usize,
    next_sequence: u64,
}

fn key(slot: usize) -> String {
    format!("{PREFIX}{slot}")
}

impl Remembered {
    /// Loads what earlier runs remembered.
    pub fn load(capacity: usize) -> cairn_sdk::Result<Remembered> {
        let capacity = capacity.max(1);
        let mut remembered = Remembered {
            slots: vec![None; capacity],
            by_id: HashMap::new(),
            next_slot: 0,
            next_sequence: 0,
        };
        let mut newest: Option<(u64, usize)> = None;
        for slot in 0..capacity {
            let Some(seen) = kv::get_json::<Seen>(&key(slot))? else {
                continue;
            };
            if newest.is_none_or(|(sequence, _)| seen.sequence > sequence) {
                newest = Some((seen.sequence, slot));
            }
            remembered.by_id.insert(seen.id.clone(), slot);
            remembered.slots[slot] = Some((seen.id, seen.sequence));
        }
        if let Some((sequence, slot)) = newest {
            remembered.next_sequence = sequence + 1;
            remembered.next_slot = (slot + 1) % capacity;
        }
        Ok(remembered)
    }

    /// Looks `id` up.
    pub fn check(&self, id: &str) -> cairn_sdk::Result<Verdict> {
        let Some(slot) = self.by_id.get(id) else {
            return Ok(Verdict::New);
        };
        Ok(match kv::get_json::<Seen>(&key(*slot))? {
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

    /// Writes `id`'s record: into its slot when it has one (a finished
    /// install), else over the oldest slot.
    fn store(&mut self, id: &str, reply: Option<(String, Vec<u8>)>) -> cairn_sdk::Result<()> {
        let (slot, sequence) = match self.by_id.get(id) {
            // A finished install keeps its place in the ring.
            Some(slot) => (*slot, self.slots[*slot].as_ref().map_or(0, |(_, seq)| *seq)),
            None => {
                let slot = self.next_slot;
                self.next_slot = (slot + 1) % self.slots.len();
                self.next_sequence += 1;
                (slot, self.next_sequence - 1)
            }
        };
        let seen = Seen {
            id: id.to_string(),
            sequence,
            reply,
        };
        kv::set_json(&key(slot), &seen)?;
        if let Some((evicted, _)) = self.slots[slot].replace((id.to_string(), sequence))
            && evicted != id
        {
            self.by_id.remove(&evicted);
        }
        self.by_id.insert(id.to_string(), slot);
        Ok(())
    }
}
