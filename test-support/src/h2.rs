//! An HTTP/2 client with prior knowledge (h2c): the connection starts with the HTTP/2
//! preface, no upgrade.

use std::net::SocketAddr;

use crate::DEADLINE;
use crate::gate::Gate;
use crate::wire::find;

/// The response to an HTTP/2 request.
#[derive(Debug)]
pub struct H2Response {
    /// The status code.
    pub status: u16,
    /// The version the response came in.
    pub version: hyper::Version,
    /// The header fields.
    pub headers: hyper::HeaderMap,
    /// The whole body.
    pub body: Vec<u8>,
}

/// A `GET` (or, with a body, a `POST`) of `target` over h2c. If `gate` is given, the
/// response body must contain `first` before the gate is opened: HTTP/2 streams too.
pub fn h2_request(
    addr: SocketAddr,
    target: &str,
    body: Option<Vec<u8>>,
    gate: Option<(&Gate, &[u8])>,
) -> H2Response {
    use bytes::Bytes;
    use http_body_util::{BodyExt, Full};
    use hyper_util::rt::{TokioExecutor, TokioIo};

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async move {
        let work = async move {
            let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
            let (mut sender, connection) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
                    .await
                    .expect("h2c handshake");
            tokio::spawn(connection);
            let method = if body.is_some() { "POST" } else { "GET" };
            let request = hyper::Request::builder()
                .method(method)
                .uri(format!("http://{addr}{target}"))
                .body(Full::new(Bytes::from(body.unwrap_or_default())))
                .expect("request");
            let response = sender.send_request(request).await.expect("h2 response");
            let (parts, mut incoming) = response.into_parts();
            let mut seen = Vec::new();
            if let Some((gate, first)) = gate {
                while find(&seen, first).is_none() {
                    let frame = incoming
                        .frame()
                        .await
                        .unwrap_or_else(|| panic!("h2 body ended before {first:?}: {seen:?}"))
                        .expect("h2 body frame");
                    if let Ok(data) = frame.into_data() {
                        seen.extend_from_slice(&data);
                    }
                }
                gate.open();
            }
            let rest = incoming.collect().await.expect("h2 body").to_bytes();
            seen.extend_from_slice(&rest);
            H2Response {
                status: parts.status.as_u16(),
                version: parts.version,
                headers: parts.headers,
                body: seen,
            }
        };
        tokio::time::timeout(DEADLINE, work)
            .await
            .unwrap_or_else(|_| {
                panic!("the HTTP/2 exchange with {addr} did not end within {DEADLINE:?}")
            })
    })
}
