//! Links the criterion benchmarks, which embed CPython through `wsgi-core`, to the libpython
//! they were built against (an rpath to its directory), as `wsgi-core`'s build script does for
//! its own tests. Without it the dynamic loader may pick another `libpython3.x.so`, say the
//! distribution's, than the interpreter that `floor.py` runs on, and the comparison between
//! the two would measure two different builds of Python.
//!
//! The interpreter is found as pyo3 finds it: `$PYO3_PYTHON`, else `$VIRTUAL_ENV/bin/python`,
//! else `python3` on `PATH`.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    for var in ["PYO3_PYTHON", "VIRTUAL_ENV", "PATH"] {
        println!("cargo:rerun-if-env-changed={var}");
    }
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("windows") {
        return;
    }
    let python = std::env::var_os("PYO3_PYTHON")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("VIRTUAL_ENV")
                .filter(|v| !v.is_empty())
                .map(|v| PathBuf::from(v).join("bin/python"))
        })
        .unwrap_or_else(|| PathBuf::from("python3"));
    let output = Command::new(&python)
        .args([
            "-c",
            "import sysconfig; print(sysconfig.get_config_var('LIBDIR') or '')",
        ])
        .output();
    let libdir = match output {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout).trim().to_owned(),
        _ => String::new(),
    };
    if libdir.is_empty() || !PathBuf::from(&libdir).is_dir() {
        println!(
            "cargo:warning=no libpython directory from {}; the benchmarks get no rpath",
            python.display()
        );
        return;
    }
    println!("cargo:rustc-link-arg=-Wl,-rpath,{libdir}");
}
