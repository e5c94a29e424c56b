// The one way this workspace links a binary to libpython, `include!`d by the build scripts of
// `wsgi-core`, `examples` and `benches`, each of which declares `pyo3-build-config` as a
// build dependency.

/// Gives every binary of the package being built (tests, benchmarks, `serve`) an rpath to the
/// directory of the libpython that pyo3 resolved at build time (`$PYO3_PYTHON`, else the
/// virtualenv's or `PATH`'s `python3`), so that the `sys.version` a binary runs with is the
/// one it was built against, not whichever `libpython3.x.so` the dynamic loader finds first,
/// often the distribution's.
///
/// Each package that links binaries needs it itself: a link argument from a library's build
/// script does not reach the binaries of the packages that depend on the library.
fn link_libpython_rpath() {
    pyo3_build_config::add_libpython_rpath_link_args();
    println!("cargo:rerun-if-env-changed=PYO3_PYTHON");
}
