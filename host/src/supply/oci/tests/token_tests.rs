//! Bearer-token authentication against a registry configured with `auth.token`:
//! pre-issued tokens from the credentials file, the token dance oci-client performs
//! with a username and password, and refusal of everything else.

use p256::ecdsa::SigningKey;
use rand_core::OsRng;

use super::harness::{TestRegistry, bytes, meta};
use super::token_service::{Grant, TokenIssuer, key_id, mint};
use crate::state::digest::Digest;
use crate::supply::oci::{
    Credentials, OciError, Reference, Registry, RegistryCredential, RegistryOptions, Secret,
};

const USER: &str = "alice";
const PASSWORD: &str = "t0ken-Service-pa55";

fn no_progress(_: u64, _: u64) {}

fn bearer(reg: &TestRegistry, token: &str) -> Registry {
    reg.client_with(Some(RegistryCredential::Bearer {
        token: Secret::new(token),
    }))
}

/// Push, resolve and pull by the returned digest; the pulled bytes must be `wasm`.
async fn round_trip(client: &Registry, reference: &Reference, wasm: &[u8]) -> Digest {
    let digest = client
        .push_plugin(reference, wasm, &meta("echo"), &|_, _| {})
        .await
        .unwrap();
    assert_eq!(client.resolve(reference).await.unwrap(), digest);
    let pulled = client
        .pull_plugin(reference, &digest, &no_progress)
        .await
        .unwrap();
    assert_eq!(pulled.wasm, wasm);
    assert_eq!(pulled.manifest_digest, digest);
    digest
}

/// Push, resolve and pull must all be refused as unauthorized for `as_who`, naming the
/// registry, and without `secret` anywhere in the error.
async fn assert_refused(
    client: &Registry,
    reg: &TestRegistry,
    reference: &Reference,
    digest: &Digest,
    as_who: &str,
    secret: &str,
) {
    let wasm = bytes(1000, 9);
    for (op, err) in [
        (
            "push",
            client
                .push_plugin(reference, &wasm, &meta("echo"), &|_, _| {})
                .await
                .unwrap_err(),
        ),
        ("resolve", client.resolve(reference).await.unwrap_err()),
        (
            "pull",
            client
                .pull_plugin(reference, digest, &no_progress)
                .await
                .unwrap_err(),
        ),
    ] {
        let text = format!("{err} {err:?}");
        assert!(
            matches!(&err, OciError::Unauthorized { as_who: who, .. } if who == as_who),
            "{op}: {text}"
        );
        assert!(text.contains(&reg.addr), "{op}: {text}");
        assert!(!text.contains(secret), "{op} leaks the secret: {text}");
        // Nor any recognisable piece of it (a JWT's signature part, say).
        for part in secret.split('.').filter(|p| p.len() >= 8) {
            assert!(
                !text.contains(part),
                "{op} leaks part of the secret: {text}"
            );
        }
    }
}

#[tokio::test]
async fn token_from_credentials_file_pushes_resolves_and_pulls() {
    let issuer = TokenIssuer::start(USER, PASSWORD);
    let reg = TestRegistry::start_with_token_auth(&issuer);
    let token = issuer.token(&Grant::push("auth/echo"));
    let file = format!("[registries.\"{}\"]\ntoken = \"{token}\"\n", reg.addr);
    let credentials = Credentials::parse(&file).unwrap();
    let client = Registry::new(RegistryOptions {
        credentials: Some(credentials),
        ..reg.options()
    })
    .unwrap();
    let reference = reg.reference("auth/echo:1");
    let wasm = bytes(8192, 3);
    round_trip(&client, &reference, &wasm).await;
    // The token went straight to the registry: the token service was never asked.
    assert!(issuer.log().is_empty(), "{:?}", issuer.log());

    // A pull-only token reads, but cannot write.
    let read_only = issuer.token(&Grant {
        actions: &["pull"],
        ..Grant::push("auth/echo")
    });
    let reader = bearer(&reg, &read_only);
    let digest = reader.resolve(&reference).await.unwrap();
    let pulled = reader
        .pull_plugin(&reference, &digest, &no_progress)
        .await
        .unwrap();
    assert_eq!(pulled.wasm, wasm);
    let err = reader
        .push_plugin(
            &reg.reference("auth/echo:2"),
            &wasm,
            &meta("echo"),
            &|_, _| {},
        )
        .await
        .unwrap_err();
    assert!(matches!(err, OciError::Unauthorized { .. }), "{err}");
    assert!(!err.to_string().contains(&read_only), "{err}");
}

#[tokio::test]
async fn forged_expired_and_foreign_tokens_are_refused() {
    let issuer = TokenIssuer::start(USER, PASSWORD);
    let reg = TestRegistry::start_with_token_auth(&issuer);
    let reference = reg.reference("auth/echo:1");
    let digest = round_trip(
        &bearer(&reg, &issuer.token(&Grant::push("auth/echo"))),
        &reference,
        &bytes(4096, 4),
    )
    .await;

    let stranger = SigningKey::random(&mut OsRng);
    let refused = [
        (
            "signed by another key under the trusted key ID",
            mint(&stranger, issuer.kid(), &Grant::push("auth/echo")),
        ),
        (
            "signed by another key under its own key ID",
            mint(&stranger, &key_id(&stranger), &Grant::push("auth/echo")),
        ),
        (
            "expired an hour ago",
            issuer.token(&Grant {
                lifetime: -3600,
                ..Grant::push("auth/echo")
            }),
        ),
        (
            "for another repository",
            issuer.token(&Grant::push("auth/other")),
        ),
    ];
    for (what, token) in refused {
        eprintln!("token {what}");
        let client = bearer(&reg, &token);
        assert_refused(&client, &reg, &reference, &digest, "bearer token", &token).await;
    }
    // Every refusal was the registry's own: nobody went to the token service.
    assert!(issuer.log().is_empty(), "{:?}", issuer.log());
}

#[tokio::test]
async fn password_login_goes_through_the_token_service() {
    let issuer = TokenIssuer::start(USER, PASSWORD);
    let reg = TestRegistry::start_with_token_auth(&issuer);
    let reference = reg.reference("auth/echo:1");
    let client = reg.client(Some((USER, PASSWORD)));
    let digest = round_trip(&client, &reference, &bytes(6000, 5)).await;

    let log = issuer.log();
    assert!(!log.is_empty(), "the token service was never asked");
    for request in &log {
        assert!(request.granted, "{request:?}");
        assert_eq!(request.user.as_deref(), Some(USER), "{request:?}");
        assert_eq!(request.service, "cairn-test", "{request:?}");
    }
    let scopes: Vec<&str> = log.iter().map(|r| r.scope.as_str()).collect();
    assert!(
        scopes.contains(&"repository:auth/echo:pull,push"),
        "{scopes:?}"
    );
    assert!(scopes.contains(&"repository:auth/echo:pull"), "{scopes:?}");

    let wrong = "WRONG-t0ken-pa55";
    let bad = reg.client(Some((USER, wrong)));
    let asked = issuer.log().len();
    assert_refused(&bad, &reg, &reference, &digest, "user \"alice\"", wrong).await;
    assert_refused(&bad, &reg, &reference, &digest, "user \"alice\"", PASSWORD).await;
    let denied = &issuer.log()[asked..];
    assert!(
        !denied.is_empty(),
        "the wrong password never reached the token service"
    );
    assert!(denied.iter().all(|r| !r.granted), "{denied:?}");
}

#[tokio::test]
async fn anonymous_access_is_refused() {
    let issuer = TokenIssuer::start(USER, PASSWORD);
    let reg = TestRegistry::start_with_token_auth(&issuer);
    let reference = reg.reference("auth/echo:1");
    let digest = round_trip(
        &reg.client(Some((USER, PASSWORD))),
        &reference,
        &bytes(2048, 6),
    )
    .await;

    let anonymous = reg.client(None);
    assert_refused(&anonymous, &reg, &reference, &digest, "anonymous", PASSWORD).await;
    let err = anonymous.resolve(&reference).await.unwrap_err();
    assert!(err.to_string().contains("add credentials"), "{err}");
}
