//! Certificates made with `openssl` for TLS tests: a CA, a server certificate for
//! 127.0.0.1, and a client certificate.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::mosquitto::run;

/// Certificates for the TLS listener and one client, all PEM.
pub struct Certs {
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

pub fn make_certs(dir: &Path) -> Certs {
    let path = |name: &str| dir.join(name);
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    run(Command::new("openssl")
        .args(["req", "-x509", "-days", "2", "-subj", "/CN=cairn test CA"])
        .args(ec)
        .arg("-keyout")
        .arg(path("ca.key"))
        .arg("-out")
        .arg(path("ca.pem")));
    for (name, cn, ext) in [
        (
            "server",
            "127.0.0.1",
            "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
        ),
        ("client", "cairn-client", "extendedKeyUsage=clientAuth\n"),
    ] {
        std::fs::write(path(&format!("{name}.ext")), ext).unwrap();
        run(Command::new("openssl")
            .args(["req", "-subj", &format!("/CN={cn}")])
            .args(ec)
            .arg("-keyout")
            .arg(path(&format!("{name}.key")))
            .arg("-out")
            .arg(path(&format!("{name}.csr"))));
        run(Command::new("openssl")
            .args(["x509", "-req", "-days", "2", "-set_serial", "7"])
            .arg("-in")
            .arg(path(&format!("{name}.csr")))
            .arg("-CA")
            .arg(path("ca.pem"))
            .arg("-CAkey")
            .arg(path("ca.key"))
            .arg("-extfile")
            .arg(path(&format!("{name}.ext")))
            .arg("-out")
            .arg(path(&format!("{name}.pem"))));
    }
    Certs {
        ca: path("ca.pem"),
        server_cert: path("server.pem"),
        server_key: path("server.key"),
        client_cert: path("client.pem"),
        client_key: path("client.key"),
    }
}
