//! TLS for the client connection, with rustls (and the server's configuration, for
//! `binlogd serve`).
//!
//! The MySQL protocol upgrades in the middle of the handshake: after the server's greeting
//! the client sends an SSLRequest (the first 32 bytes of its handshake response, with
//! `CLIENT_SSL`), runs the TLS handshake on the raw socket, and sends the full response
//! inside TLS, continuing the packet sequence.
//! Reference: <https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_connection_phase_packets_protocol_ssl_request.html>.
//!
//! Modes mean what they mean for the `mysql` client's `--ssl-mode`: `preferred` and
//! `required` encrypt without checking the certificate, `verify-ca` checks the chain
//! against the CA, `verify-identity` also checks that the certificate names the server.

use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::error::ProtocolError;

/// How to use TLS (`--ssl-mode` of the MySQL client).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TlsMode {
    /// Never.
    Disabled,
    /// When the server offers it, without checking its certificate.
    #[default]
    Preferred,
    /// Always, without checking the certificate; fail if the server has no TLS.
    Required,
    /// Always, and the certificate chain must lead to the configured CA.
    VerifyCa,
    /// Like `VerifyCa`, and the certificate must name the host connected to.
    VerifyIdentity,
}

/// TLS settings of a connection.
#[derive(Debug, Clone, Default)]
pub struct TlsOptions {
    /// The mode.
    pub mode: TlsMode,
    /// PEM file of the CA certificates to trust (needed for `VerifyCa`/`VerifyIdentity`).
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate chain and key, for servers that require X509 users.
    pub client_cert: Option<(PathBuf, PathBuf)>,
    /// The name the certificate must carry, when it differs from the host connected to.
    pub server_name: Option<String>,
}

impl TlsOptions {
    /// Whether the server's certificate is checked (`verify-ca`, `verify-identity`).
    pub fn verifies_server(&self) -> bool {
        matches!(self.mode, TlsMode::VerifyCa | TlsMode::VerifyIdentity)
    }

    pub(crate) fn client_config(&self) -> Result<Arc<ClientConfig>, ProtocolError> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(tls_error)?;
        let builder = match self.mode {
            TlsMode::Disabled | TlsMode::Preferred | TlsMode::Required => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(NoCertificateCheck { provider })),
            TlsMode::VerifyCa | TlsMode::VerifyIdentity => {
                let ca_file = self.ca_file.as_ref().ok_or_else(|| {
                    ProtocolError::Unsupported(
                        "TLS verify-ca/verify-identity need a CA file".to_owned(),
                    )
                })?;
                let mut roots = RootCertStore::empty();
                for cert in
                    CertificateDer::pem_file_iter(ca_file).map_err(|e| pem_error(ca_file, e))?
                {
                    roots
                        .add(cert.map_err(|e| pem_error(ca_file, e))?)
                        .map_err(tls_error)?;
                }
                let webpki = rustls::client::WebPkiServerVerifier::builder_with_provider(
                    Arc::new(roots),
                    provider,
                )
                .build()
                .map_err(|e| ProtocolError::Unsupported(format!("TLS CA: {e}")))?;
                if self.mode == TlsMode::VerifyCa {
                    builder
                        .dangerous()
                        .with_custom_certificate_verifier(Arc::new(ChainOnly(webpki)))
                } else {
                    builder.with_webpki_verifier(webpki)
                }
            }
        };
        let config = match &self.client_cert {
            None => builder.with_no_client_auth(),
            Some((cert, key)) => {
                let chain = CertificateDer::pem_file_iter(cert)
                    .map_err(|e| pem_error(cert, e))?
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| pem_error(cert, e))?;
                let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| pem_error(key, e))?;
                builder
                    .with_client_auth_cert(chain, key_der)
                    .map_err(tls_error)?
            }
        };
        Ok(Arc::new(config))
    }
}

/// The TLS configuration of a server (`binlogd serve`): its certificate chain and private
/// key, both PEM files; TLS 1.2 and 1.3, no client certificates.
pub fn server_config(
    cert_file: &std::path::Path,
    key_file: &std::path::Path,
) -> Result<Arc<rustls::ServerConfig>, ProtocolError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let chain = CertificateDer::pem_file_iter(cert_file)
        .map_err(|e| pem_error(cert_file, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(cert_file, e))?;
    if chain.is_empty() {
        return Err(ProtocolError::Tls(format!(
            "{} holds no certificate",
            cert_file.display()
        )));
    }
    let key = PrivateKeyDer::from_pem_file(key_file).map_err(|e| pem_error(key_file, e))?;
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(tls_error)?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| {
            ProtocolError::Tls(format!(
                "{} and {} do not make a certificate and its key: {e}",
                cert_file.display(),
                key_file.display()
            ))
        })?;
    Ok(Arc::new(config))
}

fn tls_error(e: rustls::Error) -> ProtocolError {
    ProtocolError::Tls(e.to_string())
}

fn pem_error(path: &std::path::Path, e: rustls::pki_types::pem::Error) -> ProtocolError {
    ProtocolError::Tls(format!("read {}: {e}", path.display()))
}

/// Encrypts without authenticating the server (`preferred`, `required`): still checks
/// that the handshake is signed by the certificate's key.
#[derive(Debug)]
struct NoCertificateCheck {
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ServerCertVerifier for NoCertificateCheck {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// `verify-ca`: the full web-PKI check, except that the certificate need not name the
/// server.
#[derive(Debug)]
struct ChainOnly(Arc<rustls::client::WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// The socket under the packet codec: plain TCP, or TLS over it once the handshake
/// upgraded it (`T`: the client's or the server's TLS stream).
#[derive(Debug)]
pub enum MaybeTls<T> {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS over TCP.
    Tls(Box<T>),
}

impl<T> MaybeTls<T> {
    /// Whether the connection is encrypted.
    pub fn is_tls(&self) -> bool {
        matches!(self, MaybeTls::Tls(_))
    }
}

/// A client connection's socket.
pub(crate) type Transport = MaybeTls<tokio_rustls::client::TlsStream<TcpStream>>;

/// A server connection's socket (`binlogd serve`).
pub type ServerTransport = MaybeTls<tokio_rustls::server::TlsStream<TcpStream>>;

impl<T: AsyncRead + Unpin> AsyncRead for MaybeTls<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_read(cx, buf),
            MaybeTls::Tls(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for MaybeTls<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_write(cx, buf),
            MaybeTls::Tls(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_flush(cx),
            MaybeTls::Tls(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_shutdown(cx),
            MaybeTls::Tls(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}
