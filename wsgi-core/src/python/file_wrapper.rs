//! `wsgi.file_wrapper`: the engine recognises its instances and streams real files in Rust.

use pyo3::exceptions::PyStopIteration;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

/// What `wsgi.file_wrapper(filelike, blksize)` returns.
///
/// Iterating it is the fallback for file-likes without a file descriptor (`io.BytesIO`):
/// `read(blksize)` until empty, as PEP 3333 describes.
#[pyclass(module = "wsgi_core", name = "FileWrapper")]
pub(crate) struct FileWrapper {
    pub(crate) filelike: Py<PyAny>,
    pub(crate) blksize: usize,
}

#[pymethods]
impl FileWrapper {
    #[new]
    #[pyo3(signature = (filelike, blksize = 8192))]
    fn new(filelike: Py<PyAny>, blksize: isize) -> Self {
        FileWrapper {
            filelike,
            blksize: usize::try_from(blksize)
                .ok()
                .filter(|&n| n > 0)
                .unwrap_or(8192),
        }
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let data = self
            .filelike
            .bind(py)
            .call_method1("read", (self.blksize,))?;
        let empty = match data.cast::<PyBytes>() {
            Ok(b) => b.as_bytes().is_empty(),
            Err(_) => data.is_empty().unwrap_or(true),
        };
        if empty {
            return Err(PyStopIteration::new_err(()));
        }
        Ok(data)
    }

    /// Closes the underlying file-like, if it can be closed.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        if let Some(close) = self.filelike.bind(py).getattr_opt("close")? {
            close.call0()?;
        }
        Ok(())
    }
}
