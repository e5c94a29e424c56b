//! Finding and importing the application callable.

use std::path::{Path, PathBuf};

use pyo3::prelude::*;
use pyo3::types::PyList;

use super::{ensure_initialized, traceback_text};
use crate::error::Error;

/// Where the application comes from.
#[derive(Debug, PartialEq, Eq)]
enum Source {
    File(PathBuf),
    Module(String),
}

/// Splits `file.py`, `file.py:callable`, `pkg.mod:callable` into source and callable name.
fn parse_spec(spec: &str) -> Result<(Source, String), Error> {
    let invalid = |reason: &str| Error::InvalidAppSpec {
        spec: spec.to_owned(),
        reason: reason.to_owned(),
    };
    if spec.trim().is_empty() {
        return Err(invalid("it is empty"));
    }
    let (target, callable) = match spec.rsplit_once(':') {
        Some((t, c)) => (t, c),
        None => (spec, "application"),
    };
    if callable.is_empty()
        || !callable
            .chars()
            .all(|c| c == '_' || c == '.' || c.is_alphanumeric())
    {
        return Err(invalid(
            "the part after ':' must be a Python attribute name",
        ));
    }
    if target.is_empty() {
        return Err(invalid("nothing before the ':'"));
    }
    let path = Path::new(target);
    let source = if target.ends_with(".py") || target.contains('/') || path.is_file() {
        Source::File(path.to_path_buf())
    } else if target
        .split('.')
        .all(|part| !part.is_empty() && part.chars().all(|c| c == '_' || c.is_alphanumeric()))
    {
        Source::Module(target.to_owned())
    } else {
        return Err(invalid("it is neither a .py file nor a dotted module name"));
    };
    Ok((source, callable.to_owned()))
}

/// Serialises application loading: a module is in `sys.modules` while its code runs, and
/// a second engine loading the same file meanwhile must wait for it, not take it half-made.
/// Taken before attaching, so a waiting thread does not hold the GIL.
static LOADING: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Imports the application and returns its callable.
pub(crate) fn load_app(spec: &str, venv: Option<&Path>) -> Result<Py<PyAny>, Error> {
    let (source, callable) = parse_spec(spec)?;
    let _loading = LOADING.lock().unwrap_or_else(|e| e.into_inner());
    let cwd = std::env::current_dir().unwrap_or_default();
    let (module_dir, label) = match &source {
        Source::File(path) => {
            let absolute = cwd.join(path);
            if !absolute.is_file() {
                return Err(Error::AppFileNotFound {
                    path: path.clone(),
                    cwd,
                });
            }
            let dir = absolute
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_else(|| cwd.clone());
            (dir, absolute.display().to_string())
        }
        Source::Module(name) => (cwd.clone(), name.clone()),
    };
    ensure_initialized();
    Python::attach(|py| {
        let import_error = |py: Python<'_>, err: PyErr| Error::AppImport {
            module: label.clone(),
            sys_path: sys_path_text(py),
            traceback: traceback_text(py, &err),
        };
        if let Some(venv) = venv {
            super::venv::activate(py, venv)?;
        }
        add_to_sys_path(py, &module_dir).map_err(|e| Error::Python(e.to_string()))?;
        let module = match &source {
            Source::File(path) => import_file(py, &cwd.join(path)),
            Source::Module(name) => py.import(name.as_str()).map(Bound::into_any),
        }
        .map_err(|e| import_error(py, e))?;
        let mut object = module.clone();
        for part in callable.split('.') {
            object = match object.getattr_opt(part) {
                Ok(Some(o)) => o,
                Ok(None) => {
                    return Err(Error::AppAttributeMissing {
                        module: label.clone(),
                        callable: callable.clone(),
                    });
                }
                Err(e) => return Err(import_error(py, e)),
            };
        }
        if !object.is_callable() {
            return Err(Error::AppNotCallable {
                module: label.clone(),
                callable: callable.clone(),
                type_name: object
                    .get_type()
                    .name()
                    .map(|n| n.to_string())
                    .unwrap_or_else(|_| "object".into()),
            });
        }
        Ok(object.unbind())
    })
}

fn sys_path_text(py: Python<'_>) -> String {
    py.import("sys")
        .and_then(|sys| sys.getattr("path"))
        .and_then(|p| p.repr().map(|r| r.to_string()))
        .unwrap_or_else(|_| "?".into())
}

/// Puts the application's directory first on `sys.path`, as `python app.py` would.
fn add_to_sys_path(py: Python<'_>, dir: &Path) -> PyResult<()> {
    let sys_path = py.import("sys")?.getattr("path")?.cast_into::<PyList>()?;
    let dir = dir.to_string_lossy();
    if !sys_path.contains(dir.as_ref())? {
        sys_path.insert(0, dir.as_ref())?;
    }
    Ok(())
}

/// Imports `path` as a module named after its stem (as `python -m` would name it), unless
/// a different file already owns that name, so two apps called `app.py` can coexist.
fn import_file<'py>(py: Python<'py>, path: &Path) -> PyResult<Bound<'py, PyAny>> {
    let util = py.import("importlib.util")?;
    let modules = py.import("sys")?.getattr("modules")?;
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "app".into());
    let path_text = path.to_string_lossy().into_owned();
    let mut name = stem.clone();
    for n in 1.. {
        match modules.get_item(&name) {
            Ok(existing) => {
                let same = existing
                    .getattr_opt("__file__")?
                    .and_then(|f| f.extract::<String>().ok())
                    .is_some_and(|f| Path::new(&f) == path);
                if same {
                    return Ok(existing);
                }
                name = format!("{stem}__wsgi{n}");
            }
            Err(_) => break,
        }
    }
    let spec = util.call_method1("spec_from_file_location", (&name, &path_text))?;
    let module = util.call_method1("module_from_spec", (&spec,))?;
    modules.set_item(&name, &module)?;
    if let Err(err) = spec
        .getattr("loader")?
        .call_method1("exec_module", (&module,))
    {
        modules.del_item(&name)?;
        return Err(err);
    }
    Ok(module)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs() {
        assert_eq!(
            parse_spec("app.py").unwrap(),
            (Source::File("app.py".into()), "application".into())
        );
        assert_eq!(
            parse_spec("dir/app.py:make").unwrap(),
            (Source::File("dir/app.py".into()), "make".into())
        );
        assert_eq!(
            parse_spec("pkg.mod:app").unwrap(),
            (Source::Module("pkg.mod".into()), "app".into())
        );
        assert!(parse_spec("").is_err());
        assert!(parse_spec("pkg.mod:").is_err());
        assert!(parse_spec("not a module:app").is_err());
    }
}
