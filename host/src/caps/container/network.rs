//! Container networks. `none` and `host` are namespaces in the spec; the
//! `bridge` network is set up here, before the task starts: a network
//! namespace of the container's own (bind-mounted under the state
//! directory, so it outlives the daemon), then the CNI plugins run directly —
//! `loopback`, `bridge` with `host-local` addresses, and `portmap` for the
//! port mappings. What was set up is recorded (fsync, atomic rename) so that
//! removal, also after a restart, undoes all of it: CNI `DEL` in reverse
//! order (veth, address, iptables chains), then the namespace.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt as _;

use super::config::ContainersConfig;
use crate::contract::bindings::CapError;

/// CNI spec version spoken to the plugins.
const CNI_VERSION: &str = "0.4.0";
/// The network name CNI plugins record.
const NETWORK: &str = "cairn";
/// Longest a CNI plugin may take.
const PLUGIN_TIMEOUT: Duration = Duration::from_secs(30);

/// One port mapping, as portmap takes it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PortMapping {
    pub host_port: u16,
    pub container_port: u16,
    pub protocol: String,
    #[serde(rename = "hostIP")]
    pub host_ip: String,
}

/// What was set up for one container, kept until it is torn down.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Attachment {
    /// The bind-mounted network namespace.
    pub netns: PathBuf,
    /// The container's address on the bridge.
    pub ip: Option<String>,
    pub ports: Vec<PortMapping>,
    /// The bridge plugin's result, which `DEL` wants back.
    pub result: Option<Value>,
}

/// Where the bridge network keeps its records.
pub struct BridgeNetwork<'a> {
    pub config: &'a ContainersConfig,
    /// `<state>/container/net`
    pub dir: PathBuf,
}

fn internal(what: &str, err: impl std::fmt::Display) -> CapError {
    CapError::Internal(format!("{what}: {err}"))
}

impl BridgeNetwork<'_> {
    fn record_path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.json"))
    }

    fn netns_path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.netns"))
    }

    fn bridge_conf(&self) -> Value {
        json!({
            "cniVersion": CNI_VERSION,
            "name": NETWORK,
            "type": "bridge",
            "bridge": self.config.bridge,
            "isGateway": true,
            "ipMasq": true,
            "hairpinMode": true,
            "ipam": {
                "type": "host-local",
                "subnet": self.config.subnet,
                "routes": [{ "dst": "0.0.0.0/0" }],
                "dataDir": self.dir.join("ipam"),
            },
        })
    }

    fn portmap_conf(ports: &[PortMapping], previous: Option<&Value>) -> Value {
        let mut conf = json!({
            "cniVersion": CNI_VERSION,
            "name": NETWORK,
            "type": "portmap",
            "capabilities": { "portMappings": true },
            "snat": true,
            "runtimeConfig": { "portMappings": ports },
        });
        if let Some(previous) = previous {
            conf["prevResult"] = previous.clone();
        }
        conf
    }

    fn loopback_conf() -> Value {
        json!({ "cniVersion": CNI_VERSION, "name": "lo", "type": "loopback" })
    }

    /// Runs one CNI plugin; its JSON result.
    async fn plugin(
        &self,
        command: &str,
        id: &str,
        netns: &Path,
        conf: &Value,
        ifname: &str,
    ) -> Result<Value, String> {
        let kind = conf["type"].as_str().unwrap_or("bridge");
        let exe = self.config.cni_dir.join(kind);
        let mut child = tokio::process::Command::new(&exe)
            .env_clear()
            .env("CNI_COMMAND", command)
            // Unique per containerd namespace: two daemons' containers of the
            // same name must not share iptables chains.
            .env("CNI_CONTAINERID", format!("{}.{id}", self.config.namespace))
            .env("CNI_NETNS", netns)
            .env("CNI_IFNAME", ifname)
            .env("CNI_PATH", &self.config.cni_dir)
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|err| format!("running {}: {err}", exe.display()))?;
        if let Some(mut stdin) = child.stdin.take() {
            let bytes = serde_json::to_vec(conf).map_err(|err| err.to_string())?;
            stdin
                .write_all(&bytes)
                .await
                .map_err(|err| err.to_string())?;
        }
        let output = tokio::time::timeout(PLUGIN_TIMEOUT, child.wait_with_output())
            .await
            .map_err(|_| format!("CNI plugin {kind} took more than {PLUGIN_TIMEOUT:?}"))?
            .map_err(|err| err.to_string())?;
        if !output.status.success() {
            let said = String::from_utf8_lossy(&output.stdout);
            let message = serde_json::from_str::<Value>(&said)
                .ok()
                .and_then(|error| error["msg"].as_str().map(str::to_string))
                .unwrap_or_else(|| format!("{said}{}", String::from_utf8_lossy(&output.stderr)));
            return Err(format!(
                "CNI plugin {kind} {command} failed: {}",
                message.trim()
            ));
        }
        if output.stdout.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&output.stdout)
            .map_err(|err| format!("CNI plugin {kind} answered: {err}"))
    }

    fn save(&self, id: &str, attachment: &Attachment) -> Result<(), CapError> {
        let bytes =
            serde_json::to_vec_pretty(attachment).map_err(|err| internal("network record", err))?;
        crate::state::atomic::write_atomic(&self.record_path(id), &bytes)
            .map_err(|err| internal("writing the network record", err))
    }

    /// A host port of `ports` another container maps already, if any.
    fn taken(&self, ports: &[PortMapping]) -> Option<String> {
        let entries = std::fs::read_dir(&self.dir).ok()?;
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_none_or(|ext| ext != "json") {
                continue;
            }
            let Some(record) = std::fs::read(&path)
                .ok()
                .and_then(|bytes| serde_json::from_slice::<Attachment>(&bytes).ok())
            else {
                continue;
            };
            for port in ports {
                let clash = record.ports.iter().any(|other| {
                    other.host_port == port.host_port
                        && other.protocol == port.protocol
                        && (other.host_ip.is_empty()
                            || port.host_ip.is_empty()
                            || other.host_ip == port.host_ip)
                });
                if clash {
                    let owner = path
                        .file_stem()
                        .map(|stem| stem.to_string_lossy().into_owned());
                    return Some(format!(
                        "host port {}/{} is mapped already (container {})",
                        port.host_port,
                        port.protocol,
                        owner.unwrap_or_default()
                    ));
                }
            }
        }
        None
    }

    /// Sets up the bridge network of container `id`; on failure, undoes
    /// whatever was done.
    pub async fn setup(&self, id: &str, ports: Vec<PortMapping>) -> Result<Attachment, CapError> {
        if let Some(why) = self.taken(&ports) {
            return Err(CapError::Conflict(why));
        }
        for plugin in ["bridge", "host-local", "loopback", "portmap"] {
            if !self.config.cni_dir.join(plugin).exists() {
                return Err(CapError::Unavailable(format!(
                    "the bridge network needs the CNI plugin `{plugin}` in {} (Debian: containernetworking-plugins)",
                    self.config.cni_dir.display()
                )));
            }
        }
        crate::state::atomic::create_private_dir(&self.dir)
            .map_err(|err| internal("creating the network dir", err))?;
        let netns = self.netns_path(id);
        let mut attachment = Attachment {
            netns: netns.clone(),
            ip: None,
            ports,
            result: None,
        };
        // Recorded first, so a crash half-way is still cleaned up.
        self.save(id, &attachment)?;
        let made = match new_netns(&netns).await {
            Ok(()) => self.attach(id, &mut attachment).await,
            Err(err) => Err(err),
        };
        match made {
            Ok(()) => {
                self.save(id, &attachment)?;
                Ok(attachment)
            }
            Err(why) => {
                self.teardown(id).await;
                Err(CapError::Unavailable(format!(
                    "setting up the bridge network: {why}"
                )))
            }
        }
    }

    async fn attach(&self, id: &str, attachment: &mut Attachment) -> Result<(), String> {
        let netns = attachment.netns.clone();
        self.plugin("ADD", id, &netns, &Self::loopback_conf(), "lo")
            .await?;
        let result = self
            .plugin("ADD", id, &netns, &self.bridge_conf(), "eth0")
            .await?;
        attachment.ip = result["ips"][0]["address"]
            .as_str()
            .and_then(|cidr| cidr.split('/').next())
            .map(str::to_string);
        attachment.result = Some(result.clone());
        if !attachment.ports.is_empty() {
            self.plugin(
                "ADD",
                id,
                &netns,
                &Self::portmap_conf(&attachment.ports, Some(&result)),
                "eth0",
            )
            .await?;
        }
        Ok(())
    }

    /// Undoes the network of container `id`, if it has one: CNI `DEL` of
    /// portmap, bridge and loopback, then the namespace and the record.
    pub async fn teardown(&self, id: &str) {
        let path = self.record_path(id);
        let Ok(bytes) = std::fs::read(&path) else {
            return;
        };
        let Ok(attachment) = serde_json::from_slice::<Attachment>(&bytes) else {
            tracing::warn!(
                container = id,
                "the network record is unreadable; removing it"
            );
            let _ = std::fs::remove_file(&path);
            return;
        };
        let netns = &attachment.netns;
        if !attachment.ports.is_empty()
            && let Err(err) = self
                .plugin(
                    "DEL",
                    id,
                    netns,
                    &Self::portmap_conf(&attachment.ports, attachment.result.as_ref()),
                    "eth0",
                )
                .await
        {
            tracing::warn!(container = id, "{err}");
        }
        let mut bridge = self.bridge_conf();
        if let Some(result) = &attachment.result {
            bridge["prevResult"] = result.clone();
        }
        if let Err(err) = self.plugin("DEL", id, netns, &bridge, "eth0").await {
            tracing::warn!(container = id, "{err}");
        }
        remove_netns(netns);
        let _ = std::fs::remove_file(&path);
    }
}

/// Creates a network namespace and bind-mounts it at `path`.
async fn new_netns(path: &Path) -> Result<(), String> {
    std::fs::File::create(path).map_err(|err| format!("creating {}: {err}", path.display()))?;
    let target = path.to_path_buf();
    // unshare(CLONE_NEWNET) moves only the calling thread: a thread of its own,
    // which ends once the namespace is pinned by the mount.
    let made = tokio::task::spawn_blocking(move || -> Result<(), String> {
        std::thread::spawn(move || pin_new_netns(&target))
            .join()
            .map_err(|_| "the namespace thread failed".to_string())?
    })
    .await
    .map_err(|err| err.to_string())?;
    if made.is_err() {
        let _ = std::fs::remove_file(path);
    }
    made
}

fn pin_new_netns(target: &Path) -> Result<(), String> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt as _;
    // SAFETY: unshare has no memory-safety preconditions; it changes only
    // this thread, which does nothing else.
    if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
        return Err(format!("unshare: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: gettid has no preconditions.
    let tid = unsafe { libc::gettid() };
    let source =
        CString::new(format!("/proc/self/task/{tid}/ns/net")).map_err(|err| err.to_string())?;
    let target = CString::new(target.as_os_str().as_bytes()).map_err(|err| err.to_string())?;
    // SAFETY: both paths are valid NUL-terminated strings that outlive the call.
    let mounted = unsafe {
        libc::mount(
            source.as_ptr(),
            target.as_ptr(),
            std::ptr::null(),
            libc::MS_BIND,
            std::ptr::null(),
        )
    };
    if mounted != 0 {
        return Err(format!(
            "pinning the namespace: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

fn remove_netns(path: &Path) {
    use std::os::unix::ffi::OsStrExt as _;
    if let Ok(target) = std::ffi::CString::new(path.as_os_str().as_bytes()) {
        // SAFETY: a valid NUL-terminated path.
        unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
    }
    let _ = std::fs::remove_file(path);
}

/// Undoes what [`BridgeNetwork::setup`] did for container `id`, if anything.
pub async fn teardown(config: &ContainersConfig, dir: &Path, id: &str) {
    BridgeNetwork {
        config,
        dir: dir.to_path_buf(),
    }
    .teardown(id)
    .await;
}
