//! SIP over TLS (RFC 3261 §26.2 and §18, `sips:` per RFC 5630): TLS 1.2 and 1.3 by rustls
//! in front of the same accept loop and connection task as TCP ([`super::tcp`]).
//!
//! rustls does the handshake and the record layer and no IO of its own; this module reads
//! the PEM files, bounds how long a handshake may take, counts why handshakes fail, and
//! lets the certificate be replaced while serving:
//!
//! ```text
//!   accept: caps per source and in all (a TLS listener's own, as large as TCP's)
//!     -> handshake within `handshake_timeout`, with the configuration current at accept
//!     -> tcp::serve_connection over the TLS stream: Content-Length framing, deadlines
//! ```
//!
//! [`TlsCerts::reload`] (on SIGHUP) re-reads the files and swaps the configuration that
//! connections accepted afterwards use. A connection already up keeps the session it
//! negotiated, so neither it nor the calls on it notice.
//!
//! With a client CA bundle, clients are asked for a certificate and one that is presented
//! must verify against the bundle, but a client without one still gets through the
//! handshake: whether a trunk requires one is admission's decision, made on
//! [`Peer::Stream`](super::Peer::Stream)'s `client_cert`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;

use super::tcp::{self, Connection, StreamMetrics, TcpLimits};
use super::{Inbound, PacketFilter, Transport};

/// The PEM files TLS is served from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate chain, end-entity certificate first.
    pub cert: PathBuf,
    /// The private key of the end-entity certificate (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// CA certificates that client certificates are verified against; `None` asks for
    /// no client certificate.
    pub client_ca: Option<PathBuf>,
}

/// Why the TLS files cannot be served. Each error names the setting to fix.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        setting: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} holds no PEM {what}", path.display())]
    Missing {
        setting: &'static str,
        path: PathBuf,
        what: &'static str,
    },
    #[error("{} is not valid PEM: {detail}", path.display())]
    BadPem {
        setting: &'static str,
        path: PathBuf,
        detail: String,
    },
    #[error("{} holds a certificate that is not valid X.509 ({error:?})", path.display())]
    BadCertificate {
        setting: &'static str,
        path: PathBuf,
        error: rustls::CertificateError,
    },
    #[error("{} cannot be used: {error}", path.display())]
    Unusable {
        setting: &'static str,
        path: PathBuf,
        error: rustls::Error,
    },
    #[error("{} cannot verify client certificates: {error}", path.display())]
    ClientCa {
        path: PathBuf,
        error: rustls::server::VerifierBuilderError,
    },
    #[error("the private key in {} does not belong to the certificate in {}", key.display(), cert.display())]
    Mismatch { cert: PathBuf, key: PathBuf },
}

impl TlsError {
    /// The setting whose file is at fault.
    pub fn setting(&self) -> &'static str {
        match self {
            TlsError::Read { setting, .. }
            | TlsError::Missing { setting, .. }
            | TlsError::BadPem { setting, .. }
            | TlsError::BadCertificate { setting, .. }
            | TlsError::Unusable { setting, .. } => setting,
            TlsError::ClientCa { .. } => "tls_client_ca",
            TlsError::Mismatch { .. } => "tls_key",
        }
    }
}

/// The TLS configuration served, rebuilt from [`TlsFiles`] on [`TlsCerts::reload`].
#[derive(Debug)]
pub struct TlsCerts {
    files: TlsFiles,
    current: RwLock<Arc<ServerConfig>>,
}

impl TlsCerts {
    /// Reads the files and builds the configuration; any unusable file is an error.
    pub fn load(files: TlsFiles) -> Result<TlsCerts, TlsError> {
        let config = server_config(&files)?;
        Ok(TlsCerts {
            files,
            current: RwLock::new(Arc::new(config)),
        })
    }

    /// Re-reads the files. On success, connections accepted from now on use them; on
    /// failure nothing changes and the current certificate stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        let config = Arc::new(server_config(&self.files)?);
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = config;
        Ok(())
    }

    /// The files this configuration is read from.
    pub fn files(&self) -> &TlsFiles {
        &self.files
    }

    fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(
            self.current
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        )
    }
}

/// Builds the rustls configuration: ring, TLS 1.3 and 1.2 only, the certificate chain and
/// its key (checked to belong together), and the client verifier when a CA bundle is set.
fn server_config(files: &TlsFiles) -> Result<ServerConfig, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain = read_certs("tls_cert", &files.cert)?;
    let key = read_key(&files.key)?;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|error| TlsError::Unusable {
            setting: "tls_cert",
            path: files.cert.clone(),
            error,
        })?;
    let builder = match &files.client_ca {
        None => builder.with_no_client_auth(),
        Some(path) => builder.with_client_cert_verifier(client_verifier(path, provider)?),
    };
    builder
        .with_single_cert(chain, key)
        .map_err(|error| match error {
            rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch) => {
                TlsError::Mismatch {
                    cert: files.cert.clone(),
                    key: files.key.clone(),
                }
            }
            rustls::Error::InvalidCertificate(error) => TlsError::BadCertificate {
                setting: "tls_cert",
                path: files.cert.clone(),
                error,
            },
            error => TlsError::Unusable {
                setting: "tls_key",
                path: files.key.clone(),
                error,
            },
        })
}

fn client_verifier(
    path: &Path,
    provider: Arc<CryptoProvider>,
) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>, TlsError> {
    let setting = "tls_client_ca";
    let mut roots = RootCertStore::empty();
    for cert in read_certs(setting, path)? {
        roots.add(cert).map_err(|error| match error {
            rustls::Error::InvalidCertificate(error) => TlsError::BadCertificate {
                setting,
                path: path.to_owned(),
                error,
            },
            error => TlsError::Unusable {
                setting,
                path: path.to_owned(),
                error,
            },
        })?;
    }
    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
        .allow_unauthenticated()
        .build()
        .map_err(|error| TlsError::ClientCa {
            path: path.to_owned(),
            error,
        })
}

fn read_certs(
    setting: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| pem_error(setting, path, "certificate", e))?;
    if certs.is_empty() {
        return Err(TlsError::Missing {
            setting,
            path: path.to_owned(),
            what: "certificate",
        });
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| pem_error("tls_key", path, "private key", e))
}

fn pem_error(setting: &'static str, path: &Path, what: &'static str, e: pem::Error) -> TlsError {
    let path = path.to_owned();
    match e {
        pem::Error::Io(source) => TlsError::Read {
            setting,
            path,
            source,
        },
        pem::Error::NoItemsFound => TlsError::Missing {
            setting,
            path,
            what,
        },
        other => TlsError::BadPem {
            setting,
            path,
            detail: other.to_string(),
        },
    }
}

const TLS_METRICS: StreamMetrics = StreamMetrics {
    connections: "vca_sip_tls_connections",
    refused: "vca_sip_tls_refused_total",
    closed: "vca_sip_tls_closed_total",
};

/// Accepts connections until the core goes away. Each is served once its handshake
/// completes within `limits.handshake_timeout`; a failed or late handshake closes the
/// connection and is counted in `vca_sip_tls_handshake_failures_total{reason}`. As over
/// TCP, a banned source's connection is closed at once, and so is a connection whose
/// source is banned while it is open.
pub async fn run<P: PacketFilter>(
    listener: TcpListener,
    core: mpsc::Sender<Inbound>,
    limits: TcpLimits,
    shield: Arc<P>,
    certs: Arc<TlsCerts>,
) {
    let guard = shield.clone();
    let accept = move |stream: TcpStream, addr, core| {
        let _ = stream.set_nodelay(true);
        serve(certs.acceptor(), stream, addr, core, limits, guard.clone())
    };
    tcp::accept_loop(listener, core, limits, shield, &TLS_METRICS, accept).await;
}

/// Completes the handshake within `limits.handshake_timeout`, then serves the connection
/// like a TCP one.
async fn serve<P: PacketFilter>(
    acceptor: TlsAcceptor,
    stream: TcpStream,
    addr: SocketAddr,
    core: mpsc::Sender<Inbound>,
    limits: TcpLimits,
    shield: Arc<P>,
) {
    let failures = "vca_sip_tls_handshake_failures_total";
    let stream = match tokio::time::timeout(limits.handshake_timeout, acceptor.accept(stream)).await
    {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => {
            let reason = failure_reason(&e);
            metrics::counter!(failures, "reason" => reason).increment(1);
            tracing::debug!(%addr, error = %e, reason, "TLS handshake failed");
            return;
        }
        Err(_) => {
            metrics::counter!(failures, "reason" => "timeout").increment(1);
            return;
        }
    };
    let client_cert = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(<[_]>::first)
        .map(|cert| Arc::new(cert.clone().into_owned()));
    let connection = Connection {
        addr,
        transport: Transport::Tls,
        client_cert,
    };
    tcp::serve_connection(stream, connection, core, limits, shield, &TLS_METRICS).await;
}

/// Why a handshake failed, as a metric label.
fn failure_reason(e: &std::io::Error) -> &'static str {
    match e.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>()) {
        // Not TLS at all, e.g. plain SIP sent to the TLS port.
        Some(rustls::Error::InvalidMessage(_)) => "invalid_message",
        // TLS 1.1 or older, or nothing in common to negotiate.
        Some(rustls::Error::PeerIncompatible(_)) => "incompatible",
        Some(rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented) => {
            "client_certificate"
        }
        Some(_) => "tls",
        // The peer closed or reset the connection mid-handshake.
        None => "io",
    }
}
