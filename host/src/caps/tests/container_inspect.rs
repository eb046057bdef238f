//! `inspect-image`: an image's labels and run config, read from its
//! digest-checked config blob in containerd's content store, for the images
//! the grant allows.

use super::container::config;
use crate::caps::bench::Bench;
use crate::caps::container::Container;
use crate::caps::container::testbed::{TestContainerd, TestRegistry, push_labelled};
use crate::contract::bindings::CapError;
use crate::contract::bindings::cairn::host::container::{Host as _, PullPolicy};
use crate::contract::testing::FakeHost;

const GRANT: &str = "[grants.container]\nimages = [\"127.0.0.1:*/apps/*\"]\n";

#[tokio::test(flavor = "multi_thread")]
async fn an_images_labels_and_run_config_come_from_its_config() {
    let containerd = TestContainerd::start();
    let registry = TestRegistry::start();
    let options = r#"{"database=&db": ["*database_port"], "?port_http": ["8080"]}"#;
    let labels = [
        ("io.nanocloud.options", options),
        ("org.opencontainers.image.title", "app"),
    ];
    let image = push_labelled(&registry, "apps/labelled", "1", &labels).await;
    let mut bench = Bench::with_config(GRANT, FakeHost::default(), config(&containerd, &registry));
    let mut view = bench.view::<Container>();

    // Not on the device yet.
    let missing = view.inspect_image(image.reference.clone()).await;
    assert!(matches!(missing, Err(CapError::NotFound(_))), "{missing:?}");

    view.pull(image.reference.clone(), PullPolicy::IfNotPresent)
        .await
        .unwrap();
    let inspected = view.inspect_image(image.reference.clone()).await.unwrap();
    assert_eq!(inspected.digest, image.digest);
    assert_eq!(
        inspected.labels,
        [
            ("io.nanocloud.options".to_string(), options.to_string()),
            (
                "org.opencontainers.image.title".to_string(),
                "app".to_string()
            ),
        ]
    );
    assert_eq!(inspected.cmd, ["/bin/sh"]);
    assert_eq!(inspected.env, ["PATH=/bin"]);
    assert_eq!(inspected.working_dir, "/");
    assert!(inspected.entrypoint.is_empty() && inspected.exposed_ports.is_empty());

    // Outside the grant: refused before the device is even looked at.
    let other = image.reference.replace("/apps/", "/other/");
    let refused = view.inspect_image(other).await;
    assert!(matches!(refused, Err(CapError::Denied(_))), "{refused:?}");
    let malformed = view.inspect_image("no such reference!".into()).await;
    assert!(malformed.is_err(), "{malformed:?}");
}
