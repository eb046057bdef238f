//! The smoke check: the `build` user pushes a tiny image (config, layer,
//! manifest under a `smoke-<n>` tag), the `runtime` user pulls it by digest,
//! the `build` user deletes it. Each step is reported; the registry counts as
//! ready only once every step passed.

use std::time::{Duration, Instant};

use cairn_sdk::http::{Method, Request, Response};
use serde::Serialize;
use sha2::{Digest as _, Sha256};

use crate::login::Login;
use crate::secrets::{User, hex};

const REPOSITORY: &str = "cairn-smoke";
const MANIFEST_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
const TIMEOUT: Duration = Duration::from_secs(10);

/// One step's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    pub step: &'static str,
    pub ok: bool,
    /// The registry's status code, if it answered.
    pub status: Option<u16>,
    pub detail: String,
    pub ms: u64,
}

/// The whole check.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub ok: bool,
    pub steps: Vec<Step>,
}

struct Client<'a> {
    base: &'a str,
    login: &'a Login<'a>,
    steps: Vec<Step>,
}

fn digest_of(bytes: &[u8]) -> String {
    format!("sha256:{}", hex(&Sha256::digest(bytes)))
}

impl Client<'_> {
    /// A request as `user`; `None` (a failed step) when no login could be made.
    fn request(
        &mut self,
        step: &'static str,
        user: User,
        method: Method,
        path_or_url: &str,
    ) -> Option<Request> {
        let url = if path_or_url.starts_with("http") {
            path_or_url.to_string()
        } else {
            format!("{}{path_or_url}", self.base)
        };
        match self.login.authorization(user, &method, &url) {
            Ok(authorization) => Some(
                Request::new(method, url)
                    .header("authorization", authorization)
                    .timeout(TIMEOUT),
            ),
            Err(err) => {
                self.fail(step, format!("cannot log in as {}: {err}", user.name()));
                None
            }
        }
    }

    /// Sends and records the step; the response when it had `expect` status.
    fn step(&mut self, step: &'static str, request: Request, expect: u16) -> Option<Response> {
        let started = Instant::now();
        let sent = request.send();
        let ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let (ok, status, detail, response) = match sent {
            Ok(response) if response.status == expect => {
                (true, Some(response.status), String::new(), Some(response))
            }
            Ok(response) => {
                let status = response.status;
                let body = response.bytes(4096).unwrap_or_default();
                let detail = format!(
                    "expected {expect}, got {status}: {}",
                    String::from_utf8_lossy(&body).trim()
                );
                (false, Some(status), detail, None)
            }
            Err(err) => (false, None, err.to_string(), None),
        };
        self.steps.push(Step {
            step,
            ok,
            status,
            detail,
            ms,
        });
        response
    }

    fn fail(&mut self, step: &'static str, detail: String) {
        self.steps.push(Step {
            step,
            ok: false,
            status: None,
            detail,
            ms: 0,
        });
    }

    /// A pull that must answer 200 with exactly `pushed`.
    fn pull_exactly(
        &mut self,
        step: &'static str,
        request: Request,
        pushed: &[u8],
        what: &str,
    ) -> Option<()> {
        let pulled = self.step(step, request, 200)?;
        if pulled.bytes(64 * 1024).ok().as_deref() != Some(pushed) {
            self.fail(step, format!("the {what} pulled is not the one pushed"));
            return None;
        }
        Some(())
    }

    fn push_blob(&mut self, step: &'static str, bytes: &[u8]) -> Option<()> {
        let path = format!("/v2/{REPOSITORY}/blobs/uploads/");
        let post = self.request(step, User::Build, Method::Post, &path)?;
        let started = self.step(step, post, 202)?;
        let Some(location) = started.header("location").map(str::to_string) else {
            self.fail(step, "the upload has no Location".into());
            return None;
        };
        let separator = if location.contains('?') { '&' } else { '?' };
        let url = format!("{location}{separator}digest={}", digest_of(bytes));
        let put = self
            .request(step, User::Build, Method::Put, &url)?
            .header("content-type", "application/octet-stream")
            .body(bytes.to_vec());
        self.step(step, put, 201).map(|_| ())
    }
}

/// Runs the check against the registry at `base` (`https://host:port`).
pub fn run(base: &str, login: &Login<'_>, round: u64) -> Report {
    let mut client = Client {
        base,
        login,
        steps: Vec::new(),
    };
    let _ = check(&mut client, round);
    let ok = !client.steps.is_empty() && client.steps.iter().all(|step| step.ok);
    Report {
        ok,
        steps: client.steps,
    }
}

fn check(client: &mut Client<'_>, round: u64) -> Option<()> {
    let config = format!("{{\"cairn-smoke\":{round}}}").into_bytes();
    let layer = format!("cairn smoke layer {round}\n").into_bytes();
    client.push_blob("push-config", &config)?;
    client.push_blob("push-layer", &layer)?;
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST_TYPE,
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": digest_of(&config),
            "size": config.len(),
        },
        "layers": [{
            "mediaType": "application/vnd.oci.image.layer.v1.tar",
            "digest": digest_of(&layer),
            "size": layer.len(),
        }],
    })
    .to_string()
    .into_bytes();
    let digest = digest_of(&manifest);
    let put = client
        .request(
            "push-manifest",
            User::Build,
            Method::Put,
            &format!("/v2/{REPOSITORY}/manifests/smoke-{round}"),
        )?
        .header("content-type", MANIFEST_TYPE)
        .body(manifest.clone());
    let pushed = client.step("push-manifest", put, 201)?;
    if pushed.header("docker-content-digest") != Some(digest.as_str()) {
        client.fail(
            "push-manifest",
            format!("the registry did not record {digest}"),
        );
        return None;
    }
    let get = client
        .request(
            "pull-manifest",
            User::Runtime,
            Method::Get,
            &format!("/v2/{REPOSITORY}/manifests/{digest}"),
        )?
        .header("accept", MANIFEST_TYPE);
    client.pull_exactly("pull-manifest", get, &manifest, "manifest")?;
    let get = client.request(
        "pull-layer",
        User::Runtime,
        Method::Get,
        &format!("/v2/{REPOSITORY}/blobs/{}", digest_of(&layer)),
    )?;
    client.pull_exactly("pull-layer", get, &layer, "layer")?;
    if client.login.uses_tokens() {
        // The runtime user's token carries no push: the registry must say so.
        let push = client.request(
            "runtime-push-refused",
            User::Runtime,
            Method::Post,
            &format!("/v2/{REPOSITORY}/blobs/uploads/"),
        )?;
        client.step("runtime-push-refused", push, 401)?;
    }
    let delete = client.request(
        "delete",
        User::Build,
        Method::Delete,
        &format!("/v2/{REPOSITORY}/manifests/{digest}"),
    )?;
    client.step("delete", delete, 202).map(|_| ())
}
