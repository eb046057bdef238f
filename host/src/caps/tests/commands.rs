//! `cairn:host/commands` through the bench: calls reach the kernel only inside the grant.

use crate::caps::bench::Bench;
use crate::caps::commands::Commands;
use crate::contract::bindings::CapError;
use crate::contract::bindings::cairn::host::commands::{CallError, Host as _};
use crate::contract::testing::HostCall;

fn denied(result: Result<Vec<u8>, CallError>, needle: &str) {
    match result {
        Err(CallError::Host(CapError::Denied(message))) => {
            assert!(message.contains(needle), "{message}")
        }
        other => panic!("expected denied, got {other:?}"),
    }
}

#[tokio::test]
async fn granted_calls_reach_the_other_plugin() {
    let mut bench = Bench::new("[grants.commands]\ncall = [\"recipes/plan-*\", \"health\"]");
    let mut commands = bench.view::<Commands>();
    let reply = commands
        .call("recipes".into(), "plan-status".into(), b"{}".to_vec())
        .await
        .unwrap();
    assert_eq!(reply, b"{}");
    commands
        .call("health".into(), "anything".into(), vec![])
        .await
        .unwrap();
    assert_eq!(
        bench.host.recorded(),
        [
            HostCall::Call {
                plugin: "recipes".into(),
                command: "plan-status".into()
            },
            HostCall::Call {
                plugin: "health".into(),
                command: "anything".into()
            },
        ]
    );
}

#[tokio::test]
async fn calls_outside_the_grant_never_reach_the_kernel() {
    let mut bench = Bench::new("[grants.commands]\ncall = [\"recipes/plan-*\"]");
    let mut commands = bench.view::<Commands>();
    denied(
        commands
            .call("recipes".into(), "component-stop".into(), vec![])
            .await,
        "calling `recipes/component-stop` is outside the grant",
    );
    denied(
        commands.call("other".into(), "plan-x".into(), vec![]).await,
        "outside the grant",
    );
    assert!(bench.host.recorded().is_empty());
    assert_eq!(bench.denials(), 2);
}

#[tokio::test]
async fn a_plugin_may_not_call_itself() {
    let mut bench = Bench::new("[grants.commands]\ncall = [\"*\"]");
    let refused = bench
        .view::<Commands>()
        .call("bench".into(), "x".into(), vec![])
        .await;
    assert!(
        matches!(refused, Err(CallError::Host(CapError::Invalid(_)))),
        "{refused:?}"
    );
    assert_eq!(bench.denials(), 0);
}

#[tokio::test]
async fn without_the_grant_calls_are_denied() {
    let mut bench = Bench::new("");
    let refused = bench
        .view::<Commands>()
        .call("a".into(), "b".into(), vec![])
        .await;
    denied(refused, "no [grants.commands]");
    assert_eq!(bench.denials(), 1);
}
