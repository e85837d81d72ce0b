//! The listener: serves the router over HTTP/1.1 through hyper, on a plain
//! port or over rustls when `[server.tls]` names a certificate chain and key
//! (PEM). One task per connection. `axum::serve` offers no header-read
//! timeout, so both listeners go through hyper's own `http1::Builder` with
//! `header_read_timeout` (`server.header_read_timeout_ms`): a client that
//! does not finish a request's head in time (slow loris), or leaves a
//! keep-alive connection idle that long, is disconnected; the TLS handshake
//! has the same deadline. On shutdown, in-flight requests finish
//! (hyper-util's `GracefulShutdown`) within a bounded grace period.

use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

use crate::config::{ServerConfig, TlsConfig};

/// The certificate or key could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("reading {path}: {reason}")]
    Pem { path: String, reason: String },
    #[error("building the TLS configuration")]
    Config(#[from] rustls::Error),
}

/// A rustls acceptor for the configured certificate and key.
pub fn acceptor(config: &TlsConfig) -> Result<TlsAcceptor, TlsError> {
    let pem_error = |path: &std::path::Path, e: &dyn std::fmt::Display| TlsError::Pem {
        path: path.display().to_string(),
        reason: e.to_string(),
    };
    let certs = CertificateDer::pem_file_iter(&config.cert_file)
        .map_err(|e| pem_error(&config.cert_file, &e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(&config.cert_file, &e))?;
    if certs.is_empty() {
        return Err(pem_error(&config.cert_file, &"no certificate in the file"));
    }
    let key = PrivateKeyDer::from_pem_file(&config.key_file)
        .map_err(|e| pem_error(&config.key_file, &e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    server.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(server)))
}

/// How connections are served.
#[derive(Clone, Copy, Debug)]
pub struct Settings {
    /// Deadline of the TLS handshake and of each request's line and headers.
    pub header_read_timeout: Duration,
    /// How long in-flight requests may run on after the shutdown signal.
    pub shutdown_grace: Duration,
}

impl From<&ServerConfig> for Settings {
    fn from(server: &ServerConfig) -> Settings {
        Settings {
            header_read_timeout: Duration::from_millis(server.header_read_timeout_ms),
            // A request is answered within request_timeout_ms (503 timeout after).
            shutdown_grace: Duration::from_millis(server.request_timeout_ms)
                + Duration::from_secs(1),
        }
    }
}

/// Serve `router` on `listener` (over TLS when `acceptor` is given) until
/// `shutdown` resolves, then let in-flight requests finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    acceptor: Option<TlsAcceptor>,
    router: axum::Router,
    settings: Settings,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(settings.header_read_timeout);
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    tracing::warn!("accepting a connection failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let service = TowerToHyperService::new(router.clone());
        let (http, watcher, acceptor) = (http.clone(), graceful.watcher(), acceptor.clone());
        tokio::spawn(async move {
            let served = match acceptor {
                None => {
                    let connection = http.serve_connection(TokioIo::new(tcp), service);
                    watcher.watch(connection).await
                }
                Some(acceptor) => {
                    let stream = match tokio::time::timeout(
                        settings.header_read_timeout,
                        acceptor.accept(tcp),
                    )
                    .await
                    {
                        Ok(Ok(stream)) => stream,
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, "TLS handshake failed: {e}");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!(%peer, "TLS handshake timed out");
                            return;
                        }
                    };
                    let connection = http.serve_connection(TokioIo::new(stream), service);
                    watcher.watch(connection).await
                }
            };
            if let Err(e) = served {
                tracing::debug!(%peer, "connection ended: {e}");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(settings.shutdown_grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            "in-flight requests did not finish within {:?} of the shutdown signal",
            settings.shutdown_grace
        );
    }
}
