//! What `wsgi-serve` adds to the engine's errors: the flag that fixes each one.
//!
//! `wsgi-core` reports facts in its own terms (a base directory, a virtualenv, an option of
//! its builder); only this program knows which of its flags set them.

use wsgi_core::{Error, MissingModule};

/// The engine's message for `error`, followed by a `hint:` line naming the flags that fix
/// it, when there are some.
pub(crate) fn describe(error: &Error) -> String {
    match hint(error) {
        Some(hint) => format!("{error}\nhint: {hint}"),
        None => error.to_string(),
    }
}

/// The flags that fix `error`, in a sentence; `None` when the message says all there is.
fn hint(error: &Error) -> Option<String> {
    const VENV: &str = "if it is installed in a virtualenv, pass --venv DIR (or set VIRTUAL_ENV)";
    let hint = match error {
        Error::AppFileNotFound { .. } => {
            "check the path, or pass --chdir DIR to resolve it from another directory".into()
        }
        Error::BaseDir { .. } => "check the --chdir directory".into(),
        Error::AppImport {
            missing: Some(MissingModule::App(name)),
            venv,
            ..
        } => {
            let mut hint =
                format!("run from the directory that holds {name:?}, or pass --chdir DIR");
            if venv.is_none() {
                hint = format!("{hint}; {VENV}");
            }
            hint
        }
        Error::AppImport {
            missing: Some(MissingModule::Dependency(_)),
            venv: None,
            ..
        } => VENV.into(),
        Error::AppImport {
            missing: Some(MissingModule::Dependency(_)),
            venv: Some(venv),
            ..
        } => format!(
            "install it into {} (`{}/bin/pip install ...`), or pass --venv DIR for another \
             virtualenv",
            venv.display(),
            venv.display()
        ),
        Error::PythonVersionFile { .. } => {
            "leave out --strict-python-version to run on the embedded Python anyway".into()
        }
        // The builder's two bounds are one flag here.
        Error::Config {
            option: "max_processes",
            ..
        } => "give --processes MIN..MAX with MIN at least 1 and MAX at least MIN".into(),
        // Worker processes are the default here: only `--processes 0` turns them off.
        Error::Config {
            option: option @ ("preload" | "post_fork"),
            expected,
            ..
        } if expected.contains("worker processes") => format!(
            "--{} needs worker processes: leave out --processes 0",
            option.replace('_', "-")
        ),
        Error::Config { option, .. } => format!("see --{}", option.replace('_', "-")),
        Error::TrustedProxy { .. } => {
            "--trusted-proxy takes IP addresses, CIDR ranges (10.0.0.0/8) and `unix`".into()
        }
        Error::ProcessesUnsupported => {
            "run with --processes 0 to run Python in this process".into()
        }
        Error::PreloadThreads { .. } => {
            "start the threads in a --post-fork MODULE:CALLABLE hook, or run without --preload"
                .into()
        }
        Error::PostFork { .. } => "check the --post-fork hook".into(),
        Error::RestartUnsupported => {
            "leave out --processes 0 to run worker processes, which restart without stopping".into()
        }
        Error::WorkerStartTimeout { .. } => {
            "raise --start-timeout if the application takes that long to import".into()
        }
        Error::Thread(_) => {
            "lower --threads, or raise the limit on this user's threads (`ulimit -u`)".into()
        }
        // The message says what to do, or there is no flag that helps.
        Error::InvalidAppSpec { .. }
        | Error::NoPassengerFile { .. }
        | Error::AppSyntax { .. }
        | Error::AppImport { missing: None, .. }
        | Error::AppAttributeMissing { .. }
        | Error::AppNotCallable { .. }
        | Error::AppFactory { .. }
        | Error::AppFactoryResult { .. }
        | Error::Venv { .. }
        | Error::VenvVersion { .. }
        | Error::Python { .. }
        | Error::NestedWorker
        | Error::WorkerSpawn(_)
        | Error::WorkerExitedEarly { .. }
        | Error::WorkerCrashed { .. }
        | Error::WorkerStartup(_)
        | Error::WorkerChannel(_) => return None,
        // `Error` may grow variants; a new one gets its hint here.
        _ => return None,
    };
    Some(hint)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_file_names_the_flag_that_moves_the_base_directory() {
        let error = Error::AppFileNotFound {
            path: "app.py".into(),
            base_dir: "/srv".into(),
        };
        let message = describe(&error);
        assert!(message.starts_with(&error.to_string()), "{message}");
        assert!(message.contains("\nhint: "), "{message}");
        assert!(message.contains("--chdir DIR"), "{message}");
    }

    #[test]
    fn a_count_option_names_its_flag() {
        let error = Error::Config {
            option: "queue_depth",
            value: "0".into(),
            expected: "at least 1",
        };
        assert!(describe(&error).contains("--queue-depth"));
    }

    #[test]
    fn the_pools_maximum_names_the_range_it_is_given_in() {
        let error = Error::Config {
            option: "max_processes",
            value: "2 (processes is 4)".into(),
            expected: "at least processes, the pool's minimum",
        };
        assert!(describe(&error).contains("--processes MIN..MAX"));
    }

    #[test]
    fn an_error_without_a_flag_to_fix_it_is_left_as_it_is() {
        let error = Error::WorkerStartup("the worker said no".into());
        assert_eq!(describe(&error), "the worker said no");
    }
}
