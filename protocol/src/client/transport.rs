//! The byte stream under a client connection: TCP, optionally wrapped in
//! TLS (rustls with the system's roots, or a private CA from a PEM file).

use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::ClientError;
use crate::ServerUrl;

/// How to trust a `wss://` / `https://` server.
#[derive(Debug, Clone, Default)]
pub struct TlsOptions {
    /// A PEM file of extra CA certificates (a private CA), trusted in
    /// addition to the system's roots.
    pub ca_file: Option<PathBuf>,
}

/// A TCP stream, in the clear or inside TLS.
#[derive(Debug)]
pub(crate) enum Transport {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

/// Opens a connection to the server's host and port, with TLS when the
/// address is secure, within `timeout`.
pub(crate) async fn connect(
    server: &ServerUrl,
    tls: &TlsOptions,
    timeout: Duration,
) -> Result<Transport, ClientError> {
    // `host()` keeps IPv6 brackets, as URLs write them; sockets want them off.
    let host = server.host().trim_start_matches('[').trim_end_matches(']');
    let address = format!("{}:{}", server.host(), server.port());
    let connect = async {
        let tcp = TcpStream::connect((host, server.port()))
            .await
            .map_err(|source| ClientError::Connect {
                address: address.clone(),
                source,
            })?;
        // Chat messages are small and latency matters more than packet count.
        let _ = tcp.set_nodelay(true);
        if !server.is_secure() {
            return Ok(Transport::Plain(tcp));
        }
        let config = tls_config(tls)?;
        let name = ServerName::try_from(host.to_owned()).map_err(|err| {
            ClientError::tls(
                format!("{} is not a valid TLS server name: {err}", server.host()),
                Some(err.into()),
            )
        })?;
        let stream = TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .map_err(|err| {
                ClientError::tls(
                    format!("TLS handshake with {address} failed: {err}"),
                    Some(err.into()),
                )
            })?;
        Ok(Transport::Tls(Box::new(stream)))
    };
    tokio::time::timeout(timeout, connect)
        .await
        .map_err(|_| ClientError::Timeout {
            address: address.clone(),
            after: timeout,
        })?
}

fn tls_config(options: &TlsOptions) -> Result<Arc<rustls::ClientConfig>, ClientError> {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    let (added, _ignored) = roots.add_parsable_certificates(native.certs);
    if added == 0 {
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    }
    if let Some(path) = &options.ca_file {
        for cert in read_pem_certificates(path)? {
            roots.add(cert).map_err(|err| {
                ClientError::tls(
                    format!("{}: unusable CA certificate: {err}", path.display()),
                    Some(err.into()),
                )
            })?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|err| ClientError::tls(err.to_string(), Some(err.into())))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

fn read_pem_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, ClientError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(Iterator::collect::<Result<Vec<_>, _>>)
        .map_err(|err| {
            ClientError::tls(
                format!("cannot read CA file {}: {err}", path.display()),
                Some(err.into()),
            )
        })?;
    if certs.is_empty() {
        return Err(ClientError::tls(
            format!("CA file {} holds no PEM certificate", path.display()),
            None,
        ));
    }
    Ok(certs)
}

impl AsyncRead for Transport {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Transport {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_flush(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}
