//! The application string (`APP`): its grammar, checked without Python.
//!
//! It follows gunicorn's and Passenger's conventions: a directory with a
//! `passenger_wsgi.py`, a `.py` file, a dotted module, each optionally followed by
//! `:callable` (default `application`), where the callable may be a factory call with
//! literal arguments, `module:create_app('prod', debug=False)`. The host parses it, so a
//! typo or a missing file is reported before any interpreter starts, in whichever process
//! Python will run.

use std::path::{Path, PathBuf};

use crate::error::Error;

/// The file Passenger (and `serve DIR`) looks for in an application directory.
const PASSENGER_FILE: &str = "passenger_wsgi.py";

/// Where the application comes from.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Source {
    /// A `.py` file (a directory given as the application means its `passenger_wsgi.py`).
    File(PathBuf),
    /// A dotted module name, imported from `sys.path`.
    Module(String),
}

/// A parsed application string.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Spec {
    pub(crate) source: Source,
    /// The dotted attribute path inside the module.
    pub(crate) callable: String,
    /// A factory call's argument list, without the parentheses.
    pub(crate) call_args: Option<String>,
}

impl Spec {
    /// The callable as the user wrote it, e.g. `create_app('prod')`.
    pub(crate) fn call_text(&self) -> String {
        match &self.call_args {
            Some(args) => format!("{}({args})", self.callable),
            None => self.callable.clone(),
        }
    }
}

fn is_identifier(part: &str) -> bool {
    let mut chars = part.chars();
    chars.next().is_some_and(|c| c == '_' || c.is_alphabetic())
        && chars.all(|c| c == '_' || c.is_alphanumeric())
}

fn is_dotted_name(text: &str) -> bool {
    text.split('.').all(is_identifier)
}

/// Parses `dir`, `file.py`, `file.py:callable`, `pkg.mod:callable` and
/// `pkg.mod:factory(args)`, checking the file system (relative to `base`, the directory the
/// application is resolved against) to tell a directory from a file from a module.
pub(crate) fn parse_spec(spec: &str, base: &Path) -> Result<Spec, Error> {
    let invalid = |reason: &str| Error::InvalidAppSpec {
        spec: spec.to_owned(),
        reason: reason.to_owned(),
    };
    if spec.trim().is_empty() {
        return Err(invalid("it is empty"));
    }
    // A factory's arguments may hold ':' (URLs, dicts) and a path may hold '(', so the
    // separator is the last ':' that is followed by a well-formed callable.
    let split = spec
        .match_indices(':')
        .rev()
        .find_map(|(i, _)| parse_callable(&spec[i + 1..]).map(|c| (&spec[..i], c)));
    let (target, (callable, call_args)) = match split {
        Some(found) => found,
        None if spec.contains(':') => {
            return Err(invalid(
                "the part after ':' must be a Python attribute name, or a call of one with \
                 its arguments in parentheses",
            ));
        }
        None if spec.trim_end().ends_with(')') => {
            return Err(invalid(
                "a factory call goes after a ':', as in `package.module:create_app()`",
            ));
        }
        None => (spec, ("application", None)),
    };
    if target.is_empty() {
        return Err(invalid("nothing before the ':'"));
    }
    let path = Path::new(target);
    let on_disk = base.join(path);
    let source = if on_disk.is_dir() {
        if on_disk.join(PASSENGER_FILE).is_file() {
            Source::File(path.join(PASSENGER_FILE))
        } else if is_dotted_name(target) && on_disk.join("__init__.py").is_file() {
            Source::Module(target.to_owned())
        } else {
            return Err(Error::NoPassengerFile {
                dir: path.to_path_buf(),
            });
        }
    } else if target.ends_with(".py") || target.contains('/') || on_disk.is_file() {
        Source::File(path.to_path_buf())
    } else if is_dotted_name(target) {
        Source::Module(target.to_owned())
    } else {
        return Err(invalid(
            "it is neither a directory, a .py file nor a dotted module name",
        ));
    };
    Ok(Spec {
        source,
        callable: callable.to_owned(),
        call_args: call_args.map(str::to_owned),
    })
}

/// Splits `name` or `name(args)` into the dotted name and the argument text, if well formed.
fn parse_callable(text: &str) -> Option<(&str, Option<&str>)> {
    match text.split_once('(') {
        Some((name, rest)) => {
            let args = rest.trim_end().strip_suffix(')')?;
            let name = name.trim();
            is_dotted_name(name).then_some((name, Some(args)))
        }
        None => is_dotted_name(text).then_some((text, None)),
    }
}

/// Where a parsed application comes from, resolved against a base directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Located {
    /// The directory that goes first on `sys.path`: the file's, or (for a module) the base.
    pub(crate) module_dir: PathBuf,
    /// How messages name the application: the file's absolute path or the module name.
    pub(crate) label: String,
}

impl Spec {
    /// Resolves the application's file against `base`; a file that is not there is an error.
    pub(crate) fn locate(&self, base: &Path) -> Result<Located, Error> {
        match &self.source {
            Source::File(path) => {
                let absolute = base.join(path);
                if !absolute.is_file() {
                    return Err(Error::AppFileNotFound {
                        path: path.clone(),
                        base_dir: base.to_path_buf(),
                    });
                }
                let module_dir = absolute
                    .parent()
                    .map(Path::to_path_buf)
                    .unwrap_or_else(|| base.to_path_buf());
                Ok(Located {
                    module_dir,
                    label: absolute.display().to_string(),
                })
            }
            Source::Module(name) => Ok(Located {
                module_dir: base.to_path_buf(),
                label: name.clone(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses `text` against the working directory.
    fn parse(text: &str) -> Result<Spec, Error> {
        parse_spec(text, Path::new("."))
    }

    fn spec(source: Source, callable: &str, call_args: Option<&str>) -> Spec {
        Spec {
            source,
            callable: callable.into(),
            call_args: call_args.map(Into::into),
        }
    }

    #[test]
    fn specs() {
        assert_eq!(
            parse("app.py").unwrap(),
            spec(Source::File("app.py".into()), "application", None)
        );
        assert_eq!(
            parse("dir/app.py:make").unwrap(),
            spec(Source::File("dir/app.py".into()), "make", None)
        );
        assert_eq!(
            parse("pkg.mod:app").unwrap(),
            spec(Source::Module("pkg.mod".into()), "app", None)
        );
        assert_eq!(
            parse("pkg.mod:app.wsgi_app").unwrap(),
            spec(Source::Module("pkg.mod".into()), "app.wsgi_app", None)
        );
        assert!(parse("").is_err());
        assert!(parse("pkg.mod:").is_err());
        assert!(parse("not a module:app").is_err());
        assert!(parse("pkg.mod:1app").is_err());
    }

    #[test]
    fn factory_specs_keep_their_arguments() {
        assert_eq!(
            parse("pkg.mod:create_app()").unwrap(),
            spec(Source::Module("pkg.mod".into()), "create_app", Some(""))
        );
        // A ':' inside the arguments is not the separator.
        assert_eq!(
            parse("app.py:make('http://x:1', {'a': 1}, debug=False)").unwrap(),
            spec(
                Source::File("app.py".into()),
                "make",
                Some("'http://x:1', {'a': 1}, debug=False")
            )
        );
        // A '(' in the path is not a call.
        assert_eq!(
            parse("/srv/site (old)/app.py:create_app()").unwrap(),
            spec(
                Source::File("/srv/site (old)/app.py".into()),
                "create_app",
                Some("")
            )
        );
        assert_eq!(
            parse("/srv/site (old)/app.py").unwrap(),
            spec(
                Source::File("/srv/site (old)/app.py".into()),
                "application",
                None
            )
        );
        assert!(parse("pkg.mod:create_app(").is_err());
        assert!(parse("create_app()").is_err());
    }

    #[test]
    fn a_directory_means_its_passenger_file() {
        let dir = std::env::temp_dir().join(format!("wsgi-core-spec-dir-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let text = dir.to_str().unwrap();
        assert!(matches!(parse(text), Err(Error::NoPassengerFile { .. })));
        std::fs::write(dir.join(PASSENGER_FILE), "").unwrap();
        assert_eq!(
            parse(text).unwrap(),
            spec(Source::File(dir.join(PASSENGER_FILE)), "application", None)
        );
        assert_eq!(
            parse(&format!("{text}:app")).unwrap(),
            spec(Source::File(dir.join(PASSENGER_FILE)), "app", None)
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_relative_application_is_found_in_the_base_directory() {
        let base = std::env::temp_dir().join(format!("wsgi-core-spec-base-{}", std::process::id()));
        std::fs::create_dir_all(base.join("site")).unwrap();
        std::fs::write(base.join("site").join(PASSENGER_FILE), "").unwrap();
        std::fs::write(base.join("app.py"), "").unwrap();
        // Neither exists relative to the working directory, only to `base`.
        let site = parse_spec("site", &base).unwrap();
        assert_eq!(
            site.source,
            Source::File(Path::new("site").join(PASSENGER_FILE))
        );
        assert_eq!(site.locate(&base).unwrap().module_dir, base.join("site"),);
        let file = parse_spec("app.py", &base).unwrap();
        assert_eq!(
            file.locate(&base).unwrap().label,
            base.join("app.py").display().to_string()
        );
        // From the working directory, which has no `site`, the same text is a module name.
        assert_eq!(parse("site").unwrap().source, Source::Module("site".into()));
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn a_missing_file_is_found_missing_before_python_starts() {
        let cwd = std::env::temp_dir();
        let spec = parse("surely-not-here-wsgi-core.py").unwrap();
        assert!(matches!(
            spec.locate(&cwd),
            Err(Error::AppFileNotFound { .. })
        ));
        let module = parse("pkg.mod:app").unwrap().locate(&cwd).unwrap();
        assert_eq!(module.module_dir, cwd);
        assert_eq!(module.label, "pkg.mod");
    }
}
