//! Offline checks of the payload format and of [`verify_signatures`].

use super::*;
use crate::supply::signing::{SigningKey, generate_key_pair, sign_blob};

fn key(dir: &std::path::Path, name: &str) -> SigningKey {
    let (path, _) = generate_key_pair(&dir.join(name)).unwrap();
    SigningKey::load(&path).unwrap()
}

#[test]
fn payload_is_cosign_simple_signing() {
    let digest = Digest::of(b"manifest");
    let annotations = BTreeMap::from([("dev.cairn.plugin.name".to_owned(), "counter".to_owned())]);
    let payload = simple_signing_payload("127.0.0.1:5000/plugins/counter", &digest, &annotations);
    let expected = format!(
        "{{\"critical\":{{\"identity\":{{\"docker-reference\":\"127.0.0.1:5000/plugins/counter\"}},\
         \"image\":{{\"docker-manifest-digest\":\"{digest}\"}},\
         \"type\":\"cosign container image signature\"}},\
         \"optional\":{{\"dev.cairn.plugin.name\":\"counter\"}}}}"
    );
    assert_eq!(String::from_utf8(payload).unwrap(), expected);
    let bare = simple_signing_payload("h/r", &digest, &BTreeMap::new());
    assert!(
        String::from_utf8(bare)
            .unwrap()
            .ends_with("\"optional\":null}")
    );
    assert_eq!(
        signature_tag(&digest),
        format!("sha256-{}.sig", digest.hex())
    );
    let desc = signature_descriptor(b"p", "c2ln");
    assert_eq!(desc.media_type, SIMPLE_SIGNING_MEDIA_TYPE);
    assert_eq!(desc.annotations.unwrap()[SIGNATURE_ANNOTATION], "c2ln");
}

#[test]
fn verification_refusals_are_distinct() {
    let dir = tempfile::tempdir().unwrap();
    let alice = key(dir.path(), "alice");
    let trust = TrustStore::from_keys(BTreeMap::from([(
        "alice".to_owned(),
        alice.verifying_key().unwrap(),
    )]));
    let signers = vec!["alice".to_owned()];
    let digest = Digest::of(b"m1");
    let other = Digest::of(b"m2");
    let none = BTreeMap::new();
    let layer = |payload: Vec<u8>| SignatureLayer {
        signature: sign_blob(&alice, &payload),
        payload,
    };

    let good = layer(simple_signing_payload("h/r", &digest, &none));
    assert_eq!(
        verify_signatures(
            std::slice::from_ref(&good),
            &digest,
            &trust,
            &signers,
            &none
        )
        .unwrap(),
        "alice"
    );

    // Valid key, another manifest.
    let err = verify_signatures(std::slice::from_ref(&good), &other, &trust, &signers, &none)
        .unwrap_err();
    assert!(
        matches!(err, SignatureCheckError::WrongDigest { .. }),
        "{err}"
    );
    assert!(err.to_string().contains(other.as_str()), "{err}");

    // Payload bytes altered after signing.
    let mut altered = good.clone();
    altered.payload.push(b' ');
    let err = verify_signatures(&[altered], &digest, &trust, &signers, &none).unwrap_err();
    assert!(
        matches!(err, SignatureCheckError::Untrusted { .. }),
        "{err}"
    );

    // Signed, but not a cosign image signature.
    let wrong_type = String::from_utf8(good.payload.clone())
        .unwrap()
        .replace(COSIGN_SIGNATURE_TYPE, "something else");
    let err = verify_signatures(
        &[layer(wrong_type.into_bytes())],
        &digest,
        &trust,
        &signers,
        &none,
    )
    .unwrap_err();
    assert!(
        matches!(err, SignatureCheckError::InvalidPayload { .. }),
        "{err}"
    );

    // Missing expected annotation is named.
    let expected = BTreeMap::from([("dev.cairn.plugin.name".to_owned(), "counter".to_owned())]);
    let err = verify_signatures(
        std::slice::from_ref(&good),
        &digest,
        &trust,
        &signers,
        &expected,
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("dev.cairn.plugin.name") && err.to_string().contains("missing"),
        "{err}"
    );

    // The most informative refusal wins over an untrusted one.
    let junk = SignatureLayer {
        payload: b"x".to_vec(),
        signature: "AAAA".into(),
    };
    let err = verify_signatures(&[junk, good], &other, &trust, &signers, &none).unwrap_err();
    assert!(
        matches!(err, SignatureCheckError::WrongDigest { .. }),
        "{err}"
    );
}
