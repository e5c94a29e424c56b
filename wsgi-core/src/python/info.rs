//! Which Python this process embeds, and pointing it at its own installation.
//!
//! An embedded CPython does not know where it was installed: it guesses its prefix from a
//! program name, which defaults to `python3` looked up on `PATH`. With a pyenv shim or a
//! distribution's `/usr/bin/python3` of the same minor version first on `PATH`, a pyenv
//! libpython would then run the distribution's standard library. So before the interpreter
//! starts, its program name is set to the `bin/pythonX.Y` that sits next to the libpython the
//! process actually loaded.

use std::fmt;
use std::path::{Path, PathBuf};

use pyo3::prelude::*;

/// The embedded Python interpreter, as [`python_info`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PythonInfo {
    /// The full version, e.g. `3.12.1`.
    pub version: String,
    /// The major version, e.g. 3.
    pub major: u32,
    /// The minor version, e.g. 12.
    pub minor: u32,
    /// `sys.prefix`: the virtualenv when one is active, else the installation.
    pub prefix: PathBuf,
    /// `sys.base_prefix`: the Python installation.
    pub base_prefix: PathBuf,
    /// `sys.executable`: the virtualenv's `python` when one is active.
    pub executable: Option<PathBuf>,
    /// The installation's own `python` program (not a virtualenv's): the one to create
    /// virtualenvs for this process with, `BASE_EXECUTABLE -m venv DIR`.
    pub base_executable: Option<PathBuf>,
    /// The shared library the interpreter was loaded from (`libpython3.x.so`), if known.
    pub library: Option<PathBuf>,
    /// The virtualenv activated in this process, if any.
    pub venv: Option<PathBuf>,
}

impl PythonInfo {
    /// `major.minor`, e.g. `3.12`.
    pub fn major_minor(&self) -> String {
        format!("{}.{}", self.major, self.minor)
    }
}

impl fmt::Display for PythonInfo {
    /// One line: version, program, library and virtualenv.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Python {}", self.version)?;
        match &self.base_executable {
            Some(exe) => write!(f, " ({}", exe.display())?,
            None => write!(f, " (prefix {}", self.base_prefix.display())?,
        }
        if let Some(library) = &self.library {
            write!(f, ", library {}", library.display())?;
        }
        match &self.venv {
            Some(venv) => write!(f, "), virtualenv {}", venv.display()),
            None => write!(f, "), no virtualenv"),
        }
    }
}

/// Describes the Python interpreter this process embeds, starting it if needed.
///
/// The version comes from the running interpreter, which is the libpython the binary was
/// linked against (the build sets an rpath to it; see the README's "Python environments").
/// `venv` is set once a virtualenv has been activated, by [`EngineBuilder::venv`],
/// `$VIRTUAL_ENV` at [`EngineBuilder::build`], or [`activate_venv`](crate::activate_venv).
///
/// [`EngineBuilder::venv`]: crate::EngineBuilder::venv
/// [`EngineBuilder::build`]: crate::EngineBuilder::build
pub fn python_info() -> PythonInfo {
    super::ensure_initialized();
    let library = library_path();
    let venv = super::venv::active();
    Python::attach(|py| {
        let sys = py.import("sys").ok();
        let get = |name: &str| -> Option<Bound<'_, PyAny>> {
            sys.as_ref()
                .and_then(|s| s.getattr_opt(name).ok().flatten())
        };
        let text = |name: &str| -> Option<String> {
            get(name)
                .and_then(|v| v.extract::<String>().ok())
                .filter(|s| !s.is_empty())
        };
        let (major, minor, micro) = get("version_info")
            .and_then(|v| {
                let part = |i: usize| v.get_item(i).ok()?.extract::<u32>().ok();
                Some((part(0)?, part(1)?, part(2)?))
            })
            .unwrap_or_default();
        let base_prefix = text("base_prefix").map(PathBuf::from).unwrap_or_default();
        let base_executable = [format!("python{major}.{minor}"), format!("python{major}")]
            .iter()
            .map(|name| base_prefix.join("bin").join(name))
            .find(|p| p.is_file())
            .or_else(|| text("_base_executable").map(PathBuf::from));
        PythonInfo {
            version: format!("{major}.{minor}.{micro}"),
            major,
            minor,
            prefix: text("prefix").map(PathBuf::from).unwrap_or_default(),
            base_prefix,
            executable: text("executable").map(PathBuf::from),
            base_executable,
            library,
            venv,
        }
    })
}

/// The file the running libpython was loaded from: the shared library itself, or the
/// executable when Python is linked in statically.
#[cfg(unix)]
fn library_path() -> Option<PathBuf> {
    use std::ffi::{CStr, OsStr};
    use std::os::unix::ffi::OsStrExt;

    // Looked up by name rather than taking `Py_GetVersion`'s address in Rust, which may be a
    // stub in this binary instead of the function inside libpython.
    // SAFETY: `dlsym` with RTLD_DEFAULT only searches the loaded objects for the symbol; the
    // name is a NUL-terminated literal.
    let symbol = unsafe { libc::dlsym(libc::RTLD_DEFAULT, c"Py_GetVersion".as_ptr()) };
    if symbol.is_null() {
        return None;
    }
    let mut info = std::mem::MaybeUninit::<libc::Dl_info>::zeroed();
    // SAFETY: `symbol` is an address inside a loaded object, and `info` is writable memory
    // of the right type, which `dladdr` fills on success.
    let found = unsafe { libc::dladdr(symbol, info.as_mut_ptr()) };
    if found == 0 {
        return None;
    }
    // SAFETY: `dladdr` succeeded, so it initialised `info` (and it was zeroed before).
    let info = unsafe { info.assume_init() };
    if info.dli_fname.is_null() {
        return None;
    }
    // SAFETY: a non-null `dli_fname` is a NUL-terminated path owned by the dynamic loader,
    // valid while the object stays loaded, and libpython is never unloaded.
    let name = unsafe { CStr::from_ptr(info.dli_fname) };
    let path = Path::new(OsStr::from_bytes(name.to_bytes()));
    Some(std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf()))
}

#[cfg(not(unix))]
fn library_path() -> Option<PathBuf> {
    None
}

/// The `bin/pythonX.Y` installed with the libpython at `library`, looking up from its
/// directory as the layouts differ: `PREFIX/lib/libpython3.12.so`,
/// `/usr/lib/x86_64-linux-gnu/libpython3.12.so`, `.../Versions/3.12/Python` on macOS.
fn program_for_library(library: &Path, major: u32, minor: u32) -> Option<PathBuf> {
    let name = format!("python{major}.{minor}");
    library
        .parent()?
        .ancestors()
        .take(3)
        .map(|dir| dir.join("bin").join(&name))
        .find(|p| p.is_file())
}

/// `(major, minor)` of the loaded libpython, from `Py_GetVersion`, which CPython allows
/// before initialisation.
#[cfg(unix)]
fn library_version() -> Option<(u32, u32)> {
    // SAFETY: `Py_GetVersion` returns a pointer to a static NUL-terminated string and may be
    // called before the interpreter is initialised.
    let version = unsafe { std::ffi::CStr::from_ptr(pyo3::ffi::Py_GetVersion()) };
    let version = version.to_str().ok()?;
    let mut parts = version.split(|c: char| !c.is_ascii_digit());
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

/// Sets the interpreter's program name to the `python` next to the loaded libpython, so
/// that `sys.prefix`, the standard library and `sys.executable` are its own. Must run
/// before the interpreter is initialised; does nothing when the program cannot be found
/// (Python then guesses as usual).
///
/// With `venv` (a directory holding a `pyvenv.cfg` made for this Python), the interpreter
/// starts as that venv's `bin/python` would: the program name is the venv's, and the home
/// is the libpython's own installation, which keeps its standard library even when the
/// venv was made by another installation of the same version. `site` then finds the
/// venv at start-up and processes only the venv's site-packages; activating it after
/// start-up instead would have run the base installation's and the user's `.pth` files
/// first, and left what they import in `sys.modules`.
#[cfg(unix)]
pub(crate) fn set_program_name(venv: Option<&Path>) {
    let Some(((major, minor), program)) =
        library_path()
            .zip(library_version())
            .and_then(|(library, (major, minor))| {
                Some(((major, minor), program_for_library(&library, major, minor)?))
            })
    else {
        return;
    };
    let home = program.parent().and_then(Path::parent).filter(|home| {
        home.join(format!("lib/python{major}.{minor}/os.py"))
            .is_file()
    });
    let venv_program = venv
        .zip(home)
        .and_then(|(venv, home)| venv_program(venv, (major, minor)).map(|p| (p, home)));
    match venv_program {
        Some((venv_program, home)) if venv_program.to_str().is_some() => {
            // A home the user set (`PYTHONHOME`) is theirs to keep.
            if std::env::var_os("PYTHONHOME").is_none()
                && let Some(home) = leak_wide(home)
            {
                // SAFETY: called before initialisation, with a NUL-terminated wide string
                // that is never freed.
                #[allow(deprecated)]
                unsafe {
                    pyo3::ffi::Py_SetPythonHome(home.as_ptr());
                }
            }
            set_program(&venv_program);
        }
        _ => set_program(&program),
    }
}

/// `venv/bin/python` if `venv` is a virtualenv made for `version` (or says no version);
/// anything else is left to the activation after start-up, which explains what is wrong.
fn venv_program(venv: &Path, version: (u32, u32)) -> Option<PathBuf> {
    let root = venv.canonicalize().ok()?;
    let cfg = std::fs::read_to_string(root.join("pyvenv.cfg")).ok()?;
    if super::venv::cfg_version(&cfg).is_some_and(|made_for| made_for != version) {
        return None;
    }
    let site_packages = root.join(format!(
        "lib/python{}.{}/site-packages",
        version.0, version.1
    ));
    site_packages
        .is_dir()
        .then(|| root.join("bin").join("python"))
}

/// `path` as a NUL-terminated wide string that lives for the rest of the process, as
/// CPython keeps the pointers it is given before initialisation; `None` for a path that is
/// not UTF-8, which is left for CPython to find by itself.
fn leak_wide(path: &Path) -> Option<&'static [libc::wchar_t]> {
    // `wchar_t` is UTF-32 on the Unix platforms CPython supports.
    let wide: Vec<libc::wchar_t> = path
        .to_str()?
        .chars()
        .map(|c| c as libc::wchar_t)
        .chain(std::iter::once(0))
        .collect();
    Some(Box::leak(wide.into_boxed_slice()))
}

fn set_program(program: &Path) {
    let Some(wide) = leak_wide(program) else {
        return;
    };
    // The deprecated setter is used instead of `PyConfig` on purpose: it keeps the
    // initialisation that pyo3's `Py_InitializeEx` performs (its locale and signal settings)
    // and only fills in the program name. It (and `Py_SetPythonHome`) is deprecated since
    // 3.11 but still declared and working in 3.14 and 3.15 (tested in a Debian unstable
    // root: scripts/test-debian-pythons). CPython's main branch (3.16) removes both from the
    // headers and keeps them as ABI-only symbols, which is all pyo3-ffi links against; a
    // release that drops the symbols means initialising from a `PyConfig` here instead of
    // through pyo3.
    // SAFETY: called before initialisation, with a NUL-terminated wide string that is never
    // freed.
    #[allow(deprecated)]
    unsafe {
        pyo3::ffi::Py_SetProgramName(wide.as_ptr());
    }
    tracing::debug!(target: "wsgi_core", program = %program.display(), "Python program name set");
}

#[cfg(not(unix))]
pub(crate) fn set_program_name(_venv: Option<&Path>) {}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[test]
    fn the_loaded_library_is_found_and_matches_the_running_version() {
        let info = python_info();
        let library = info.library.as_ref().expect("libpython path");
        assert!(library.exists(), "{}", library.display());
        assert_eq!(library_version(), Some((info.major, info.minor)));
    }

    #[test]
    fn the_interpreter_runs_its_own_standard_library() {
        let info = python_info();
        let exe = info.base_executable.as_ref().expect("base executable");
        assert!(exe.starts_with(&info.base_prefix), "{info:?}");
        let os_file: String = Python::attach(|py| {
            py.import("os")
                .and_then(|os| os.getattr("__file__"))
                .and_then(|f| f.extract())
        })
        .expect("os.__file__");
        assert!(
            Path::new(&os_file).starts_with(&info.base_prefix),
            "{os_file} is outside {}",
            info.base_prefix.display()
        );
    }
}
