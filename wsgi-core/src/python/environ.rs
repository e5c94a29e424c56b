//! Turning [`CgiVars`] into the environ `dict`.

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyString, PyTuple};

use super::file_wrapper::FileWrapper;
use crate::environ::CgiVars;

/// The keys every environ has with the same value, built once per worker thread;
/// each request starts from a copy, which is cheaper than setting them one by one.
pub(crate) struct Template(Py<PyDict>);

impl Template {
    pub(crate) fn new(py: Python<'_>, multithread: bool, multiprocess: bool) -> PyResult<Self> {
        let d = PyDict::new(py);
        d.set_item(intern!(py, "wsgi.version"), PyTuple::new(py, [1, 0])?)?;
        d.set_item(
            intern!(py, "wsgi.multithread"),
            PyBool::new(py, multithread),
        )?;
        d.set_item(intern!(py, "wsgi.multiprocess"), multiprocess)?;
        d.set_item(intern!(py, "wsgi.run_once"), false)?;
        d.set_item(intern!(py, "wsgi.input_terminated"), true)?;
        d.set_item(
            intern!(py, "wsgi.file_wrapper"),
            py.get_type::<FileWrapper>(),
        )?;
        d.set_item(
            intern!(py, "SERVER_SOFTWARE"),
            concat!("wsgi-rs/", env!("CARGO_PKG_VERSION")),
        )?;
        // Placeholders for the keys every request sets, so that the copy is made with room
        // for them and filling it in never resizes the dict.
        for key in ALWAYS_SET {
            d.set_item(PyString::intern(py, key), py.None())?;
        }
        Ok(Template(d.unbind()))
    }
}

/// The keys [`build`] sets on every request (it must set every one of them).
const ALWAYS_SET: [&str; 12] = [
    "REQUEST_METHOD",
    "SCRIPT_NAME",
    "PATH_INFO",
    "QUERY_STRING",
    "REQUEST_URI",
    "RAW_URI",
    "SERVER_PROTOCOL",
    "SERVER_NAME",
    "SERVER_PORT",
    "wsgi.url_scheme",
    "wsgi.input",
    "wsgi.errors",
];

/// A native `str` whose code points are `bytes` (PEP 3333's latin-1 rule).
fn latin1<'py>(py: Python<'py>, bytes: &[u8]) -> PyResult<Bound<'py, PyString>> {
    let len = pyo3::ffi::Py_ssize_t::try_from(bytes.len())
        .map_err(|_| pyo3::exceptions::PyOverflowError::new_err("value too long"))?;
    // SAFETY: the GIL is held (`py`); `bytes` is valid for `len` bytes for the duration of
    // the call, which copies them; a null `errors` means strict, and latin-1 decoding of
    // bytes cannot fail. The result is a new reference, or null with an exception set,
    // which `from_owned_ptr_or_err` turns into `Err`.
    unsafe {
        let ptr = pyo3::ffi::PyUnicode_DecodeLatin1(bytes.as_ptr().cast(), len, std::ptr::null());
        Ok(Bound::from_owned_ptr_or_err(py, ptr)?.cast_into_unchecked())
    }
}

/// Builds the environ of one request.
pub(crate) fn build<'py>(
    py: Python<'py>,
    template: &Template,
    vars: &CgiVars,
    input: Bound<'py, PyAny>,
    errors: Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyDict>> {
    let env = template.0.bind(py).copy()?;
    env.set_item(intern!(py, "REQUEST_METHOD"), vars.method.as_str())?;
    env.set_item(
        intern!(py, "SCRIPT_NAME"),
        latin1(py, vars.script_name.as_bytes())?,
    )?;
    env.set_item(intern!(py, "PATH_INFO"), latin1(py, &vars.path_info)?)?;
    env.set_item(
        intern!(py, "QUERY_STRING"),
        latin1(py, vars.query_string.as_bytes())?,
    )?;
    let uri = latin1(py, vars.request_uri.as_bytes())?;
    env.set_item(intern!(py, "REQUEST_URI"), &uri)?;
    env.set_item(intern!(py, "RAW_URI"), uri)?;
    env.set_item(intern!(py, "SERVER_PROTOCOL"), vars.protocol)?;
    env.set_item(intern!(py, "SERVER_NAME"), latin1(py, &vars.server_name)?)?;
    env.set_item(intern!(py, "SERVER_PORT"), vars.server_port.as_str())?;
    if let Some(addr) = &vars.remote_addr {
        env.set_item(intern!(py, "REMOTE_ADDR"), addr.as_str())?;
    }
    if let Some(port) = &vars.remote_port {
        env.set_item(intern!(py, "REMOTE_PORT"), port.as_str())?;
    }
    if let Some(ct) = &vars.content_type {
        env.set_item(intern!(py, "CONTENT_TYPE"), latin1(py, ct)?)?;
    }
    if let Some(cl) = &vars.content_length {
        env.set_item(intern!(py, "CONTENT_LENGTH"), latin1(py, cl)?)?;
    }
    for (name, value) in &vars.headers {
        env.set_item(PyString::intern(py, name), latin1(py, value)?)?;
    }
    env.set_item(intern!(py, "wsgi.url_scheme"), vars.url_scheme)?;
    env.set_item(intern!(py, "wsgi.input"), input)?;
    env.set_item(intern!(py, "wsgi.errors"), errors)?;
    Ok(env)
}
