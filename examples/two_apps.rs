//! Two different WSGI applications, Flask and Django, mounted under two prefixes of one
//! axum router, in one process: each has its own engine and Python threads, and both
//! share the one embedded interpreter.
//!
//! Run with: `cargo run --example two_apps [ADDR]` in a shell whose `VIRTUAL_ENV` has
//! Flask and Django (`scripts/test` makes `.venv` with them), then open
//! <http://127.0.0.1:8000/>.

use std::net::SocketAddr;

use axum::Router;
use axum::response::Html;
use axum::routing::get;
use wsgi_axum::{Engine, WsgiService};

/// The Flask app: `app` in `apps/flask_app/app.py`.
pub const FLASK_APP: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/apps/flask_app/app.py:app");
/// The Django project: `application` in `apps/django_app/passenger_wsgi.py`.
pub const DJANGO_APP: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/apps/django_app/passenger_wsgi.py"
);

/// Each app sees its own prefix as `SCRIPT_NAME`, so the links it builds stay inside it.
pub fn router(flask: Engine, django: Engine) -> Router {
    Router::new()
        .route("/", get(index))
        .nest_service("/flask", WsgiService::new(flask))
        .nest_service("/django", WsgiService::new(django))
}

async fn index() -> Html<&'static str> {
    Html(
        "<!doctype html><title>two apps</title>\
         <p><a href=\"/flask/\">Flask at /flask/</a></p>\
         <p><a href=\"/django/\">Django at /django/</a></p>",
    )
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
    let django = Engine::builder(DJANGO_APP).threads(4).build()?;
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("listening on http://{}", listener.local_addr()?);
    let app = router(flask, django).into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, app).await?;
    Ok(())
}
