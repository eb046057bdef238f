//! Cosign-compatible signatures stored in a real registry, checked by our verifier and
//! by sigstore-rs, the reference implementation.

use std::collections::BTreeMap;

use super::harness::{TestRegistry, bytes, meta};
use crate::state::digest::Digest;
use crate::supply::oci::{
    Reference, Registry, SignatureCheckError, signature_tag, verify_signatures,
};
use crate::supply::signing::{SigningKey, VerifyingKey, generate_key_pair};
use crate::supply::trust::TrustStore;

struct Keys {
    _dir: tempfile::TempDir,
    alice: SigningKey,
    bob: SigningKey,
    mallory: SigningKey,
    trust: TrustStore,
}

fn keys() -> Keys {
    let dir = tempfile::tempdir().unwrap();
    let load = |name: &str| {
        let (key, _) = generate_key_pair(&dir.path().join(name)).unwrap();
        SigningKey::load(&key).unwrap()
    };
    let (alice, bob, mallory) = (load("alice"), load("bob"), load("mallory"));
    let trust = TrustStore::from_keys(BTreeMap::from([
        ("alice".to_owned(), alice.verifying_key().unwrap()),
        ("bob".to_owned(), bob.verifying_key().unwrap()),
    ]));
    Keys {
        _dir: dir,
        alice,
        bob,
        mallory,
        trust,
    }
}

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn name_annotation(name: &str) -> BTreeMap<String, String> {
    BTreeMap::from([("dev.cairn.plugin.name".to_owned(), name.to_owned())])
}

async fn pushed(
    reg: &TestRegistry,
    client: &Registry,
    path: &str,
    seed: u64,
) -> (Reference, Digest) {
    let reference = reg.reference(path);
    let digest = client
        .push_plugin(&reference, &bytes(1000, seed), &meta("counter"), &|_, _| {})
        .await
        .unwrap();
    (reference, digest)
}

#[tokio::test]
async fn sign_verify_merge_and_refusals() {
    let reg = TestRegistry::start();
    let client = reg.client(None);
    let k = keys();
    let (reference, digest) = pushed(&reg, &client, "signed/counter:1", 10).await;
    let counter = name_annotation("counter");

    // Unsigned: an empty list, and a distinct refusal.
    let none = client.signatures(&reference, &digest).await.unwrap();
    assert!(none.is_empty());
    let err =
        verify_signatures(&none, &digest, &k.trust, &names(&["alice"]), &counter).unwrap_err();
    assert!(
        matches!(err, SignatureCheckError::NoSignatures { .. }),
        "{err}"
    );

    client
        .sign(&reference, &digest, &k.alice, &counter)
        .await
        .unwrap();
    let sigs = client.signatures(&reference, &digest).await.unwrap();
    assert_eq!(sigs.len(), 1);
    let key = verify_signatures(
        &sigs,
        &digest,
        &k.trust,
        &names(&["alice", "bob"]),
        &counter,
    )
    .unwrap();
    assert_eq!(key, "alice");

    // Re-signing the same payload with the same key does not duplicate.
    client
        .sign(&reference, &digest, &k.alice, &counter)
        .await
        .unwrap();
    assert_eq!(
        client.signatures(&reference, &digest).await.unwrap().len(),
        1
    );

    // A second signer is added next to the first.
    client
        .sign(&reference, &digest, &k.bob, &counter)
        .await
        .unwrap();
    let sigs = client.signatures(&reference, &digest).await.unwrap();
    assert_eq!(sigs.len(), 2);
    assert_eq!(
        verify_signatures(&sigs, &digest, &k.trust, &names(&["alice"]), &counter).unwrap(),
        "alice"
    );
    assert_eq!(
        verify_signatures(&sigs, &digest, &k.trust, &names(&["bob"]), &counter).unwrap(),
        "bob"
    );

    // Only named keys count.
    let err =
        verify_signatures(&sigs, &digest, &k.trust, &names(&["carol"]), &counter).unwrap_err();
    assert!(
        matches!(err, SignatureCheckError::Untrusted { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("carol"), "{err}");

    // The right key, but for another plugin name.
    let err = verify_signatures(
        &sigs,
        &digest,
        &k.trust,
        &names(&["alice"]),
        &name_annotation("echo"),
    )
    .unwrap_err();
    match &err {
        SignatureCheckError::AnnotationMismatch {
            key,
            annotation,
            expected,
            found,
        } => {
            assert_eq!(
                (key.as_str(), annotation.as_str(), expected.as_str()),
                ("alice", "dev.cairn.plugin.name", "echo")
            );
            assert_eq!(found.as_deref(), Some("counter"));
        }
        other => panic!("unexpected {other}"),
    }

    // Signed by an untrusted key only.
    let (other_ref, other_digest) = pushed(&reg, &client, "signed/other:1", 11).await;
    client
        .sign(&other_ref, &other_digest, &k.mallory, &counter)
        .await
        .unwrap();
    let sigs = client.signatures(&other_ref, &other_digest).await.unwrap();
    let err = verify_signatures(
        &sigs,
        &other_digest,
        &k.trust,
        &names(&["alice", "bob"]),
        &counter,
    )
    .unwrap_err();
    assert!(
        matches!(err, SignatureCheckError::Untrusted { count: 1, .. }),
        "{err}"
    );

    // Signing a digest the registry does not have is refused.
    let err = client
        .sign(&reference, &Digest::of(b"typo"), &k.alice, &counter)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not found"), "{err}");
}

#[tokio::test]
async fn signature_fetch_errors_are_not_swallowed() {
    let reg = TestRegistry::start();
    let client = reg.client(None);
    let (reference, digest) = pushed(&reg, &client, "signed/gone:1", 12).await;
    assert!(
        client
            .signatures(&reference, &digest)
            .await
            .unwrap()
            .is_empty()
    );
    // A registry that is gone is an error, never "no signatures".
    drop(reg);
    let err = client.signatures(&reference, &digest).await.unwrap_err();
    assert!(
        matches!(
            err,
            crate::supply::oci::OciError::Network { attempts: 4, .. }
        ),
        "{err}"
    );
}

#[tokio::test]
async fn sigstore_rs_verifies_our_signature() {
    use sigstore::cosign::verification_constraint::{
        AnnotationVerifier, PublicKeyVerifier, VerificationConstraintVec,
    };
    use sigstore::cosign::{ClientBuilder, CosignCapabilities, verify_constraints};
    use sigstore::crypto::SigningScheme;
    use sigstore::registry::{Auth, ClientConfig, ClientProtocol, OciReference};

    let reg = TestRegistry::start();
    let client = reg.client(None);
    let k = keys();
    let (reference, digest) = pushed(&reg, &client, "cosign/counter:1", 13).await;
    let counter = name_annotation("counter");
    client
        .sign(&reference, &digest, &k.alice, &counter)
        .await
        .unwrap();

    let mut cosign = ClientBuilder::default()
        .with_oci_client_config(ClientConfig {
            protocol: ClientProtocol::HttpsExcept(vec![reg.addr.clone()]),
            ..Default::default()
        })
        .build()
        .unwrap();
    let image: OciReference = format!("{}/cosign/counter:1", reg.addr).parse().unwrap();
    let (sig_image, source_digest) = cosign.triangulate(&image, &Auth::Anonymous).await.unwrap();
    assert_eq!(source_digest, digest.to_string());
    assert!(
        sig_image.to_string().ends_with(&signature_tag(&digest)),
        "{sig_image}"
    );
    let layers = cosign
        .trusted_signature_layers(&Auth::Anonymous, &image)
        .await
        .unwrap();
    // `trusted_signature_layers` returns an empty list on fetch errors: insist on one.
    assert_eq!(layers.len(), 1);

    let pem = |key: &VerifyingKey| key.to_pem().unwrap();
    let verify_with = |key: &SigningKey, annotations: &BTreeMap<String, String>| {
        let constraints: VerificationConstraintVec = vec![
            Box::new(
                PublicKeyVerifier::new(
                    pem(&key.verifying_key().unwrap()).as_bytes(),
                    &SigningScheme::ECDSA_P256_SHA256_ASN1,
                )
                .unwrap(),
            ),
            Box::new(AnnotationVerifier {
                annotations: annotations.clone(),
            }),
        ];
        // With zero constraints verification trivially passes: there are two.
        assert_eq!(constraints.len(), 2);
        verify_constraints(&layers, constraints.iter()).is_ok()
    };
    assert!(verify_with(&k.alice, &counter));
    assert!(!verify_with(&k.mallory, &counter));
    assert!(!verify_with(&k.alice, &name_annotation("echo")));
}
