//! Instances that serve `wasi:http/incoming-handler` requests for one release.
//!
//! Unlike commands and events (served in order by the release's actor), requests
//! run concurrently: each takes an idle instance or instantiates a new one, and a
//! healthy instance goes back to the idle list when its handler returns, so the
//! common case costs no instantiation at all. An instance that faults is dropped
//! and reported like any other fault.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use tokio::sync::{OwnedSemaphorePermit, oneshot};
use wasmtime::Store;
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::bindings::{Proxy, ProxyPre};
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

use super::fault::Fault;
use super::instance::{self, InstanceLinks, InstanceState, PluginIdentity};
use super::release::{ActorLink, FaultReport, ReleaseStats, RuntimeEnv, ticks_for};
use crate::caps::Grants;
use crate::contract::{HostFuture, HttpFailure, HttpHandler};
use crate::policy::Limits;

/// Idle instances kept per release; more are created under load and dropped after.
const MAX_IDLE: usize = 16;

struct Idle {
    store: Store<InstanceState>,
    proxy: Proxy,
    _permit: OwnedSemaphorePermit,
}

/// What a release needs to serve HTTP.
pub struct HttpInstances {
    pub(super) pre: ProxyPre<InstanceState>,
    pub(super) env: Arc<RuntimeEnv>,
    pub(super) identity: PluginIdentity,
    pub(super) grants: Arc<Grants>,
    /// The plugin's `[config]` as JSON (handed to each instance's environment).
    pub(super) config_json: Arc<str>,
    pub(super) limits: Limits,
    pub(super) link: ActorLink,
    pub(super) stats: Arc<ReleaseStats>,
    pub(super) release_id: u64,
    idle: Mutex<Vec<Idle>>,
}

impl HttpInstances {
    #[allow(
        clippy::too_many_arguments,
        reason = "built in one place, from the release"
    )]
    pub(super) fn new(
        pre: ProxyPre<InstanceState>,
        env: Arc<RuntimeEnv>,
        identity: PluginIdentity,
        grants: Arc<Grants>,
        config_json: Arc<str>,
        limits: Limits,
        link: ActorLink,
        stats: Arc<ReleaseStats>,
        release_id: u64,
    ) -> HttpInstances {
        HttpInstances {
            pre,
            env,
            identity,
            grants,
            config_json,
            limits,
            link,
            stats,
            release_id,
            idle: Mutex::new(Vec::new()),
        }
    }

    /// Runs the plugin's handler on `request` and returns its response. The
    /// response is returned as soon as the handler sets it; its body streams
    /// while the handler goes on writing it.
    pub async fn respond(
        self: &Arc<Self>,
        request: http::Request<Full<Bytes>>,
        https: bool,
    ) -> Result<http::Response<HyperOutgoingBody>, HttpFailure> {
        self.stats
            .calls
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let started = std::time::Instant::now();
        let scheme = if https { Scheme::Https } else { Scheme::Http };
        let answer = self.serve(request, scheme).await;
        self.stats.latency.observe(started.elapsed());
        answer
    }

    async fn serve(
        self: &Arc<Self>,
        request: http::Request<Full<Bytes>>,
        scheme: Scheme,
    ) -> Result<http::Response<HyperOutgoingBody>, HttpFailure> {
        let Idle {
            mut store,
            proxy,
            _permit,
        } = match self.take_idle() {
            Some(idle) => idle,
            None => self.instantiate().await?,
        };
        let (sender, receiver) = oneshot::channel();
        let prepared: wasmtime::Result<_> = (|| {
            let mut http = store.data_mut().http();
            let request = http.new_incoming_request(scheme, request)?;
            let outparam = http.new_response_outparam(sender)?;
            Ok((request, outparam))
        })();
        let (request, outparam) = prepared
            .map_err(|err| HttpFailure::Unavailable(format!("cannot pass the request: {err:#}")))?;
        instance::begin_call(
            &mut store,
            ticks_for(self.limits.call_timeout, self.env.epoch_tick),
        );
        let this = self.clone();
        let handler = tokio::spawn(async move {
            let outcome = proxy
                .wasi_http_incoming_handler()
                .call_handle(&mut store, request, outparam)
                .await;
            match outcome {
                Ok(()) => {
                    this.put_idle(Idle {
                        store,
                        proxy,
                        _permit,
                    });
                    Ok(())
                }
                Err(err) => Err(this.fault(Fault::classify(store.data(), &err))),
            }
        });
        match receiver.await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(code)) => {
                self.stats
                    .errors
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                Err(HttpFailure::Guest(code))
            }
            // The outparam was dropped unset: the handler returned or faulted.
            Err(_) => match handler.await {
                Ok(Err(fault)) => Err(HttpFailure::Fault(fault.to_string())),
                _ => Err(HttpFailure::NoResponse),
            },
        }
    }

    fn take_idle(&self) -> Option<Idle> {
        self.idle.lock().ok()?.pop()
    }

    fn put_idle(&self, idle: Idle) {
        if let Ok(mut list) = self.idle.lock()
            && list.len() < MAX_IDLE
        {
            list.push(idle);
        }
    }

    async fn instantiate(&self) -> Result<Idle, HttpFailure> {
        let permit = tokio::time::timeout(
            Duration::from_secs(5),
            self.env.instance_permits.clone().acquire_owned(),
        )
        .await
        .map_err(|_| HttpFailure::Unavailable("every instance slot is in use".into()))?
        .map_err(|_| HttpFailure::Unavailable("the host is shutting down".into()))?;
        let state = InstanceState::new(
            self.identity.clone(),
            self.grants.clone(),
            &self.config_json,
            self.env.caps.clone(),
            InstanceLinks {
                link: Arc::new(self.link.clone()),
                host: self.env.host.clone(),
            },
            self.limits.memory,
            self.stats.memory_bytes.clone(),
        );
        let mut store = Store::new(&self.env.engine, state);
        instance::configure_store(&mut store);
        instance::begin_call(
            &mut store,
            ticks_for(self.limits.call_timeout, self.env.epoch_tick),
        );
        match self.pre.instantiate_async(&mut store).await {
            Ok(proxy) => Ok(Idle {
                store,
                proxy,
                _permit: permit,
            }),
            Err(err) => {
                let fault = self.fault(Fault::classify(store.data(), &err));
                Err(HttpFailure::Unavailable(format!(
                    "instantiation failed: {fault}"
                )))
            }
        }
    }

    fn fault(&self, fault: Fault) -> Fault {
        self.stats
            .faults
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if let Ok(mut last) = self.stats.last_fault.lock() {
            *last = Some(fault.to_string());
        }
        tracing::error!(plugin = %self.identity.name, version = %self.identity.version, "HTTP handler fault: {fault}");
        let _ = self.env.faults.send(FaultReport {
            plugin: self.identity.name.to_string(),
            release_id: self.release_id,
            fault: fault.clone(),
        });
        fault
    }
}

impl HttpHandler for HttpInstances {
    fn handle(
        self: Arc<Self>,
        request: http::Request<Full<Bytes>>,
        https: bool,
    ) -> HostFuture<'static, Result<http::Response<HyperOutgoingBody>, HttpFailure>> {
        Box::pin(async move { self.respond(request, https).await })
    }
}
