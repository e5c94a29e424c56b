//! Measuring instruments for wsgi-rs; this library is empty on purpose.
//!
//! - `benches/engine.rs`: criterion micro-benchmarks of wsgi-core's `Engine::call` without
//!   sockets (`cargo bench -p benches`), next to `floor.py`, the same Python work timed from
//!   Python.
//! - `src/bin/axum_hello.rs`: a no-Python axum hello-world, the ceiling of the load
//!   benchmark.
//! - `load/run.sh`: the load benchmark against peer WSGI servers (wrk).
//!
//! `benches/README.md` says how to run them and holds the latest figures.
