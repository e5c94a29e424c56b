//! actix-web 4 as the host.

use actix_web::{App, HttpServer};
use wsgi_actix::WsgiApp;
use wsgi_core::Engine;

use super::Running;

/// Serves `engine` on `listener` (under `mount`, if given) until stopped; after a graceful
/// stop, in-flight requests get up to `grace` seconds.
pub(crate) fn serve(
    listener: std::net::TcpListener,
    engine: Engine,
    mount: Option<String>,
    grace: u64,
) -> Result<Running, String> {
    let server = HttpServer::new(move || {
        let app = App::new();
        match &mount {
            // Outside the mount, actix-web's own 404.
            Some(prefix) => app.service(WsgiApp::new(prefix.clone(), engine.clone())),
            None => app.default_service(WsgiApp::new("", engine.clone())),
        }
    })
    // This command handles the signals, the same way for both servers.
    .disable_signals()
    .shutdown_timeout(grace)
    .listen(listener)
    .map_err(|e| format!("cannot serve on the socket: {e}"))?
    .run();
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
        stop: Box::new(move |graceful| {
            let handle = handle.clone();
            actix_web::rt::spawn(async move { handle.stop(graceful).await });
        }),
    })
}
