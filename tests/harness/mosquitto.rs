//! A real MQTT broker (Debian's `mosquitto`) on a free loopback port, and
//! `mosquitto_sub`/`mosquitto_pub` clients to check what crosses it.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use super::certs::{Certs, make_certs};

/// How clients authenticate to the broker.
pub enum Auth {
    /// `allow_anonymous true`.
    Anonymous,
    /// A `password_file` with one user (made with `mosquitto_passwd`).
    Password { user: String, password: String },
    /// TLS with `require_certificate true`; certificates made with `openssl`.
    MutualTls,
}

/// A running broker; killed on drop.
pub struct Mosquitto {
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub certs: Option<Certs>,
    config: PathBuf,
    child: Option<Child>,
}

fn binary() -> PathBuf {
    for candidate in ["/usr/sbin/mosquitto", "/usr/bin/mosquitto"] {
        if Path::new(candidate).exists() {
            return PathBuf::from(candidate);
        }
    }
    PathBuf::from("mosquitto")
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

pub(crate) fn run(command: &mut Command) {
    let out = command
        .output()
        .unwrap_or_else(|err| panic!("{command:?}: {err}"));
    assert!(
        out.status.success(),
        "{command:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Mosquitto {
    pub fn start(auth: Auth) -> Mosquitto {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let mut config = format!(
            "listener {port} 127.0.0.1\npersistence false\nuser root\nlog_dest stderr\nlog_type all\n"
        );
        let mut certs = None;
        match auth {
            Auth::Anonymous => config.push_str("allow_anonymous true\n"),
            Auth::Password { user, password } => {
                let file = dir.path().join("passwords");
                run(Command::new("mosquitto_passwd")
                    .args(["-b", "-c"])
                    .arg(&file)
                    .args([&user, &password]));
                config.push_str(&format!(
                    "allow_anonymous false\npassword_file {}\n",
                    file.display()
                ));
            }
            Auth::MutualTls => {
                let made = make_certs(dir.path());
                config.push_str(&format!(
                    "allow_anonymous true\ncafile {}\ncertfile {}\nkeyfile {}\nrequire_certificate true\n",
                    made.ca.display(),
                    made.server_cert.display(),
                    made.server_key.display()
                ));
                certs = Some(made);
            }
        }
        let config_path = dir.path().join("mosquitto.conf");
        std::fs::write(&config_path, config).unwrap();
        let mut broker = Mosquitto {
            dir,
            port,
            certs,
            config: config_path,
            child: None,
        };
        broker.spawn();
        broker
    }

    /// `mqtt://127.0.0.1:PORT` (or `mqtts://`).
    pub fn url(&self) -> String {
        let scheme = if self.certs.is_some() {
            "mqtts"
        } else {
            "mqtt"
        };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("mosquitto.log")
    }

    /// Everything the broker logged.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .unwrap();
        let child = Command::new(binary())
            .arg("-c")
            .arg(&self.config)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("mosquitto is installed (scripts/test installs it)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("mosquitto did not listen on {}:\n{}", self.port, self.log());
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the broker and starts it again on the same port and config.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// Client arguments: address plus credentials or certificates.
    fn client_args(&self, auth: Option<(&str, &str)>) -> Vec<String> {
        let mut args = vec![
            "-h".into(),
            "127.0.0.1".into(),
            "-p".into(),
            self.port.to_string(),
        ];
        if let Some((user, password)) = auth {
            args.extend(["-u".into(), user.into(), "-P".into(), password.into()]);
        }
        if let Some(certs) = &self.certs {
            for (flag, path) in [
                ("--cafile", &certs.ca),
                ("--cert", &certs.client_cert),
                ("--key", &certs.client_key),
            ] {
                args.push(flag.into());
                args.push(path.display().to_string());
            }
        }
        args
    }

    /// Publishes one message with `mosquitto_pub`.
    pub fn publish(&self, topic: &str, payload: &str, auth: Option<(&str, &str)>) {
        run(Command::new("mosquitto_pub")
            .args(self.client_args(auth))
            .args(["-q", "1", "-t", topic, "-m", payload]));
    }

    /// Publishes each line as one message on `topic` from a single connection.
    pub fn publish_lines(&self, topic: &str, lines: &[String], qos: u8) {
        use std::io::Write;
        let mut child = Command::new("mosquitto_pub")
            .args(self.client_args(None))
            .args(["-q", &qos.to_string(), "-t", topic, "-l"])
            .stdin(Stdio::piped())
            .spawn()
            .expect("mosquitto_pub is installed (scripts/test installs it)");
        let mut stdin = child.stdin.take().unwrap();
        for line in lines {
            writeln!(stdin, "{line}").unwrap();
        }
        drop(stdin);
        assert!(child.wait().unwrap().success(), "mosquitto_pub failed");
    }

    /// Starts `mosquitto_sub` on `filter` and returns once the broker confirmed
    /// the subscription.
    pub fn subscribe(&self, filter: &str, auth: Option<(&str, &str)>) -> Subscriber {
        // Line-buffered: mosquitto_sub's debug lines are otherwise held back in a pipe.
        let mut child = Command::new("stdbuf")
            .args(["-oL", "mosquitto_sub"])
            .args(self.client_args(auth))
            .args(["-d", "-v", "-q", "1", "-t", filter])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto_sub is installed (scripts/test installs it)");
        let stdout = child.stdout.take().unwrap();
        let messages = Arc::new(Mutex::new(Vec::new()));
        let (subscribed_tx, subscribed) = mpsc::channel();
        let collected = messages.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.starts_with("Subscribed (mid") {
                    let _ = subscribed_tx.send(());
                } else if !line.starts_with("Client ") {
                    collected.lock().unwrap().push(line);
                }
            }
        });
        // Owned before waiting, so a failed wait still stops the client.
        let subscriber = Subscriber { child, messages };
        subscribed
            .recv_timeout(Duration::from_secs(20))
            .expect("mosquitto_sub did not subscribe");
        subscriber
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A running `mosquitto_sub`; lines are `TOPIC PAYLOAD`.
pub struct Subscriber {
    child: Child,
    messages: Arc<Mutex<Vec<String>>>,
}

impl Subscriber {
    /// Waits until a line equal to `expected` arrived.
    pub fn wait_for(&self, expected: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.messages().iter().any(|line| line == expected) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    pub fn messages(&self) -> Vec<String> {
        self.messages.lock().unwrap().clone()
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
