//! The metrics endpoint: `GET /metrics` in the Prometheus text format.

use axum::Router;
use wsgi_core::Engine;

use crate::values::ListenAddr;

/// Serves `GET /metrics` (Prometheus text) on its own address, apart from the application,
/// so it can stay private while the application is public.
pub(crate) fn serve(addr: &ListenAddr, engine: Engine) -> Result<(), String> {
    let listener = crate::listen::bind(addr)?;
    let listener = tokio::net::TcpListener::from_std(listener)
        .map_err(|e| format!("cannot use the metrics socket: {e}"))?;
    let router = Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let text = engine.metrics().to_prometheus();
            async move { ([("content-type", "text/plain; version=0.0.4")], text) }
        }),
    );
    tracing::info!("metrics on http://{addr}/metrics");
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router).await {
            tracing::error!("the metrics server stopped: {e}");
        }
    });
    Ok(())
}
