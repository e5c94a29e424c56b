//! `--print-config`: every setting with its value and where it came from, as TOML that
//! `--config` reads back: values as their text, the origin in a comment at the end of each
//! line, and the defaults commented out (written out, some would count as given: a
//! `--max-requests-jitter` of 0 asks for `--max-requests`).

use std::io::Write;

use super::{Origin, Resolved};

/// Writes the report of `resolved` to `out`.
pub(crate) fn write(resolved: &[Resolved], out: &mut impl Write) -> std::io::Result<()> {
    writeln!(
        out,
        "# Each setting from the command line, else the environment ({}*),\n\
         # else the --config file, else the default (commented out).",
        super::ENV_PREFIX
    )?;
    let lines: Vec<(String, &Origin)> = resolved
        .iter()
        .map(|r| match (&r.origin, assignment(r)) {
            (Origin::Default, line) if !line.starts_with('#') => (format!("# {line}"), &r.origin),
            (_, line) => (line, &r.origin),
        })
        .collect();
    let width = lines.iter().map(|(line, _)| line.len()).max().unwrap_or(0);
    for (line, origin) in lines {
        writeln!(out, "{line:width$}  # {origin}")?;
    }
    out.flush()
}

/// `key = value`, or a comment for a setting without a value.
fn assignment(resolved: &Resolved) -> String {
    let key = &resolved.setting.key;
    let values = &resolved.values;
    if resolved.setting.is_flag {
        return format!("{key} = {}", values.first().is_some_and(|v| v == "true"));
    }
    if resolved.setting.is_list {
        let items: Vec<String> = values.iter().map(|v| quote(v)).collect();
        return format!("{key} = [{}]", items.join(", "));
    }
    match values.first() {
        Some(value) => format!("{key} = {}", quote(value)),
        None => format!("# {key} (not set)"),
    }
}

/// `text` as a TOML basic string.
fn quote(text: &str) -> String {
    let mut quoted = String::with_capacity(text.len() + 2);
    quoted.push('"');
    for c in text.chars() {
        match c {
            '"' => quoted.push_str("\\\""),
            '\\' => quoted.push_str("\\\\"),
            '\n' => quoted.push_str("\\n"),
            '\t' => quoted.push_str("\\t"),
            c if c.is_control() => quoted.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => quoted.push(c),
        }
    }
    quoted.push('"');
    quoted
}
