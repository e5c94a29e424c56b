//! Links the criterion benchmarks, which embed CPython through `wsgi-core`, to the libpython
//! found at build time, as `wsgi-core`'s build script does for its own tests (see
//! `wsgi-core/build/libpython_rpath.rs`). Without it the dynamic loader may pick another
//! `libpython3.x.so`, say the distribution's, than the interpreter that `floor.py` runs on,
//! and the comparison between the two would measure two different builds of Python.

include!("../wsgi-core/build/libpython_rpath.rs");

fn main() {
    link_libpython_rpath();
}
