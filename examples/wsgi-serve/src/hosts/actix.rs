//! actix-web 4 as the host.

use std::sync::Arc;
use std::time::Duration;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::{ConnectionType, StatusCode, Version};
use actix_web::middleware::{Condition, Next, from_fn};
use actix_web::web::{self, Data};
use actix_web::{App, HttpResponse, HttpServer};
use rustls::ServerConfig;
use wsgi_actix::WsgiApp;
use wsgi_core::Engine;

use super::{Front, Running};
use crate::health::{Answer, Health, LIVEZ, READYZ};
use crate::listen::Listener;

/// Serves `engine` on `listeners` (under `mount`, if not empty) until stopped; after a
/// graceful stop, in-flight requests get up to `grace`. With `tls`, TCP listeners speak
/// HTTPS: actix-web offers HTTP/2 and HTTP/1.1 by ALPN itself, and tells the application
/// `https`; UNIX sockets stay plain HTTP/1.1 (actix-web serves them so).
pub(crate) fn serve(
    listeners: Vec<Listener>,
    engine: Engine,
    mount: &str,
    grace: Duration,
    tls: Option<Arc<ServerConfig>>,
    front: &Front,
) -> Result<Running, String> {
    let mount = mount.to_owned();
    let front = front.clone();
    let mut server = HttpServer::new(move || {
        let health = front.health.clone();
        let health_path = front.health_path.clone();
        let app = App::new()
            .app_data(Data::new(health.clone()))
            .wrap(Condition::new(front.drains, from_fn(close_when_draining)))
            .configure(move |config| {
                // Ahead of the application's default service and mount.
                if let Some(prefix) = health_path {
                    let (live, ready) = (health.clone(), health);
                    config
                        .route(
                            &format!("{prefix}{LIVEZ}"),
                            web::get().to(move || answer(live.livez())),
                        )
                        .route(
                            &format!("{prefix}{READYZ}"),
                            web::get().to(move || answer(ready.readyz())),
                        );
                }
            });
        if mount.is_empty() {
            app.default_service(WsgiApp::new("", engine.clone()))
        } else {
            // Outside the mount, actix-web's own 404.
            app.service(WsgiApp::new(mount.clone(), engine.clone()))
        }
    })
    // A client's malformed request is logged at DEBUG with its peer, not as actix-http's
    // ERROR; connections on a UNIX socket are marked so, for `--trusted-proxy unix`.
    .on_connect(|connection, data| {
        super::client_errors::on_connect(connection, data);
        wsgi_actix::on_connect(connection, data);
    })
    // This command handles the signals, the same way for both servers.
    .disable_signals()
    // Whole seconds, rounded up: actix-web counts no finer.
    .shutdown_timeout(grace.as_secs() + u64::from(grace.subsec_nanos() > 0))
    .tls_handshake_timeout(crate::tls::HANDSHAKE_TIMEOUT);
    for listener in listeners {
        server = match (listener, &tls) {
            // HTTP/1.1 and, like axum's server, HTTP/2 with prior knowledge (h2c) on one port.
            (Listener::Tcp(tcp), None) => server.listen_auto_h2c(tcp),
            (Listener::Tcp(tcp), Some(config)) => {
                server.listen_rustls_0_23(tcp, ServerConfig::clone(config))
            }
            (Listener::Unix(unix), _) => server.listen_uds(unix),
        }
        .map_err(|e| format!("cannot serve on the socket: {e}"))?;
    }
    let server = server.run();
    let handle = server.handle();
    let task = actix_web::rt::spawn(server);
    Ok(Running {
        done: Box::pin(async move {
            match task.await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(e.to_string()),
                Err(e) => Err(e.to_string()),
            }
        }),
        // A graceful stop closes idle keep-alive connections and closes busy ones after their
        // current response (`Connection: close`), so no new request starts; actix-web does
        // so since 4.14.1 (actix-http 3.13.3), the workspace's minimum.
        stop: Box::new(move |graceful| {
            let handle = handle.clone();
            actix_web::rt::spawn(async move { handle.stop(graceful).await });
        }),
    })
}

/// A health answer as an actix-web response.
async fn answer((status, text): Answer) -> HttpResponse {
    HttpResponse::build(StatusCode::from_u16(status).unwrap_or_default())
        .content_type("text/plain; charset=utf-8")
        .body(text)
}

/// Asks an HTTP/1 client to close its connection after the response once a stop has begun,
/// so that during `--shutdown-delay` every client that still comes is answered and then
/// goes elsewhere. HTTP/2 has no `Connection`, and actix-http 3's HTTP/2 dispatcher never
/// sends GOAWAY (it has no graceful shutdown of a connection, nor a way to ask for one), so
/// HTTP/2 clients are not sent away: they are answered on their connection until it closes.
async fn close_when_draining(
    request: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let http1 = request.version() < Version::HTTP_2;
    let health = request.app_data::<Data<Health>>().cloned();
    let mut response = next.call(request).await?;
    if http1 && health.is_some_and(|h| h.is_draining()) {
        response
            .response_mut()
            .head_mut()
            .set_connection_type(ConnectionType::Close);
    }
    Ok(response)
}
