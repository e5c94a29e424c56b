//! Settings from environment variables: `WSGI_SERVE_` and the option's name
//! (`WSGI_SERVE_MAX_BODY=10M`). An empty variable counts as unset, as deployment templates
//! leave them; a flag is `1`, `true`, `yes` or `on` (and `0`, `false`, `no`, `off`); a
//! repeatable option takes its values separated by commas
//! (`WSGI_SERVE_BIND=127.0.0.1:8000,unix:/run/app.sock`). A variable with the prefix that
//! names no setting is an error: it is a typo that would otherwise be silently ignored.

use std::ffi::OsString;

use super::{CONFIG_VAR, ENV_PREFIX, Given, Layer, Setting};

/// What `vars` (the process's environment) set, or the first bad variable's message.
pub(crate) fn read(settings: &[Setting], vars: &[(OsString, OsString)]) -> Result<Layer, String> {
    let mut layer = Layer::new();
    for (name, value) in vars {
        let Some(name) = name.to_str().filter(|n| n.starts_with(ENV_PREFIX)) else {
            continue;
        };
        if name == CONFIG_VAR {
            continue;
        }
        let Some(setting) = settings.iter().find(|s| s.var == name) else {
            return Err(format!(
                "{name}: no such setting (the variables are {ENV_PREFIX} and an option's long \
                 name, `-` as `_`: WSGI_SERVE_MAX_BODY for --max-body)"
            ));
        };
        let Some(value) = value.to_str() else {
            return Err(format!("{name}: not valid UTF-8"));
        };
        if value.is_empty() {
            continue;
        }
        let given = if setting.is_flag {
            Given::Flag(flag(value).ok_or_else(|| {
                format!("{name}={value}: expected true or false (1, 0, yes, no, on, off)")
            })?)
        } else if setting.is_list {
            Given::Values(
                value
                    .split(',')
                    .map(str::trim)
                    .filter(|v| !v.is_empty())
                    .map(str::to_owned)
                    .collect(),
            )
        } else {
            Given::Values(vec![value.to_owned()])
        };
        layer.insert(setting.id.clone(), given);
    }
    Ok(layer)
}

/// A flag's value, in the spellings environments use.
fn flag(value: &str) -> Option<bool> {
    match value.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Some(true),
        "0" | "false" | "no" | "off" => Some(false),
        _ => None,
    }
}
