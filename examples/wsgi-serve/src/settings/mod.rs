//! Where the settings come from: the command line, then the environment (`WSGI_SERVE_*`),
//! then a TOML file (`--config`), then the defaults; the first that has a setting gives it.
//!
//! clap stays the one parser and checker of values, whatever their source: every value from
//! the environment and the file is first checked on its own, so that a bad one is reported
//! with the variable or the file that holds it, and then the winners are handed to clap as
//! one command line (each setting from its source), which checks how they go together and
//! builds [`crate::cli::Args`]. clap's own `env` support does not fit: it reports a bad
//! value as the option's, knows no file between the environment and the defaults, and
//! reads flags from the environment as `true`/`false` only.
//!
//! [`environment`] reads the variables, [`file`](mod@file) the TOML file, [`report`] writes
//! `--print-config`.

pub(crate) mod environment;
pub(crate) mod file;
pub(crate) mod report;

use std::collections::{BTreeMap, HashSet};
use std::ffi::OsString;
use std::path::PathBuf;

use clap::error::{ContextKind, ContextValue};
use clap::parser::ValueSource;
use clap::{Arg, ArgAction, ArgMatches, Command};

/// The prefix of the environment variables: `WSGI_SERVE_` and the option's long name in
/// capitals, `-` as `_` (`--max-body` is `WSGI_SERVE_MAX_BODY`; APP is `WSGI_SERVE_APP`).
pub(crate) const ENV_PREFIX: &str = "WSGI_SERVE_";

/// The variable naming the TOML file when `--config` does not.
pub(crate) const CONFIG_VAR: &str = "WSGI_SERVE_CONFIG";

/// The ids of the options that are about this run, not settings: never read from the
/// environment or a file.
const NOT_SETTINGS: [&str; 4] = ["help", "version", "config", "print_config"];

/// Where a setting's value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Origin {
    /// The command line.
    CommandLine,
    /// This environment variable.
    Environment(String),
    /// This TOML file, as the user named it.
    File(PathBuf),
    /// The default (which may be no value at all).
    Default,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::CommandLine => f.write_str("command line"),
            Origin::Environment(var) => f.write_str(var),
            Origin::File(path) => write!(f, "{}", path.display()),
            Origin::Default => f.write_str("default"),
        }
    }
}

/// A setting as a source gives it, before clap parses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Given {
    /// The values of an option (several for the repeatable ones) or of APP, as text.
    Values(Vec<String>),
    /// A flag (`--stream-chunked`), on or off.
    Flag(bool),
}

/// What one source sets, by the id of the clap argument.
pub(crate) type Layer = BTreeMap<String, Given>;

/// A setting: an option or APP, which any source may give.
#[derive(Debug, Clone)]
pub(crate) struct Setting {
    /// The clap argument's id (`max_body`).
    pub(crate) id: String,
    /// Its name in the file and on the command line, without dashes (`max-body`, `app`).
    pub(crate) key: String,
    /// Its environment variable (`WSGI_SERVE_MAX_BODY`).
    pub(crate) var: String,
    /// A flag, on or off, rather than an option with a value.
    pub(crate) is_flag: bool,
    /// It may be given several times (`--bind`), and is a list in the file.
    pub(crate) is_list: bool,
    /// The positional APP rather than an option.
    pub(crate) is_positional: bool,
}

impl Setting {
    fn of(arg: &Arg) -> Setting {
        let id = arg.get_id().as_str().to_owned();
        let key = arg.get_long().map_or_else(|| id.clone(), str::to_owned);
        Setting {
            var: format!("{ENV_PREFIX}{}", key.to_uppercase().replace('-', "_")),
            is_flag: matches!(arg.get_action(), ArgAction::SetTrue),
            is_list: matches!(arg.get_action(), ArgAction::Append),
            is_positional: arg.is_positional(),
            key,
            id,
        }
    }

    /// Its values as command-line words: `--max-body=10M`, `--stream-chunked`, `app.py`.
    fn words(&self, given: &Given) -> Vec<OsString> {
        match given {
            Given::Flag(on) => on
                .then(|| format!("--{}", self.key).into())
                .into_iter()
                .collect(),
            Given::Values(values) if self.is_positional => values.iter().map(Into::into).collect(),
            Given::Values(values) => values
                .iter()
                .map(|value| format!("--{}={value}", self.key).into())
                .collect(),
        }
    }
}

/// The settings of `command`, in its order.
pub(crate) fn settings(command: &Command) -> Vec<Setting> {
    command
        .get_arguments()
        .filter(|arg| !NOT_SETTINGS.contains(&arg.get_id().as_str()))
        .map(Setting::of)
        .collect()
}

/// Every setting with its value and where it came from, for `--print-config`.
#[derive(Debug, Clone)]
pub(crate) struct Resolved {
    /// The setting.
    pub(crate) setting: Setting,
    /// Its value as text (several for a list), empty if it has none.
    pub(crate) values: Vec<String>,
    /// Where it came from.
    pub(crate) origin: Origin,
}

/// The command line (with the program name first) and the environment merged, the file
/// read, and everything parsed by `command`: its matches and where each setting came from.
/// A bad command line, variable or file is an `Err` to exit with (status 2), naming it.
pub(crate) fn resolve(
    mut command: Command,
    argv: Vec<OsString>,
    vars: impl IntoIterator<Item = (OsString, OsString)>,
) -> Result<(ArgMatches, Vec<Resolved>), clap::Error> {
    command.build();
    let relaxed = relaxed(&command);
    // The command line alone first: what it sets, and where the file is. Its errors (and
    // `--help`) are told by the real command, whose usage line is the one to show.
    let given = relaxed.clone().try_get_matches_from(&argv).map_err(|e| {
        command
            .clone()
            .try_get_matches_from(&argv)
            .err()
            .unwrap_or(e)
    })?;
    let settings = settings(&command);
    let usage_error = |message: String| {
        command
            .clone()
            .error(clap::error::ErrorKind::ValueValidation, message)
    };
    let vars: Vec<(OsString, OsString)> = vars.into_iter().collect();
    let env = environment::read(&settings, &vars).map_err(usage_error)?;
    let file_path = given.get_one::<PathBuf>("config").cloned().or_else(|| {
        vars.iter()
            .find(|(name, value)| name == CONFIG_VAR && !value.is_empty())
            .map(|(_, value)| PathBuf::from(value))
    });
    let file = match &file_path {
        Some(path) => file::read(path, &settings).map_err(usage_error)?,
        None => Layer::new(),
    };
    // Each value from outside the command line, checked alone, so its error names its source.
    for (layer, name) in [(&env, None), (&file, file_path.as_ref())] {
        for setting in &settings {
            if let Some(Given::Values(values)) = layer.get(&setting.id) {
                for value in values {
                    check(&relaxed, setting, value).map_err(|e| {
                        usage_error(match name {
                            None => format!("{}={value}: {e}", setting.var),
                            Some(path) => format!("{}: {}: {e}", path.display(), setting.key),
                        })
                    })?;
                }
            }
        }
    }

    // One command line: APP and the options the command line lacks, from the environment or
    // else the file, then the command line as it was.
    let on_command_line: HashSet<&str> = settings
        .iter()
        .filter(|s| given.value_source(&s.id) == Some(ValueSource::CommandLine))
        .map(|s| s.id.as_str())
        .collect();
    let mut words: Vec<OsString> = argv.iter().take(1).cloned().collect();
    let mut origins = BTreeMap::new();
    for setting in &settings {
        let id = setting.id.as_str();
        let (origin, taken) = if on_command_line.contains(id) {
            (Origin::CommandLine, None)
        } else if let Some(value) = env.get(id) {
            (Origin::Environment(setting.var.clone()), Some(value))
        } else if let (Some(value), Some(path)) = (file.get(id), &file_path) {
            (Origin::File(path.clone()), Some(value))
        } else {
            (Origin::Default, None)
        };
        if let Some(value) = taken {
            words.extend(setting.words(value));
        }
        origins.insert(setting.id.clone(), origin);
    }
    words.extend(argv.iter().skip(1).cloned());
    let matches = command
        .clone()
        .try_get_matches_from(words)
        .map_err(|mut e| {
            // A setting that does not go with another (`--max-requests-jitter` without
            // `--max-requests`) may come from anywhere: say from where.
            let elsewhere: Vec<String> = settings
                .iter()
                .filter_map(|s| match &origins[&s.id] {
                    Origin::CommandLine | Origin::Default => None,
                    origin => Some(format!("{} ({origin})", s.key)),
                })
                .collect();
            if !elsewhere.is_empty() {
                e.insert(
                    ContextKind::Suggested,
                    ContextValue::StyledStrs(vec![
                        format!(
                            "settings from outside the command line: {}",
                            elsewhere.join(", ")
                        )
                        .into(),
                    ]),
                );
            }
            e
        })?;

    let resolved = settings
        .into_iter()
        .map(|setting| {
            let values: Vec<String> = matches
                .get_raw(&setting.id)
                .into_iter()
                .flatten()
                .map(|v| v.to_string_lossy().into_owned())
                .collect();
            let mut origin = origins[&setting.id].clone();
            // A default that clap took from the environment itself (`--venv`'s `VIRTUAL_ENV`).
            if origin == Origin::Default
                && matches.value_source(&setting.id) == Some(ValueSource::EnvVariable)
                && let Some(var) = command
                    .get_arguments()
                    .find(|a| a.get_id() == setting.id.as_str())
                    .and_then(Arg::get_env)
            {
                origin = Origin::Environment(var.to_string_lossy().into_owned());
            }
            Resolved {
                setting,
                values,
                origin,
            }
        })
        .collect();
    Ok((matches, resolved))
}

/// `command` with nothing required and no option requiring another: for reading what a
/// command line sets on its own, and checking one value at a time.
fn relaxed(command: &Command) -> Command {
    command.clone().mut_args(|arg| {
        arg.required(false)
            .requires(clap::builder::Resettable::Reset)
            .required_unless_present(clap::builder::Resettable::Reset)
    })
}

/// Checks `value` for `setting` with clap's own parser for it: the message on error.
fn check(relaxed: &Command, setting: &Setting, value: &str) -> Result<(), String> {
    let word = if setting.is_positional {
        value.to_owned()
    } else {
        format!("--{}={value}", setting.key)
    };
    match relaxed
        .clone()
        .try_get_matches_from(["check".to_owned(), word])
    {
        Ok(_) => Ok(()),
        Err(e) => {
            let text = e.to_string();
            let first = text.lines().next().unwrap_or_default();
            Err(first.strip_prefix("error: ").unwrap_or(first).to_owned())
        }
    }
}

#[cfg(test)]
mod tests;
