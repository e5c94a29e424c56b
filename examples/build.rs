//! Links the examples, `serve` among them, to the libpython found at build time (an rpath to
//! its directory). `wsgi-core`'s build script does the same for its own tests, but a link
//! argument from a library's build script does not reach the binaries of other packages: without
//! this, the dynamic loader would pick whichever `libpython3.x.so` it finds first — often the
//! distribution's — and `serve` would run another Python than the one it was built against.
fn main() {
    pyo3_build_config::add_libpython_rpath_link_args();
    println!("cargo:rerun-if-env-changed=PYO3_PYTHON");
}
