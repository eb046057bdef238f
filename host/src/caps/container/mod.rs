//! `cairn:host/container`: plugins pulling images and running containers
//! through the device's containerd.
//!
//! A pull or a create is checked against `[grants.container]` ([`grant`]):
//! image repositories (and pins), signatures, mounts, ports, network, and
//! limits. Images are fetched by the host's own registry client and unpacked
//! into containerd ([`image`]); a container runs with a hardened OCI spec
//! ([`spec`]). The host-wide [`table::Containers`] owns the containers for
//! their plugin across swaps and daemon restarts, reports exits, and removes
//! them with their plugin. Without containerd every call answers
//! `unavailable` and the rest of the daemon works on.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use containerd_client::services::v1::container::Runtime;
use containerd_client::services::v1::snapshots::{PrepareSnapshotRequest, RemoveSnapshotRequest};
use containerd_client::services::v1::{Container as ContainerRecord, CreateContainerRequest};
use tokio::sync::watch;
use wasmtime::component::Linker;

use super::{CapView, Capability, CapsData, HostSetup, InstanceSetup, ViewOf};
use crate::contract::HostLink;
use crate::contract::bindings::CapError;
use crate::contract::bindings::cairn::host::container::{
    self as wit, ContainerInfo, ContainerSpec, ContainerState, ExecResult, ExecSpec, ImageConfig,
    ImageInfo, ImagePrune, LogTail, NetworkMode, PullPolicy, ResourceUsage,
};
use crate::supply::oci::{Reference, Registry, RegistryOptions, verify_signatures};
use crate::supply::trust::TrustStore;

mod checks;
pub mod config;
pub mod engine;
pub mod exec;
pub mod grant;
pub mod image;
mod ingest;
pub mod network;
mod prune;
pub mod pull;
pub mod spec;
pub mod stats;
pub mod table;
#[cfg(test)]
pub mod testbed;

pub use config::ContainersConfig;
pub use grant::ContainerGrant;
pub use table::{Containers, EXITED};

/// Grace given to containers when their plugin is removed.
pub const STOP_GRACE: Duration = Duration::from_secs(10);
/// The runtime every container runs with.
const RUNTIME: &str = "io.containerd.runc.v2";

/// The capability's host-wide state: containerd, the registry client images
/// are pulled with, the keys image signatures are checked against, and the
/// containers.
pub struct ContainerHost {
    pub containers: Arc<Containers>,
    registry: Registry,
    trust: TrustStore,
}

pub struct Container;

impl Capability for Container {
    const NAME: &'static str = "container";
    const INTERFACES: &'static [&'static str] = &["cairn:host/container"];
    type Grant = ContainerGrant;
    type Shared = Arc<ContainerHost>;
    type Local = ();

    fn validate(grant: &ContainerGrant) -> Result<(), String> {
        grant::validate(grant)
    }

    fn add_to_linker<T: CapsData>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
        wit::add_to_linker::<T, ViewOf<Container>>(linker, |state| state.caps().view())
    }

    fn build(setup: &HostSetup) -> anyhow::Result<Arc<ContainerHost>> {
        let config = &setup.config;
        Ok(Arc::new(ContainerHost {
            containers: Arc::new(Containers::new(
                engine::Containerd::new(config.containers.clone()),
                setup.state_dir.join("container"),
            )),
            registry: Registry::new(registry_options(&config.registry))?,
            trust: TrustStore::load(&config.trust_keys)?,
        }))
    }

    fn recover(host: &Arc<ContainerHost>, link: &HostLink) {
        host.containers.set_host(link.clone());
    }

    fn prepare(_: &Arc<ContainerHost>, _: Option<&ContainerGrant>, _: &mut InstanceSetup<'_>) {}

    async fn plugin_removed(host: &Arc<ContainerHost>, plugin: &str) {
        if host.containers.adopt().await.is_ok() {
            host.containers.remove_all(Some(plugin), STOP_GRACE).await;
        }
    }

    /// Takes back the containers containerd has, and removes those whose
    /// plugin is no longer installed.
    async fn booted(host: &Arc<ContainerHost>, installed: &BTreeSet<String>) {
        if let Err(err) = host.containers.adopt().await {
            tracing::info!(
                "containers not re-adopted at start: {}",
                super::error_message(&err)
            );
            return;
        }
        for owner in host.containers.owners() {
            if !installed.contains(&owner) {
                tracing::warn!(plugin = %owner, "removing containers of a plugin that is no longer installed");
                host.containers.remove_all(Some(&owner), STOP_GRACE).await;
            }
        }
    }
}

/// The daemon's registry options, with the layer size limit of images.
pub fn registry_options(options: &RegistryOptions) -> RegistryOptions {
    RegistryOptions {
        max_layer_size: image::MAX_LAYER,
        ..options.clone()
    }
}

fn info(entry: &table::Entry) -> ContainerInfo {
    let status = entry.status();
    ContainerInfo {
        name: entry.name.clone(),
        id: entry.id.clone(),
        image: entry.image.clone(),
        image_digest: entry.image_digest.clone(),
        state: match status.phase {
            table::Phase::Created => ContainerState::Created,
            table::Phase::Running => ContainerState::Running,
            table::Phase::Exited => ContainerState::Exited,
        },
        pid: status.pid,
        exit_code: status.exit_code,
        oom_killed: status.oom,
        ip: entry.ip.clone(),
        created_at_ms: entry.created_at_ms,
        adopted: entry.adopted,
    }
}

fn image_info(record: image::ImageRecord) -> ImageInfo {
    ImageInfo {
        reference: record.name,
        digest: record.digest,
        size: record.size,
        signed_by: record.signed_by,
    }
}

fn parse_reference(text: &str) -> Result<Reference, CapError> {
    Reference::parse(text).map_err(|err| CapError::Invalid(err.to_string()))
}

impl CapView<'_, Container> {
    fn containers(&self) -> Arc<Containers> {
        self.shared.containers.clone()
    }

    /// The grant, with the containers containerd had taken back.
    async fn ready(&self) -> Result<&ContainerGrant, CapError> {
        let grant = self.grant()?;
        self.shared.containers.adopt().await?;
        Ok(grant)
    }

    /// Checks signatures when the grant requires them; the keys that signed.
    async fn signers(
        &self,
        reference: &Reference,
        digest: &crate::state::digest::Digest,
    ) -> Result<Vec<String>, CapError> {
        let grant = self.grant()?;
        if !grant.require_signatures {
            return Ok(Vec::new());
        }
        let signatures = self
            .shared
            .registry
            .signatures(reference, digest)
            .await
            .map_err(|err| CapError::Unavailable(format!("fetching signatures: {err}")))?;
        let key = verify_signatures(
            &signatures,
            digest,
            &self.shared.trust,
            &grant.signers,
            &Default::default(),
        )
        .map_err(|err| {
            self.deny(format!(
                "image {reference} is not signed as the grant requires: {err}"
            ))
        })?;
        Ok(vec![key])
    }
}

impl wit::Host for CapView<'_, Container> {
    async fn pull(&mut self, reference: String, policy: PullPolicy) -> Result<ImageInfo, CapError> {
        let grant = self.grant()?;
        let parsed = parse_reference(&reference)?;
        if let Some(why) = grant.image_refusal(&parsed, None) {
            return Err(self.deny(why));
        }
        self.ready().await?;
        let name = image::image_name(&parsed);
        let engine = &self.shared.containers.engine;
        if !matches!(policy, PullPolicy::Always)
            && let Some(found) = image::find(engine, &name).await?
        {
            let record = image::record(&found);
            if let Some(why) = grant.image_refusal(&parsed, Some(&record.digest)) {
                return Err(self.deny(why));
            }
            if grant.require_signatures && record.signed_by.is_empty() {
                return Err(self.deny(format!("image {name} was pulled without a signature check")));
            }
            return Ok(image_info(record));
        }
        if matches!(policy, PullPolicy::Never) {
            return Err(CapError::NotFound(format!(
                "image {name} is not on this device (pull policy never)"
            )));
        }
        let registry = &self.shared.registry;
        // The image keeps its name; its bytes come from the mirror, if any.
        let source = registry.route(&parsed);
        let digest = registry.resolve(&source).await.map_err(|err| match err {
            crate::supply::oci::OciError::NotFound { .. } => CapError::NotFound(err.to_string()),
            err if err.is_transient() => CapError::Unavailable(err.to_string()),
            err => CapError::Internal(err.to_string()),
        })?;
        if let Some(why) = grant.image_refusal(&parsed, Some(digest.as_str())) {
            return Err(self.deny(why));
        }
        let signed_by = self.signers(&source, &digest).await?;
        let record = pull::pull(
            engine,
            pull::PullRequest {
                registry,
                reference: &source,
                digest: &digest,
                name,
                signed_by,
            },
        )
        .await?;
        tracing::info!(plugin = %self.plugin(), image = %record.name, digest = %record.digest, "image pulled");
        Ok(image_info(record))
    }

    async fn images(&mut self) -> Result<Vec<ImageInfo>, CapError> {
        let grant = self.ready().await?;
        let images = image::list(&self.shared.containers.engine).await?;
        Ok(images
            .iter()
            .map(image::record)
            .filter(|record| {
                Reference::parse(&record.name).is_ok_and(|parsed| {
                    grant.image_refusal(&parsed, Some(&record.digest)).is_none()
                })
            })
            .map(image_info)
            .collect())
    }

    async fn inspect_image(&mut self, reference: String) -> Result<ImageConfig, CapError> {
        let (_, digest) = self.granted_image(&reference).await?;
        let engine = &self.shared.containers.engine;
        let config = image::config_of(engine, &digest).await?.config;
        Ok(image::describe(digest, config))
    }

    async fn prune_images(
        &mut self,
        keep: u32,
        also_keep: Vec<String>,
        dry_run: bool,
    ) -> Result<ImagePrune, CapError> {
        let grant = self.ready().await?;
        let request = prune::PruneRequest {
            keep,
            also_keep,
            dry_run,
        };
        let plan = prune::prune_images(&self.shared.containers, grant, request).await?;
        if !dry_run && !plan.deleted.is_empty() {
            tracing::info!(plugin = %self.plugin(), images = plan.deleted.len(), bytes = plan.bytes_freed, "pruned images");
        }
        Ok(plan)
    }

    async fn remove_image(&mut self, reference: String) -> Result<(), CapError> {
        let (name, digest) = self.granted_image(&reference).await?;
        let engine = &self.shared.containers.engine;
        if let Some(user) = self.shared.containers.uses_image(&name, &digest)? {
            return Err(CapError::Conflict(format!(
                "image {name} is used by container {user}"
            )));
        }
        image::remove(engine, &name).await
    }

    async fn create(&mut self, spec: ContainerSpec) -> Result<ContainerInfo, CapError> {
        let grant = self.ready().await?;
        self.vet(&spec)?;
        let limits = self.limits(&spec)?;
        let mounts = self.mounts(&spec)?;
        let parsed = parse_reference(&spec.image)?;
        let name = image::image_name(&parsed);
        let containers = self.containers();
        let engine = &containers.engine;
        let found = image::find(engine, &name).await?.ok_or_else(|| {
            CapError::NotFound(format!("image {name} is not on this device: pull it first"))
        })?;
        let record = image::record(&found);
        if let Some(why) = grant.image_refusal(&parsed, Some(&record.digest)) {
            return Err(self.deny(why));
        }
        if grant.require_signatures && record.signed_by.is_empty() {
            return Err(self.deny(format!("image {name} was pulled without a signature check")));
        }
        let plugin = self.plugin().to_string();
        containers.reserve(&plugin, &spec.name, grant.max_containers)?;
        let config = image::config_of(engine, &record.digest).await?;
        let top = config
            .top_chain()
            .ok_or_else(|| CapError::Rejected(format!("image {name} has no layers")))?;
        // Before anything is set up, so a bad user leaves nothing behind.
        let user = match spec.user.clone().or_else(|| config.config.user.clone()) {
            Some(user) if !user.is_empty() => {
                Some(checks::resolve_user(engine, &record.digest, &user).await?)
            }
            _ => None,
        };
        let id = table::container_id(&plugin, &spec.name);
        containers.dir()?;
        let bridge = network::BridgeNetwork {
            config: &engine.config,
            dir: containers.net_dir(),
        };
        let attachment = match spec.network {
            NetworkMode::Bridge => Some(bridge.setup(&id, checks::port_mappings(&spec)?).await?),
            NetworkMode::Host | NetworkMode::None => None,
        };
        let network_mode = match (&spec.network, &attachment) {
            (NetworkMode::Host, _) => spec::Network::Host,
            (_, Some(attachment)) => {
                spec::Network::Own(Some(attachment.netns.display().to_string()))
            }
            (_, None) => spec::Network::Own(None),
        };
        let ip = attachment
            .as_ref()
            .and_then(|attachment| attachment.ip.clone());
        let runtime_spec = spec::build(&spec::SpecInput {
            image: &config.config,
            command: spec.command.as_deref(),
            args: spec.args.as_deref(),
            env: &spec.env,
            working_dir: spec.working_dir.as_deref(),
            user: user.as_deref(),
            hostname: spec.hostname.as_deref().unwrap_or(&spec.name),
            read_only_rootfs: spec.read_only_rootfs,
            mounts,
            network: network_mode,
            limits,
            capabilities: &spec.capabilities,
            privileged: spec.privileged,
            cgroups_path: format!("/{}/{id}", engine.config.namespace),
        });
        let runtime_spec = match runtime_spec {
            Ok(runtime_spec) => runtime_spec,
            Err(why) => {
                bridge.teardown(&id).await;
                return Err(CapError::Invalid(why));
            }
        };
        let client = engine.client().await?;
        // Under a lease until the container record holds the snapshot, so
        // that a garbage collection in between cannot take it.
        let lease = engine::Lease::create(engine, &client).await?;
        let prepared = client
            .snapshots()
            .prepare(engine.leased(
                PrepareSnapshotRequest {
                    snapshotter: engine.config.snapshotter.clone(),
                    key: id.clone(),
                    parent: top,
                    labels: HashMap::new(),
                },
                &lease.id,
            ))
            .await
            .map_err(|status| {
                engine::status_error("preparing the container's file system", status)
            });
        if let Err(err) = prepared {
            lease.end(engine, &client).await;
            bridge.teardown(&id).await;
            return Err(err);
        }
        let labels = Containers::labels(
            &plugin,
            &spec.name,
            &record.digest,
            ip.as_deref(),
            &spec.labels,
        );
        let created_at_ms = table::created_at(&labels);
        let spec_bytes =
            serde_json::to_vec(&runtime_spec).map_err(|err| CapError::Internal(err.to_string()))?;
        let created = client
            .containers()
            .create(engine.req(CreateContainerRequest {
                container: Some(ContainerRecord {
                    id: id.clone(),
                    labels,
                    image: name.clone(),
                    runtime: Some(Runtime {
                        name: RUNTIME.into(),
                        options: None,
                    }),
                    spec: Some(prost_types::Any {
                        type_url: spec::SPEC_TYPE.into(),
                        value: spec_bytes,
                    }),
                    snapshotter: engine.config.snapshotter.clone(),
                    snapshot_key: id.clone(),
                    ..ContainerRecord::default()
                }),
            }))
            .await;
        lease.end(engine, &client).await;
        if let Err(status) = created {
            let _ = client
                .snapshots()
                .remove(engine.req(RemoveSnapshotRequest {
                    snapshotter: engine.config.snapshotter.clone(),
                    key: id.clone(),
                }))
                .await;
            bridge.teardown(&id).await;
            return Err(engine::status_error("creating the container", status));
        }
        let entry = Arc::new(table::Entry {
            id,
            plugin,
            name: spec.name.clone(),
            image: name,
            image_digest: record.digest,
            created_at_ms,
            adopted: false,
            ip,
            spec: runtime_spec,
            status: watch::channel(table::Status {
                phase: table::Phase::Created,
                pid: None,
                exit_code: None,
                oom: false,
                run: 0,
            })
            .0,
            output: Arc::default(),
            tailer: Default::default(),
        });
        containers.insert(entry.clone())?;
        tracing::info!(plugin = %entry.plugin, container = %entry.name, image = %entry.image, "container created");
        Ok(info(&entry))
    }

    async fn start(&mut self, name: String) -> Result<ContainerInfo, CapError> {
        self.ready().await?;
        let containers = self.containers();
        let entry = containers.get(self.plugin(), &name)?;
        containers.start(&entry).await?;
        Ok(info(&entry))
    }

    async fn stop(&mut self, name: String, grace_ms: u32) -> Result<ContainerInfo, CapError> {
        self.ready().await?;
        let containers = self.containers();
        let entry = containers.get(self.plugin(), &name)?;
        containers
            .stop(&entry, Duration::from_millis(u64::from(grace_ms)))
            .await?;
        Ok(info(&entry))
    }

    async fn kill(&mut self, name: String, signal: String) -> Result<(), CapError> {
        self.ready().await?;
        let number = crate::caps::process::spawn::signal_number(&signal)
            .ok_or_else(|| CapError::Invalid(format!("unknown signal `{signal}`")))?;
        let containers = self.containers();
        let entry = containers.get(self.plugin(), &name)?;
        if entry.status().phase != table::Phase::Running {
            return Err(CapError::NotFound(format!(
                "container `{name}` is not running"
            )));
        }
        containers.kill(&entry, number as u32, false).await
    }

    async fn remove(&mut self, name: String) -> Result<(), CapError> {
        self.ready().await?;
        let containers = self.containers();
        let entry = containers.get(self.plugin(), &name)?;
        containers.remove(&entry, STOP_GRACE).await
    }

    async fn exec(&mut self, name: String, spec: ExecSpec) -> Result<ExecResult, CapError> {
        self.ready().await?;
        let containers = self.containers();
        let entry = containers.get(self.plugin(), &name)?;
        if entry.status().phase != table::Phase::Running {
            return Err(CapError::Unavailable(format!(
                "container `{name}` is not running"
            )));
        }
        exec::run(&containers, &entry, spec).await
    }

    async fn logs(&mut self, name: String, max_bytes: u32) -> Result<LogTail, CapError> {
        self.ready().await?;
        let entry = self.containers().get(self.plugin(), &name)?;
        let ring = crate::caps::process::output::RING_BYTES;
        let max = usize::try_from(max_bytes).unwrap_or(ring).min(ring);
        let (stdout, stderr, total_bytes) = entry.output.tail(max);
        Ok(LogTail {
            stdout,
            stderr,
            total_bytes,
        })
    }

    async fn stats(&mut self, name: String) -> Result<ResourceUsage, CapError> {
        self.ready().await?;
        let entry = self.containers().get(self.plugin(), &name)?;
        if entry.status().phase != table::Phase::Running {
            return Err(CapError::Unavailable(format!(
                "container `{name}` is not running"
            )));
        }
        let usage = stats::usage(&entry.spec).ok_or_else(|| {
            CapError::Unavailable(format!("the cgroup of container `{name}` cannot be read"))
        })?;
        Ok(ResourceUsage {
            memory_bytes: usage.memory_bytes,
            memory_limit_bytes: usage.memory_limit,
            cpu_nanos: usage.cpu_nanos,
            pids: usage.pids,
        })
    }

    async fn info(&mut self, name: String) -> Result<ContainerInfo, CapError> {
        self.ready().await?;
        let entry = self.containers().get(self.plugin(), &name)?;
        Ok(info(&entry))
    }

    async fn list(&mut self) -> Result<Vec<ContainerInfo>, CapError> {
        self.ready().await?;
        let entries = self.containers().of(self.plugin())?;
        Ok(entries.iter().map(|entry| info(entry)).collect())
    }
}
