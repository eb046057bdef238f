//! `counter`: keeps one count.
//!
//! The count is persisted in kv under `count` after every change and handed to
//! the next release through snapshot/restore, so it survives restarts and hot
//! swaps. Every change is published on `counter/changed` as `{"count":N}` and
//! exported as the gauge `count`.
//!
//! Commands (JSON replies):
//! - `get` → `{"count":N}`
//! - `increment`, payload optional `{"by":N}` (default 1) → `{"count":N}`
//! - `reset` → `{"count":0}`
//! - `version` → `{"version":"..."}`

use cairn_sdk::{CommandError, Commands, Config, Plugin, events, kv, metrics};
use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};

const COUNT_KEY: &str = "count";
const CHANGED_TOPIC: &str = "counter/changed";

struct Counter {
    count: u64,
}

#[derive(Serialize, Deserialize)]
struct CountMessage {
    count: u64,
}

#[derive(Deserialize)]
struct IncrementRequest {
    #[serde(default = "one")]
    by: u64,
}

#[derive(Serialize)]
struct VersionMessage {
    version: &'static str,
}

fn one() -> u64 {
    1
}

impl Counter {
    fn reply(&self) -> CountMessage {
        CountMessage { count: self.count }
    }

    /// Persists first so that the in-memory count never runs ahead of kv.
    fn set_count(&mut self, count: u64) -> Result<(), cairn_sdk::Error> {
        kv::set_json(COUNT_KEY, &count)?;
        self.count = count;
        self.announce();
        Ok(())
    }

    /// Announcing is best effort: the count is already stored, and a missing
    /// subscriber or metrics series must not fail the command.
    fn announce(&self) {
        if let Err(error) = events::publish_json(CHANGED_TOPIC, &CountMessage { count: self.count })
        {
            cairn_sdk::warn!("could not publish {CHANGED_TOPIC}: {error}");
        }
        self.export_gauge();
    }

    fn export_gauge(&self) {
        // A gauge is an f64; counts beyond 2^53 lose precision there, not in kv.
        if let Err(error) = metrics::gauge_set("count", &[], self.count as f64) {
            cairn_sdk::warn!("could not set gauge: {error}");
        }
    }

    fn get(&mut self, _: IgnoredAny) -> Result<CountMessage, CommandError> {
        Ok(self.reply())
    }

    /// The payload is optional: no payload (or `null`) increments by one.
    fn increment(
        &mut self,
        request: Option<IncrementRequest>,
    ) -> Result<CountMessage, CommandError> {
        let by = request.map_or(1, |request| request.by);
        let count = self.count.checked_add(by).ok_or_else(|| {
            CommandError::invalid(format!("incrementing {} by {by} overflows", self.count))
        })?;
        self.set_count(count)?;
        Ok(self.reply())
    }

    fn reset(&mut self, _: IgnoredAny) -> Result<CountMessage, CommandError> {
        self.set_count(0)?;
        Ok(self.reply())
    }

    fn version(&mut self, _: IgnoredAny) -> Result<VersionMessage, CommandError> {
        Ok(VersionMessage {
            version: cairn_sdk::plugin_version!(),
        })
    }
}

impl Plugin for Counter {
    fn init(_config: Config) -> Result<Self, String> {
        let count = kv::get_json::<u64>(COUNT_KEY)?.unwrap_or(0);
        let counter = Counter { count };
        counter.export_gauge();
        cairn_sdk::info!("counter starting at {count}");
        Ok(counter)
    }

    fn commands() -> Commands<Self> {
        Commands::new()
            .command("get", Self::get)
            .command("increment", Self::increment)
            .command("reset", Self::reset)
            .command("version", Self::version)
    }

    fn snapshot(&self) -> Option<Vec<u8>> {
        serde_json::to_vec(&CountMessage { count: self.count }).ok()
    }

    fn restore(&mut self, state: &[u8]) -> Result<bool, String> {
        let Ok(CountMessage { count }) = serde_json::from_slice(state) else {
            return Ok(false);
        };
        // `init` read kv while the previous release may still have been serving
        // commands; its snapshot is taken after that and is the newer count.
        self.count = count;
        self.export_gauge();
        Ok(true)
    }
}

cairn_sdk::export_plugin!(Counter);

#[cfg(test)]
mod tests {
    use cairn_sdk::testing::Harness;
    use serde_json::{Value, json};

    use super::*;

    #[test]
    fn increments_persist_and_announce() {
        let mut counter = Harness::<Counter>::init("{}").unwrap();
        let reply: Value = counter.call("increment", &json!({"by": 2})).unwrap();
        assert_eq!(reply["count"], 2);
        let reply: Value = counter.call("increment", &()).unwrap();
        assert_eq!(reply["count"], 3);
        let host = counter.host();
        assert_eq!(host.kv_get(COUNT_KEY).as_deref(), Some(&b"3"[..]));
        assert_eq!(host.gauge("count"), Some(3.0));
        let announced = host.published();
        assert_eq!(announced.len(), 2);
        assert_eq!(announced[1].topic, CHANGED_TOPIC);

        // A restart reads the count back from kv.
        let mut restarted = Harness::<Counter>::start("{}").unwrap();
        let reply: Value = restarted.call("get", &()).unwrap();
        assert_eq!(reply["count"], 3);
    }

    #[test]
    fn bad_calls_get_error_codes() {
        let mut counter = Harness::<Counter>::init("{}").unwrap();
        let err = counter
            .call::<_, Value>("increment", &json!({"by": "two"}))
            .unwrap_err();
        assert_eq!(err.code, "invalid");
        assert!(err.message.starts_with("increment: "), "{err}");
        counter
            .host()
            .kv_set(COUNT_KEY, u64::MAX.to_string().as_bytes());
        let mut full = Harness::<Counter>::start("{}").unwrap();
        let err = full.call::<_, Value>("increment", &()).unwrap_err();
        assert!(err.message.contains("overflows"), "{err}");
        let err = full.call::<_, Value>("frobnicate", &()).unwrap_err();
        assert_eq!(err.code, "not-found");
        assert!(
            err.message
                .contains("(expected get, increment, reset or version)")
        );
    }
}
