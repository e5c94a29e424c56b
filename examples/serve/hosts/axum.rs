//! axum 0.8 on hyper as the host.

use std::net::SocketAddr;

use axum::serve::ListenerExt;
use wsgi_axum::WsgiService;
use wsgi_core::Engine;

use super::Running;

/// Serves `engine` on `listener` (under `mount`, if not empty) until stopped.
pub(crate) fn serve(
    listener: std::net::TcpListener,
    local: SocketAddr,
    engine: Engine,
    mount: &str,
) -> Result<Running, String> {
    let listener = tokio::net::TcpListener::from_std(listener)
        .map_err(|e| format!("cannot use the socket: {e}"))?;
    let mut service = WsgiService::new(engine).local_addr(local);
    if !mount.is_empty() {
        // The engine answers 404 outside the mount itself, for `/py` and `/py/...` alike.
        service = service.mount(mount);
    }
    // The service is the whole application, so it is served without a Router: no route
    // lookup and no boxing of its responses on every request.
    // Small streamed chunks must not wait for Nagle's algorithm.
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!("cannot set TCP_NODELAY: {e}");
        }
    });
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let server = tokio::spawn(
        axum::serve(
            listener,
            axum::ServiceExt::<axum::extract::Request>::into_make_service_with_connect_info::<
                SocketAddr,
            >(service),
        )
        .with_graceful_shutdown(async move {
            let _ = stop_rx.wait_for(|stop| *stop).await;
        })
        .into_future(),
    );
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
