//! axum 0.8 on hyper as the host, over plain TCP, TLS or a UNIX socket.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, Response, Version};
use axum::serve::ListenerExt;
use futures::future::Either;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use rustls::ServerConfig;
use tokio::net::TcpStream;
use tokio::sync::{Notify, watch};
use tower_service::Service;
use wsgi_axum::WsgiService;
use wsgi_core::{Engine, Scheme};

use super::axum_front;
use super::tls_listener::TlsListener;
use super::{Front, Running};
use crate::health::Health;
use crate::listen::Listener;

/// Serves `engine` on `listeners` (under `mount`, if not empty) until stopped; with `tls`,
/// TCP listeners speak HTTPS, HTTP/2 or HTTP/1.1 as ALPN chooses (UNIX sockets stay plain:
/// the proxy in front terminates TLS).
pub(crate) fn serve(
    listeners: Vec<Listener>,
    engine: Engine,
    mount: &str,
    tls: Option<Arc<ServerConfig>>,
    front: &Front,
) -> Result<Running, String> {
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut servers = Vec::with_capacity(listeners.len());
    for listener in listeners {
        let mut service = WsgiService::new(engine.clone());
        if !mount.is_empty() {
            // The engine answers 404 outside the mount itself, for `/py` and `/py/...` alike.
            service = service.mount(mount);
        }
        let server = match listener {
            Listener::Tcp(tcp) => {
                let local = tcp
                    .local_addr()
                    .map_err(|e| format!("cannot read the socket's address: {e}"))?;
                let tcp = tokio::net::TcpListener::from_std(tcp)
                    .map_err(|e| format!("cannot use the socket: {e}"))?;
                let service = service.local_addr(local);
                // Small streamed chunks must not wait for Nagle's algorithm.
                match &tls {
                    None => spawn(
                        tcp.tap_io(|tcp| nodelay(tcp)),
                        App::new(service, front),
                        front.health.clone(),
                        stop_rx.clone(),
                    ),
                    Some(config) => {
                        let mut config = ServerConfig::clone(config);
                        config.alpn_protocols =
                            crate::tls::ALPN.iter().map(|p| p.to_vec()).collect();
                        let listener = TlsListener::new(tcp, Arc::new(config))
                            .map_err(|e| format!("cannot use the socket: {e}"))?
                            .tap_io(|tls| nodelay(tls.get_ref().0));
                        let service = service.scheme(Scheme::Https);
                        let app = App::new(service, front);
                        spawn(listener, app, front.health.clone(), stop_rx.clone())
                    }
                }
            }
            Listener::Unix(unix) => {
                let unix = tokio::net::UnixListener::from_std(unix)
                    .map_err(|e| format!("cannot use the socket: {e}"))?;
                // Its peers are trusted proxies only by `--trusted-proxy unix`.
                let app = App::new(service.unix_socket(), front);
                spawn(unix, app, front.health.clone(), stop_rx.clone())
            }
        };
        servers.push(server);
    }
    let aborts: Vec<_> = servers.iter().map(|s| s.abort_handle()).collect();
    Ok(Running {
        done: Box::pin(async move {
            // Each server ends when stopped; one that ends early ends them all.
            let (ended, _, rest) = futures::future::select_all(servers).await;
            let outcome = ended.map_err(|e| e.to_string());
            for server in rest {
                let _ = server.await;
            }
            outcome
        }),
        stop: Box::new(move |graceful| {
            if graceful {
                let _ = stop_tx.send(true);
            } else {
                aborts.iter().for_each(tokio::task::AbortHandle::abort);
            }
        }),
    })
}

/// The service a listener serves: the application's alone, or behind [`axum_front::Front`].
#[derive(Clone)]
enum App {
    Bare(WsgiService),
    Front(axum_front::Front),
}

impl App {
    /// `service`, behind the front when `front` asks for anything.
    fn new(service: WsgiService, front: &Front) -> App {
        if front.is_needed() {
            let health_path = front.health_path.clone();
            App::Front(axum_front::Front::new(
                service,
                front.health.clone(),
                health_path,
            ))
        } else {
            App::Bare(service)
        }
    }
}

impl Service<Request<Body>> for App {
    type Response = Response<Body>;
    type Error = Infallible;
    // Either future as it is: the bare application's is not boxed.
    type Future = Either<
        <WsgiService as Service<Request<Body>>>::Future,
        <axum_front::Front as Service<Request<Body>>>::Future,
    >;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        match self {
            App::Bare(service) => service.poll_ready(cx),
            App::Front(service) => service.poll_ready(cx),
        }
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        match self {
            App::Bare(service) => Either::Left(service.call(request)),
            App::Front(service) => Either::Right(service.call(request)),
        }
    }
}

/// The peer of a connection as the application sees it: a TCP client's address, none on a
/// UNIX socket.
trait PeerAddr {
    fn peer(&self) -> Option<SocketAddr>;
}

impl PeerAddr for SocketAddr {
    fn peer(&self) -> Option<SocketAddr> {
        Some(*self)
    }
}

impl PeerAddr for tokio::net::unix::SocketAddr {
    fn peer(&self) -> Option<SocketAddr> {
        None
    }
}

/// Serves `app` on `listener` until `stop` turns true, then lets its connections finish
/// (idle ones close at once, busy ones after their response) and ends when they have.
/// From the start of a drain (`health`), HTTP/2 connections are sent GOAWAY.
///
/// hyper-util's connections as `axum::serve` makes them, but a loop of this host's own:
/// `axum::serve` can only shut every connection down and stop accepting at once, while
/// during `--shutdown-delay` this host must go on accepting and send away HTTP/2 clients
/// only.
fn spawn<L>(
    mut listener: L,
    app: App,
    health: Health,
    mut stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()>
where
    L: axum::serve::Listener,
    L::Addr: PeerAddr,
{
    tokio::spawn(async move {
        // Each connection holds a receiver; the sender's `closed` is the last one ending.
        let (open_tx, open_rx) = watch::channel(());
        loop {
            let (io, addr) = tokio::select! {
                accepted = listener.accept() => accepted,
                _ = stop.wait_for(|stop| *stop) => break,
            };
            let connection =
                serve_connection(io, addr.peer(), app.clone(), health.clone(), stop.clone());
            let open = open_rx.clone();
            tokio::spawn(async move {
                connection.await;
                drop(open);
            });
        }
        // No more connections: the socket closes now, not when the last one ends.
        drop(listener);
        drop(open_rx);
        open_tx.closed().await;
    })
}

/// Serves one connection with `app` until it ends, shutting it down gracefully once `stop`
/// turns true, or, for HTTP/2, once `health` says a drain has begun.
async fn serve_connection<I>(
    io: I,
    peer: Option<SocketAddr>,
    app: App,
    health: Health,
    mut stop: watch::Receiver<bool>,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    // hyper-util does not say which protocol a connection speaks; its requests do.
    let http2 = Arc::new(Notify::new());
    let speaks_http2 = http2.clone();
    let service = hyper::service::service_fn(move |mut request: Request<Incoming>| {
        if request.version() == Version::HTTP_2 {
            speaks_http2.notify_one();
        }
        if let Some(peer) = peer {
            request.extensions_mut().insert(ConnectInfo(peer));
        }
        // Always ready (the engine answers 503 itself when full), so no `poll_ready` wait.
        app.clone().call(request.map(Body::new))
    });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // As `axum::serve` does: extended CONNECT over HTTP/2.
    builder.http2().enable_connect_protocol();
    let connection = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
    tokio::pin!(connection);
    // HTTP/2 has no `Connection: close`: during the drain its client is sent GOAWAY, at
    // once if the connection has carried a request, else after its first, so that it opens
    // its next connection elsewhere while the streams it has are answered. HTTP/1 is left
    // open until the stop (its responses say `Connection: close`): closing an idle HTTP/1
    // connection races a request the client may be sending on it, a GOAWAY does not.
    let sent_away = async {
        health.until_draining().await;
        http2.notified().await;
    };
    tokio::pin!(sent_away);
    let mut closing = false;
    loop {
        tokio::select! {
            ended = connection.as_mut() => {
                if let Err(e) = ended {
                    tracing::trace!("connection ended with an error: {e}");
                }
                return;
            }
            () = &mut sent_away, if !closing => {
                connection.as_mut().graceful_shutdown();
                closing = true;
            }
            _ = stop.wait_for(|stop| *stop), if !closing => {
                connection.as_mut().graceful_shutdown();
                closing = true;
            }
        }
    }
}

/// Sets `TCP_NODELAY` on a connection, logging (not failing) if it cannot be.
fn nodelay(tcp: &TcpStream) {
    if let Err(e) = tcp.set_nodelay(true) {
        tracing::debug!("cannot set TCP_NODELAY: {e}");
    }
}
