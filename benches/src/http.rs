//! HTTP throughput and tail latency of a trivial `wasi:http` component served by
//! `cairn`, side by side in the same run with `wasmtime serve` serving the same
//! component and with a native hyper hello-world. Load comes from `wrk -t2 -c32`.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::daemon::{install_signed, prepare_root, start};
use crate::workspace;

const DURATION: &str = "10s";

struct Measured {
    requests_per_sec: f64,
    p99_ms: f64,
}

pub fn run(cairn: &Path) -> anyhow::Result<()> {
    let Some(wrk) = crate::registry::which("wrk") else {
        println!("\n(HTTP benchmark skipped: wrk is not installed; apt-get install wrk)");
        return Ok(());
    };
    let component = crate::target_dir().join("wasm32-wasip2/release/http_hello.wasm");
    let mut rows: Vec<(&str, Measured)> = Vec::new();

    // cairn
    let dir = tempfile::tempdir()?;
    let root = dir.path();
    let policies = root.join("policies");
    std::fs::create_dir_all(&policies)?;
    std::fs::copy(
        workspace().join("tests/plugins/http-hello/policy.toml"),
        policies.join("http-hello.toml"),
    )?;
    let cairn_port = free_port()?;
    let listener = format!("[listeners.http]\naddress = \"127.0.0.1:{cairn_port}\"\n");
    prepare_root(cairn, root, &policies, &listener)?;
    let (daemon, _) = start(cairn, root)?;
    install_signed(cairn, root, "http_hello")?;
    rows.push(("cairn", load(&wrk, cairn_port)?));
    drop(daemon);

    // wasmtime serve, same component
    if let Some(wasmtime) = crate::registry::which("wasmtime") {
        let port = free_port()?;
        let child = Command::new(wasmtime)
            .args(["serve", "-Scli", "--addr", &format!("127.0.0.1:{port}")])
            .arg(&component)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let _guard = Guard(child);
        wait_for(port)?;
        rows.push(("`wasmtime serve` 48", load(&wrk, port)?));
    }

    // native hyper hello-world, in its own runtime
    let port = free_port()?;
    std::thread::spawn(move || native_hello(port));
    wait_for(port)?;
    rows.push(("native hyper", load(&wrk, port)?));

    println!("\n### HTTP: trivial handler, `wrk -t2 -c32 -d{DURATION}` (same run)\n");
    println!("| server | requests/s | p99 latency (ms) | requests/s vs cairn |");
    println!("|---|---|---|---|");
    let ours = rows[0].1.requests_per_sec;
    for (name, measured) in &rows {
        println!(
            "| {name} | {:.0} | {:.2} | {:.2}× |",
            measured.requests_per_sec,
            measured.p99_ms,
            measured.requests_per_sec / ours
        );
    }
    Ok(())
}

struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn wait_for(port: u16) -> anyhow::Result<()> {
    for _ in 0..200 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    anyhow::bail!("nothing listens on port {port}")
}

/// Runs wrk against `/hello` and reads requests/s and the 99th percentile.
fn load(wrk: &Path, port: u16) -> anyhow::Result<Measured> {
    let url = format!("http://127.0.0.1:{port}/hello");
    // Warm up: instances, caches, connections.
    Command::new(wrk)
        .args(["-t2", "-c32", "-d2s", &url])
        .output()?;
    let out = Command::new(wrk)
        .args(["-t2", "-c32", &format!("-d{DURATION}"), "--latency", &url])
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    anyhow::ensure!(
        !text.contains("Non-2xx"),
        "{url} answered errors under load:\n{text}"
    );
    let requests_per_sec = text
        .lines()
        .find_map(|line| line.strip_prefix("Requests/sec:"))
        .and_then(|value| value.trim().parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no Requests/sec in wrk output:\n{text}"))?;
    let p99_ms = text
        .lines()
        .find_map(|line| line.trim().strip_prefix("99%"))
        .and_then(|value| milliseconds(value.trim()))
        .ok_or_else(|| anyhow::anyhow!("no 99% latency in wrk output:\n{text}"))?;
    Ok(Measured {
        requests_per_sec,
        p99_ms,
    })
}

/// `812.00us`, `1.25ms`, `2.10s` → milliseconds.
fn milliseconds(value: &str) -> Option<f64> {
    let split = value.find(|c: char| c.is_ascii_alphabetic())?;
    let (number, unit) = value.split_at(split);
    let number: f64 = number.parse().ok()?;
    match unit {
        "us" => Some(number / 1000.0),
        "ms" => Some(number),
        "s" => Some(number * 1000.0),
        _ => None,
    }
}

fn native_hello(port: u16) {
    let Ok(runtime) = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    else {
        return;
    };
    runtime.block_on(async move {
        let Ok(listener) = tokio::net::TcpListener::bind(("127.0.0.1", port)).await else {
            return;
        };
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let service = hyper::service::service_fn(|_request| async {
                    Ok::<_, std::convert::Infallible>(hyper::Response::new(
                        http_body_util::Full::new(bytes::Bytes::from_static(b"hello")),
                    ))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
}
