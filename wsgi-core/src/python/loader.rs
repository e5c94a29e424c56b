//! Importing the application callable named by a parsed application string
//! ([`crate::spec`]).

use std::path::{Path, PathBuf};

use pyo3::exceptions::{PyModuleNotFoundError, PySyntaxError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyTuple};

use super::ensure_initialized_in;
use crate::config::AppConfig;
use crate::error::{Error, MissingModule, PythonException};
use crate::spec::{Source, parse_spec};

/// Serialises application loading: a module is in `sys.modules` while its code runs, and
/// a second engine loading the same file meanwhile must wait for it, not take it half-made.
/// Taken before attaching, so a waiting thread does not hold the GIL.
static LOADING: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Imports the application and returns its callable.
pub(crate) fn load_app(options: &AppConfig) -> Result<Py<PyAny>, Error> {
    let spec_text = options.app.as_str();
    // The configured base directory, absolute; else the working directory.
    let base = match &options.base_dir {
        Some(dir) => dir.clone(),
        None => std::env::current_dir().unwrap_or_default(),
    };
    let spec = parse_spec(spec_text, &base)?;
    let _loading = LOADING.lock().unwrap_or_else(|e| e.into_inner());
    let located = spec.locate(&base)?;
    let (module_dir, label) = (located.module_dir, located.label);
    ensure_initialized_in(options.venv.as_deref());
    Python::attach(|py| {
        if let Some(venv) = &options.venv {
            super::venv::activate(py, venv, &options.venv_origin)?;
        }
        check_python_version_file(&module_dir, options.strict_python_version)?;
        // The base directory goes on `sys.path` too, as gunicorn's `--chdir` directory does.
        if let Some(base) = &options.base_dir {
            add_to_sys_path(py, base).map_err(|e| {
                super::interpreter_error(py, super::action::BASE_DIR_ON_SYS_PATH, &e)
            })?;
        }
        add_to_sys_path(py, &module_dir)
            .map_err(|e| super::interpreter_error(py, super::action::APP_DIR_ON_SYS_PATH, &e))?;
        // Checked before the import, so a typo in the arguments does not wait for a slow one.
        let call = spec
            .call_args
            .as_deref()
            .map(|args| parse_call_args(py, args))
            .transpose()
            .map_err(|reason| Error::InvalidAppSpec {
                spec: spec_text.to_owned(),
                reason,
            })?;
        let module = match &spec.source {
            Source::File(path) => import_file(py, &base.join(path)),
            Source::Module(name) => py.import(name.as_str()).map(Bound::into_any),
        }
        .map_err(|e| import_error(py, e, &label, &spec.source, options.venv.as_deref()))?;
        let mut object = module.clone();
        for part in spec.callable.split('.') {
            object = match object.getattr_opt(part) {
                Ok(Some(o)) => o,
                Ok(None) => {
                    return Err(Error::AppAttributeMissing {
                        module: label.clone(),
                        callable: spec.callable.clone(),
                        candidates: candidates(&object),
                    });
                }
                Err(e) => {
                    return Err(import_error(
                        py,
                        e,
                        &label,
                        &spec.source,
                        options.venv.as_deref(),
                    ));
                }
            };
        }
        if let Some((args, kwargs)) = call {
            if !object.is_callable() {
                return Err(Error::AppNotCallable {
                    module: label.clone(),
                    callable: spec.callable.clone(),
                    type_name: type_name(&object),
                });
            }
            object = object
                .call(args, Some(&kwargs))
                .map_err(|e| Error::AppFactory {
                    module: label.clone(),
                    call: spec.call_text(),
                    exception: user_exception(py, &e),
                })?;
            if !object.is_callable() {
                return Err(Error::AppFactoryResult {
                    module: label.clone(),
                    call: spec.call_text(),
                    type_name: type_name(&object),
                });
            }
        } else if !object.is_callable() {
            return Err(Error::AppNotCallable {
                module: label.clone(),
                callable: spec.callable.clone(),
                type_name: type_name(&object),
            });
        }
        Ok(object.unbind())
    })
}

fn type_name(object: &Bound<'_, PyAny>) -> String {
    object
        .get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "object".into())
}

/// Evaluates a factory's argument list as gunicorn does: literals only
/// (`ast.literal_eval`), positional and keyword, no `*args` or `**kwargs`.
fn parse_call_args<'py>(
    py: Python<'py>,
    args: &str,
) -> Result<(Bound<'py, PyTuple>, Bound<'py, PyDict>), String> {
    let (code, file) = python_source!("factory_args.py");
    let parsed = PyModule::from_code(py, code, file, c"wsgi_core_factory_args")
        .and_then(|m| m.getattr("_parse")?.call1((args,)))
        .and_then(|r| {
            let (positional, keywords): (Bound<'py, PyTuple>, Bound<'py, PyDict>) = r.extract()?;
            Ok((positional, keywords))
        });
    parsed.map_err(|e| {
        e.value(py)
            .str()
            .map(|s| s.to_string())
            .unwrap_or_else(|_| e.to_string())
    })
}

/// The module's public callables (not classes), as a hint after a misspelt name.
fn candidates(object: &Bound<'_, PyAny>) -> String {
    let names: Vec<String> = object
        .dir()
        .map(|names| {
            names
                .iter()
                .filter_map(|n| n.extract::<String>().ok())
                .filter(|n| !n.starts_with('_'))
                .filter(|n| {
                    object.getattr(n.as_str()).is_ok_and(|v| {
                        v.is_callable() && !v.is_instance_of::<pyo3::types::PyType>()
                    })
                })
                .take(12)
                .collect()
        })
        .unwrap_or_default();
    if names.is_empty() {
        String::new()
    } else {
        format!(" (its callables: {})", names.join(", "))
    }
}

/// Turns an exception from importing the application into the error that tells the user
/// the most: a syntax error's place, or the traceback with the module that is missing.
fn import_error(
    py: Python<'_>,
    err: PyErr,
    label: &str,
    source: &Source,
    venv: Option<&Path>,
) -> Error {
    let value = err.value(py);
    if err.is_instance_of::<PySyntaxError>(py) {
        let attr = |name: &str| value.getattr(name).ok().filter(|v| !v.is_none());
        let text = |name: &str| attr(name).and_then(|v| v.extract::<String>().ok());
        let number = |name: &str| attr(name).and_then(|v| v.extract::<u32>().ok());
        let context = match text("text") {
            Some(line) => {
                let line = line.trim_end();
                let code = line.trim_start();
                let indent = line.chars().count() - code.chars().count();
                let caret = number("offset")
                    .map(|offset| (offset as usize).saturating_sub(1 + indent))
                    .map(|col| format!("\n    {}^", " ".repeat(col)))
                    .unwrap_or_default();
                format!("\n    {code}{caret}")
            }
            None => String::new(),
        };
        return Error::AppSyntax {
            file: text("filename").unwrap_or_else(|| label.to_owned()),
            line: number("lineno").unwrap_or(0),
            message: text("msg").unwrap_or_else(|| err.to_string()),
            context,
        };
    }
    let missing = err
        .is_instance_of::<PyModuleNotFoundError>(py)
        .then(|| value.getattr("name").ok()?.extract::<String>().ok())
        .flatten()
        .map(|name| match source {
            Source::Module(module)
                if *module == name || module.starts_with(&format!("{name}.")) =>
            {
                MissingModule::App(name)
            }
            _ => MissingModule::Dependency(name),
        });
    Error::AppImport {
        module: label.to_owned(),
        sys_path: sys_path(py),
        missing,
        venv: venv.map(Path::to_path_buf),
        exception: user_exception(py, &err),
    }
}

/// The exception, its traceback without the import machinery's own frames
/// (`<frozen importlib...>`), which say nothing about the application and come before
/// every one of its frames.
fn user_exception(py: Python<'_>, err: &PyErr) -> Box<PythonException> {
    let mut exception = super::exception(py, err);
    exception.traceback = exception
        .traceback
        .lines()
        .filter(|line| !line.trim_start().starts_with("File \"<frozen importlib"))
        .collect::<Vec<_>>()
        .join("\n");
    Box::new(exception)
}

/// `sys.path`, or `?` if it cannot be read.
fn sys_path(py: Python<'_>) -> Vec<String> {
    py.import("sys")
        .and_then(|sys| sys.getattr("path"))
        .and_then(|p| p.extract::<Vec<String>>())
        .unwrap_or_else(|_| vec!["?".into()])
}

/// Puts `dir` first on `sys.path`, as `python app.py` does for the script's directory.
fn add_to_sys_path(py: Python<'_>, dir: &Path) -> PyResult<()> {
    let sys_path = py.import("sys")?.getattr("path")?.cast_into::<PyList>()?;
    let dir = dir.to_string_lossy();
    if !sys_path.contains(dir.as_ref())? {
        sys_path.insert(0, dir.as_ref())?;
    }
    Ok(())
}

/// The `(major, minor)` versions a pyenv `.python-version` file names. Names that are not
/// CPython version numbers (`system`, `pypy3.10-7.3.12`, a virtualenv's name) say nothing
/// checkable and are skipped; `3.12.1/envs/name` (pyenv-virtualenv) counts as 3.12.
fn python_version_file_versions(text: &str) -> Vec<(u32, u32)> {
    text.lines()
        .map(|line| line.split('#').next().unwrap_or("").trim())
        .filter_map(|name| {
            let mut parts = name.split(|c: char| !c.is_ascii_digit());
            let major = parts.next()?.parse().ok()?;
            let minor = parts.next()?.parse().ok()?;
            name[..name.find('.')?]
                .chars()
                .all(|c| c.is_ascii_digit())
                .then_some((major, minor))
        })
        .collect()
}

/// Finds the `.python-version` that pyenv would use for `dir` (there or in a parent) and
/// warns, or refuses when `strict`, if none of the versions it names is the running one.
fn check_python_version_file(dir: &Path, strict: bool) -> Result<(), Error> {
    let Some((file, text)) = dir.ancestors().find_map(|d| {
        let file = d.join(".python-version");
        std::fs::read_to_string(&file).ok().map(|t| (file, t))
    }) else {
        return Ok(());
    };
    let wanted = python_version_file_versions(&text);
    let info = super::info::python_info();
    if wanted.is_empty() || wanted.contains(&(info.major, info.minor)) {
        return Ok(());
    }
    let (w_major, w_minor) = wanted[0];
    let names: Vec<&str> = text
        .lines()
        .map(|line| line.split('#').next().unwrap_or("").trim())
        .filter(|name| !name.is_empty())
        .collect();
    let wanted_names = names.join(", ");
    // pyenv keeps its versions under $PYENV_ROOT (default ~/.pyenv), so the file's own
    // version name often leads to the exact interpreter to build against.
    let pyenv_root = std::env::var_os("PYENV_ROOT")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".pyenv")));
    let rebuild_python = pyenv_root
        .zip(names.first())
        .map(|(root, name)| {
            root.join("versions")
                .join(name)
                .join("bin")
                .join(format!("python{w_major}.{w_minor}"))
        })
        .filter(|p| p.is_file())
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| format!("/path/to/python{w_major}.{w_minor}"));
    let executable = info
        .base_executable
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| info.base_prefix.display().to_string());
    if strict {
        return Err(Error::PythonVersionFile {
            file,
            wanted: wanted_names,
            running: format!("{} ({executable})", info.version),
            remedy: format!(
                "rebuild this program against it with \
                 `PYO3_PYTHON={rebuild_python} cargo build --release`, or update the file"
            ),
        });
    }
    tracing::warn!(
        target: "wsgi_core",
        "{} asks for Python {wanted_names}, but this binary embeds Python {} ({executable}); \
         the application runs on {} anyway. To match, rebuild with \
         `PYO3_PYTHON={rebuild_python} cargo build --release`",
        file.display(),
        info.version,
        info.version,
    );
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
    fn python_version_files() {
        assert_eq!(python_version_file_versions("3.12.1\n"), vec![(3, 12)]);
        assert_eq!(
            python_version_file_versions("# pinned\n3.11\n\n3.12-dev\n"),
            vec![(3, 11), (3, 12)]
        );
        assert_eq!(
            python_version_file_versions("3.10.13/envs/site\n"),
            vec![(3, 10)]
        );
        assert_eq!(
            python_version_file_versions("system\npypy3.10-7.3.12\nmyenv\n3\n"),
            vec![]
        );
    }
}
