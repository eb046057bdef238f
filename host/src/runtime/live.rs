//! The instance a release's actor owns: started with `init`, serving one job at
//! a time, and shut down with `shutdown`.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, oneshot};
use wasmtime::Store;

use super::fault::{CallError, Fault, StartError};
use super::instance::{self, InstanceLinks, InstanceState};
use super::release::{ActorLink, Job, ReleaseSpec, RuntimeEnv, ticks_for};
use crate::contract::bindings::{Health, Plugin};

/// The running instance: its store, exports and pool slot.
pub(super) struct Live {
    pub(super) store: Store<InstanceState>,
    /// None for a component that only serves HTTP.
    pub(super) plugin: Option<Plugin>,
    pub(super) started: Instant,
    _permit: OwnedSemaphorePermit,
}

impl Live {
    pub(super) async fn start(
        spec: &ReleaseSpec,
        env: &RuntimeEnv,
        link: &ActorLink,
        memory: &Arc<AtomicU64>,
    ) -> Result<Live, StartError> {
        let permit = tokio::time::timeout(
            Duration::from_secs(5),
            env.instance_permits.clone().acquire_owned(),
        )
        .await
        .map_err(|_| StartError::PoolExhausted)?
        .map_err(|_| StartError::PoolExhausted)?;
        let state = InstanceState::new(
            spec.identity.clone(),
            spec.grants.clone(),
            &spec.config_json,
            env.caps.clone(),
            InstanceLinks {
                link: Arc::new(link.clone()),
                host: env.host.clone(),
            },
            spec.limits.memory,
            memory.clone(),
        );
        let mut store = Store::new(&env.engine, state);
        instance::configure_store(&mut store);
        instance::begin_call(
            &mut store,
            ticks_for(spec.limits.call_timeout, env.epoch_tick),
        );
        let Some(pre) = &spec.plugin else {
            // HTTP only: instantiating once proves the component starts.
            let http = spec.http.as_ref().ok_or_else(|| {
                StartError::Init("the component has no exports the host can call".into())
            })?;
            return match http.instantiate_async(&mut store).await {
                Ok(_) => Ok(Live {
                    store,
                    plugin: None,
                    started: Instant::now(),
                    _permit: permit,
                }),
                Err(err) => Err(StartError::Fault(Fault::classify(store.data(), &err))),
            };
        };
        let plugin = match pre.instantiate_async(&mut store).await {
            Ok(plugin) => plugin,
            Err(err) => return Err(StartError::Fault(Fault::classify(store.data(), &err))),
        };
        let init = plugin
            .cairn_plugin_lifecycle()
            .call_init(&mut store, &spec.config_json)
            .await;
        match init {
            Ok(Ok(())) => Ok(Live {
                store,
                plugin: Some(plugin),
                started: Instant::now(),
                _permit: permit,
            }),
            Ok(Err(message)) => Err(StartError::Init(message)),
            Err(err) => Err(StartError::Fault(Fault::classify(store.data(), &err))),
        }
    }

    /// Serves one job; a fault leaves the instance unusable and is returned.
    pub(super) async fn serve(&mut self, job: Job, ticks: u64) -> Result<(), Fault> {
        let Some(plugin) = &self.plugin else {
            serve_without_exports(job, self.store.data().plugin());
            return Ok(());
        };
        instance::begin_call(&mut self.store, ticks);
        let store = &mut self.store;
        match job {
            Job::Command {
                command,
                payload,
                reply,
            } => {
                let outcome = plugin
                    .cairn_plugin_handlers()
                    .call_on_command(&mut *store, &command, &payload)
                    .await;
                answer_fallible(reply, settle(store, outcome))
            }
            Job::Event(event) => {
                let outcome = plugin
                    .cairn_plugin_handlers()
                    .call_on_event(&mut *store, &event)
                    .await;
                match settle(store, outcome)? {
                    Ok(()) => Ok(()),
                    Err(message) => {
                        tracing::warn!(plugin = %store.data().plugin(), topic = %event.topic, "event handler failed: {message}");
                        Ok(())
                    }
                }
            }
            Job::Snapshot { reply } => {
                let outcome = plugin
                    .cairn_plugin_lifecycle()
                    .call_snapshot(&mut *store)
                    .await;
                answer(reply, settle(store, outcome))
            }
            Job::Restore { state, reply } => {
                let outcome = plugin
                    .cairn_plugin_lifecycle()
                    .call_restore(&mut *store, &state)
                    .await;
                answer_fallible(reply, settle(store, outcome))
            }
            Job::Health { reply } => {
                let outcome = plugin
                    .cairn_plugin_lifecycle()
                    .call_health(&mut *store)
                    .await;
                answer(reply, settle(store, outcome))
            }
        }
    }

    pub(super) async fn shutdown(&mut self, ticks: u64) {
        let Some(plugin) = &self.plugin else { return };
        instance::begin_call(&mut self.store, ticks);
        if let Err(err) = plugin
            .cairn_plugin_lifecycle()
            .call_shutdown(&mut self.store)
            .await
        {
            tracing::warn!(plugin = %self.store.data().plugin(), "shutdown failed: {err:#}");
        }
    }
}

/// Answers jobs for a component that only serves HTTP: it is always healthy,
/// keeps no state, and has no commands.
fn serve_without_exports(job: Job, plugin: &str) {
    match job {
        Job::Command { reply, .. } => {
            let _ = reply.send(Err(CallError::Plugin(format!(
                "`{plugin}` only serves HTTP: it has no commands"
            ))));
        }
        Job::Event(_) => {}
        Job::Snapshot { reply } => drop(reply.send(Ok(None))),
        Job::Restore { reply, .. } => drop(reply.send(Ok(false))),
        Job::Health { reply } => drop(reply.send(Ok(Health::Ok))),
    }
}

/// Turns a wasmtime error (a trap, deadline or memory exhaustion) into a fault.
fn settle<R>(store: &Store<InstanceState>, outcome: wasmtime::Result<R>) -> Result<R, Fault> {
    outcome.map_err(|err| Fault::classify(store.data(), &err))
}

/// Replies to an export that itself returns `result<R, string>`: its error is
/// the plugin's, a fault is the host's.
fn answer_fallible<R>(
    reply: oneshot::Sender<Result<R, CallError>>,
    outcome: Result<Result<R, String>, Fault>,
) -> Result<(), Fault> {
    match outcome {
        Ok(Err(message)) => {
            let _ = reply.send(Err(CallError::Plugin(message)));
            Ok(())
        }
        Ok(Ok(value)) => answer(reply, Ok(value)),
        Err(fault) => answer(reply, Err(fault)),
    }
}

fn answer<R>(
    reply: oneshot::Sender<Result<R, CallError>>,
    outcome: Result<R, Fault>,
) -> Result<(), Fault> {
    match outcome {
        Ok(value) => {
            let _ = reply.send(Ok(value));
            Ok(())
        }
        Err(fault) => {
            let _ = reply.send(Err(CallError::Fault(fault.clone())));
            Err(fault)
        }
    }
}
