//! `--version`: what this binary runs, so a user can tell which Python (and which
//! virtualenv) an application will get without starting it.

use std::io::Write;
use std::path::Path;

use crate::cli::Args;

/// Writes the report to `out`.
pub(crate) fn write(args: &Args, out: &mut impl Write) -> std::io::Result<()> {
    // Activated first, so that Python starts as the virtualenv's own, as it will to serve,
    // and a virtualenv this Python cannot use is reported here already.
    let venv = args.engine.venv.as_deref().map(|dir| {
        let origin = args.venv_origin.suffix();
        match wsgi_core::activate_venv(dir) {
            Ok(()) => format!("{}{origin}", dir.display()),
            Err(e) => format!("{}{origin}\n  unusable:   {e}", dir.display()),
        }
    });
    let python = wsgi_core::python_info();
    let show = |path: Option<&Path>| {
        path.map_or_else(|| "unknown".to_owned(), |p| p.display().to_string())
    };
    writeln!(out, "wsgi-serve {}", env!("CARGO_PKG_VERSION"))?;
    writeln!(out, "Python {}", python.version)?;
    writeln!(
        out,
        "  program:    {}",
        show(python.base_executable.as_deref())
    )?;
    writeln!(out, "  library:    {}", show(python.library.as_deref()))?;
    writeln!(out, "  prefix:     {}", python.base_prefix.display())?;
    let venv = venv.unwrap_or_else(|| "none".to_owned());
    writeln!(out, "  virtualenv: {venv}")?;
    out.flush()
}
