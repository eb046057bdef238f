//! Publishing to and installing from a loopback `docker-registry`, by phase, for
//! plugins of 1 MiB and 5 MiB; `wkg oci push`/`pull` move the same file in the
//! same run as the peer baseline.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use cairn::kernel::InstallSource;
use cairn::progress::{Phase, Progress};
use cairn::supply::component;
use cairn::supply::oci::{PluginMeta, Reference, Registry, RegistryOptions, plugin_annotations};

use crate::inprocess::{Setup, wasm};
use crate::stats::median_p99;

const ROUNDS: usize = 5;
const SIZES: [usize; 2] = [1024 * 1024, 5 * 1024 * 1024];

/// Install phases in the order the kernel reports them.
const INSTALL_PHASES: [Phase; 6] = [
    Phase::Resolve,
    Phase::Signatures,
    Phase::Download,
    Phase::Verify,
    Phase::Compile,
    Phase::Start,
];

pub async fn run() -> anyhow::Result<()> {
    let registry = LoopbackRegistry::start()?;
    let options = RegistryOptions {
        insecure: vec![registry.address.clone()],
        ..RegistryOptions::default()
    };
    let client = Registry::new(options.clone())?;
    let wkg = which("wkg");
    println!("\n### Registry: push and install by phase (median of {ROUNDS}, ms)\n");
    println!(
        "| size | push (upload + sign) | `wkg oci push` | fetch (resolve + signatures + download) | `wkg oci pull` | verify | compile | start | install total |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for size in SIZES {
        let plugin = padded(&wasm("bench")?, size);
        let mut columns: BTreeMap<&str, Vec<Duration>> = BTreeMap::new();
        for round in 0..ROUNDS {
            let setup = Setup::with_registry(options.clone()).await?;
            // A fresh repository per round, so every blob is really uploaded.
            let repository = format!("{}/bench/r{round}-{size}", registry.address);
            let reference = Reference::parse(&format!("{repository}:1"))?;
            let started = Instant::now();
            let digest = client
                .push_plugin(&reference, &plugin, &meta(&plugin)?, &|_, _| {})
                .await?;
            let uploaded = Instant::now();
            client
                .sign(
                    &reference,
                    &digest,
                    &setup.key,
                    &plugin_annotations("bench", "0.1.0"),
                )
                .await?;
            columns
                .entry("upload")
                .or_default()
                .push(uploaded - started);
            columns.entry("sign").or_default().push(uploaded.elapsed());

            let marks = Mutex::new(Vec::<(Phase, Instant)>::new());
            let record = |progress: Progress| {
                let mut marks = marks.lock().unwrap_or_else(|p| p.into_inner());
                if marks.last().map(|(phase, _)| *phase) != Some(progress.phase) {
                    marks.push((progress.phase, Instant::now()));
                }
            };
            let started = Instant::now();
            setup
                .kernel
                .install(
                    InstallSource::Oci(format!("oci://{repository}:1")),
                    false,
                    &|_| Ok(()),
                    &record,
                )
                .await?;
            let finished = Instant::now();
            columns.entry("total").or_default().push(finished - started);
            let marks = marks.into_inner().unwrap_or_else(|p| p.into_inner());
            for (index, (phase, at)) in marks.iter().enumerate() {
                let end = marks.get(index + 1).map_or(finished, |(_, next)| *next);
                columns.entry(phase.label()).or_default().push(end - *at);
            }

            if let Some(wkg) = &wkg {
                let file = tempfile::NamedTempFile::new()?;
                std::fs::write(file.path(), &plugin)?;
                let target = format!("{}/bench/wkg-r{round}-{size}:1", registry.address);
                let push = time(
                    Command::new(wkg)
                        .args(["oci", "push", "--insecure", &registry.address, &target])
                        .arg(file.path()),
                )?;
                let out = tempfile::tempdir()?;
                let pull = time(
                    Command::new(wkg)
                        .args([
                            "oci",
                            "pull",
                            "--insecure",
                            &registry.address,
                            &target,
                            "-o",
                        ])
                        .arg(out.path().join("p.wasm")),
                )?;
                columns.entry("wkg push").or_default().push(push);
                columns.entry("wkg pull").or_default().push(pull);
            }
        }
        let mut median_ms = |names: &[&str]| -> String {
            let mut sum = 0.0;
            for name in names {
                match columns.get_mut(*name) {
                    Some(samples) if !samples.is_empty() => sum += median_p99(samples).0 / 1000.0,
                    _ => return "–".to_string(),
                }
            }
            format!("{sum:.1}")
        };
        let [resolve, signatures, download, verify, compile, start] =
            INSTALL_PHASES.map(Phase::label);
        println!(
            "| {} MiB | {} | {} | {} | {} | {} | {} | {} | {} |",
            size / (1024 * 1024),
            median_ms(&["upload", "sign"]),
            median_ms(&["wkg push"]),
            median_ms(&[resolve, signatures, download]),
            median_ms(&["wkg pull"]),
            median_ms(&[verify]),
            median_ms(&[compile]),
            median_ms(&[start]),
            median_ms(&["total"]),
        );
    }
    Ok(())
}

fn meta(plugin: &[u8]) -> anyhow::Result<PluginMeta> {
    let info = component::inspect(plugin)?;
    Ok(PluginMeta {
        name: "bench".into(),
        version: "0.1.0".into(),
        description: None,
        source: None,
        imports: info.imports,
        exports: info.exports,
        created: "1970-01-01T00:00:00Z".into(),
    })
}

/// Runs a command to completion and returns how long it took.
fn time(command: &mut Command) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let out = command.stdout(Stdio::null()).output()?;
    anyhow::ensure!(
        out.status.success(),
        "{command:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(started.elapsed())
}

pub(crate) fn which(program: &str) -> Option<std::path::PathBuf> {
    let home_bin =
        std::env::var_os("HOME").map(|home| std::path::Path::new(&home).join(".cargo/bin"));
    std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .chain(home_bin)
        .map(|dir| dir.join(program))
        .find(|path| path.is_file())
}

/// `wasm` grown to `size` bytes by a custom section of incompressible bytes.
fn padded(wasm: &[u8], size: usize) -> Vec<u8> {
    let name = b"bench-padding";
    let mut section = vec![name.len() as u8];
    section.extend_from_slice(name);
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let payload = size.saturating_sub(wasm.len() + section.len() + 6);
    section.extend((0..payload).map(|_| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x as u8
    }));
    let mut out = wasm.to_vec();
    out.push(0);
    let mut length = section.len();
    loop {
        let byte = (length & 0x7f) as u8;
        length >>= 7;
        if length == 0 {
            out.push(byte);
            break;
        }
        out.push(byte | 0x80);
    }
    out.extend_from_slice(&section);
    out
}

/// `docker-registry serve` on a loopback port, killed on drop.
struct LoopbackRegistry {
    address: String,
    child: Child,
    _dir: tempfile::TempDir,
}

impl LoopbackRegistry {
    fn start() -> anyhow::Result<LoopbackRegistry> {
        let dir = tempfile::tempdir()?;
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:0\n",
                dir.path().join("data").display()
            ),
        )?;
        let mut child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|err| {
                anyhow::anyhow!("docker-registry: {err} (apt-get install docker-registry)")
            })?;
        let stderr = child
            .stderr
            .take()
            .ok_or_else(|| anyhow::anyhow!("no stderr"))?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(at) = line.find("listening on ") {
                    let address: String = line[at + "listening on ".len()..]
                        .chars()
                        .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ':')
                        .collect();
                    let _ = tx.send(address);
                }
            }
        });
        let address = rx.recv_timeout(Duration::from_secs(20))?;
        Ok(LoopbackRegistry {
            address,
            child,
            _dir: dir,
        })
    }
}

impl Drop for LoopbackRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
