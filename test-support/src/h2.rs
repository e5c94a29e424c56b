//! An HTTP/2 client with prior knowledge (h2c): the connection starts with the HTTP/2
//! preface, no upgrade. [`h2_request`] makes one request on a connection of its own;
//! [`H2Connection`] keeps one open across requests and a server's stop, and reports the
//! GOAWAY frames the server sent on it.

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

/// A GOAWAY frame the server sent: no stream above `last_stream_id` will be processed.
#[derive(Debug, Clone, Copy)]
pub struct GoAway {
    /// The last stream the server will process (`2^31 - 1` in the first frame of a
    /// graceful shutdown, which says the stop is coming).
    pub last_stream_id: u32,
    /// The error code; 0 is `NO_ERROR`, a graceful shutdown.
    pub error_code: u32,
    /// When it was read.
    pub at: std::time::Instant,
}

/// An h2c connection kept open between requests, on a runtime of its own that keeps driving
/// it (answering the server's pings) between calls. hyper's client acts on a GOAWAY but
/// does not report it, so the bytes it reads are watched for GOAWAY frames on the way in.
pub struct H2Connection {
    addr: SocketAddr,
    runtime: tokio::runtime::Runtime,
    sender: hyper::client::conn::http2::SendRequest<http_body_util::Full<bytes::Bytes>>,
    frames: std::sync::Arc<std::sync::Mutex<Frames>>,
    ended: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

/// A request sent on an [`H2Connection`] whose response is still to come.
pub struct PendingResponse {
    handle: tokio::runtime::Handle,
    task: tokio::task::JoinHandle<Result<(H2Response, std::time::Instant), String>>,
}

impl PendingResponse {
    /// The response and when its body ended, or why there is none.
    pub fn wait(self) -> Result<(H2Response, std::time::Instant), String> {
        self.handle
            .block_on(self.task)
            .unwrap_or_else(|e| Err(format!("the request's task failed: {e}")))
    }
}

impl H2Connection {
    /// Opens an h2c connection to `addr`.
    pub fn connect(addr: SocketAddr) -> H2Connection {
        use hyper_util::rt::{TokioExecutor, TokioIo};
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::{Arc, Mutex};

        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("tokio runtime");
        let frames = Arc::new(Mutex::new(Frames::default()));
        let ended = Arc::new(AtomicBool::new(false));
        let (watched, done) = (frames.clone(), ended.clone());
        let sender = runtime.block_on(async move {
            let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
            let io = TokioIo::new(Watched {
                inner: stream,
                frames: watched,
            });
            let (sender, connection) = tokio::time::timeout(
                DEADLINE,
                hyper::client::conn::http2::handshake(TokioExecutor::new(), io),
            )
            .await
            .expect("the h2c handshake within the deadline")
            .expect("h2c handshake");
            tokio::spawn(async move {
                let _ = connection.await;
                done.store(true, Ordering::Release);
            });
            sender
        });
        H2Connection {
            addr,
            runtime,
            sender,
            frames,
            ended,
        }
    }

    /// Sends `GET target` on this connection; the response comes later.
    pub fn send(&self, target: &str) -> PendingResponse {
        use bytes::Bytes;
        use http_body_util::{BodyExt, Full};

        let mut sender = self.sender.clone();
        let request = hyper::Request::get(format!("http://{}{target}", self.addr))
            .body(Full::new(Bytes::new()))
            .expect("request");
        let task = self.runtime.spawn(async move {
            let exchange = async move {
                sender.ready().await.map_err(|e| e.to_string())?;
                let response = sender
                    .send_request(request)
                    .await
                    .map_err(|e| e.to_string())?;
                let (parts, incoming) = response.into_parts();
                let body = incoming.collect().await.map_err(|e| e.to_string())?;
                let response = H2Response {
                    status: parts.status.as_u16(),
                    version: parts.version,
                    headers: parts.headers,
                    body: body.to_bytes().to_vec(),
                };
                Ok((response, std::time::Instant::now()))
            };
            tokio::time::timeout(DEADLINE, exchange)
                .await
                .unwrap_or_else(|_| Err(format!("no response within {DEADLINE:?}")))
        });
        PendingResponse {
            handle: self.runtime.handle().clone(),
            task,
        }
    }

    /// `GET target` on this connection: the response, which must come.
    pub fn get(&self, target: &str) -> H2Response {
        match self.send(target).wait() {
            Ok((response, _)) => response,
            Err(e) => panic!("GET {target} on the h2c connection to {}: {e}", self.addr),
        }
    }

    /// The GOAWAY frames the server has sent so far, in order.
    pub fn goaways(&self) -> Vec<GoAway> {
        self.frames.lock().expect("frame log").goaways.clone()
    }

    /// Whether the connection has ended (the server closed it, or it failed).
    pub fn has_ended(&self) -> bool {
        self.ended.load(std::sync::atomic::Ordering::Acquire)
    }
}

/// The frames read so far: the bytes of the one not yet whole, and the GOAWAYs.
#[derive(Default)]
struct Frames {
    partial: Vec<u8>,
    goaways: Vec<GoAway>,
}

impl Frames {
    /// Takes in `bytes` read from the server, noting each GOAWAY frame they complete.
    fn read(&mut self, bytes: &[u8]) {
        const HEADER: usize = 9;
        const GOAWAY: u8 = 0x7;
        self.partial.extend_from_slice(bytes);
        loop {
            let Some(header) = self.partial.get(..HEADER) else {
                return;
            };
            let length =
                usize::from(header[0]) << 16 | usize::from(header[1]) << 8 | usize::from(header[2]);
            let kind = header[3];
            let Some(payload) = self.partial.get(HEADER..HEADER + length) else {
                return;
            };
            if kind == GOAWAY && payload.len() >= 8 {
                let word = |at: usize| {
                    u32::from_be_bytes([
                        payload[at],
                        payload[at + 1],
                        payload[at + 2],
                        payload[at + 3],
                    ])
                };
                self.goaways.push(GoAway {
                    last_stream_id: word(0) & 0x7fff_ffff,
                    error_code: word(4),
                    at: std::time::Instant::now(),
                });
            }
            self.partial.drain(..HEADER + length);
        }
    }
}

/// A connection whose incoming bytes go through [`Frames`] on their way to the client.
struct Watched {
    inner: tokio::net::TcpStream,
    frames: std::sync::Arc<std::sync::Mutex<Frames>>,
}

impl tokio::io::AsyncRead for Watched {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = std::pin::Pin::new(&mut self.inner).poll_read(cx, buf);
        if polled.is_ready() {
            let read = &buf.filled()[before..];
            self.frames.lock().expect("frame log").read(read);
        }
        polled
    }
}

impl tokio::io::AsyncWrite for Watched {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        data: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write(cx, data)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
