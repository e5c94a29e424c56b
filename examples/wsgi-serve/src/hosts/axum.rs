//! axum 0.8 on hyper as the host, over plain TCP or TLS.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, ListenerExt};
use rustls::ServerConfig;
use tokio::net::TcpStream;
use wsgi_axum::WsgiService;
use wsgi_core::{Engine, Scheme};

use super::axum_front;
use super::tls_listener::TlsListener;
use super::{Front, Running};
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
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
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
                        spawn(listener, App::new(service, front), stop_rx.clone())
                    }
                }
            }
            Listener::Unix(unix) => {
                let unix = tokio::net::UnixListener::from_std(unix)
                    .map_err(|e| format!("cannot use the socket: {e}"))?;
                // Its peers are trusted proxies only by `--trusted-proxy unix`.
                spawn_unix(
                    unix,
                    App::new(service.unix_socket(), front),
                    stop_rx.clone(),
                )
            }
        };
        servers.push(server);
    }
    let aborts: Vec<_> = servers.iter().map(|s| s.abort_handle()).collect();
    Ok(Running {
        done: Box::pin(async move {
            // Each server ends when stopped; one that ends early ends them all.
            let (ended, _, rest) = futures::future::select_all(servers).await;
            let outcome = match ended {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(e.to_string()),
                Err(e) => Err(e.to_string()),
            };
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

/// Runs axum on the UNIX socket `listener`, with `service` as the whole application, until
/// `stop` turns true. Its connections have no peer address: the application sees no
/// `REMOTE_ADDR` but the one a trusted proxy forwards.
fn spawn_unix(
    listener: tokio::net::UnixListener,
    app: App,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<std::io::Result<()>> {
    use axum::ServiceExt;
    let stopped = async move {
        let _ = stop.wait_for(|stop| *stop).await;
    };
    match app {
        App::Bare(service) => tokio::spawn(
            axum::serve(
                listener,
                ServiceExt::<axum::extract::Request>::into_make_service(service),
            )
            .with_graceful_shutdown(stopped)
            .into_future(),
        ),
        App::Front(service) => tokio::spawn(
            axum::serve(
                listener,
                ServiceExt::<axum::extract::Request>::into_make_service(service),
            )
            .with_graceful_shutdown(stopped)
            .into_future(),
        ),
    }
}

/// The service a listener serves: the application's alone, or behind [`axum_front::Front`].
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

/// Runs axum on `listener` with `app` as the whole application, until `stop` turns true.
fn spawn<L>(
    listener: L,
    app: App,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<std::io::Result<()>>
where
    L: axum::serve::Listener<Addr = SocketAddr>,
    for<'a> SocketAddr: Connected<IncomingStream<'a, L>>,
{
    use axum::ServiceExt;
    let stopped = async move {
        let _ = stop.wait_for(|stop| *stop).await;
    };
    // The service is the whole application, so it is served without a Router: no route
    // lookup and no boxing of its responses on every request.
    match app {
        App::Bare(service) => tokio::spawn(
            axum::serve(
                listener,
                ServiceExt::<axum::extract::Request>::into_make_service_with_connect_info::<
                    SocketAddr,
                >(service),
            )
            .with_graceful_shutdown(stopped)
            .into_future(),
        ),
        App::Front(service) => tokio::spawn(
            axum::serve(
                listener,
                ServiceExt::<axum::extract::Request>::into_make_service_with_connect_info::<
                    SocketAddr,
                >(service),
            )
            .with_graceful_shutdown(stopped)
            .into_future(),
        ),
    }
}

/// Sets `TCP_NODELAY` on a connection, logging (not failing) if it cannot be.
fn nodelay(tcp: &TcpStream) {
    if let Err(e) = tcp.set_nodelay(true) {
        tracing::debug!("cannot set TCP_NODELAY: {e}");
    }
}
