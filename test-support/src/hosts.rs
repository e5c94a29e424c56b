//! Real axum and actix-web servers on a fresh port of 127.0.0.1, for the tests of the
//! adapters and of what serves through them. The caller builds the router or the `App`
//! configuration (with the engine in it); this module only serves it.

use std::net::SocketAddr;

/// A running server; dropping it stops it.
pub struct Server {
    /// Where it listens.
    pub addr: SocketAddr,
    stop: Option<Box<dyn FnOnce() + Send>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            stop();
        }
    }
}

/// Serves the router that `make` builds for the bound address with `axum::serve` (with
/// `ConnectInfo`, so apps see `REMOTE_ADDR`), on a runtime of its own.
#[cfg(feature = "axum")]
pub fn serve_axum(make: impl FnOnce(SocketAddr) -> axum::Router) -> Server {
    use axum::serve::ListenerExt;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("axum-test-server")
        .enable_all()
        .build()
        .expect("tokio runtime");
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("local addr");
    let router = make(addr);
    // Small streamed chunks must not sit in Nagle's buffer.
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    runtime.spawn(async move {
        axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .expect("axum::serve");
    });
    Server {
        addr,
        stop: Some(Box::new(move || runtime.shutdown_background())),
    }
}

/// Serves an actix-web `App` that `configure` fills, with `HttpServer` (HTTP/1.x and h2c)
/// on a thread of its own.
#[cfg(feature = "actix")]
pub fn serve_actix<F>(configure: F) -> Server
where
    F: Fn(&mut actix_web::web::ServiceConfig) + Clone + Send + 'static,
{
    use actix_web::{App, HttpServer};

    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("local addr");
    let (handle_tx, handle_rx) = std::sync::mpsc::channel();
    // actix-web runs its own single-threaded runtimes; the test thread only talks TCP.
    let thread = std::thread::Builder::new()
        .name("actix-test-server".into())
        .spawn(move || {
            actix_web::rt::System::new().block_on(async move {
                let server = HttpServer::new(move || App::new().configure(configure.clone()))
                    .workers(2)
                    .disable_signals()
                    .shutdown_timeout(1)
                    .listen_auto_h2c(listener)
                    .expect("actix listen")
                    .run();
                handle_tx.send(server.handle()).expect("send handle");
                server.await
            })
        })
        .expect("spawn the actix server thread");
    let handle = handle_rx
        .recv_timeout(crate::DEADLINE)
        .expect("the actix server did not start");
    Server {
        addr,
        stop: Some(Box::new(move || {
            futures::executor::block_on(handle.stop(false));
            let _ = thread.join();
        })),
    }
}
