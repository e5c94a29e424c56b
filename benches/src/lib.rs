//! Benchmarks live in the benches/ directory.
