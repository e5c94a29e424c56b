//! An actix-web server with its own Rust routes and a Flask application mounted at
//! `/legacy`: Rust and Python answer on the same port.
//!
//! Run with: `cargo run --example mount_actix [ADDR]` in a shell whose `VIRTUAL_ENV` has
//! Flask (`scripts/test` makes `.venv` with it), then open <http://127.0.0.1:8000/> and
//! <http://127.0.0.1:8000/legacy/>.

use actix_web::{App, HttpServer, web};
use wsgi_actix::WsgiApp;
use wsgi_core::Engine;

/// The Flask app: `app` in `apps/flask_app/app.py`, found from wherever this runs.
pub const FLASK_APP: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/apps/flask_app/app.py:app");

/// Rust routes next to the Flask app, which gets `/legacy` as its `SCRIPT_NAME`.
pub fn routes(config: &mut web::ServiceConfig, flask: &Engine) {
    config
        .route("/", web::get().to(home))
        .route("/health", web::get().to(|| async { "ok\n" }))
        .service(WsgiApp::new("/legacy", flask.clone()));
}

async fn home() -> &'static str {
    "Hello from Rust. Flask is at /legacy/\n"
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Worker processes (`EngineBuilder::processes`) are this binary started again.
    wsgi_core::run_if_worker();
    serve()
}

#[actix_web::main]
async fn serve() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::args().nth(1).unwrap_or("127.0.0.1:8000".into());
    let flask = Engine::builder(FLASK_APP).threads(4).build()?;
    // Every actix worker builds its own App; they share the engine and its Python threads.
    let server = HttpServer::new(move || App::new().configure(|config| routes(config, &flask)))
        .bind(&addr)?;
    println!("listening on http://{}", server.addrs()[0]);
    server.run().await?;
    Ok(())
}
