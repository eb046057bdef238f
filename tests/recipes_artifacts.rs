//! Artifacts of recipes end to end: downloaded from a local HTTP server
//! through the host's egress (the first download broken off and resumed with
//! a Range request), checked by sha256 and ECDSA signature, unpacked, made
//! executable and run. Refused: a wrong sha256, a signature by another key,
//! and a zip-slip archive — with nothing unpacked.

mod harness;
#[path = "recipes/support.rs"]
mod support;

use std::io::Write;
use std::net::TcpListener;
use std::path::Path;
use std::sync::{Arc, Mutex};

use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature, SigningKey};
use p256::pkcs8::{EncodePublicKey, LineEnding};
use serde_json::json;
use sha2::{Digest, Sha256};
use support::{Extra, Fixture, alive, fixture_with};

/// Files served over HTTP/1.1. The first request for a file marked `cut`
/// gets its headers and half its body, then the connection closes; Range
/// requests get 206 with the rest. Every request head is recorded.
struct Server {
    port: u16,
    requests: Arc<Mutex<Vec<String>>>,
}

fn serve(files: Vec<(&'static str, Vec<u8>, bool)>) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let requests = Arc::new(Mutex::new(Vec::new()));
    let seen = requests.clone();
    std::thread::spawn(move || {
        let mut cut_done = std::collections::HashSet::new();
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let head =
                String::from_utf8_lossy(&harness::http::read_request_head(&mut stream)).to_string();
            seen.lock().unwrap().push(head.clone());
            let path = head.split_whitespace().nth(1).unwrap_or("").to_string();
            let Some((_, body, cut)) = files.iter().find(|(name, _, _)| path == format!("/{name}"))
            else {
                let _ = stream.write_all(
                    b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                );
                continue;
            };
            let range = head
                .lines()
                .find_map(|line| {
                    line.strip_prefix("Range: bytes=")
                        .or_else(|| line.strip_prefix("range: bytes="))
                })
                .and_then(|spec| spec.trim().trim_end_matches('-').parse::<usize>().ok());
            if let Some(start) = range {
                let rest = &body[start.min(body.len())..];
                let _ = write!(
                    stream,
                    "HTTP/1.1 206 Partial Content\r\nContent-Length: {}\r\nContent-Range: bytes {start}-{}/{}\r\nConnection: close\r\n\r\n",
                    rest.len(),
                    body.len() - 1,
                    body.len()
                );
                let _ = stream.write_all(rest);
            } else if *cut && cut_done.insert(path.clone()) {
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all(&body[..body.len() / 2]);
                let _ = stream.flush();
            } else {
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all(body);
            }
        }
    });
    Server { port, requests }
}

/// A tar.gz holding `bin/app`, a script that marks itself ready and sleeps,
/// and a few hundred KiB of incompressible data so the cut falls mid-body.
fn app_tarball() -> Vec<u8> {
    app_tarball_tagged("")
}

/// [`app_tarball`] whose script carries `tag`, so each tag is another artifact.
fn app_tarball_tagged(tag: &str) -> Vec<u8> {
    let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::fast(),
    ));
    let script = format!("#!/bin/sh\n{tag}\ntouch ready\nexec sleep 600\n").into_bytes();
    let mut header = tar::Header::new_gnu();
    header.set_size(script.len() as u64);
    header.set_mode(0o755);
    header.set_cksum();
    builder
        .append_data(&mut header, "bin/app", &script[..])
        .unwrap();
    let noise: Vec<u8> = (0..400_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let mut header = tar::Header::new_gnu();
    header.set_size(noise.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    builder
        .append_data(&mut header, "share/data.bin", &noise[..])
        .unwrap();
    builder.into_inner().unwrap().finish().unwrap()
}

fn zip_slip() -> Vec<u8> {
    let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default();
    writer.start_file("fine.txt", options).unwrap();
    writer.write_all(b"fine").unwrap();
    writer.start_file("../../escaped.txt", options).unwrap();
    writer.write_all(b"escaped").unwrap();
    writer.finish().unwrap().into_inner()
}

fn sha256(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
}

fn key(seed: u8) -> SigningKey {
    SigningKey::from_slice(&[seed; 32]).unwrap()
}

fn public_pem(key: &SigningKey) -> String {
    key.verifying_key()
        .to_public_key_pem(LineEnding::LF)
        .unwrap()
}

fn fixture_for(server: &Server, trusted: &SigningKey) -> Fixture {
    let port = server.port;
    let pem = public_pem(trusted);
    fixture_with(move |root| Extra {
        config: format!("artifact-keys = [{}]", serde_json::to_string(&pem).unwrap()),
        http_client: format!(
            "[grants.http-client]\nallow = [\"http://127.0.0.1:{port}\"]\nallow-private = [\"127.0.0.0/8\"]\n"
        ),
        process: format!(
            "[[grants.process.allow]]\nexe = \"{}/components/app/bin/app\"\nargs = []\n[[grants.process.allow]]\nexe = \"/bin/chmod\"\nargs = [\"0755\", \"**\"]\n",
            root.display()
        ),
        grants: String::new(),
    })
}

fn recipe(port: u16, file: &str, sha: &str, unpack: &str, signature: Option<&str>) -> String {
    let signature = signature
        .map(|sig| format!("sig_uri = \"http://127.0.0.1:{port}/{sig}\"\n"))
        .unwrap_or_default();
    format!(
        r#"[metadata]
name = "app"
version = "1.0.0"

[[artifacts]]
uri = "http://127.0.0.1:{port}/{file}"
sha256 = "{sha}"
unpack = {unpack}
{signature}
[lifecycle.run]
grace = "200ms"

[lifecycle.run.exec]
command = "bin/app"
"#
    )
}

fn apply(fx: &Fixture, recipe: String) {
    fx.apply(json!({
        "plan": "[[components]]\nname = \"app\"\nrecipe = \"app.toml\"\n",
        "recipes": {"app.toml": recipe},
    }))
    .unwrap();
}

fn files_under(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                found.extend(files_under(&path));
            } else {
                found.push(path.display().to_string());
            }
        }
    }
    found
}

#[test]
fn a_signed_tarball_is_resumed_verified_unpacked_and_run() {
    let tarball = app_tarball();
    let trusted = key(7);
    let signature: Signature = trusted.sign(&tarball);
    let server = serve(vec![
        ("app.tar.gz", tarball.clone(), true),
        (
            "app.tar.gz.sig",
            signature.to_der().as_bytes().to_vec(),
            false,
        ),
    ]);
    let fx = fixture_for(&server, &trusted);
    apply(
        &fx,
        recipe(
            server.port,
            "app.tar.gz",
            &sha256(&tarball),
            "true",
            Some("app.tar.gz.sig"),
        ),
    );
    let status = fx.wait_phase("applied");
    let pid = fx.pid("app");
    assert!(alive(pid), "{status}");
    assert!(
        fx.dir("app").join("ready").exists(),
        "the artifact's script ran"
    );
    assert_eq!(
        std::fs::read(fx.dir("app").join("share/data.bin"))
            .unwrap()
            .len(),
        400_000
    );
    let requests = server.requests.lock().unwrap().clone();
    let tarball_requests: Vec<&String> = requests
        .iter()
        .filter(|r| r.starts_with("GET /app.tar.gz "))
        .collect();
    assert_eq!(tarball_requests.len(), 2, "{requests:#?}");
    let resumed = tarball_requests[1].to_ascii_lowercase();
    assert!(
        resumed.contains("range: bytes="),
        "the second request resumes: {resumed}"
    );
    assert!(
        !resumed.contains("range: bytes=0-"),
        "it resumes after what arrived: {resumed}"
    );
    assert!(
        status["cache"]["entries"].as_u64().unwrap() >= 1,
        "{status}"
    );
}

#[test]
fn a_wrong_sha256_is_refused_and_nothing_is_unpacked() {
    let tarball = app_tarball();
    let trusted = key(7);
    let server = serve(vec![("app.tar.gz", tarball.clone(), false)]);
    let fx = fixture_for(&server, &trusted);
    let wrong = sha256(b"something else");
    apply(&fx, recipe(server.port, "app.tar.gz", &wrong, "true", None));
    let status = fx.wait_phase("failed");
    let error = status["error"].as_str().unwrap();
    assert!(error.contains("checksum mismatch"), "{error}");
    assert!(
        error.contains(&wrong) && error.contains(&sha256(&tarball)),
        "{error}"
    );
    assert_eq!(files_under(&fx.dir("app")), Vec::<String>::new());
    assert!(fx.processes_in_root().is_empty());
}

#[test]
fn a_signature_by_another_key_is_refused() {
    let tarball = app_tarball();
    let signature: Signature = key(9).sign(&tarball);
    let server = serve(vec![
        ("app.tar.gz", tarball.clone(), false),
        (
            "app.tar.gz.sig",
            signature.to_der().as_bytes().to_vec(),
            false,
        ),
    ]);
    let fx = fixture_for(&server, &key(7));
    apply(
        &fx,
        recipe(
            server.port,
            "app.tar.gz",
            &sha256(&tarball),
            "true",
            Some("app.tar.gz.sig"),
        ),
    );
    let status = fx.wait_phase("failed");
    let error = status["error"].as_str().unwrap();
    assert!(error.to_ascii_lowercase().contains("signature"), "{error}");
    assert_eq!(files_under(&fx.dir("app")), Vec::<String>::new());
}

#[test]
fn a_zip_slip_archive_is_refused() {
    let archive = zip_slip();
    let server = serve(vec![("app.zip", archive.clone(), false)]);
    let fx = fixture_for(&server, &key(7));
    apply(
        &fx,
        recipe(server.port, "app.zip", &sha256(&archive), "\"zip\"", None),
    );
    let status = fx.wait_phase("failed");
    let error = status["error"].as_str().unwrap();
    assert!(error.contains("../../escaped.txt"), "{error}");
    let everything = files_under(fx.root.parent().unwrap());
    assert!(
        !everything.iter().any(|f| f.ends_with("escaped.txt")),
        "{everything:#?}"
    );
    assert_eq!(files_under(&fx.dir("app")), Vec::<String>::new());
}

/// `prune-artifacts`: the artifact cache keeps what the applied plan needs
/// and the last `keep` artifacts each component installed; older ones go.
#[test]
fn pruning_the_artifact_cache_keeps_what_the_plan_needs_and_the_latest() {
    let versions: Vec<(String, Vec<u8>)> = (1..=3)
        .map(|n| {
            (
                format!("app-{n}.tar.gz"),
                app_tarball_tagged(&format!("# v{n}")),
            )
        })
        .collect();
    let files: Vec<(&'static str, Vec<u8>, bool)> = versions
        .iter()
        .map(|(name, bytes)| (&*name.clone().leak(), bytes.clone(), false))
        .collect();
    let trusted = key(7);
    let server = serve(files);
    let fx = fixture_for(&server, &trusted);
    for (n, (name, bytes)) in versions.iter().enumerate() {
        apply(&fx, recipe(server.port, name, &sha256(bytes), "true", None));
        let mut last = serde_json::Value::Null;
        let done = fx.daemon.eventually(support::WAIT, || {
            last = fx.status();
            last["phase"] == "applied" && last["cache"]["entries"] == n + 1
        });
        assert!(done, "version {} never applied: {last:#}", n + 1);
    }
    let digests: Vec<String> = versions.iter().map(|(_, bytes)| sha256(bytes)).collect();
    let listed = |plan: &serde_json::Value, which: &str| -> Vec<String> {
        let mut hexes: Vec<String> = plan[which]
            .as_array()
            .unwrap()
            .iter()
            .map(|entry| entry["sha256"].as_str().unwrap().to_string())
            .collect();
        hexes.sort();
        hexes
    };
    let sorted = |mut hexes: Vec<String>| {
        hexes.sort();
        hexes
    };

    let plan = fx
        .call("prune-artifacts", json!({"keep": 2, "dry-run": true}))
        .unwrap();
    assert_eq!(listed(&plan, "deleted"), [digests[0].clone()], "{plan:#}");
    assert_eq!(
        listed(&plan, "kept"),
        sorted(digests[1..].to_vec()),
        "{plan:#}"
    );
    let kept = plan["kept"].to_string();
    assert!(kept.contains("needed by app in the applied plan"), "{kept}");
    assert!(kept.contains("latest 2 of app (#2)"), "{kept}");
    assert_eq!(
        fx.status()["cache"]["entries"],
        3,
        "the dry run deleted something"
    );

    let refused = fx.call("prune-artifacts", json!({"keep": 0})).unwrap_err();
    assert!(refused.contains("at least 1"), "{refused}");

    let pruned = fx.call("prune-artifacts", json!({"keep": 1})).unwrap();
    assert_eq!(
        listed(&pruned, "deleted"),
        sorted(digests[..2].to_vec()),
        "{pruned:#}"
    );
    assert!(pruned["bytes-freed"].as_u64().unwrap() > 0, "{pruned:#}");
    assert_eq!(fx.status()["cache"]["entries"], 1);
    let blobs = files_under(&fx.root.join("cache/blobs"));
    assert!(
        blobs
            .iter()
            .all(|blob| !blob.contains(&digests[0]) && !blob.contains(&digests[1])),
        "{blobs:?}"
    );
    assert_eq!(fx.component("app")["state"], "ready");

    // What the device reports to its site registry: the artifact the plan needs.
    let in_use = fx.call("in-use", json!(null)).unwrap();
    assert_eq!(
        in_use["digests"],
        json!({ format!("sha256:{}", digests[2]): ["artifact of app in the applied plan"] }),
        "{in_use:#}"
    );
}
