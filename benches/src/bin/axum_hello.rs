//! `axum_hello`: the no-Python ceiling of the load benchmark.
//!
//! A plain axum 0.8 server on a tokio `current_thread` runtime that answers every request
//! with the 13 bytes of the `hello` app (`Hello, World!`, `Content-Type: text/plain`), so
//! that its throughput bounds what any Python-hosting server on the same stack can reach.
//!
//! ```text
//! axum_hello [--bind 127.0.0.1:8001]
//! ```
//!
//! Once bound it prints `listening on http://ADDR` to stdout, as `serve` does.

use std::io::Write;
use std::process::ExitCode;

use axum::Router;
use axum::http::header::CONTENT_TYPE;

const USAGE: &str = "usage: axum_hello [--bind ADDR]";

fn main() -> ExitCode {
    let mut bind = String::from("127.0.0.1:8001");
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match (arg.as_str(), args.next()) {
            ("--bind", Some(addr)) => bind = addr,
            _ => {
                eprintln!("{USAGE}");
                return ExitCode::from(2);
            }
        }
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("axum_hello: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(&bind)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("axum_hello: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(bind: &str) -> std::io::Result<()> {
    let app =
        Router::new().fallback(|| async { ([(CONTENT_TYPE, "text/plain")], "Hello, World!") });
    let listener = tokio::net::TcpListener::bind(bind).await?;
    let addr = listener.local_addr()?;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "listening on http://{addr}")?;
    stdout.flush()?;
    drop(stdout);
    axum::serve(listener, app).await
}
