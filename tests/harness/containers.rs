//! Real parts for container tests: a containerd of the test's own (config,
//! state and socket under a temp dir) and small images built from
//! `busybox-static`, pushed to a registry with its plain HTTP API.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use flate2::Compression;
use flate2::write::GzEncoder;
use sha2::{Digest as _, Sha256};

/// A containerd serving on a socket under a temp dir; on drop it kills what
/// runs in its namespaces, then itself.
pub struct TestContainerd {
    pub dir: tempfile::TempDir,
    pub socket: PathBuf,
    child: Option<Child>,
}

impl TestContainerd {
    pub fn start() -> TestContainerd {
        Self::start_with_disk(None)
    }

    /// A containerd whose root (content, metadata, snapshots) is a tmpfs of
    /// `bytes`: a small disk that a pull can fill.
    pub fn start_on_small_disk(bytes: u64) -> TestContainerd {
        Self::start_with_disk(Some(bytes))
    }

    fn start_with_disk(disk: Option<u64>) -> TestContainerd {
        // Short paths: socket paths are limited to 108 bytes.
        let dir = tempfile::Builder::new()
            .prefix("ctd")
            .tempdir_in("/tmp")
            .expect("a temp dir");
        if let Some(bytes) = disk {
            let root = dir.path().join("root");
            std::fs::create_dir(&root).expect("the root dir");
            let mounted = Command::new("mount")
                .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"])
                .arg(&root)
                .status()
                .expect("mount runs");
            assert!(mounted.success(), "mounting a tmpfs needs root");
        }
        let socket = dir.path().join("c.sock");
        std::fs::write(
            dir.path().join("config.toml"),
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

    /// `ctr` against this containerd, in `namespace`; its stdout.
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

    /// The `[containers]` section of a daemon config using this containerd.
    pub fn config_section(&self, namespace: &str, bridge: &str, subnet: &str) -> String {
        format!(
            "[containers]\nsocket = \"{}\"\nnamespace = \"{namespace}\"\nbridge = \"{bridge}\"\nsubnet = \"{subnet}\"\n",
            self.socket.display()
        )
    }
}

impl Drop for TestContainerd {
    fn drop(&mut self) {
        if self.child.is_some() {
            for namespace in self.ctr("default", &["namespaces", "ls", "-q"]).lines() {
                for task in self.ctr(namespace, &["tasks", "ls", "-q"]).lines() {
                    self.ctr(namespace, &["tasks", "kill", "-a", "-s", "SIGKILL", task]);
                    std::thread::sleep(Duration::from_millis(100));
                    self.ctr(namespace, &["tasks", "delete", "-f", task]);
                }
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

/// An image as pushed: its reference (by tag) and digests.
pub struct TestImage {
    pub reference: String,
    pub digest: String,
    pub layer_digest: String,
}

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

fn tar_layer(files: &[(&str, Vec<u8>, u32)], links: &[(String, String)]) -> Vec<u8> {
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
    "env", "httpd", "nc", "wc", "pwd", "mkdir", "touch", "test", "kill",
];

/// The blobs of a busybox image (plus `extra` incompressible bytes in
/// `/padding`): `(manifest, config, layer)`.
pub fn busybox_image(extra: usize) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    busybox_image_labelled(extra, &[])
}

/// [`busybox_image`] whose config carries `labels`.
pub fn busybox_image_labelled(
    extra: usize,
    labels: &[(&str, &str)],
) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    busybox_image_running(extra, labels, &["/bin/sh"])
}

/// [`busybox_image_labelled`] whose config's command is `cmd`.
pub fn busybox_image_running(
    extra: usize,
    labels: &[(&str, &str)],
    cmd: &[&str],
) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let busybox = std::fs::read("/bin/busybox").expect("busybox-static is installed");
    let links: Vec<(String, String)> = APPLETS
        .iter()
        .map(|applet| (format!("bin/{applet}"), "busybox".to_string()))
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
    let diff_id = sha256(&tar);
    let mut gz = GzEncoder::new(Vec::new(), Compression::fast());
    gz.write_all(&tar).expect("gzip");
    let layer = gz.finish().expect("gzip");
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "Env": ["PATH=/bin"], "Cmd": cmd, "WorkingDir": "/",
            "Labels": labels.iter().copied().collect::<std::collections::BTreeMap<&str, &str>>(),
        },
        "rootfs": { "type": "layers", "diff_ids": [diff_id] },
    }))
    .expect("json");
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": sha256(&config),
            "size": config.len(),
        },
        "layers": [{
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            "digest": sha256(&layer),
            "size": layer.len(),
        }],
    }))
    .expect("json");
    (manifest, config, layer)
}

fn curl(args: &[&str], body: &[u8], login: Option<(&str, &str)>) -> String {
    let mut command = Command::new("curl");
    command.args(["-sS", "-f", "-D", "-", "-o", "/dev/null"]);
    if let Some((user, password)) = login {
        command.arg("-u").arg(format!("{user}:{password}"));
    }
    let mut child = command
        .args(args)
        .args(["--data-binary", "@-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("curl is installed");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(body)
        .expect("curl's stdin");
    let out = child.wait_with_output().expect("curl runs");
    assert!(
        out.status.success(),
        "curl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Pushes a busybox image as `address/repository:tag` through the registry's
/// HTTP API (with basic auth when `login` is given).
pub fn push_busybox(
    address: &str,
    login: Option<(&str, &str)>,
    repository: &str,
    tag: &str,
    extra: usize,
) -> TestImage {
    push_image(address, login, repository, tag, busybox_image(extra))
}

/// Pushes the blobs `(manifest, config, layer)` as `address/repository:tag`.
pub fn push_image(
    address: &str,
    login: Option<(&str, &str)>,
    repository: &str,
    tag: &str,
    (manifest, config, layer): (Vec<u8>, Vec<u8>, Vec<u8>),
) -> TestImage {
    for blob in [&layer, &config] {
        let headers = curl(
            &[
                "-X",
                "POST",
                &format!("http://{address}/v2/{repository}/blobs/uploads/"),
            ],
            b"",
            login,
        );
        let location = headers
            .lines()
            .find_map(|line| {
                let (name, value) = line.split_once(':')?;
                name.eq_ignore_ascii_case("location")
                    .then(|| value.trim().to_string())
            })
            .expect("an upload location");
        let location = if location.starts_with('/') {
            format!("http://{address}{location}")
        } else {
            location
        };
        let separator = if location.contains('?') { '&' } else { '?' };
        curl(
            &[
                "-X",
                "PUT",
                "-H",
                "Content-Type: application/octet-stream",
                &format!("{location}{separator}digest={}", sha256(blob)),
            ],
            blob,
            login,
        );
    }
    curl(
        &[
            "-X",
            "PUT",
            "-H",
            "Content-Type: application/vnd.oci.image.manifest.v1+json",
            &format!("http://{address}/v2/{repository}/manifests/{tag}"),
        ],
        &manifest,
        login,
    );
    TestImage {
        reference: format!("{address}/{repository}:{tag}"),
        digest: sha256(&manifest),
        layer_digest: sha256(&layer),
    }
}
