//! Token auth: the registry runs with `auth.token` and this plugin is its
//! token service, so the `runtime` credential really is pull-only (htpasswd
//! lets every valid user push and delete).
//!
//! Clients log in at the realm (`token-realm`, served by the daemon's HTTP
//! listener) with Basic auth and get a short-lived ES256 JWT granting what
//! their user may do of what they asked: `build` pulls, pushes, deletes and
//! lists the catalog; `runtime` only pulls. The registry trusts tokens signed
//! by a key whose certificate chains to `token/root.pem`; the root's key is
//! thrown away once it signed that certificate, so only the signing key is
//! kept (owner-only, in the private state directory).

use std::fs;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use p256::ecdsa::signature::Signer as _;
use p256::ecdsa::{Signature, SigningKey};
use p256::pkcs8::DecodePrivateKey;
use serde::Serialize;
use x509_cert::Certificate;
use x509_cert::builder::Profile;
use x509_cert::der::{DecodePem, Encode};
use x509_cert::spki::SubjectPublicKeyInfoOwned;

use crate::secrets::{User, hex, write_atomic};
use cairn_sdk::x509 as tls;

/// The `iss` of every token, as the registry's config expects it.
pub const ISSUER: &str = "cairn-registry";
/// How long a token is valid; the registry adds a minute of leeway.
pub const LIFETIME: Duration = Duration::from_secs(300);
const CERT_LIFETIME: Duration = Duration::from_secs(10 * 365 * 86400);

/// What a token allows on one resource (the JWT's `access` claim).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Access {
    #[serde(rename = "type")]
    pub kind: String,
    pub name: String,
    pub actions: Vec<String>,
}

impl Access {
    /// Parses a scope, `TYPE:NAME:ACTIONS` (a name may hold `:`, as in
    /// `host:port/repository`).
    pub fn parse(scope: &str) -> Option<Access> {
        let (kind, rest) = scope.split_once(':')?;
        let (name, actions) = rest.rsplit_once(':')?;
        if kind.is_empty() || name.is_empty() {
            return None;
        }
        Some(Access {
            kind: kind.to_string(),
            name: name.to_string(),
            actions: actions
                .split(',')
                .filter(|action| !action.is_empty())
                .map(str::to_string)
                .collect(),
        })
    }

    /// The part of `self` that `user` may do; `None` when nothing is left.
    pub fn granted_to(&self, user: User) -> Option<Access> {
        let allowed: &[&str] = match (user, self.kind.as_str()) {
            (User::Build, "repository") => &["pull", "push", "delete", "*"],
            (User::Build, "registry") if self.name == "catalog" => &["*"],
            (User::Runtime, "repository") => &["pull"],
            _ => &[],
        };
        let actions: Vec<String> = self
            .actions
            .iter()
            .filter(|action| allowed.contains(&action.as_str()))
            .cloned()
            .collect();
        (!actions.is_empty()).then(|| Access {
            actions,
            ..self.clone()
        })
    }

    /// What the plugin's own request `method path` needs (`path` from `/v2/`).
    pub fn needed_for(method: &str, path: &str) -> Option<Access> {
        let path = path.split('?').next().unwrap_or_default();
        let rest = path.strip_prefix("/v2/")?;
        if rest.starts_with("_catalog") {
            return Access::parse("registry:catalog:*");
        }
        let name = ["/manifests/", "/blobs/", "/tags/"]
            .iter()
            .filter_map(|marker| rest.find(marker))
            .min()
            .map(|end| &rest[..end])?;
        let action = match method {
            "GET" | "HEAD" => "pull",
            "DELETE" => "delete",
            _ => "pull,push",
        };
        Access::parse(&format!("repository:{name}:{action}"))
    }
}

#[derive(Serialize)]
struct Header<'a> {
    typ: &'static str,
    alg: &'static str,
    x5c: [&'a str; 1],
}

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'static str,
    sub: &'a str,
    aud: &'a str,
    exp: u64,
    nbf: u64,
    iat: u64,
    jti: String,
    access: &'a [Access],
}

/// The key tokens are signed with, and its certificate.
pub struct Signer {
    key: SigningKey,
    /// The certificate, DER in standard base64 (the JWT's `x5c`).
    certificate: String,
    /// SHA-256 of `root.pem`: the registry reads it only at start, so the
    /// config names it and changes (restarting the registry) with it.
    pub root_sha256: String,
}

/// The files of the token signer in `dir`.
struct Files {
    root: String,
    certificate: String,
    key: String,
}

impl Files {
    fn in_dir(dir: &str) -> Files {
        Files {
            root: format!("{dir}/root.pem"),
            certificate: format!("{dir}/cert.pem"),
            key: format!("{dir}/key.pem"),
        }
    }
}

/// The root certificate the registry trusts (`rootcertbundle`).
pub fn root_path(dir: &str) -> String {
    Files::in_dir(dir).root
}

impl Signer {
    /// The signer in `dir`; `None` when its files are missing or do not fit
    /// together (a crash while they were made).
    pub fn load(dir: &str) -> Option<Signer> {
        let files = Files::in_dir(dir);
        let root_pem = fs::read(&files.root).ok()?;
        let root = Certificate::from_pem(&root_pem).ok()?;
        let cert = Certificate::from_pem(fs::read(&files.certificate).ok()?).ok()?;
        let key = SigningKey::from_pkcs8_pem(&fs::read_to_string(&files.key).ok()?).ok()?;
        let public = SubjectPublicKeyInfoOwned::from_key(*key.verifying_key()).ok()?;
        let fits = cert.tbs_certificate.subject_public_key_info == public
            && cert.tbs_certificate.issuer == root.tbs_certificate.subject;
        if !fits {
            return None;
        }
        let der = cert.to_der().ok()?;
        Some(Signer {
            key,
            certificate: base64::engine::general_purpose::STANDARD.encode(der),
            root_sha256: hex(&<sha2::Sha256 as sha2::Digest>::digest(&root_pem)),
        })
    }

    /// The signer in `dir`, made (root, certificate, key) when it is not whole.
    pub fn load_or_create(dir: &str) -> Result<Signer, String> {
        if let Some(signer) = Signer::load(dir) {
            return Ok(signer);
        }
        fs::create_dir_all(dir).map_err(|err| format!("cannot create {dir}: {err}"))?;
        let files = Files::in_dir(dir);
        let mut tag = [0u8; 8];
        getrandom::getrandom(&mut tag).map_err(|err| format!("no randomness: {err}"))?;
        let root_key = tls::new_key();
        let root_name = tls::name(&format!("CN=Cairn registry token root {}", hex(&tag)))?;
        let root = tls::issue(
            Profile::Root,
            root_name.clone(),
            &root_key,
            *root_key.verifying_key(),
            CERT_LIFETIME,
            Vec::new(),
        )?;
        let key = tls::new_key();
        let profile = Profile::Leaf {
            issuer: root_name,
            enable_key_agreement: false,
            enable_key_encipherment: false,
        };
        let cert = tls::issue(
            profile,
            tls::name("CN=Cairn registry token signer")?,
            &root_key,
            *key.verifying_key(),
            CERT_LIFETIME,
            Vec::new(),
        )?;
        // The root last: `load` only accepts a root that issued the certificate.
        write_atomic(&files.key, tls::pem_key(&key)?.as_bytes())?;
        write_atomic(&files.certificate, tls::pem(&cert)?.as_bytes())?;
        write_atomic(&files.root, tls::pem(&root)?.as_bytes())?;
        cairn_sdk::info!("made the registry's token signing key ({dir})");
        Signer::load(dir)
            .ok_or_else(|| format!("the token signer just made in {dir} is unreadable"))
    }

    /// A token for `subject` granting `access` at the registry `service`.
    pub fn mint(&self, service: &str, subject: &str, access: &[Access]) -> Result<String, String> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_err(|err| err.to_string())?
            .as_secs();
        let mut jti = [0u8; 16];
        getrandom::getrandom(&mut jti).map_err(|err| format!("no randomness: {err}"))?;
        let header = Header {
            typ: "JWT",
            alg: "ES256",
            x5c: [&self.certificate],
        };
        let claims = Claims {
            iss: ISSUER,
            sub: subject,
            aud: service,
            exp: now + LIFETIME.as_secs(),
            nbf: now,
            iat: now,
            jti: hex(&jti),
            access,
        };
        let signed = format!("{}.{}", jwt_part(&header)?, jwt_part(&claims)?);
        let signature: Signature = self.key.sign(signed.as_bytes());
        Ok(format!(
            "{signed}.{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(signature.to_bytes())
        ))
    }
}

/// A JWT header or claim set: JSON in unpadded base64url.
fn jwt_part<T: Serialize>(value: &T) -> Result<String, String> {
    let json = serde_json::to_vec(value).map_err(|err| err.to_string())?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_parse_with_colons_in_names() {
        let access = Access::parse("repository:localhost:5000/app:pull,push").unwrap();
        assert_eq!(access.kind, "repository");
        assert_eq!(access.name, "localhost:5000/app");
        assert_eq!(access.actions, ["pull", "push"]);
        assert!(Access::parse("repository").is_none());
        assert!(Access::parse(":app:pull").is_none());
    }

    #[test]
    fn runtime_only_ever_pulls() {
        let asked = Access::parse("repository:app:pull,push,delete,*").unwrap();
        assert_eq!(asked.granted_to(User::Runtime).unwrap().actions, ["pull"]);
        assert_eq!(
            asked.granted_to(User::Build).unwrap().actions,
            ["pull", "push", "delete", "*"]
        );
        let push = Access::parse("repository:app:push").unwrap();
        assert!(push.granted_to(User::Runtime).is_none());
        let catalog = Access::parse("registry:catalog:*").unwrap();
        assert!(catalog.granted_to(User::Runtime).is_none());
        assert!(catalog.granted_to(User::Build).is_some());
    }

    #[test]
    fn tokens_are_signed_by_the_certified_key_and_the_signer_survives_reloads() {
        use p256::ecdsa::signature::Verifier as _;
        let dir = tempfile::tempdir().unwrap();
        let dir = dir.path().to_str().unwrap();
        let signer = Signer::load_or_create(dir).unwrap();
        let access = [Access::parse("repository:app:pull").unwrap()];
        let token = signer.mint("localhost:5000", "runtime", &access).unwrap();
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 3);
        let decode = |part: &str| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(part)
                .unwrap()
        };
        let header: serde_json::Value = serde_json::from_slice(&decode(parts[0])).unwrap();
        let claims: serde_json::Value = serde_json::from_slice(&decode(parts[1])).unwrap();
        assert_eq!(header["alg"], "ES256");
        assert_eq!(claims["aud"], "localhost:5000");
        assert_eq!(claims["access"][0]["actions"], serde_json::json!(["pull"]));
        let signature = Signature::from_slice(&decode(parts[2])).unwrap();
        let signed = format!("{}.{}", parts[0], parts[1]);
        signer
            .key
            .verifying_key()
            .verify(signed.as_bytes(), &signature)
            .unwrap();
        // The same signer after a reload; a new one once its root is gone.
        let again = Signer::load_or_create(dir).unwrap();
        assert_eq!(again.root_sha256, signer.root_sha256);
        std::fs::remove_file(root_path(dir)).unwrap();
        let fresh = Signer::load_or_create(dir).unwrap();
        assert_ne!(fresh.root_sha256, signer.root_sha256);
    }

    #[test]
    fn own_requests_ask_for_what_they_do() {
        let needed = |method, path| Access::needed_for(method, path).unwrap();
        assert_eq!(
            needed("GET", "/v2/a/b/manifests/sha256:00"),
            Access::parse("repository:a/b:pull").unwrap()
        );
        assert_eq!(
            needed("DELETE", "/v2/a/manifests/x"),
            Access::parse("repository:a:delete").unwrap()
        );
        assert_eq!(
            needed("PUT", "/v2/a/blobs/uploads/1?_state=x&digest=y"),
            Access::parse("repository:a:pull,push").unwrap()
        );
        assert_eq!(
            needed("GET", "/v2/_catalog?n=10"),
            Access::parse("registry:catalog:*").unwrap()
        );
        assert!(Access::needed_for("GET", "/v2/").is_none());
    }
}
