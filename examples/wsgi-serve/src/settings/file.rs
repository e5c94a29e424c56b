//! Settings from a TOML file (`--config PATH`): one key per setting, named as the long
//! option (`max-body = "10M"`; `max_body` too) or `app`; strings as on the command line,
//! numbers for the numeric ones (`threads = 4`, `grace = 1.5`), `true`/`false` for flags,
//! and arrays for the repeatable ones (`bind = ["127.0.0.1:8000", "unix:/run/app.sock"]`).
//! Paths are taken as on the command line, from the working directory. An unknown key is an
//! error: it is a typo that would otherwise be silently ignored.

use std::path::Path;

use toml::Value;

use super::{Given, Layer, Setting};

/// What the file at `path` sets, or a message naming the file and the key at fault.
pub(crate) fn read(path: &Path, settings: &[Setting]) -> Result<Layer, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read the --config file {}: {e}", path.display()))?;
    parse(&text, settings).map_err(|e| format!("{}: {e}", path.display()))
}

/// What `text` sets; a message naming the key at fault.
pub(crate) fn parse(text: &str, settings: &[Setting]) -> Result<Layer, String> {
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
        // The parser's own message has the line and a caret under the place.
        format!("not valid TOML: {}", e.to_string().trim_end())
    })?;
    let mut layer = Layer::new();
    for (key, value) in table {
        let name = key.replace('_', "-");
        let setting = settings.iter().find(|s| s.key == name).ok_or_else(|| {
            format!("{key}: no such setting (the keys are the long options' names, and app)")
        })?;
        let given = given(setting, &value).map_err(|e| format!("{key}: {e}"))?;
        layer.insert(setting.id.clone(), given);
    }
    Ok(layer)
}

/// A TOML value as the setting takes it.
fn given(setting: &Setting, value: &Value) -> Result<Given, String> {
    if setting.is_flag {
        return match value {
            Value::Boolean(on) => Ok(Given::Flag(*on)),
            other => Err(format!(
                "expected true or false, not a {}",
                other.type_str()
            )),
        };
    }
    match value {
        Value::Array(items) if setting.is_list => items
            .iter()
            .map(|item| text(setting, item))
            .collect::<Result<_, _>>()
            .map(Given::Values),
        Value::Array(_) => Err("takes one value, not a list".into()),
        other => Ok(Given::Values(vec![text(setting, other)?])),
    }
}

/// A single TOML value as the text the option takes.
fn text(setting: &Setting, value: &Value) -> Result<String, String> {
    match value {
        Value::String(text) => Ok(text.clone()),
        // A TOML number is read in decimal, `0o660` included, which would make a mode that
        // reads as octal on the command line mean another.
        Value::Integer(_) if setting.key == "unix-mode" => {
            Err("give the octal mode as a string, \"660\"".into())
        }
        Value::Integer(n) => Ok(n.to_string()),
        Value::Float(x) => Ok(x.to_string()),
        other => Err(format!(
            "expected a string or a number, not a {}",
            other.type_str()
        )),
    }
}
