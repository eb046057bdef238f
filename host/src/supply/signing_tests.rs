use super::*;
use std::fs;
use std::process::Command;

fn pair(dir: &Path, name: &str) -> (SigningKey, VerifyingKey) {
    let (key, public) = generate_key_pair(&dir.join(name)).unwrap();
    (
        SigningKey::load(&key).unwrap(),
        VerifyingKey::load(&public).unwrap(),
    )
}

#[test]
fn generated_pair_signs_and_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let (key_path, pub_path) = generate_key_pair(&dir.path().join("cosign.v1")).unwrap();
    assert_eq!(key_path, dir.path().join("cosign.v1.key"));
    assert_eq!(pub_path, dir.path().join("cosign.v1.pub"));
    let key_pem = fs::read_to_string(&key_path).unwrap();
    assert!(key_pem.starts_with("-----BEGIN PRIVATE KEY-----"));
    assert!(
        fs::read_to_string(&pub_path)
            .unwrap()
            .starts_with("-----BEGIN PUBLIC KEY-----")
    );
    assert_eq!(
        fs::metadata(&key_path).unwrap().permissions().mode() & 0o777,
        0o600
    );

    let key = SigningKey::load(&key_path).unwrap();
    let public = VerifyingKey::load(&pub_path).unwrap();
    assert_eq!(key.verifying_key().unwrap(), public);
    let sig = sign_blob(&key, b"plugin bytes");
    verify_blob(&public, b"plugin bytes", &sig).unwrap();
    verify_blob(&public, b"plugin bytes", &format!("  {sig}\n")).unwrap();
    let err = verify_blob(&public, b"plugin bytez", &sig).unwrap_err();
    assert!(matches!(err, SignatureError::Mismatch { .. }), "{err}");
    assert!(err.to_string().contains(&public.fingerprint()), "{err}");
    assert!(!format!("{key:?}").contains("PRIVATE"));

    let err = generate_key_pair(&dir.path().join("cosign.v1")).unwrap_err();
    assert!(matches!(err, KeyError::Exists { .. }), "{err}");
    assert_eq!(fs::read_to_string(&key_path).unwrap(), key_pem);
}

#[test]
fn readable_key_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (key_path, _) = generate_key_pair(&dir.path().join("k")).unwrap();
    fs::set_permissions(&key_path, fs::Permissions::from_mode(0o640)).unwrap();
    let err = SigningKey::load(&key_path).unwrap_err();
    assert!(
        matches!(err, KeyError::InsecurePermissions { mode: 0o640, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("chmod 600"), "{err}");
}

#[test]
fn encrypted_and_wrong_pem_are_explained() {
    for label in ENCRYPTED_LABELS {
        let pem = format!("-----BEGIN {label}-----\nAAAA\n-----END {label}-----\n");
        let err = SigningKey::from_pem(&pem).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, KeyError::Encrypted { .. }), "{msg}");
        assert!(
            msg.contains("not supported") && msg.contains("PKCS#8"),
            "{msg}"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let (_, pub_path) = generate_key_pair(&dir.path().join("k")).unwrap();
    let public_pem = fs::read_to_string(&pub_path).unwrap();
    let err = SigningKey::from_pem(&public_pem).unwrap_err();
    assert!(err.to_string().contains("found PUBLIC KEY"), "{err}");
    let err = VerifyingKey::from_pem("not pem").unwrap_err();
    assert!(err.to_string().contains("no PEM block"), "{err}");
    fs::write(dir.path().join("bad.pub"), "garbage").unwrap();
    let err = VerifyingKey::load(&dir.path().join("bad.pub")).unwrap_err();
    assert!(err.to_string().contains("bad.pub"), "{err}");
}

#[test]
fn sec1_keys_load() {
    let secret = p256::SecretKey::random(&mut OsRng);
    let sec1 = secret.to_sec1_pem(LineEnding::LF).unwrap();
    let with_params = format!(
        "-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----\n{}",
        *sec1
    );
    let key = SigningKey::from_pem(&with_params).unwrap();
    let public = VerifyingKey::new(p256::ecdsa::VerifyingKey::from(secret.public_key())).unwrap();
    verify_blob(&public, b"x", &sign_blob(&key, b"x")).unwrap();
}

#[test]
fn garbage_signatures_are_malformed() {
    let dir = tempfile::tempdir().unwrap();
    let (_, public) = pair(dir.path(), "k");
    for garbage in ["", "!!!!", "aGVsbG8gd29ybGQ=", &BASE64.encode([0x30u8; 72])] {
        let err = verify_blob(&public, b"x", garbage).unwrap_err();
        assert!(
            matches!(err, SignatureError::Malformed(_)),
            "{garbage:?}: {err}"
        );
    }
}

/// Runs openssl, or returns None (with a note) when it is not installed.
fn openssl(args: &[&str], dir: &Path) -> Option<Vec<u8>> {
    let out = match Command::new("openssl").args(args).current_dir(dir).output() {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            eprintln!("note: openssl not found, skipping interoperability check");
            return None;
        }
        Err(e) => panic!("running openssl: {e}"),
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "openssl {args:?} failed: {stderr}");
    Some(out.stdout)
}

#[test]
fn openssl_interop() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    if openssl(&["version"], d).is_none() {
        return;
    }
    let (key, public) = pair(d, "ours");
    fs::write(d.join("blob"), b"the plugin component").unwrap();

    // Our signature verifies with openssl.
    let sig = sign_blob(&key, b"the plugin component");
    fs::write(d.join("ours.sig"), BASE64.decode(&sig).unwrap()).unwrap();
    let out = openssl(
        &[
            "dgst",
            "-sha256",
            "-verify",
            "ours.pub",
            "-signature",
            "ours.sig",
            "blob",
        ],
        d,
    );
    assert!(String::from_utf8_lossy(&out.unwrap()).contains("Verified OK"));

    // Our fingerprint is the hash of openssl's DER encoding of the public key.
    let der = openssl(&["pkey", "-pubin", "-in", "ours.pub", "-outform", "DER"], d).unwrap();
    assert_eq!(
        public.fingerprint(),
        format!("sha256:{}", hex::encode(Sha256::digest(&der)))
    );

    // openssl keys load, and their signatures verify (several, to meet high-S values).
    let pkcs8 = openssl(
        &[
            "ecparam",
            "-genkey",
            "-name",
            "prime256v1",
            "-out",
            "sec1.pem",
        ],
        d,
    )
    .and_then(|_| {
        openssl(
            &[
                "pkcs8", "-topk8", "-nocrypt", "-in", "sec1.pem", "-out", "p8.key",
            ],
            d,
        )
    })
    .and_then(|_| openssl(&["pkey", "-in", "p8.key", "-pubout", "-out", "p8.pub"], d));
    assert!(pkcs8.is_some());
    fs::set_permissions(d.join("p8.key"), fs::Permissions::from_mode(0o600)).unwrap();
    let p8 = SigningKey::load(&d.join("p8.key")).unwrap();
    let sec1 = SigningKey::from_pem(&fs::read_to_string(d.join("sec1.pem")).unwrap()).unwrap();
    let p8_pub = VerifyingKey::load(&d.join("p8.pub")).unwrap();
    assert_eq!(p8.verifying_key().unwrap(), p8_pub);
    assert_eq!(sec1.verifying_key().unwrap(), p8_pub);
    for i in 0..8 {
        let content = format!("content {i}");
        fs::write(d.join("blob"), &content).unwrap();
        let der = openssl(&["dgst", "-sha256", "-sign", "p8.key", "blob"], d).unwrap();
        verify_blob(&p8_pub, content.as_bytes(), &BASE64.encode(&der)).unwrap();
        assert!(verify_blob(&public, content.as_bytes(), &BASE64.encode(&der)).is_err());
    }

    // Keys on other curves are refused with a clear reason.
    openssl(
        &[
            "ecparam",
            "-genkey",
            "-name",
            "secp384r1",
            "-noout",
            "-out",
            "p384.pem",
        ],
        d,
    );
    openssl(
        &[
            "pkcs8", "-topk8", "-nocrypt", "-in", "p384.pem", "-out", "p384.key",
        ],
        d,
    );
    let err = SigningKey::from_pem(&fs::read_to_string(d.join("p384.key")).unwrap()).unwrap_err();
    assert!(err.to_string().contains("P-256"), "{err}");
}
