//! A running release of a plugin: one actor task that owns the instance's store
//! and serves calls in order.
//!
//! Callers hold an `Arc<Release>`; the task ends once every holder has let go and
//! the queued calls are served. That is what makes a hot swap lossless: the kernel
//! points new calls at the new release, and calls already queued on the old one
//! still finish there.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{Semaphore, mpsc, oneshot};
use wasmtime::Engine;
use wasmtime::component::{Component, InstancePre, Linker};

use super::fault::{CallError, Fault, StartError};
use super::http_instances::HttpInstances;
use super::instance::{InstanceState, PluginIdentity};
use super::latency::LatencyHistogram;
use super::live::Live;
use crate::caps::{Grants, SharedCaps};
use crate::contract::bindings::{Event, Health, PluginPre};
use crate::contract::{EventQueue, HostFuture, HostLink};
use crate::policy::Limits;
use crate::state::digest::Digest;
use wasmtime_wasi_http::p2::bindings::ProxyPre;

const QUEUE_DEPTH: usize = 256;

/// What every release needs from the runtime.
pub struct RuntimeEnv {
    pub engine: Engine,
    pub linker: Linker<InstanceState>,
    /// The capabilities' host-wide state, which every instance's capabilities share.
    pub caps: Arc<SharedCaps>,
    /// The kernel, as capabilities reach it.
    pub host: HostLink,
    /// One permit per live instance: the pooling allocator has a fixed number of slots.
    pub instance_permits: Arc<Semaphore>,
    pub faults: mpsc::UnboundedSender<FaultReport>,
    pub epoch_tick: Duration,
}

/// Sent to the kernel's supervisor whenever an instance faults.
#[derive(Debug, Clone)]
pub struct FaultReport {
    pub plugin: String,
    pub release_id: u64,
    pub fault: Fault,
}

/// Everything needed to (re)create instances of one release.
pub struct ReleaseSpec {
    pub identity: PluginIdentity,
    pub digest: Digest,
    /// The `cairn:plugin` exports, when the component has them.
    pub plugin: Option<PluginPre<InstanceState>>,
    /// The `wasi:http/incoming-handler` export, when the component has it.
    pub http: Option<ProxyPre<InstanceState>>,
    pub grants: Arc<Grants>,
    pub limits: Limits,
    /// The policy's `[config]` table as JSON, handed to `init`.
    pub config_json: String,
}

impl ReleaseSpec {
    /// Links `component` against the host's capabilities once; instances are
    /// then created from the result cheaply. A component must export the
    /// `cairn:plugin` interfaces, `wasi:http/incoming-handler`, or both.
    #[allow(clippy::type_complexity, reason = "the two optional export sets")]
    pub fn prepare(
        env: &RuntimeEnv,
        component: &Component,
    ) -> anyhow::Result<(
        Option<PluginPre<InstanceState>>,
        Option<ProxyPre<InstanceState>>,
    )> {
        let pre: InstancePre<InstanceState> = env.linker.instantiate_pre(component)?;
        let plugin = PluginPre::new(pre.clone()).ok();
        let http = ProxyPre::new(pre).ok();
        if plugin.is_none() && http.is_none() {
            anyhow::bail!(
                "the component exports neither the cairn:plugin interfaces (lifecycle and handlers) nor wasi:http/incoming-handler"
            );
        }
        Ok((plugin, http))
    }
}

/// Lifecycle state of a release, as shown by `cairn plugin list`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ReleaseState {
    Running = 0,
    Restarting = 1,
    Stopped = 2,
}

impl ReleaseState {
    pub fn as_str(self) -> &'static str {
        match self {
            ReleaseState::Running => "running",
            ReleaseState::Restarting => "restarting",
            ReleaseState::Stopped => "stopped",
        }
    }
}

/// Counters of one release, read by status and metrics.
#[derive(Default)]
pub struct ReleaseStats {
    pub calls: AtomicU64,
    pub errors: AtomicU64,
    pub faults: AtomicU64,
    pub restarts: AtomicU32,
    pub events_dropped: AtomicU64,
    /// Time of each command and HTTP request, queueing included.
    pub latency: LatencyHistogram,
    /// Linear memory of all of the release's instances together.
    pub memory_bytes: Arc<AtomicU64>,
    state: AtomicU8,
    pub last_fault: std::sync::Mutex<Option<String>>,
}

impl ReleaseStats {
    pub fn state(&self) -> ReleaseState {
        match self.state.load(Ordering::Relaxed) {
            0 => ReleaseState::Running,
            1 => ReleaseState::Restarting,
            _ => ReleaseState::Stopped,
        }
    }

    fn set_state(&self, state: ReleaseState) {
        self.state.store(state as u8, Ordering::Relaxed);
    }
}

/// Work for the actor.
pub enum Job {
    Command {
        command: String,
        payload: Vec<u8>,
        reply: oneshot::Sender<Result<Vec<u8>, CallError>>,
    },
    Event(Event),
    Snapshot {
        reply: oneshot::Sender<Result<Option<Vec<u8>>, CallError>>,
    },
    Restore {
        state: Vec<u8>,
        reply: oneshot::Sender<Result<bool, CallError>>,
    },
    Health {
        reply: oneshot::Sender<Result<Health, CallError>>,
    },
}

impl Job {
    fn reject(self, error: CallError) {
        match self {
            Job::Command { reply, .. } => drop(reply.send(Err(error))),
            Job::Snapshot { reply } => drop(reply.send(Err(error))),
            Job::Restore { reply, .. } => drop(reply.send(Err(error))),
            Job::Health { reply } => drop(reply.send(Err(error))),
            Job::Event(_) => {}
        }
    }
}

/// A started release. Dropping the last handle stops it after its queue drains.
pub struct Release {
    pub id: u64,
    pub identity: PluginIdentity,
    pub digest: Digest,
    pub limits: Limits,
    pub stats: Arc<ReleaseStats>,
    /// Id of the release currently serving this plugin, shared by all its
    /// releases: switching it is one atomic store, so subscriptions deliver to
    /// exactly one release at any instant.
    pub activation: Arc<AtomicU64>,
    pub started_at: Instant,
    /// What the policy grants it (the HTTP routes, among others).
    pub grants: Arc<Grants>,
    /// Serves HTTP requests, when the component exports a handler.
    pub http: Option<Arc<HttpInstances>>,
    tx: mpsc::Sender<Job>,
}

static NEXT_RELEASE_ID: AtomicU64 = AtomicU64::new(1);

impl Release {
    /// Instantiates the release and runs its `init`; on success the actor is
    /// running (not yet active) and serving calls.
    pub async fn start(
        spec: ReleaseSpec,
        env: Arc<RuntimeEnv>,
        activation: Arc<AtomicU64>,
    ) -> Result<Arc<Release>, StartError> {
        let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
        let id = NEXT_RELEASE_ID.fetch_add(1, Ordering::Relaxed);
        let link = ActorLink {
            tx: tx.downgrade(),
            activation: activation.clone(),
            release_id: id,
        };
        let stats: Arc<ReleaseStats> = Arc::default();
        let live = Live::start(&spec, &env, &link, &stats.memory_bytes).await?;
        let http = spec.http.clone().map(|pre| {
            Arc::new(HttpInstances::new(
                pre,
                env.clone(),
                spec.identity.clone(),
                spec.grants.clone(),
                spec.config_json.as_str().into(),
                spec.limits.clone(),
                link.clone(),
                stats.clone(),
                id,
            ))
        });
        let release = Arc::new(Release {
            id,
            identity: spec.identity.clone(),
            digest: spec.digest.clone(),
            limits: spec.limits.clone(),
            stats,
            activation,
            started_at: Instant::now(),
            grants: spec.grants.clone(),
            http,
            tx,
        });
        let actor = Actor {
            spec,
            env,
            link,
            stats: release.stats.clone(),
            release_id: release.id,
        };
        tokio::spawn(actor.run(live, rx));
        Ok(release)
    }

    /// Runs a command, waiting at most `wait` for the queue and the call.
    pub async fn command(
        &self,
        command: &str,
        payload: Vec<u8>,
        wait: Duration,
    ) -> Result<Vec<u8>, CallError> {
        self.stats.calls.fetch_add(1, Ordering::Relaxed);
        let started = Instant::now();
        let result = self
            .ask(wait, |reply| Job::Command {
                command: command.to_string(),
                payload,
                reply,
            })
            .await;
        self.stats.latency.observe(started.elapsed());
        if result.is_err() {
            self.stats.errors.fetch_add(1, Ordering::Relaxed);
        }
        result
    }

    /// Queues an event without waiting; returns false (and counts it) when the
    /// queue is full or the release has stopped.
    pub fn deliver(&self, event: Event) -> bool {
        let queued = self.tx.try_send(Job::Event(event)).is_ok();
        if !queued {
            self.stats.events_dropped.fetch_add(1, Ordering::Relaxed);
        }
        queued
    }

    pub async fn snapshot(&self, wait: Duration) -> Result<Option<Vec<u8>>, CallError> {
        self.ask(wait, |reply| Job::Snapshot { reply }).await
    }

    pub async fn restore(&self, state: Vec<u8>, wait: Duration) -> Result<bool, CallError> {
        self.ask(wait, |reply| Job::Restore { state, reply }).await
    }

    pub async fn health(&self, wait: Duration) -> Result<Health, CallError> {
        self.ask(wait, |reply| Job::Health { reply }).await
    }

    /// Makes this release the one serving its plugin.
    pub fn activate(&self) {
        self.activation.store(self.id, Ordering::Release);
    }

    pub fn is_active(&self) -> bool {
        self.activation.load(Ordering::Acquire) == self.id
    }

    async fn ask<R>(
        &self,
        wait: Duration,
        job: impl FnOnce(oneshot::Sender<Result<R, CallError>>) -> Job,
    ) -> Result<R, CallError> {
        let (reply, answer) = oneshot::channel();
        let exchange = async {
            self.tx
                .send(job(reply))
                .await
                .map_err(|_| CallError::Unavailable("the plugin has stopped".into()))?;
            answer
                .await
                .map_err(|_| CallError::Unavailable("the plugin stopped before answering".into()))?
        };
        match tokio::time::timeout(wait, exchange).await {
            Ok(result) => result,
            Err(_) => Err(CallError::Timeout(wait)),
        }
    }
}

/// How an instance's capabilities reach back to its actor without keeping it alive.
#[derive(Clone)]
pub struct ActorLink {
    pub tx: mpsc::WeakSender<Job>,
    activation: Arc<AtomicU64>,
    release_id: u64,
}

impl ActorLink {
    /// Queues an event for the instance; false if it is gone or its queue is full.
    pub fn deliver(&self, event: Event) -> bool {
        self.tx
            .upgrade()
            .is_some_and(|tx| tx.try_send(Job::Event(event)).is_ok())
    }

    /// Queues an event for the instance, waiting up to `wait` for room in its
    /// queue; false if it is gone or the queue stayed full.
    pub async fn deliver_waiting(&self, event: Event, wait: Duration) -> bool {
        let Some(tx) = self.tx.upgrade() else {
            return false;
        };
        matches!(
            tokio::time::timeout(wait, tx.send(Job::Event(event))).await,
            Ok(Ok(()))
        )
    }

    /// Whether the instance's actor has stopped.
    pub fn is_gone(&self) -> bool {
        self.tx.upgrade().is_none()
    }

    /// Whether the instance belongs to the release serving its plugin.
    pub fn is_active(&self) -> bool {
        self.activation.load(Ordering::Acquire) == self.release_id
    }
}

impl EventQueue for ActorLink {
    fn deliver(&self, event: Event) -> bool {
        ActorLink::deliver(self, event)
    }

    fn deliver_waiting(&self, event: Event, wait: Duration) -> HostFuture<'_, bool> {
        Box::pin(ActorLink::deliver_waiting(self, event, wait))
    }

    fn is_active(&self) -> bool {
        ActorLink::is_active(self)
    }

    fn is_gone(&self) -> bool {
        ActorLink::is_gone(self)
    }
}

struct Actor {
    spec: ReleaseSpec,
    env: Arc<RuntimeEnv>,
    link: ActorLink,
    stats: Arc<ReleaseStats>,
    release_id: u64,
}

impl Actor {
    async fn run(self, first: Live, mut rx: mpsc::Receiver<Job>) {
        let base = self.spec.limits.restart_backoff;
        let mut backoff = base;
        let mut live = Some(first);
        let mut restart_at = Instant::now();
        loop {
            let Some(current) = live.as_mut() else {
                // Faulted: refuse work until the backoff has passed, then restart.
                tokio::select! {
                    _ = tokio::time::sleep_until(restart_at.into()) => {
                        match Live::start(&self.spec, &self.env, &self.link, &self.stats.memory_bytes).await {
                            Ok(fresh) => {
                                self.stats.restarts.fetch_add(1, Ordering::Relaxed);
                                self.stats.set_state(ReleaseState::Running);
                                tracing::info!(plugin = %self.spec.identity.name, "restarted");
                                live = Some(fresh);
                            }
                            Err(err) => {
                                tracing::warn!(plugin = %self.spec.identity.name, "restart failed: {err}");
                                backoff = (backoff * 2).min(self.spec.limits.restart_backoff_max);
                                restart_at = Instant::now() + backoff;
                            }
                        }
                    }
                    job = rx.recv() => match job {
                        Some(job) => job.reject(CallError::Unavailable(format!(
                            "restarting after a fault, next attempt in {:.1}s",
                            restart_at.saturating_duration_since(Instant::now()).as_secs_f64()
                        ))),
                        None => break,
                    },
                }
                continue;
            };
            let Some(job) = rx.recv().await else { break };
            if let Err(fault) = current.serve(job, self.ticks()).await {
                let uptime = current.started.elapsed();
                live = None;
                // A release that ran well for a while starts its backoff afresh.
                if uptime > self.spec.limits.restart_backoff_max {
                    backoff = base;
                }
                restart_at = Instant::now() + backoff;
                backoff = (backoff * 2).min(self.spec.limits.restart_backoff_max);
                self.report(fault);
            }
        }
        if let Some(mut current) = live {
            current.shutdown(self.ticks()).await;
        }
        self.stats.set_state(ReleaseState::Stopped);
    }

    fn ticks(&self) -> u64 {
        ticks_for(self.spec.limits.call_timeout, self.env.epoch_tick)
    }

    fn report(&self, fault: Fault) {
        self.stats.faults.fetch_add(1, Ordering::Relaxed);
        self.stats.set_state(ReleaseState::Restarting);
        if let Ok(mut last) = self.stats.last_fault.lock() {
            *last = Some(fault.to_string());
        }
        tracing::error!(plugin = %self.spec.identity.name, version = %self.spec.identity.version, "fault: {fault}; restarting with backoff");
        let _ = self.env.faults.send(FaultReport {
            plugin: self.spec.identity.name.to_string(),
            release_id: self.release_id,
            fault,
        });
    }
}

pub(super) fn ticks_for(limit: Duration, tick: Duration) -> u64 {
    (limit.as_nanos() / tick.as_nanos().max(1)).max(1) as u64
}
