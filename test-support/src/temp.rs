//! Temporary files and directories (tempfile's), removed when dropped.

use std::io::Write;

pub use tempfile::{NamedTempFile, TempDir};

/// An empty directory whose name starts with `wsgi-{label}-`. Its path is canonical, so it
/// compares equal to the paths Python reports (the temporary directory may be a link).
pub fn temp_dir(label: &str) -> TempDir {
    let base = std::env::temp_dir()
        .canonicalize()
        .expect("a canonical temporary directory");
    tempfile::Builder::new()
        .prefix(&format!("wsgi-{label}-"))
        .tempdir_in(base)
        .expect("create a temporary directory")
}

/// A file holding `content`.
pub fn temp_file(content: &[u8]) -> NamedTempFile {
    let mut file = tempfile::Builder::new()
        .prefix("wsgi-test-")
        .tempfile()
        .expect("create a temporary file");
    file.write_all(content).expect("write the temporary file");
    file.flush().expect("flush the temporary file");
    file
}

/// The path of `file` as text, for a header or a query string.
pub fn path_str(file: &NamedTempFile) -> &str {
    file.path().to_str().expect("a UTF-8 temporary path")
}
