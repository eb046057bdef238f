use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use sha2::{Digest as _, Sha256};

use super::*;
use crate::artifact::ArtifactErrorKind;
use crate::artifact::test_support::{public_pem, sha256_hex, sign_der, signing_key, write};

/// Made with `openssl ecparam -name prime256v1 -genkey`, `openssl ec -pubout`
/// and `openssl dgst -sha256 -sign ec-key.pem -out file.sig file`. Its `s` is
/// in the upper half, which openssl does not normalise: it must still pass.
const OPENSSL_PUBLIC_KEY: &str = "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEUbCsDyKukAWIcHcRp57d4Gv5in46
QvLcRq8FHSGwlzBtxaqVjsfe5weT+sLd4F/W1IHwMWa0BWd2CQ2NAhPWJQ==
-----END PUBLIC KEY-----
";
const OPENSSL_FILE: &[u8] = b"cairn artifact fixture\n";
const OPENSSL_SIG_B64: &str = "MEUCIEqDfje3xJruL94rpgbWWJUESY+7i4nB+57yBlO0ytidAiEA4HlgVPgikjhHZuiuZAhjr/tqGCauGntE13qbzsQtIBU=";

fn digest(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

#[test]
fn sha256_accepts_prefix_and_any_case() {
    let hex = "AB".repeat(32);
    assert_eq!(parse_sha256("u", &hex).unwrap(), "ab".repeat(32));
    assert_eq!(
        parse_sha256("u", &format!("sha256:{hex}")).unwrap(),
        "ab".repeat(32)
    );
    for bad in ["", "sha256:", &"ab".repeat(31), &"zz".repeat(32), "md5:00"] {
        let err = parse_sha256("u", bad).unwrap_err();
        assert_eq!(err.kind, ArtifactErrorKind::Invalid, "{bad}");
    }
    assert_eq!(from_hex(&"0f".repeat(32)), Some([0x0f; 32]));
}

#[test]
fn openssl_signature_verifies_in_every_accepted_encoding() {
    let keys = TrustedKeys::parse(&[OPENSSL_PUBLIC_KEY.to_string()]).unwrap();
    let der = STANDARD.decode(OPENSSL_SIG_B64).unwrap();
    let digest = digest(OPENSSL_FILE);
    keys.verify("u", &digest, &der).unwrap();
    keys.verify("u", &digest, OPENSSL_SIG_B64.as_bytes())
        .unwrap();
    let wrapped = format!("{}\n{}\n", &OPENSSL_SIG_B64[..40], &OPENSSL_SIG_B64[40..]);
    keys.verify("u", &digest, wrapped.as_bytes()).unwrap();
    let raw = Signature::from_der(&der).unwrap().to_bytes();
    keys.verify("u", &digest, STANDARD.encode(raw).as_bytes())
        .unwrap();
}

#[test]
fn signature_from_another_key_is_refused() {
    let signer = signing_key(1);
    let bytes = b"artifact bytes";
    let keys = TrustedKeys::parse(&[public_pem(&signing_key(2))]).unwrap();
    let err = keys
        .verify("https://h/a", &digest(bytes), &sign_der(&signer, bytes))
        .unwrap_err();
    assert_eq!(err.kind, ArtifactErrorKind::Signature);
    assert!(err.to_string().contains("https://h/a"), "{err}");
}

#[test]
fn any_trusted_key_may_sign() {
    let signer = signing_key(3);
    let bytes = b"artifact bytes";
    let keys = TrustedKeys::parse(&[public_pem(&signing_key(2)), public_pem(&signer)]).unwrap();
    keys.verify("u", &digest(bytes), &sign_der(&signer, bytes))
        .unwrap();
}

#[test]
fn tampered_bytes_fail_the_signature() {
    let signer = signing_key(1);
    let keys = TrustedKeys::parse(&[public_pem(&signer)]).unwrap();
    let signature = sign_der(&signer, b"the real artifact");
    let err = keys
        .verify("u", &digest(b"the real artifacT"), &signature)
        .unwrap_err();
    assert_eq!(err.kind, ArtifactErrorKind::Signature);
    let err = keys
        .verify("u", &digest(b"the real artifact"), b"garbage")
        .unwrap_err();
    assert_eq!(err.kind, ArtifactErrorKind::Signature);
}

#[test]
fn no_keys_means_no_signature_passes() {
    let signer = signing_key(1);
    let keys = TrustedKeys::parse(&[]).unwrap();
    let err = keys
        .verify("u", &digest(b"x"), &sign_der(&signer, b"x"))
        .unwrap_err();
    assert_eq!(err.kind, ArtifactErrorKind::Signature);
    assert!(err.message.contains("no trusted keys"), "{err}");
}

#[test]
fn unparsable_keys_are_errors() {
    let err =
        TrustedKeys::parse(&["-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----".into()])
            .unwrap_err();
    assert_eq!(err.kind, ArtifactErrorKind::Invalid);
    assert!(err.message.contains("#1"), "{err}");
    assert!(TrustedKeys::parse(&["not pem".into()]).is_err());
}

#[test]
fn checksum_mismatch_discards_the_download() {
    let dir = tempfile::tempdir().unwrap();
    let partial = write(&dir.path().join("partial/x"), b"what arrived");
    let blob = dir.path().join("blob");
    let expected = sha256_hex(b"what was pinned");
    let err = verify_and_store("https://h/a", &partial, &expected, None, &blob).unwrap_err();
    assert_eq!(err.kind, ArtifactErrorKind::Checksum);
    assert!(err.message.contains(&expected), "{err}");
    assert!(err.message.contains(&sha256_hex(b"what arrived")), "{err}");
    assert!(!partial.exists() && !blob.exists());
}

#[test]
fn matching_download_becomes_the_blob() {
    let dir = tempfile::tempdir().unwrap();
    let partial = write(&dir.path().join("partial/x"), b"pinned");
    let blob = dir.path().join("blob");
    let size = verify_and_store("u", &partial, &sha256_hex(b"pinned"), None, &blob).unwrap();
    assert_eq!(size, 6);
    assert!(!partial.exists());
    assert_eq!(fs::read(&blob).unwrap(), b"pinned");
}
