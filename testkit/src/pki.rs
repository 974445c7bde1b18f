//! A throwaway certificate authority for TLS tests: a CA, a server certificate for
//! `127.0.0.1`/`localhost`, and a client certificate, made with the `openssl` command.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, ensure};

/// PEM files of a test PKI, in a folder the value owns.
#[derive(Debug)]
pub struct TestPki {
    /// The CA certificate.
    pub ca_cert: PathBuf,
    /// The server certificate (SAN: IP 127.0.0.1, DNS localhost), signed by the CA.
    pub server_cert: PathBuf,
    /// The server key.
    pub server_key: PathBuf,
    /// A client certificate (CN binlogd-client), signed by the CA.
    pub client_cert: PathBuf,
    /// The client key.
    pub client_key: PathBuf,
    /// A second CA that signed nothing here: trusting it must fail verification.
    pub other_ca_cert: PathBuf,
    _dir: tempfile::TempDir,
}

impl TestPki {
    /// Makes the keys and certificates.
    pub fn generate() -> Result<TestPki> {
        TestPki::generate_in(&std::env::temp_dir())
    }

    /// Makes the keys and certificates in a new folder inside `parent` (for a chrooted
    /// server, a folder inside its root: see [`crate::MySql::scratch_dir`]).
    pub fn generate_in(parent: &Path) -> Result<TestPki> {
        let dir = tempfile::tempdir_in(parent)?;
        let p = |name: &str| dir.path().join(name);
        make_ca(&p("ca"))?;
        make_ca(&p("other-ca"))?;
        sign(
            dir.path(),
            "server",
            "localhost",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
        )?;
        sign(
            dir.path(),
            "client",
            "binlogd-client",
            "extendedKeyUsage=clientAuth",
        )?;
        Ok(TestPki {
            ca_cert: p("ca.pem"),
            server_cert: p("server.pem"),
            server_key: p("server-key.pem"),
            client_cert: p("client.pem"),
            client_key: p("client-key.pem"),
            other_ca_cert: p("other-ca.pem"),
            _dir: dir,
        })
    }

    /// `mariadbd` arguments that turn TLS on with this PKI.
    pub fn server_args(&self) -> Vec<String> {
        vec![
            format!("--ssl-ca={}", self.ca_cert.display()),
            format!("--ssl-cert={}", self.server_cert.display()),
            format!("--ssl-key={}", self.server_key.display()),
        ]
    }
}

fn openssl(args: &[&str]) -> Result<()> {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .context("run openssl")?;
    ensure!(
        out.status.success(),
        "openssl {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

fn make_ca(base: &Path) -> Result<()> {
    let key = format!("{}-key.pem", base.display());
    let cert = format!("{}.pem", base.display());
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        &key,
        "-out",
        &cert,
        "-days",
        "2",
        "-subj",
        "/CN=binlogd test CA",
    ])
}

fn sign(dir: &Path, name: &str, common_name: &str, extension: &str) -> Result<()> {
    let path = |suffix: &str| dir.join(format!("{name}{suffix}")).display().to_string();
    let ext_file = path(".ext");
    std::fs::write(&ext_file, format!("{extension}\n"))?;
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        &path("-key.pem"),
        "-out",
        &path(".csr"),
        "-subj",
        &format!("/CN={common_name}"),
    ])?;
    let ca = dir.join("ca.pem").display().to_string();
    let ca_key = dir.join("ca-key.pem").display().to_string();
    openssl(&[
        "x509",
        "-req",
        "-in",
        &path(".csr"),
        "-CA",
        &ca,
        "-CAkey",
        &ca_key,
        "-CAcreateserial",
        "-out",
        &path(".pem"),
        "-days",
        "2",
        "-extfile",
        &ext_file,
    ])
}
