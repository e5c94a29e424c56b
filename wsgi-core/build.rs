//! Links this crate's tests to the libpython found at build time: see
//! `build/libpython_rpath.rs`.

include!("build/libpython_rpath.rs");

fn main() {
    link_libpython_rpath();
}
