//! The runtime-interpreted options: ports, volumes, secret environment
//! variables and the command line.

use std::net::IpAddr;

use super::runtime::parse_runtime;
use super::*;

fn options(pairs: &[(&str, &str)]) -> Vec<ResolvedOption> {
    pairs
        .iter()
        .map(|(name, value)| ResolvedOption {
            name: name.to_string(),
            value: value.to_string(),
            secret: false,
            origin: Origin::Provided,
        })
        .collect()
}

fn spec(pairs: &[(&str, &str)]) -> RuntimeSpec {
    match parse_runtime(&options(pairs)) {
        Ok(spec) => spec,
        Err(error) => panic!("{pairs:?}: {error}"),
    }
}

fn error(pairs: &[(&str, &str)]) -> String {
    match parse_runtime(&options(pairs)) {
        Ok(spec) => panic!("{pairs:?} should fail, got {spec:?}"),
        Err(error) => error.to_string(),
    }
}

fn ip(text: &str) -> Option<IpAddr> {
    text.parse().ok()
}

fn port(value: &str) -> PortMapping {
    let mut ports = spec(&[("port_web", value)]).ports;
    assert_eq!(ports.len(), 1);
    ports.remove(0)
}

#[test]
fn port_mappings_in_every_form() {
    let mapping =
        |host_ip: Option<IpAddr>, host_port, container_ip, container_port, protocol| PortMapping {
            option: "port_web".into(),
            host_ip,
            host_port,
            container_ip,
            container_port,
            protocol,
        };
    use Protocol::{Tcp, Udp};
    assert_eq!(port("8080"), mapping(None, 8080, None, 8080, Tcp));
    assert_eq!(port("53/udp"), mapping(None, 53, None, 53, Udp));
    assert_eq!(port("53/UDP"), mapping(None, 53, None, 53, Udp));
    assert_eq!(port("8080->80"), mapping(None, 8080, None, 80, Tcp));
    assert_eq!(port("8080 -> 80 / tcp"), mapping(None, 8080, None, 80, Tcp));
    assert_eq!(
        port("127.0.0.1:8080->80/tcp"),
        mapping(ip("127.0.0.1"), 8080, None, 80, Tcp)
    );
    assert_eq!(
        port("8080->10.0.0.2:80/udp"),
        mapping(None, 8080, ip("10.0.0.2"), 80, Udp)
    );
    assert_eq!(
        port("[::1]:8443->443"),
        mapping(ip("::1"), 8443, None, 443, Tcp)
    );
}

#[test]
fn malformed_port_mappings_are_errors() {
    let cases = [
        (
            "0",
            "expected port[/proto] or [hostip:]hostport->[ip:]port[/proto]",
        ),
        ("70000", "expected port[/proto]"),
        ("http", "expected port[/proto]"),
        ("127.0.0.1:80", "expected port[/proto]"),
        ("80/sctp", "the protocol must be tcp or udp"),
        ("80/", "the protocol must be tcp or udp"),
        ("->80", "the host port must be a number from 1 to 65535"),
        (
            "80->",
            "the container port must be a number from 1 to 65535",
        ),
        ("80->0", "the container port must be a number"),
        ("1.2.3:80->80", "the host address is not an IPv4 address"),
        ("::1:80->80", "the host IPv6 address must be in brackets"),
        (
            "[::1]80->80",
            "the host address must be written [ipv6]:port",
        ),
        ("[zz]:80->80", "the host address is not an IPv6 address"),
    ];
    for (value, needle) in cases {
        let message = error(&[("port_web", value)]);
        assert!(message.starts_with("option 'port_web': "), "{message}");
        assert!(message.contains("is not a valid port mapping"), "{message}");
        assert!(
            message.contains(needle),
            "{value:?}: {message:?} should say {needle:?}"
        );
    }
    let message = error(&[("port_", "80")]);
    assert!(message.contains("nothing after its prefix"), "{message}");
}

#[test]
fn volumes_are_absolute_and_may_be_encrypted() {
    let spec = spec(&[
        ("volume_data", "/var/lib/data"),
        ("volume_encrypted_data", "vault-key:ext4"),
        ("volume_logs", "/logs"),
    ]);
    let data = Volume {
        option: "volume_data".into(),
        name: "data".into(),
        path: "/var/lib/data".into(),
        encryption: Some(VolumeEncryption {
            option: "volume_encrypted_data".into(),
            key: "vault-key".into(),
            filesystem: Some("ext4".into()),
        }),
    };
    assert_eq!(spec.volumes[0], data);
    assert_eq!(spec.volumes[1].encryption, None);
    let spec = super::runtime_tests::spec(&[("volume_a", "/a"), ("volume_encrypted_a", "k")]);
    let encryption = spec.volumes[0]
        .encryption
        .as_ref()
        .map(|e| (e.key.as_str(), e.filesystem.clone()));
    assert_eq!(encryption, Some(("k", None)));

    let cases: [(&[(&str, &str)], &str); 5] = [
        (&[("volume_data", "data")], "must be an absolute path"),
        (&[("volume_data", "/a/../etc")], "must not contain '..'"),
        (
            &[("volume_encrypted_data", "key")],
            "there is no volume_data to encrypt",
        ),
        (
            &[("volume_data", "/d"), ("volume_encrypted_data", "key:")],
            "expected key[:filesystem]",
        ),
        (
            &[("volume_data", "/d"), ("volume_encrypted_data", ":ext4")],
            "expected key[:filesystem]",
        ),
    ];
    for (pairs, needle) in cases {
        let message = error(pairs);
        assert!(message.contains(needle), "{pairs:?}: {message}");
    }
}

#[test]
fn secret_env_references_a_secret() {
    let spec = spec(&[
        ("secret_env_DB_PASSWORD", "?db:password"),
        ("secret_env_TOKEN", "api/token"),
    ]);
    let entry = |option: &str, env: &str, secret: &str, key: &str, optional| SecretEnv {
        option: option.into(),
        env: env.into(),
        secret: secret.into(),
        key: key.into(),
        optional,
    };
    assert_eq!(
        spec.secret_env,
        [
            entry(
                "secret_env_DB_PASSWORD",
                "DB_PASSWORD",
                "db",
                "password",
                true
            ),
            entry("secret_env_TOKEN", "TOKEN", "api", "token", false),
        ]
    );
    let cases = [
        ("secret_env_1X", "db:k", "not starting with a digit"),
        ("secret_env_my-var", "db:k", "letters, digits and '_'"),
        ("secret_env_X", "db", "expected [?]secret:key"),
        ("secret_env_X", "db:", "expected [?]secret:key"),
        ("secret_env_X", "?:k", "expected [?]secret:key"),
        ("secret_env_X", "my db:k", "must not contain whitespace"),
    ];
    for (name, value, needle) in cases {
        let message = error(&[(name, value)]);
        assert!(message.contains(needle), "{name}={value}: {message}");
    }
}

#[test]
fn the_command_line_splits_on_whitespace() {
    let spec = spec(&[
        ("runtime_command", " /bin/sh  -e "),
        ("runtime_args", "-c\techo hi"),
    ]);
    assert_eq!(spec.command, ["/bin/sh", "-e"]);
    assert_eq!(spec.args, ["-c", "echo", "hi"]);
}

#[test]
fn empty_values_mean_none_and_other_options_are_ignored() {
    let spec = spec(&[
        ("port_https", ""),
        ("volume_cache", ""),
        ("secret_env_X", ""),
        ("database", "mariadb"),
        ("portable", "yes"),
        ("runtime_args", ""),
    ]);
    assert_eq!(spec, RuntimeSpec::default());
}
