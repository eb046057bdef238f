//! A token issuer for registries configured with `auth.token`: an ES256 key with a
//! self-signed certificate (made by the `openssl` CLI) for the registry's
//! `rootcertbundle`, JWT minting, and a minimal token service that trades HTTP basic
//! credentials for tokens, as in the distribution token authentication spec.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use p256::ecdsa::signature::Signer as _;
use p256::ecdsa::{Signature, SigningKey};
use p256::pkcs8::{DecodePrivateKey, EncodePublicKey};
use serde_json::json;
use sha2::{Digest as _, Sha256};

/// The registry's `auth.token.service`, which tokens must name as their audience.
pub const SERVICE: &str = "cairn-test";
/// The registry's `auth.token.issuer`.
pub const ISSUER: &str = "cairn-test-issuer";

/// The libtrust key ID distribution looks up a token's `kid` by: the SHA-256 of the
/// DER SubjectPublicKeyInfo, first 30 bytes, base32 without padding, in groups of 4.
pub fn key_id(key: &SigningKey) -> String {
    let der = key.verifying_key().to_public_key_der().unwrap();
    let hash = Sha256::digest(der.as_bytes());
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut chars = Vec::with_capacity(48);
    // 30 bytes are 240 bits: exactly 48 five-bit groups, so no padding.
    for block in hash[..30].chunks(5) {
        let bits = block.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
        chars.extend(
            (0..8)
                .rev()
                .map(|i| ALPHABET[(bits >> (i * 5)) as usize & 31]),
        );
    }
    chars
        .chunks(4)
        .map(|group| std::str::from_utf8(group).unwrap())
        .collect::<Vec<_>>()
        .join(":")
}

/// What a token claims.
pub struct Grant<'a> {
    pub repository: &'a str,
    pub actions: &'a [&'a str],
    /// Seconds from now until `exp`; negative for an already expired token.
    pub lifetime: i64,
}

impl<'a> Grant<'a> {
    /// Pull and push on `repository` for five minutes.
    pub fn push(repository: &'a str) -> Self {
        Grant {
            repository,
            actions: &["pull", "push"],
            lifetime: 300,
        }
    }
}

/// A signed JWT (ES256) granting `grant`, with the header's `kid` naming `kid`.
pub fn mint(key: &SigningKey, kid: &str, grant: &Grant) -> String {
    static SERIAL: AtomicU64 = AtomicU64::new(0);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let header = json!({"typ": "JWT", "alg": "ES256", "kid": kid});
    let claims = json!({
        "iss": ISSUER,
        "sub": "alice",
        "aud": SERVICE,
        "exp": now + grant.lifetime,
        "nbf": now.min(now + grant.lifetime) - 10,
        "iat": now.min(now + grant.lifetime) - 10,
        "jti": format!("cairn-test-{now}-{}", SERIAL.fetch_add(1, Ordering::SeqCst)),
        "access": [{"type": "repository", "name": grant.repository, "actions": grant.actions}],
    });
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    // JWS ES256: the fixed-size r || s, not DER.
    let signature: Signature = key.sign(signing_input.as_bytes());
    format!(
        "{signing_input}.{}",
        URL_SAFE_NO_PAD.encode(signature.to_bytes())
    )
}

/// One request the token service answered.
#[derive(Clone, Debug)]
pub struct TokenRequest {
    /// The user named in the basic credentials, if any were sent.
    pub user: Option<String>,
    /// The `scope` query parameter.
    pub scope: String,
    /// The `service` query parameter.
    pub service: String,
    /// Whether a token was issued.
    pub granted: bool,
}

/// A signing key with its certificate, and a token service on a loopback port that
/// issues tokens signed by it to one user. Stops on drop.
pub struct TokenIssuer {
    key: SigningKey,
    kid: String,
    /// The PEM certificate for the registry's `rootcertbundle`.
    pub cert: PathBuf,
    /// The token endpoint, for the registry's `realm`.
    pub realm: String,
    /// Every request the service answered, in order.
    requests: Arc<Mutex<Vec<TokenRequest>>>,
    stop: Arc<AtomicBool>,
    addr: String,
    _dir: tempfile::TempDir,
}

impl TokenIssuer {
    /// Generates the key and certificate and starts the service for `(user, password)`.
    pub fn start(user: &str, password: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (key_path, cert) = (dir.path().join("key.pem"), dir.path().join("cert.pem"));
        let out = Command::new("openssl")
            .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
            .args(["ec_paramgen_curve:prime256v1", "-nodes", "-keyout"])
            .arg(&key_path)
            .arg("-out")
            .arg(&cert)
            .args(["-days", "1", "-subj", "/CN=cairn-test"])
            .output()
            .expect("openssl (apt-get install openssl)");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let pem = std::fs::read_to_string(&key_path).unwrap();
        let key = SigningKey::from_pkcs8_pem(&pem).unwrap();
        let kid = key_id(&key);

        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let requests: Arc<Mutex<Vec<TokenRequest>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let expected = format!("{user}:{password}");
        let (key2, kid2, log, stop2) = (key.clone(), kid.clone(), requests.clone(), stop.clone());
        thread::spawn(move || {
            for stream in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let (key, kid, log, expected) =
                    (key2.clone(), kid2.clone(), log.clone(), expected.clone());
                thread::spawn(move || {
                    let _ = serve(stream, &key, &kid, &expected, &log);
                });
            }
        });
        TokenIssuer {
            key,
            kid,
            cert,
            realm: format!("http://{addr}/token"),
            requests,
            stop,
            addr,
            _dir: dir,
        }
    }

    /// A token signed by this issuer's key.
    pub fn token(&self, grant: &Grant) -> String {
        mint(&self.key, &self.kid, grant)
    }

    /// The key ID the registry trusts.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The requests answered so far.
    pub fn log(&self) -> Vec<TokenRequest> {
        self.requests.lock().unwrap().clone()
    }
}

impl Drop for TokenIssuer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(&self.addr);
    }
}

/// Answers one HTTP/1.1 `GET /token?scope=…&service=…` request.
fn serve(
    stream: TcpStream,
    key: &SigningKey,
    kid: &str,
    expected: &str,
    log: &Mutex<Vec<TokenRequest>>,
) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut basic = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.trim().eq_ignore_ascii_case("authorization")
            && let Some(encoded) = value.trim().strip_prefix("Basic ")
        {
            basic = STANDARD
                .decode(encoded.trim())
                .ok()
                .and_then(|b| String::from_utf8(b).ok());
        }
    }
    let target = request_line.split(' ').nth(1).unwrap_or_default();
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let param = |name: &str| {
        query
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| percent_decode(v))
            .unwrap_or_default()
    };
    let (scope, service) = (param("scope"), param("service"));
    // Grant exactly what is asked for a repository, limited to pull and push.
    let grant = scope
        .strip_prefix("repository:")
        .and_then(|rest| rest.rsplit_once(':'))
        .map(|(name, actions)| {
            let actions: Vec<&str> = actions
                .split(',')
                .filter(|a| matches!(*a, "pull" | "push"))
                .collect();
            (name.to_owned(), actions)
        });
    let authorized = basic.as_deref() == Some(expected);
    let granted = authorized && path == "/token" && service == SERVICE && grant.is_some();
    log.lock().unwrap().push(TokenRequest {
        user: basic.map(|b| b.split(':').next().unwrap_or_default().to_owned()),
        scope: scope.clone(),
        service,
        granted,
    });
    let (status, body) = match grant {
        Some((name, actions)) if granted => {
            let token = mint(
                key,
                kid,
                &Grant {
                    repository: &name,
                    actions: &actions,
                    lifetime: 300,
                },
            );
            let body = json!({"token": token, "access_token": token, "expires_in": 300});
            ("200 OK", body.to_string())
        }
        _ if !authorized => (
            "401 Unauthorized",
            r#"{"details":"incorrect username or password"}"#.to_owned(),
        ),
        _ => ("400 Bad Request", r#"{"details":"bad request"}"#.to_owned()),
    };
    let mut stream = stream;
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    )?;
    stream.flush()
}

/// Decodes `%XX` escapes and `+` in a query value.
fn percent_decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
