//! Turning [`CgiVars`] into the environ `dict`.

use std::borrow::{Borrow, Cow};
use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;

use http::Method;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyString, PyTuple};

use super::file_wrapper::FileWrapper;
use crate::environ::CgiVars;

/// What a worker thread keeps from one environ to the next, built once per thread: the
/// keys every environ has with the same value, which each request starts from a copy of
/// (cheaper than setting them one by one), and the Python strings that most requests
/// repeat, made once instead of once per request.
pub(crate) struct Template {
    dict: Py<PyDict>,
    /// `HTTP_*` keys, interned (so the application's own literals find them by identity):
    /// making and interning a key cost about as much as all the rest of a header's trip
    /// into the environ.
    keys: RefCell<Keys>,
    server_name: Recent<Vec<u8>>,
    server_port: Recent<Vec<u8>>,
    remote_addr: Recent<IpAddr>,
    remote_port: Recent<u16>,
}

/// The `HTTP_*` keys made so far: those of the well-known headers by the address of their
/// `&'static str` (a few compared by address cost less than hashing the name), the others
/// by name.
#[derive(Default)]
struct Keys {
    known: Vec<(*const u8, Py<PyString>)>,
    other: HashMap<Box<str>, Py<PyString>>,
}

/// At most this many keys of each kind are kept per thread: the names clients send are
/// few, but a client can make up any number of them.
const MAX_KEYS: usize = 64;

/// The last value of one variable and its Python string, reused while the value repeats
/// (a server's name and port, a client's or a proxy's address, a keep-alive connection's
/// client port).
struct Recent<K>(RefCell<Option<(K, Py<PyString>)>>);

impl<K> Default for Recent<K> {
    fn default() -> Self {
        Recent(RefCell::new(None))
    }
}

impl<K> Recent<K> {
    /// The string of `value`, made by `make` unless it is the last one's.
    fn get<'py, Q>(
        &self,
        py: Python<'py>,
        value: &Q,
        make: impl FnOnce(Python<'py>, &Q) -> PyResult<Bound<'py, PyString>>,
    ) -> PyResult<Bound<'py, PyString>>
    where
        K: Borrow<Q>,
        Q: PartialEq + ToOwned<Owned = K> + ?Sized,
    {
        let mut last = self.0.borrow_mut();
        if let Some((key, string)) = &*last
            && key.borrow() == value
        {
            return Ok(string.bind(py).clone());
        }
        let string = make(py, value)?;
        *last = Some((value.to_owned(), string.clone().unbind()));
        Ok(string)
    }
}

/// The `str` of `value`'s `Display` text (an address, a port), written on the stack rather
/// than into a `String`.
fn displayed<'py>(py: Python<'py>, value: &impl fmt::Display) -> PyResult<Bound<'py, PyString>> {
    use std::io::Write as _;
    // An IPv6 address takes at most 45 characters.
    const ROOM: usize = 64;
    let mut buf = [0u8; ROOM];
    let mut rest = &mut buf[..];
    if write!(rest, "{value}").is_ok() {
        let len = ROOM - rest.len();
        return latin1(py, &buf[..len]);
    }
    Ok(PyString::new(py, &value.to_string()))
}

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
        // Room for the rest (REMOTE_*, CONTENT_*, the HTTP_* variables), which would
        // otherwise make every environ resize once: CPython's `dict.copy()` of a dict with few
        // deleted entries copies its table as it is, so keys added then deleted here leave
        // the copies with a table of 64 slots instead of 32. (Were that to change, a copy
        // would resize again as before, nothing worse.)
        for i in 0..SPARE_KEYS {
            d.set_item(format!("spare {i}"), py.None())?;
        }
        for i in 0..SPARE_KEYS {
            d.del_item(format!("spare {i}"))?;
        }
        Ok(Template {
            dict: d.unbind(),
            keys: RefCell::default(),
            server_name: Recent::default(),
            server_port: Recent::default(),
            remote_addr: Recent::default(),
            remote_port: Recent::default(),
        })
    }

    /// The environ key of the `HTTP_*` variable `name`.
    // The `Cow` itself, not a `&str`: its variant tells a well-known name from another.
    #[allow(clippy::ptr_arg)]
    fn key<'py>(&self, py: Python<'py>, name: &Cow<'static, str>) -> Bound<'py, PyString> {
        let mut keys = self.keys.borrow_mut();
        let Keys { known, other } = &mut *keys;
        let found = match name {
            // The same text at two addresses is two entries with the same string: still right.
            Cow::Borrowed(name) => known
                .iter()
                .find(|(at, _)| std::ptr::eq(*at, name.as_ptr()))
                .map(|(_, key)| key),
            Cow::Owned(name) => other.get(name.as_str()),
        };
        if let Some(key) = found {
            return key.bind(py).clone();
        }
        let key = PyString::intern(py, name);
        match name {
            Cow::Borrowed(name) if known.len() < MAX_KEYS => {
                known.push((name.as_ptr(), key.clone().unbind()));
            }
            Cow::Owned(name) if other.len() < MAX_KEYS => {
                other.insert(name.as_str().into(), key.clone().unbind());
            }
            _ => {}
        }
        key
    }
}

/// `REQUEST_METHOD`: the standard methods' strings are made once.
fn method<'py>(py: Python<'py>, method: &Method) -> Bound<'py, PyString> {
    let known = match *method {
        Method::GET => intern!(py, "GET"),
        Method::POST => intern!(py, "POST"),
        Method::HEAD => intern!(py, "HEAD"),
        Method::PUT => intern!(py, "PUT"),
        Method::DELETE => intern!(py, "DELETE"),
        Method::PATCH => intern!(py, "PATCH"),
        Method::OPTIONS => intern!(py, "OPTIONS"),
        _ => return PyString::new(py, method.as_str()),
    };
    known.clone()
}

/// A `&'static str` variable (`SERVER_PROTOCOL`, `wsgi.url_scheme`): the usual values'
/// strings are made once.
fn constant<'py>(py: Python<'py>, value: &'static str) -> Bound<'py, PyString> {
    let known = match value {
        "HTTP/1.1" => intern!(py, "HTTP/1.1"),
        "HTTP/2" => intern!(py, "HTTP/2"),
        "HTTP/1.0" => intern!(py, "HTTP/1.0"),
        "http" => intern!(py, "http"),
        "https" => intern!(py, "https"),
        _ => return PyString::new(py, value),
    };
    known.clone()
}

/// Keys added to the template and deleted again, to grow its table (see `Template::new`):
/// enough to pass 21 entries, CPython's limit for a table of 32 slots, and few enough for
/// `dict.copy()` to still copy the table as it is (at most half as many as the keys kept).
const SPARE_KEYS: usize = 4;

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
    let env = template.dict.bind(py).copy()?;
    env.set_item(intern!(py, "REQUEST_METHOD"), method(py, &vars.method))?;
    env.set_item(
        intern!(py, "SCRIPT_NAME"),
        latin1(py, vars.script_name.as_bytes())?,
    )?;
    env.set_item(intern!(py, "PATH_INFO"), latin1(py, vars.path_info())?)?;
    env.set_item(
        intern!(py, "QUERY_STRING"),
        latin1(py, vars.query_string().as_bytes())?,
    )?;
    let uri = latin1(py, vars.request_uri().as_bytes())?;
    env.set_item(intern!(py, "REQUEST_URI"), &uri)?;
    env.set_item(intern!(py, "RAW_URI"), uri)?;
    env.set_item(intern!(py, "SERVER_PROTOCOL"), constant(py, vars.protocol))?;
    env.set_item(
        intern!(py, "SERVER_NAME"),
        template
            .server_name
            .get(py, vars.server_name.as_bytes(), latin1)?,
    )?;
    env.set_item(
        intern!(py, "SERVER_PORT"),
        template
            .server_port
            .get(py, vars.server_port.as_bytes(), latin1)?,
    )?;
    if let Some(addr) = &vars.remote_addr {
        env.set_item(
            intern!(py, "REMOTE_ADDR"),
            template.remote_addr.get(py, addr, displayed)?,
        )?;
    }
    if let Some(port) = &vars.remote_port {
        env.set_item(
            intern!(py, "REMOTE_PORT"),
            template.remote_port.get(py, port, displayed)?,
        )?;
    }
    if let Some(ct) = &vars.content_type {
        env.set_item(intern!(py, "CONTENT_TYPE"), latin1(py, ct.as_bytes())?)?;
    }
    if let Some(cl) = &vars.content_length {
        env.set_item(intern!(py, "CONTENT_LENGTH"), latin1(py, cl.as_bytes())?)?;
    }
    for (name, value) in &vars.headers {
        env.set_item(template.key(py, name), latin1(py, value.as_bytes())?)?;
    }
    // The host's keys were checked never to name a variable this function sets.
    for (key, value) in vars.extras.iter() {
        env.set_item(PyString::new(py, key), latin1(py, value.as_bytes())?)?;
    }
    env.set_item(
        intern!(py, "wsgi.url_scheme"),
        constant(py, vars.url_scheme),
    )?;
    env.set_item(intern!(py, "wsgi.input"), input)?;
    env.set_item(intern!(py, "wsgi.errors"), errors)?;
    Ok(env)
}
