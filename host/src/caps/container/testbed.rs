//! Real parts for the container tests: a containerd of the test's own (config,
//! state and socket under a temp dir), Debian's `docker-registry`, and small
//! images built from `busybox-static` and pushed to it.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use flate2::Compression;
use flate2::write::GzEncoder;

#[path = "../../../../tests/harness/registry.rs"]
mod registry;

pub use registry::TestRegistry;

use crate::state::digest::Digest;
use crate::supply::oci::{Reference, Registry, RegistryOptions};

/// A containerd serving on a socket under a temp dir; killed on drop (with
/// the shims of its containers).
pub struct TestContainerd {
    pub dir: tempfile::TempDir,
    pub socket: PathBuf,
    child: Option<Child>,
}

impl TestContainerd {
    pub fn start() -> TestContainerd {
        // Short paths: socket paths are limited to 108 bytes.
        let dir = tempfile::Builder::new()
            .prefix("ctd")
            .tempdir_in("/tmp")
            .expect("a temp dir");
        let socket = dir.path().join("c.sock");
        let config = dir.path().join("config.toml");
        std::fs::write(
            &config,
            format!(
                "version = 2\nroot = \"{0}/root\"\nstate = \"{0}/state\"\ndisabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n[grpc]\n  address = \"{1}\"\n[ttrpc]\n  address = \"{1}.ttrpc\"\n",
                dir.path().display(),
                socket.display()
            ),
        )
        .expect("writing the containerd config");
        let mut containerd = TestContainerd {
            dir,
            socket,
            child: None,
        };
        containerd.launch();
        containerd
    }

    fn launch(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("containerd.log"))
            .expect("a log file");
        let child = Command::new("containerd")
            .arg("--config")
            .arg(self.dir.path().join("config.toml"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("containerd is installed (scripts/test installs it)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.socket.exists() {
            assert!(
                Instant::now() < deadline,
                "containerd did not start: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops containerd with SIGTERM (its containers keep running).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: kill has no memory-safety preconditions.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            let _ = child.wait();
        }
        let _ = std::fs::remove_file(&self.socket);
    }

    pub fn restart(&mut self) {
        self.stop();
        self.launch();
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("containerd.log")).unwrap_or_default()
    }

    /// `ctr` against this containerd, in `namespace`.
    pub fn ctr(&self, namespace: &str, args: &[&str]) -> String {
        let out = Command::new("ctr")
            .arg("-a")
            .arg(&self.socket)
            .arg("-n")
            .arg(namespace)
            .args(args)
            .output()
            .expect("ctr runs");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for TestContainerd {
    fn drop(&mut self) {
        // Kill what is left in this containerd's namespaces before it goes.
        for namespace in self.ctr("default", &["namespaces", "ls", "-q"]).lines() {
            for task in self.ctr(namespace, &["tasks", "ls", "-q"]).lines() {
                self.ctr(namespace, &["tasks", "kill", "-a", "-s", "SIGKILL", task]);
                std::thread::sleep(Duration::from_millis(100));
                self.ctr(namespace, &["tasks", "delete", "-f", task]);
            }
        }
        self.stop();
        let _ = Command::new("umount")
            .arg("-R")
            .arg(self.dir.path())
            .stderr(Stdio::null())
            .status();
    }
}

/// An image as pushed: its reference (by tag) and manifest digest.
pub struct TestImage {
    pub reference: String,
    pub digest: String,
    pub layer_digest: String,
}

fn tar_layer(files: &[(&str, Vec<u8>, u32)], links: &[(&str, &str)]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for dir in ["bin", "etc", "tmp", "proc", "sys", "dev", "run", "data"] {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Directory);
        header.set_mode(if dir == "tmp" { 0o1777 } else { 0o755 });
        header.set_size(0);
        header.set_mtime(0);
        builder
            .append_data(&mut header, format!("{dir}/"), std::io::empty())
            .expect("a tar entry");
    }
    for (path, bytes, mode) in files {
        let mut header = tar::Header::new_gnu();
        header.set_mode(*mode);
        header.set_size(bytes.len() as u64);
        header.set_mtime(0);
        builder
            .append_data(&mut header, path, bytes.as_slice())
            .expect("a tar entry");
    }
    for (link, target) in links {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Symlink);
        header.set_size(0);
        header.set_mtime(0);
        header.set_mode(0o777);
        builder
            .append_link(&mut header, link, target)
            .expect("a tar entry");
    }
    builder.into_inner().expect("a tar")
}

/// Applets the test images link to busybox.
const APPLETS: &[&str] = &[
    "sh", "sleep", "echo", "cat", "true", "false", "dd", "head", "yes", "id", "hostname", "ls",
    "env", "httpd", "nc", "wc", "pwd", "mkdir", "touch",
];

/// Builds a busybox image (plus `extra` bytes of padding, to make it larger)
/// and pushes it to `registry` as `repository:tag`.
pub async fn push_busybox(
    registry: &TestRegistry,
    repository: &str,
    tag: &str,
    extra: usize,
) -> TestImage {
    push_busybox_with(
        &options(registry),
        &registry.address,
        repository,
        tag,
        extra,
    )
    .await
}

/// [`push_busybox`] to the registry at `address`, reached with `options`.
pub async fn push_busybox_with(
    options: &RegistryOptions,
    address: &str,
    repository: &str,
    tag: &str,
    extra: usize,
) -> TestImage {
    let busybox = std::fs::read("/bin/busybox").expect("busybox-static is installed");
    let links: Vec<(String, String)> = APPLETS
        .iter()
        .map(|applet| (format!("bin/{applet}"), "busybox".to_string()))
        .collect();
    let links: Vec<(&str, &str)> = links
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    let mut files = vec![
        ("bin/busybox", busybox, 0o755),
        (
            "etc/passwd",
            b"root:x:0:0:root:/:/bin/sh\nnobody:x:65534:65534::/:/bin/false\n".to_vec(),
            0o644,
        ),
    ];
    if extra > 0 {
        // Incompressible, so the layer really is that large.
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let padding: Vec<u8> = (0..extra)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect();
        files.push(("padding", padding, 0o644));
    }
    let tar = tar_layer(&files, &links);
    let diff_id = Digest::of(&tar);
    let mut gz = GzEncoder::new(Vec::new(), Compression::fast());
    gz.write_all(&tar).expect("gzip");
    let layer = gz.finish().expect("gzip");
    let layer_digest = Digest::of(&layer);
    let config = serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": { "Env": ["PATH=/bin"], "Cmd": ["/bin/sh"], "WorkingDir": "/" },
        "rootfs": { "type": "layers", "diff_ids": [diff_id.to_string()] },
    });
    let config = serde_json::to_vec(&config).expect("json");
    let config_digest = Digest::of(&config);
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config_digest.to_string(),
            "size": config.len(),
        },
        "layers": [{
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            "digest": layer_digest.to_string(),
            "size": layer.len(),
        }],
    });
    let manifest = serde_json::to_vec(&manifest).expect("json");
    let reference = format!("{address}/{repository}:{tag}");
    let target = Reference::parse(&reference).expect("a reference");
    let client = Registry::new(options.clone()).expect("a registry client");
    client.prepare(&target).await;
    client
        .upload_blob(&target, "layer", &layer, &layer_digest, &|_, _| {})
        .await
        .expect("layer pushed");
    client
        .upload_blob(&target, "config", &config, &config_digest, &|_, _| {})
        .await
        .expect("config pushed");
    client
        .push_manifest(&target, &manifest)
        .await
        .expect("manifest pushed");
    TestImage {
        reference,
        digest: Digest::of(&manifest).to_string(),
        layer_digest: layer_digest.to_string(),
    }
}

/// Registry options for the test registry.
pub fn options(registry: &TestRegistry) -> RegistryOptions {
    RegistryOptions {
        insecure: vec![registry.address.clone()],
        retries: 2,
        backoff: Duration::from_millis(50),
        ..RegistryOptions::default()
    }
}

/// Where the registry keeps the blob `digest`, to tamper with it.
pub fn blob_path(registry: &TestRegistry, digest: &str) -> PathBuf {
    let hex = digest.trim_start_matches("sha256:");
    registry
        .dir
        .path()
        .join("data/docker/registry/v2/blobs/sha256")
        .join(&hex[..2])
        .join(hex)
        .join("data")
}

/// Whether `path` exists (for cgroup and netns checks).
pub fn exists(path: impl AsRef<Path>) -> bool {
    path.as_ref().exists()
}
