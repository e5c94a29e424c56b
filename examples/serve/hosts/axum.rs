//! axum 0.8 on hyper as the host, over plain TCP or TLS.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, Listener, ListenerExt};
use rustls::ServerConfig;
use tokio::net::TcpStream;
use wsgi_axum::WsgiService;
use wsgi_core::{Engine, Scheme};

use super::Running;
use super::tls_listener::TlsListener;

/// Serves `engine` on `listener` (under `mount`, if not empty) until stopped; with `tls`,
/// over HTTPS, HTTP/2 or HTTP/1.1 as ALPN chooses.
pub(crate) fn serve(
    listener: std::net::TcpListener,
    local: SocketAddr,
    engine: Engine,
    mount: &str,
    tls: Option<Arc<ServerConfig>>,
) -> Result<Running, String> {
    let listener = tokio::net::TcpListener::from_std(listener)
        .map_err(|e| format!("cannot use the socket: {e}"))?;
    let mut service = WsgiService::new(engine).local_addr(local);
    if !mount.is_empty() {
        // The engine answers 404 outside the mount itself, for `/py` and `/py/...` alike.
        service = service.mount(mount);
    }
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    // Small streamed chunks must not wait for Nagle's algorithm.
    let server = match tls {
        None => spawn(listener.tap_io(|tcp| nodelay(tcp)), service, stop_rx),
        Some(config) => {
            let mut config = Arc::unwrap_or_clone(config);
            config.alpn_protocols = crate::tls::ALPN.iter().map(|p| p.to_vec()).collect();
            let listener = TlsListener::new(listener, Arc::new(config))
                .map_err(|e| format!("cannot use the socket: {e}"))?
                .tap_io(|tls| nodelay(tls.get_ref().0));
            spawn(listener, service.scheme(Scheme::Https), stop_rx)
        }
    };
    let abort = server.abort_handle();
    Ok(Running {
        done: Box::pin(async move {
            match server.await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(e.to_string()),
                Err(e) => Err(e.to_string()),
            }
        }),
        stop: Box::new(move |graceful| {
            if graceful {
                let _ = stop_tx.send(true);
            } else {
                abort.abort();
            }
        }),
    })
}

/// Runs axum on `listener` with `service` as the whole application, until `stop` turns true.
fn spawn<L>(
    listener: L,
    service: WsgiService,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<std::io::Result<()>>
where
    L: Listener<Addr = SocketAddr>,
    for<'a> SocketAddr: Connected<IncomingStream<'a, L>>,
{
    // The service is the whole application, so it is served without a Router: no route
    // lookup and no boxing of its responses on every request.
    tokio::spawn(
        axum::serve(
            listener,
            axum::ServiceExt::<axum::extract::Request>::into_make_service_with_connect_info::<
                SocketAddr,
            >(service),
        )
        .with_graceful_shutdown(async move {
            let _ = stop.wait_for(|stop| *stop).await;
        })
        .into_future(),
    )
}

/// Sets `TCP_NODELAY` on a connection, logging (not failing) if it cannot be.
fn nodelay(tcp: &TcpStream) {
    if let Err(e) = tcp.set_nodelay(true) {
        tracing::debug!("cannot set TCP_NODELAY: {e}");
    }
}
