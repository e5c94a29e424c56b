//! Activating a virtualenv inside the embedded interpreter.
//!
//! An embedded interpreter computes `sys.prefix` from the libpython it was loaded from, so
//! it never sees a venv's packages by itself. Activation does what the venv's own `python`
//! would have done at start-up (`site.venv()`): `sys.prefix`, `sys.exec_prefix` and
//! `sys.executable` point into the venv, the base installation's site-packages leave
//! `sys.path` (unless the venv includes them), and the venv's site-packages, with its
//! `.pth` files, take their place after the standard library.
//!
//! Best of all, the interpreter starts as the venv's `python` in the first place
//! (`info::set_program_name`), and `site` does all of that itself; activation after
//! start-up is for a process whose interpreter was already running, as the base
//! installation's and the user's `.pth` files have run by then.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use pyo3::prelude::*;

use crate::error::Error;

/// The venv activated in this process: one interpreter, so at most one venv.
static ACTIVE: Mutex<Option<PathBuf>> = Mutex::new(None);

/// The venv activated in this process, if any.
pub(crate) fn active() -> Option<PathBuf> {
    ACTIVE.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

/// Activates the virtualenv at `dir` in the embedded interpreter, starting the interpreter
/// if needed.
///
/// [`EngineBuilder::build`](crate::EngineBuilder::build) does this itself for
/// [`EngineBuilder::venv`](crate::EngineBuilder::venv) or `$VIRTUAL_ENV`; call it directly
/// to use the venv's packages from other Python code before an engine is built. Activating
/// the venv that is already active does nothing; one process embeds one interpreter, so
/// activating a second, different venv is an error, as is a venv made for another Python
/// `major.minor` than the embedded one.
pub fn activate_venv(dir: impl AsRef<Path>) -> Result<(), Error> {
    super::ensure_initialized_in(Some(dir.as_ref()));
    Python::attach(|py| activate(py, dir.as_ref(), ""))
}

/// A value from `pyvenv.cfg`.
fn cfg_value<'a>(cfg: &'a str, key: &str) -> Option<&'a str> {
    cfg.lines()
        .filter_map(|line| line.split_once('='))
        .find(|(k, _)| k.trim() == key)
        .map(|(_, v)| v.trim())
}

/// `(major, minor)` at the start of a version string such as `3.12.1` or `3.12.1.final.0`.
fn major_minor(text: &str) -> Option<(u32, u32)> {
    let mut parts = text.trim().split('.');
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

/// The `major.minor` a venv was made for, from its `pyvenv.cfg`.
pub(super) fn cfg_version(cfg: &str) -> Option<(u32, u32)> {
    cfg_value(cfg, "version")
        .or_else(|| cfg_value(cfg, "version_info"))
        .and_then(major_minor)
}

/// The `major.minor` versions a venv holds packages for: its `lib/pythonX.Y` directories.
fn lib_versions(root: &Path) -> Vec<(u32, u32)> {
    let mut found: Vec<(u32, u32)> = std::fs::read_dir(root.join("lib"))
        .into_iter()
        .flatten()
        .filter_map(|entry| {
            let name = entry.ok()?.file_name();
            major_minor(name.to_str()?.strip_prefix("python")?)
        })
        .collect();
    found.sort_unstable();
    found
}

/// The base interpreter's program, to put in commands the user can copy.
fn running_program(py: Python<'_>, major: u32, minor: u32) -> String {
    let base: Option<String> = py
        .import("sys")
        .and_then(|sys| sys.getattr("base_prefix"))
        .and_then(|p| p.extract())
        .ok();
    base.map(|b| {
        Path::new(&b)
            .join("bin")
            .join(format!("python{major}.{minor}"))
    })
    .filter(|p| p.is_file())
    .map(|p| p.display().to_string())
    .unwrap_or_else(|| format!("python{major}.{minor}"))
}

/// Makes `root` the active venv, or checks that it already is. `origin` says where the
/// path came from, for the error messages (e.g. `" (from $VIRTUAL_ENV)"`).
pub(crate) fn activate(py: Python<'_>, root: &Path, origin: &str) -> Result<(), Error> {
    let (major, minor): (u32, u32) = py
        .import("sys")
        .and_then(|sys| sys.getattr("version_info"))
        .and_then(|v| Ok((v.get_item(0)?.extract()?, v.get_item(1)?.extract()?)))
        .map_err(|e| super::interpreter_error(py, super::action::VERSION_INFO, &e))?;
    let running = format!("{major}.{minor}");
    let program = running_program(py, major, minor);
    let recreate = format!("{program} -m venv --clear {}", root.display());
    let from_env = origin.contains("VIRTUAL_ENV");
    let broken = |reason: String| Error::Venv {
        path: root.to_path_buf(),
        origin: origin.to_owned(),
        reason,
    };
    if !root.exists() {
        let mut reason = format!(
            "it does not exist; create it with `{program} -m venv {}`",
            root.display()
        );
        if from_env {
            reason.push_str(
                ", or unset VIRTUAL_ENV (`deactivate`) if it is left over from another shell",
            );
        }
        return Err(broken(reason));
    }
    let root = root
        .canonicalize()
        .map_err(|e| broken(format!("it cannot be opened ({e})")))?;
    let mut active = ACTIVE.lock().unwrap_or_else(|e| e.into_inner());
    match active.as_ref() {
        Some(current) if *current == root => return Ok(()),
        Some(current) => {
            return Err(broken(format!(
                "this process already runs the virtualenv {}; one process embeds one \
                 interpreter, so all its applications share one virtualenv",
                current.display()
            )));
        }
        None => {}
    }
    let cfg = match std::fs::read_to_string(root.join("pyvenv.cfg")) {
        Ok(cfg) => cfg,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(broken(format!(
                "it has no pyvenv.cfg, so it is not a virtualenv; create one with \
                 `{program} -m venv DIR`{}",
                if from_env {
                    ", or unset VIRTUAL_ENV"
                } else {
                    ""
                }
            )));
        }
        Err(e) => return Err(broken(format!("its pyvenv.cfg cannot be read ({e})"))),
    };
    let version_mismatch = |(v_major, v_minor): (u32, u32)| {
        let venv = format!("{v_major}.{v_minor}");
        // The venv's `home` is the directory of the interpreter that made it.
        let rebuild_python = cfg_value(&cfg, "home")
            .map(|home| Path::new(home).join(format!("python{venv}")))
            .filter(|p| p.is_file())
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| format!("/path/to/python{venv}"));
        Error::VenvVersion {
            path: root.clone(),
            remedy: format!(
                "either recreate the virtualenv for Python {running} with `{recreate}`, or \
                 rebuild this program against Python {venv} with \
                 `PYO3_PYTHON={rebuild_python} cargo build --release`"
            ),
            venv,
            running: running.clone(),
        }
    };
    if let Some(made_for) = cfg_version(&cfg)
        && made_for != (major, minor)
    {
        return Err(version_mismatch(made_for));
    }
    let site_packages = root
        .join("lib")
        .join(format!("python{running}"))
        .join("site-packages");
    if !site_packages.is_dir() {
        // Without a version in pyvenv.cfg (old virtualenv releases), the lib/ layout tells.
        if let Some(&other) = lib_versions(&root).iter().find(|v| **v != (major, minor)) {
            return Err(version_mismatch(other));
        }
        return Err(broken(format!(
            "{} is missing, so the virtualenv is incomplete; recreate it with `{recreate}`",
            site_packages.display()
        )));
    }
    if let Some(home) = cfg_value(&cfg, "home")
        && !Path::new(home).is_dir()
    {
        // The packages still work with the embedded interpreter; the venv's own `python`
        // and `pip` do not, which the user will trip over when installing packages.
        tracing::warn!(
            target: "wsgi_core",
            venv = %root.display(),
            "the Python that made this virtualenv ({home}) is gone, so its bin/python and pip \
             no longer run; recreate it with `{recreate}`"
        );
    }
    let include_system = cfg_value(&cfg, "include-system-site-packages") == Some("true");
    let run = || -> PyResult<()> {
        if started_in(py, &root)? {
            return Ok(());
        }
        let (code, file) = python_source!("venv_activate.py");
        let module = PyModule::from_code(py, code, file, c"wsgi_core_venv")?;
        module.getattr("_activate")?.call1((
            root.to_string_lossy().as_ref(),
            site_packages.to_string_lossy().as_ref(),
            include_system,
        ))?;
        Ok(())
    };
    run().map_err(|e| {
        broken(format!(
            "activating it failed (a .pth file in {} may have raised):\n{}",
            site_packages.display(),
            super::traceback_text(py, &e)
        ))
    })?;
    tracing::info!(target: "wsgi_core", venv = %root.display(), "virtualenv activated");
    *active = Some(root);
    Ok(())
}

/// Whether the interpreter started as `root`'s own `python` (see `info::set_program_name`),
/// in which case `site` has already done at start-up what activation does.
fn started_in(py: Python<'_>, root: &Path) -> PyResult<bool> {
    let prefix: PathBuf = py.import("sys")?.getattr("prefix")?.extract()?;
    Ok(prefix.canonicalize().is_ok_and(|prefix| prefix == root))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_version_from_pyvenv_cfg() {
        assert_eq!(
            cfg_version("home = /usr/bin\nversion = 3.11.7\n"),
            Some((3, 11))
        );
        assert_eq!(cfg_version("version_info = 3.12.1.final.0"), Some((3, 12)));
        assert_eq!(cfg_version("home = /usr/bin"), None);
        assert_eq!(
            cfg_value(
                "include-system-site-packages = true\n",
                "include-system-site-packages"
            ),
            Some("true")
        );
    }

    #[test]
    fn lib_directories_tell_the_version() {
        let dir = std::env::temp_dir().join(format!("wsgi-core-venv-lib-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("lib/python3.12/site-packages")).unwrap();
        std::fs::create_dir_all(dir.join("lib/not-python")).unwrap();
        assert_eq!(lib_versions(&dir), vec![(3, 12)]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
