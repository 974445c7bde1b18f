//! The source flags of `binlogd stream`: which server, as which user, with which
//! password, over which TLS, read into the protocol's [`ConnectOptions`].

use crate::flags::{parse_server_url, read_password};
use anyhow::{Context, bail};
use binlogd_protocol::{ConnectOptions, ServerPublicKey, TlsMode, TlsOptions};
use std::path::PathBuf;

/// How to reach and log in to the source.
#[derive(Debug, clap::Args)]
pub struct SourceArgs {
    /// The server to follow: mysql://USER@HOST:PORT (mariadb:// works too). The password
    /// comes from BINLOGD_SOURCE_PASSWORD or --password-file, never from the URL.
    #[arg(long, env = "BINLOGD_SOURCE", value_name = "URL")]
    pub source: String,
    /// File holding the password of the source user (a trailing newline is ignored).
    #[arg(long, value_name = "PATH")]
    password_file: Option<PathBuf>,
    /// Without TLS, ask the server for its RSA key when caching_sha2_password needs the
    /// password in full (as the mysql client's --get-server-public-key): the key comes over
    /// the same unencrypted connection, so whoever sits in between could read the password.
    #[arg(long, conflicts_with = "server_public_key_file")]
    get_server_public_key: bool,
    /// Without TLS, encrypt the password for caching_sha2_password with this RSA key (the
    /// server's public_key.pem, PEM), as the mysql client's --server-public-key-path.
    #[arg(long, value_name = "PATH")]
    server_public_key_file: Option<PathBuf>,
    /// TLS to the source: disabled, preferred, required, verify-ca, verify-identity.
    #[arg(long, value_enum, default_value = "preferred", value_name = "MODE")]
    tls_mode: TlsModeArg,
    /// PEM file of the CA certificates that sign the server's certificate.
    #[arg(long, value_name = "PATH")]
    tls_ca: Option<PathBuf>,
    /// PEM client certificate chain, for users that REQUIRE X509.
    #[arg(long, value_name = "PATH", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM key of --tls-cert.
    #[arg(long, value_name = "PATH", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Name the server's certificate must carry, when it is not the host in --source.
    #[arg(long, value_name = "NAME")]
    tls_server_name: Option<String>,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum TlsModeArg {
    Disabled,
    Preferred,
    Required,
    VerifyCa,
    VerifyIdentity,
}

impl SourceArgs {
    /// The connection these flags describe; refuses a URL with a password, a verifying
    /// TLS mode without a CA, and unreadable key files.
    pub fn connect_options(&self) -> anyhow::Result<ConnectOptions> {
        let (host, port, user) = parse_server_url(
            &self.source,
            "--source",
            "BINLOGD_SOURCE_PASSWORD or a file named by --password-file",
        )?;
        let password = read_password(
            self.password_file.as_deref(),
            "--password-file",
            "BINLOGD_SOURCE_PASSWORD",
        )?
        .unwrap_or_default();
        if matches!(
            self.tls_mode,
            TlsModeArg::VerifyCa | TlsModeArg::VerifyIdentity
        ) && self.tls_ca.is_none()
        {
            bail!("--tls-mode verify-ca and verify-identity need --tls-ca");
        }
        let tls = TlsOptions {
            mode: match self.tls_mode {
                TlsModeArg::Disabled => TlsMode::Disabled,
                TlsModeArg::Preferred => TlsMode::Preferred,
                TlsModeArg::Required => TlsMode::Required,
                TlsModeArg::VerifyCa => TlsMode::VerifyCa,
                TlsModeArg::VerifyIdentity => TlsMode::VerifyIdentity,
            },
            ca_file: self.tls_ca.clone(),
            client_cert: match (&self.tls_cert, &self.tls_key) {
                (Some(cert), Some(key)) => {
                    crate::secrets::check_secret_file(key, "--tls-key")?;
                    Some((cert.clone(), key.clone()))
                }
                _ => None,
            },
            server_name: self.tls_server_name.clone(),
        };
        let server_public_key = match &self.server_public_key_file {
            Some(path) => ServerPublicKey::Pinned(
                std::fs::read(path)
                    .with_context(|| format!("--server-public-key-file {}", path.display()))?,
            ),
            None if self.get_server_public_key => ServerPublicKey::Fetch,
            None => ServerPublicKey::Refuse,
        };
        Ok(ConnectOptions {
            host,
            port,
            user,
            password,
            tls,
            server_public_key,
        })
    }
}
