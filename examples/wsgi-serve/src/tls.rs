//! HTTPS (`--certfile`, `--keyfile`): the certificate chain and key, read and checked while
//! the command line is parsed, and the rustls configuration both hosts serve with.
//!
//! Both files are PEM, as gunicorn and Granian take them. The cryptography is rustls on its
//! `ring` provider; HTTP/2 and HTTP/1.1 are offered by ALPN, so browsers and `curl` get
//! HTTP/2 without prior knowledge.

use std::sync::Arc;
use std::time::Duration;

use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// How long a client may take over the TLS handshake before its connection is closed, so
/// connections that never finish one cannot pile up (actix-web's default, used by both
/// hosts).
pub(crate) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(3);

/// The ALPN protocols offered, most preferred first.
pub(crate) const ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// A PEM certificate chain, the server's certificate first: a `--certfile`.
#[derive(Clone, Debug)]
pub(crate) struct CertChain(Arc<Vec<CertificateDer<'static>>>);

/// A PEM private key (PKCS#8, PKCS#1 or SEC1): a `--keyfile`.
#[derive(Clone, Debug)]
pub(crate) struct PrivateKey(Arc<PrivateKeyDer<'static>>);

/// Reads `--certfile`: every certificate in the file, at least one.
pub(crate) fn cert_chain(path: &str) -> Result<CertChain, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("cannot read certificates from {path}: {e}"))?;
    if certs.is_empty() {
        return Err(format!(
            "{path} holds no certificate (a PEM `BEGIN CERTIFICATE` section)"
        ));
    }
    Ok(CertChain(Arc::new(certs)))
}

/// Reads `--keyfile`: the first private key in the file.
pub(crate) fn private_key(path: &str) -> Result<PrivateKey, String> {
    PrivateKeyDer::from_pem_file(path)
        .map(|key| PrivateKey(Arc::new(key)))
        .map_err(|e| match e {
            rustls::pki_types::pem::Error::NoItemsFound => format!(
                "{path} holds no private key (a PEM `BEGIN PRIVATE KEY`, `BEGIN RSA PRIVATE \
                 KEY` or `BEGIN EC PRIVATE KEY` section)"
            ),
            e => format!("cannot read a private key from {path}: {e}"),
        })
}

/// The server configuration for `chain` and `key`, without ALPN (each host sets its own),
/// or why the key does not go with the certificate.
pub(crate) fn server_config(chain: &CertChain, key: &PrivateKey) -> Result<ServerConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|builder| {
            builder
                .with_no_client_auth()
                .with_single_cert(chain.0.to_vec(), key.0.clone_key())
        })
        .map_err(|e| match e {
            rustls::Error::InconsistentKeys(_) => {
                "the --keyfile key is not the key of the --certfile certificate".to_owned()
            }
            e => format!("cannot serve HTTPS with this certificate and key: {e}"),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_that_is_not_there_is_named() {
        let error = cert_chain("/nonexistent/cert.pem").unwrap_err();
        assert!(error.contains("/nonexistent/cert.pem"), "{error}");
        let error = private_key("/nonexistent/key.pem").unwrap_err();
        assert!(error.contains("/nonexistent/key.pem"), "{error}");
    }

    #[test]
    fn a_file_without_pem_sections_is_refused() {
        let file = std::env::temp_dir().join(format!("serve-tls-empty-{}", std::process::id()));
        std::fs::write(&file, "not PEM\n").unwrap();
        let path = file.to_str().unwrap();
        assert!(cert_chain(path).unwrap_err().contains("no certificate"));
        assert!(private_key(path).unwrap_err().contains("no private key"));
        std::fs::remove_file(&file).unwrap();
    }
}
