//! An axum server with its own Rust routes and a Flask application mounted at `/legacy`:
//! Rust and Python answer on the same port.
//!
//! Run with: `cargo run --example mount_axum [ADDR]` in a shell whose `VIRTUAL_ENV` has
//! Flask (`scripts/test` makes `.venv` with it), then open <http://127.0.0.1:8000/> and
//! <http://127.0.0.1:8000/legacy/>.

use std::net::SocketAddr;

use axum::Router;
use axum::routing::get;
use wsgi_axum::{Engine, WsgiService};

/// The Flask app: `app` in `apps/flask_app/app.py`, found from wherever this runs.
pub const FLASK_APP: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/apps/flask_app/app.py:app");

/// Rust routes next to the Flask app; `nest_service` makes `/legacy` its `SCRIPT_NAME`.
pub fn router(flask: Engine) -> Router {
    Router::new()
        .route("/", get(home))
        .route("/health", get(|| async { "ok\n" }))
        .nest_service("/legacy", WsgiService::new(flask))
}

async fn home() -> &'static str {
    "Hello from Rust. Flask is at /legacy/\n"
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Worker processes (`EngineBuilder::processes`) are this binary started again.
    wsgi_axum::run_if_worker();
    serve()
}

#[tokio::main]
async fn serve() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::args().nth(1).unwrap_or("127.0.0.1:8000".into());
    let flask = Engine::builder(FLASK_APP).threads(4).build()?;
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("listening on http://{}", listener.local_addr()?);
    // ConnectInfo gives the app REMOTE_ADDR.
    let app = router(flask).into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, app).await?;
    Ok(())
}
