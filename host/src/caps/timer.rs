//! `cairn:host/timer`: one-shot and periodic timers delivered as private events.

use std::collections::HashMap;
use std::time::Duration;

use serde::Deserialize;
use tokio::task::AbortHandle;
use wasmtime::component::Linker;

use super::{CapView, Capability, CapsData, HostSetup, InstanceCtx, InstanceSetup, ViewOf};
use crate::contract::EventQueue;
use crate::contract::bindings::cairn::host::timer as wit;
use crate::contract::bindings::{CapError, Event};

const MAX_DELAY: Duration = Duration::from_secs(30 * 24 * 3600);

pub struct Timer;

/// `[grants.timer]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct TimerGrant {
    /// Timers pending at once.
    #[serde(default = "default_max_timers")]
    pub max_timers: usize,
    /// Shortest period an interval timer may have.
    #[serde(
        default = "default_min_interval",
        deserialize_with = "crate::policy::serde_duration::deserialize"
    )]
    pub min_interval: Duration,
}

fn default_max_timers() -> usize {
    16
}

fn default_min_interval() -> Duration {
    Duration::from_millis(100)
}

impl Capability for Timer {
    const NAME: &'static str = "timer";
    const INTERFACES: &'static [&'static str] = &["cairn:host/timer"];
    type Grant = TimerGrant;
    type Shared = ();
    /// The instance's pending timers.
    type Local = Timers;

    fn validate(grant: &TimerGrant) -> Result<(), String> {
        if grant.min_interval < Duration::from_millis(1) {
            return Err("min-interval must be at least 1ms".into());
        }
        Ok(())
    }

    fn add_to_linker<T: CapsData>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
        wit::add_to_linker::<T, ViewOf<Timer>>(linker, |state| state.caps().view())
    }

    fn build(_: &HostSetup) -> anyhow::Result<()> {
        Ok(())
    }

    fn prepare(_: &(), _: Option<&TimerGrant>, _: &mut InstanceSetup<'_>) -> Timers {
        Timers::default()
    }

    fn instance_ended(_: &(), timers: &mut Timers, _: &InstanceCtx) {
        timers.cancel_all();
    }
}

/// The instance's pending timers.
#[derive(Default)]
pub struct Timers {
    next_id: u64,
    pending: HashMap<u64, AbortHandle>,
}

impl Timers {
    fn cancel_all(&mut self) {
        for (_, handle) in self.pending.drain() {
            handle.abort();
        }
    }
}

fn fire(link: &dyn EventQueue, topic: &str) {
    let event = Event {
        topic: topic.to_string(),
        payload: Vec::new(),
        source: "timer".into(),
    };
    if !link.deliver(event) {
        tracing::debug!("timer event `{topic}` dropped: the instance is gone or busy");
    }
}

impl CapView<'_, Timer> {
    fn schedule(&mut self, delay: Duration, repeat: bool, topic: String) -> Result<u64, CapError> {
        let grant = self.grant()?;
        if topic.is_empty() || topic.len() > 256 {
            return Err(CapError::Invalid(
                "a timer topic must be 1 to 256 bytes".into(),
            ));
        }
        if delay > MAX_DELAY {
            return Err(CapError::Invalid(format!(
                "delays above {MAX_DELAY:?} are not supported"
            )));
        }
        if repeat && delay < grant.min_interval {
            return Err(CapError::Invalid(format!(
                "interval {delay:?} is below the policy's min-interval {:?}",
                grant.min_interval
            )));
        }
        let max_timers = grant.max_timers;
        let timers = &mut *self.local;
        timers.pending.retain(|_, handle| !handle.is_finished());
        if timers.pending.len() >= max_timers {
            return Err(CapError::QuotaExceeded(format!(
                "at most {max_timers} timers may be pending"
            )));
        }
        let link = self.ctx.link.clone();
        let task = tokio::spawn(async move {
            if repeat {
                let mut ticks =
                    tokio::time::interval_at(tokio::time::Instant::now() + delay, delay);
                ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
                loop {
                    ticks.tick().await;
                    fire(&*link, &topic);
                }
            } else {
                tokio::time::sleep(delay).await;
                fire(&*link, &topic);
            }
        });
        timers.next_id += 1;
        timers.pending.insert(timers.next_id, task.abort_handle());
        Ok(timers.next_id)
    }
}

impl wit::Host for CapView<'_, Timer> {
    async fn once(&mut self, delay_ms: u64, topic: String) -> Result<u64, CapError> {
        self.schedule(Duration::from_millis(delay_ms), false, topic)
    }

    async fn interval(&mut self, period_ms: u64, topic: String) -> Result<u64, CapError> {
        self.schedule(Duration::from_millis(period_ms), true, topic)
    }

    async fn cancel(&mut self, id: u64) -> Result<bool, CapError> {
        self.grant()?;
        Ok(match self.local.pending.remove(&id) {
            Some(handle) => {
                let pending = !handle.is_finished();
                handle.abort();
                pending
            }
            None => false,
        })
    }
}
