//! `wsgi-serve --certfile/--keyfile` over real TLS connections, on both servers: the application
//! answers over HTTPS and sees `wsgi.url_scheme` `https`, HTTP/2 and HTTP/1.1 are negotiated
//! by ALPN, and certificate files that cannot serve are a bad command line (status 2).
//!
//! The certificate is made by the test (rcgen), for `localhost`, and is the client's only
//! trusted root.

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use common::{each_server, serve_command};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::{CertificateDer, ServerName};
use test_support::DEADLINE;
use test_support::serve::{Server, fail, start};
use test_support::temp::{TempDir, temp_dir};

/// A certificate for `localhost` and its key, as PEM files in a temporary directory.
struct Certificate {
    dir: TempDir,
    der: CertificateDer<'static>,
}

impl Certificate {
    fn new() -> Self {
        let made = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])
            .expect("make a certificate");
        let dir = temp_dir("tls");
        std::fs::write(dir.path().join("cert.pem"), made.cert.pem()).unwrap();
        std::fs::write(dir.path().join("key.pem"), made.signing_key.serialize_pem()).unwrap();
        Certificate {
            der: made.cert.der().clone(),
            dir,
        }
    }

    fn certfile(&self) -> PathBuf {
        self.dir.path().join("cert.pem")
    }

    fn keyfile(&self) -> PathBuf {
        self.dir.path().join("key.pem")
    }
}

/// What one request over TLS got: the protocol ALPN chose, the status and the body.
#[derive(Debug)]
struct Answer {
    alpn: Option<Vec<u8>>,
    version: hyper::Version,
    status: u16,
    body: String,
}

/// Sends `GET /` to `addr` over TLS, trusting only `cert`, offering `alpn`; speaks HTTP/2
/// if the server chose `h2`, HTTP/1.1 otherwise.
fn get(addr: SocketAddr, cert: &Certificate, alpn: &[&[u8]]) -> Answer {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.der.clone()).expect("a trusted root");
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("TLS versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let work = async move {
        let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let tls = connector
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
            .expect("TLS handshake");
        let alpn = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
        let authority = format!("localhost:{}", addr.port());
        let response = if alpn.as_deref() == Some(b"h2") {
            let request = hyper::Request::get(format!("https://{authority}/"))
                .body(Empty::<Bytes>::new())
                .unwrap();
            let (mut sender, connection) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
                    .await
                    .expect("h2 handshake");
            tokio::spawn(connection);
            sender.send_request(request).await.expect("h2 response")
        } else {
            let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
                .await
                .expect("HTTP/1.1 handshake");
            tokio::spawn(connection);
            // HTTP/1.1 in origin form, with the authority in `Host`, as a browser sends it.
            let request = hyper::Request::get("/")
                .header("Host", authority)
                .body(Empty::<Bytes>::new())
                .unwrap();
            sender
                .send_request(request)
                .await
                .expect("HTTP/1.1 response")
        };
        let (parts, body) = response.into_parts();
        let body = body.collect().await.expect("body").to_bytes();
        Answer {
            alpn,
            version: parts.version,
            status: parts.status.as_u16(),
            body: String::from_utf8_lossy(&body).into_owned(),
        }
    };
    runtime.block_on(async move {
        tokio::time::timeout(DEADLINE, work)
            .await
            .expect("the request took too long")
    })
}

/// `wsgi-serve --server SERVER --certfile --keyfile tls_probe.py`, started.
fn serve_tls(server: &str, cert: &Certificate) -> Server {
    let mut command = serve_command();
    command
        .args(["--server", server, "--certfile"])
        .arg(cert.certfile())
        .arg("--keyfile")
        .arg(cert.keyfile())
        .arg("tls_probe.py");
    start(command)
}

#[test]
fn https_reaches_the_application_as_https_over_h2_by_alpn() {
    let cert = Certificate::new();
    each_server(|kind| {
        let server = serve_tls(kind, &cert);
        let answer = get(server.addr, &cert, &[b"h2", b"http/1.1"]);
        assert_eq!(
            answer.alpn.as_deref(),
            Some(&b"h2"[..]),
            "{kind}: {answer:?}"
        );
        assert_eq!(answer.version, hyper::Version::HTTP_2, "{kind}");
        assert_eq!(answer.status, 200, "{kind}: {answer:?}");
        assert_eq!(answer.body, "https HTTP/2\n", "{kind}");
    });
}

#[test]
fn a_client_that_offers_only_http_1_1_gets_it() {
    let cert = Certificate::new();
    each_server(|kind| {
        let server = serve_tls(kind, &cert);
        let answer = get(server.addr, &cert, &[b"http/1.1"]);
        assert_eq!(
            answer.alpn.as_deref(),
            Some(&b"http/1.1"[..]),
            "{kind}: {answer:?}"
        );
        assert_eq!(answer.status, 200, "{kind}: {answer:?}");
        assert_eq!(answer.body, "https HTTP/1.1\n", "{kind}");
    });
}

#[test]
fn certificate_files_that_cannot_serve_are_a_bad_command_line() {
    let cert = Certificate::new();
    let other = Certificate::new();
    let missing = cert.dir.path().join("missing.pem");
    let cases: [(&str, Vec<PathBuf>, &[&str]); 4] = [
        (
            "a missing certificate file",
            vec![missing.clone(), cert.keyfile()],
            &["--certfile", "missing.pem"],
        ),
        (
            "a key file without a key",
            vec![cert.certfile(), cert.certfile()],
            &["--keyfile", "no private key"],
        ),
        (
            "the key of another certificate",
            vec![cert.certfile(), other.keyfile()],
            &["--keyfile", "not the key of the --certfile certificate"],
        ),
        (
            "a certificate without its key",
            vec![cert.certfile()],
            &["--keyfile"],
        ),
    ];
    for (case, files, words) in cases {
        let mut command = serve_command();
        command.arg("--certfile").arg(&files[0]);
        if let Some(key) = files.get(1) {
            command.arg("--keyfile").arg(key);
        }
        command.arg("tls_probe.py");
        let (status, stderr) = fail(command);
        assert_eq!(status.code(), Some(2), "{case}:\n{stderr}");
        for word in words {
            assert!(
                stderr.contains(word),
                "{case}: {word:?} missing from:\n{stderr}"
            );
        }
        assert!(
            !stderr.contains("embedding"),
            "{case}: refused only after start-up began:\n{stderr}"
        );
    }
}
