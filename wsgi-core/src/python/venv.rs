//! Activating a virtualenv inside the embedded interpreter.
//!
//! An embedded interpreter computes `sys.prefix` from the libpython it was loaded from, so
//! it never sees a venv's packages by itself. Activation does what the venv's own `python`
//! would have done at start-up: the venv's site-packages (with its `.pth` files) go first on
//! `sys.path`, and `sys.prefix`, `sys.exec_prefix` and `sys.executable` point into the venv.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use pyo3::prelude::*;

use crate::error::Error;

/// The venv activated in this process: one interpreter, so at most one venv.
static ACTIVE: Mutex<Option<PathBuf>> = Mutex::new(None);

/// The `major.minor` a venv was made for, from its `pyvenv.cfg`.
fn venv_version(cfg: &str) -> Option<(u32, u32)> {
    cfg.lines()
        .filter_map(|line| line.split_once('='))
        .find(|(key, _)| matches!(key.trim(), "version" | "version_info"))
        .and_then(|(_, value)| {
            let mut parts = value.trim().split('.');
            Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
        })
}

/// Makes `root` the active venv, or checks that it already is.
pub(crate) fn activate(py: Python<'_>, root: &Path) -> Result<(), Error> {
    let broken = |reason: String| Error::Venv {
        path: root.to_path_buf(),
        reason,
    };
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
    let cfg = std::fs::read_to_string(root.join("pyvenv.cfg"))
        .map_err(|e| broken(format!("it has no readable pyvenv.cfg ({e}); is it a virtualenv? create one with `python3 -m venv DIR`")))?;
    let sys = py.import("sys").map_err(|e| Error::Python(e.to_string()))?;
    let running: (u32, u32) = sys
        .getattr("version_info")
        .and_then(|v| Ok((v.get_item(0)?.extract()?, v.get_item(1)?.extract()?)))
        .map_err(|e| Error::Python(e.to_string()))?;
    if let Some(made_for) = venv_version(&cfg)
        && made_for != running
    {
        return Err(Error::VenvVersion {
            path: root.clone(),
            venv: format!("{}.{}", made_for.0, made_for.1),
            running: format!("{}.{}", running.0, running.1),
        });
    }
    let site_packages = root
        .join("lib")
        .join(format!("python{}.{}", running.0, running.1))
        .join("site-packages");
    if !site_packages.is_dir() {
        return Err(broken(format!("{} is missing", site_packages.display())));
    }
    let include_system = cfg.lines().any(|l| {
        l.split_once('=')
            .is_some_and(|(k, v)| k.trim() == "include-system-site-packages" && v.trim() == "true")
    });
    let script = c"
def _activate(root, site_packages, include_system):
    import os, site, sys
    if not include_system:
        # What the venv's own python would not see: the base interpreter's site-packages.
        base = {os.path.realpath(p) for p in site.getsitepackages()}
        sys.path[:] = [p for p in sys.path if os.path.realpath(p) not in base]
    before = list(sys.path)
    site.addsitedir(site_packages)
    added = [p for p in sys.path if p not in before]
    sys.path[:] = added + [p for p in sys.path if p not in added]
    sys.prefix = sys.exec_prefix = root
    sys.executable = os.path.join(root, 'bin', 'python')
    os.environ['VIRTUAL_ENV'] = root
";
    let run = || -> PyResult<()> {
        let module = PyModule::from_code(py, script, c"wsgi_core_venv.py", c"wsgi_core_venv")?;
        module.getattr("_activate")?.call1((
            root.to_string_lossy().as_ref(),
            site_packages.to_string_lossy().as_ref(),
            include_system,
        ))?;
        Ok(())
    };
    run().map_err(|e| {
        broken(format!(
            "activating it failed: {}",
            super::traceback_text(py, &e)
        ))
    })?;
    tracing::info!(target: "wsgi_core", venv = %root.display(), "virtualenv activated");
    *active = Some(root);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::venv_version;

    #[test]
    fn reads_the_version_from_pyvenv_cfg() {
        assert_eq!(
            venv_version("home = /usr/bin\nversion = 3.11.7\n"),
            Some((3, 11))
        );
        assert_eq!(venv_version("version_info = 3.12.1.final.0"), Some((3, 12)));
        assert_eq!(venv_version("home = /usr/bin"), None);
    }
}
