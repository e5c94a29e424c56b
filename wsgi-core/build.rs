//! Links the embedded interpreter to the libpython found at build time (rpath), so the
//! `sys.version` a binary runs with is the one it was built against, not whichever
//! `libpython3.x.so` the dynamic loader happens to find first.
fn main() {
    pyo3_build_config::add_libpython_rpath_link_args();
    println!("cargo:rerun-if-env-changed=PYO3_PYTHON");
}
