//! `--version`: what this binary runs, so a user can tell which Python (and which
//! virtualenv) an application will get without starting it.

use std::path::Path;

use crate::cli::Args;
use crate::config::venv_setting;

/// Prints the report to stdout.
pub(crate) fn print(args: &Args) {
    let python = wsgi_core::python_info();
    let show = |path: Option<&Path>| {
        path.map_or_else(|| "unknown".to_owned(), |p| p.display().to_string())
    };
    println!("serve {}", env!("CARGO_PKG_VERSION"));
    println!("Python {}", python.version);
    println!("  program:    {}", show(python.base_executable.as_deref()));
    println!("  library:    {}", show(python.library.as_deref()));
    println!("  prefix:     {}", python.base_prefix.display());
    let venv = match venv_setting(args) {
        (None, _) => "none".to_owned(),
        // Activated, so that a venv this Python cannot use is reported here already.
        (Some(dir), origin) => match wsgi_core::activate_venv(&dir) {
            Ok(()) => format!("{}{origin}", dir.display()),
            Err(e) => format!("{}{origin}\n  unusable:   {e}", dir.display()),
        },
    };
    println!("  virtualenv: {venv}");
}

/// The interpreter's program and library, for the start-up log.
pub(crate) fn python_files(python: &wsgi_core::PythonInfo) -> String {
    let mut text = match &python.base_executable {
        Some(exe) => exe.display().to_string(),
        None => format!("prefix {}", python.base_prefix.display()),
    };
    if let Some(library) = &python.library {
        text.push_str(&format!(", {}", library.display()));
    }
    text
}
