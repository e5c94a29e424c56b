//! Links the examples and the tests to the libpython found at build time, as
//! `wsgi-core`'s build script does for its own tests: see
//! `wsgi-core/build/libpython_rpath.rs`.

include!("../wsgi-core/build/libpython_rpath.rs");

fn main() {
    link_libpython_rpath();
}
