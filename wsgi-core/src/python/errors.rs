//! `wsgi.errors`: a text stream whose lines go to `tracing` under the target `wsgi.errors`.

use pyo3::prelude::*;
use pyo3::types::PyString;

/// The `wsgi.errors` stream of one request.
#[pyclass(module = "wsgi_core")]
#[derive(Default)]
pub(crate) struct WsgiErrors {
    partial: String,
}

impl WsgiErrors {
    fn emit(line: &str) {
        tracing::warn!(target: "wsgi.errors", "{line}");
    }
}

#[pymethods]
impl WsgiErrors {
    /// Accepts any `str` (and, leniently, bytes decoded as UTF-8); complete lines are logged.
    fn write(&mut self, data: &Bound<'_, PyAny>) -> PyResult<usize> {
        let text = if let Ok(s) = data.cast::<PyString>() {
            s.to_string_lossy().into_owned()
        } else if let Ok(b) = data.extract::<Vec<u8>>() {
            String::from_utf8_lossy(&b).into_owned()
        } else {
            return Err(pyo3::exceptions::PyTypeError::new_err(format!(
                "wsgi.errors.write() takes str, not {}",
                data.get_type().name()?
            )));
        };
        let written = text.chars().count();
        self.partial.push_str(&text);
        while let Some(i) = self.partial.find('\n') {
            let line: String = self.partial.drain(..=i).collect();
            Self::emit(line.trim_end_matches(['\n', '\r']));
        }
        Ok(written)
    }

    fn writelines(&mut self, lines: &Bound<'_, PyAny>) -> PyResult<()> {
        for line in lines.try_iter()? {
            self.write(&line?)?;
        }
        Ok(())
    }

    pub(crate) fn flush(&mut self) {
        if !self.partial.is_empty() {
            Self::emit(&std::mem::take(&mut self.partial));
        }
    }
}

impl Drop for WsgiErrors {
    fn drop(&mut self) {
        self.flush();
    }
}
