//! Test fixtures: a throwaway registry process and a throttling TCP proxy.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread;
use std::time::Duration;

use super::token_service::{ISSUER, SERVICE, TokenIssuer};
use crate::supply::oci::{
    Credentials, PluginMeta, Reference, Registry, RegistryCredential, RegistryOptions, Secret,
};

/// A `docker-registry serve` process on a loopback port, killed on drop.
pub struct TestRegistry {
    child: Child,
    pub addr: String,
    dir: tempfile::TempDir,
}

impl TestRegistry {
    /// Starts an anonymous registry.
    pub fn start() -> Self {
        Self::start_with(None)
    }

    /// Starts a registry requiring HTTP basic auth for `(user, password)`.
    pub fn start_with(login: Option<(&str, &str)>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let auth = login.map(|(user, password)| {
            let out = Command::new("htpasswd")
                .args(["-Bbn", user, password])
                .output()
                .expect("htpasswd (apt-get install apache2-utils)");
            assert!(out.status.success());
            let path = dir.path().join("htpasswd");
            std::fs::write(&path, out.stdout).unwrap();
            format!(
                "auth:\n  htpasswd:\n    realm: cairn-test\n    path: {}\n",
                path.display()
            )
        });
        Self::spawn(dir, auth.as_deref())
    }

    /// Starts a registry requiring bearer tokens from `issuer` (distribution's token
    /// authentication: it trusts tokens signed by the key in `issuer.cert` and sends
    /// clients to `issuer.realm` for them).
    pub fn start_with_token_auth(issuer: &TokenIssuer) -> Self {
        let auth = format!(
            "auth:\n  token:\n    realm: {}\n    service: {SERVICE}\n    issuer: {ISSUER}\n    \
             rootcertbundle: {}\n",
            issuer.realm,
            issuer.cert.display()
        );
        Self::spawn(tempfile::tempdir().unwrap(), Some(&auth))
    }

    /// Runs the registry with storage in `dir` and the `auth` section of its config.
    fn spawn(dir: tempfile::TempDir, auth: Option<&str>) -> Self {
        let root = dir.path().join("storage");
        let mut config = format!(
            "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: {}\n  \
             delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:0\n",
            root.display()
        );
        config.push_str(auth.unwrap_or_default());
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config).unwrap();
        let mut child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config_path)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("docker-registry (apt-get install docker-registry)");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            // Keep draining so the registry never blocks on a full pipe.
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(i) = line.find("listening on ") {
                    let addr: String = line[i + "listening on ".len()..]
                        .chars()
                        .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ':')
                        .collect();
                    let _ = tx.send(addr);
                }
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("registry did not report its address");
        TestRegistry { child, addr, dir }
    }

    /// The storage root, for tampering with blobs.
    pub fn blob_path(&self, digest: &str) -> PathBuf {
        let hex = digest.trim_start_matches("sha256:");
        self.dir
            .path()
            .join("storage/docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }

    /// A reference in this registry.
    pub fn reference(&self, path: &str) -> Reference {
        Reference::parse(&format!("oci://{}/{path}", self.addr)).unwrap()
    }

    /// Options allowing plain HTTP to this registry, with short retries.
    pub fn options(&self) -> RegistryOptions {
        fast_options(&self.addr)
    }

    /// A client for this registry, anonymous or logged in.
    pub fn client(&self, login: Option<(&str, &str)>) -> Registry {
        self.client_with(login.map(|(user, password)| RegistryCredential::Basic {
            username: user.into(),
            password: Secret::new(password),
        }))
    }

    /// A client for this registry with `credential`, or anonymous.
    pub fn client_with(&self, credential: Option<RegistryCredential>) -> Registry {
        let mut options = self.options();
        options.credentials = credential.map(|credential| {
            let mut c = Credentials::new();
            c.insert(self.addr.clone(), credential);
            c
        });
        Registry::new(options).unwrap()
    }
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Options for plain HTTP to `addr` with retries fast enough for tests.
pub fn fast_options(addr: &str) -> RegistryOptions {
    RegistryOptions {
        insecure: vec![addr.to_owned()],
        backoff: Duration::from_millis(100),
        read_timeout: Duration::from_secs(5),
        connect_timeout: Duration::from_secs(2),
        ..RegistryOptions::default()
    }
}

pub fn meta(name: &str) -> PluginMeta {
    PluginMeta {
        name: name.into(),
        version: "1.0.0".into(),
        description: Some("test plugin".into()),
        source: Some("https://example.invalid/src".into()),
        imports: vec!["wasi:clocks/monotonic-clock@0.2.0".into()],
        exports: vec!["cairn:plugin/handler@0.1.0".into()],
        created: "2024-05-01T12:00:00Z".into(),
    }
}

/// Deterministic pseudo-random bytes (incompressible, unlike a repeated pattern).
pub fn bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// A TCP proxy in front of a registry that throttles responses, can drop the
/// connection once after some bytes, and can be killed outright.
pub struct Proxy {
    pub addr: String,
    dead: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<TcpStream>>>,
    /// Bytes sent from the registry to the client, over all connections.
    pub forwarded: Arc<AtomicU64>,
    /// Whether the one-time connection drop has happened.
    pub cut: Arc<AtomicBool>,
}

impl Proxy {
    pub fn start(
        upstream: &str,
        chunk: usize,
        delay: Duration,
        cut_once_after: Option<u64>,
    ) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let dead = Arc::new(AtomicBool::new(false));
        let conns: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let forwarded = Arc::new(AtomicU64::new(0));
        let cut_done = Arc::new(AtomicBool::new(false));
        let upstream = upstream.to_owned();
        let (d, c, f) = (dead.clone(), conns.clone(), forwarded.clone());
        let cut = cut_done.clone();
        thread::spawn(move || {
            while !d.load(Ordering::SeqCst) {
                let Ok((client, _)) = listener.accept() else {
                    thread::sleep(Duration::from_millis(5));
                    continue;
                };
                client.set_nonblocking(false).unwrap();
                let Ok(server) = TcpStream::connect(&upstream) else {
                    continue;
                };
                c.lock()
                    .unwrap()
                    .extend([client.try_clone().unwrap(), server.try_clone().unwrap()]);
                let (mut c_read, mut s_write) =
                    (client.try_clone().unwrap(), server.try_clone().unwrap());
                thread::spawn(move || {
                    let _ = std::io::copy(&mut c_read, &mut s_write);
                    let _ = s_write.shutdown(Shutdown::Write);
                });
                let (d, f, cut_done) = (d.clone(), f.clone(), cut_done.clone());
                let (mut server, mut client) = (server, client);
                thread::spawn(move || {
                    let mut buf = vec![0u8; chunk];
                    loop {
                        let n = match server.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        if d.load(Ordering::SeqCst) || client.write_all(&buf[..n]).is_err() {
                            break;
                        }
                        let total = f.fetch_add(n as u64, Ordering::SeqCst) + n as u64;
                        if let Some(limit) = cut_once_after
                            && total >= limit
                            && !cut_done.swap(true, Ordering::SeqCst)
                        {
                            break;
                        }
                        thread::sleep(delay);
                    }
                    let _ = client.shutdown(Shutdown::Both);
                    let _ = server.shutdown(Shutdown::Both);
                });
            }
            // The listener drops here: new connections are refused.
        });
        Proxy {
            addr,
            dead,
            conns,
            forwarded,
            cut,
        }
    }

    /// Closes every connection and stops listening, like a registry that died.
    pub fn kill(&self) {
        self.dead.store(true, Ordering::SeqCst);
        for s in self.conns.lock().unwrap().iter() {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.kill();
    }
}
