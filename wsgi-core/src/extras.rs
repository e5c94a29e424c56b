//! Environ entries the host adds to a request: who the user is (`REMOTE_USER`, `AUTH_TYPE`)
//! and keys of the host's own (`myservice.tenant`), as an authenticating web server does for
//! the application behind it (Apache's `SetEnv` and `mod_auth_*`, Passenger's
//! `passenger_env_var`).
//!
//! They are checked when they are made, not when the environ is built: a key the engine
//! computes, or a value that is no native string, is an error where the host code set it,
//! never a variable silently replaced or a corrupted environ on a Python thread.

use std::borrow::Cow;
use std::convert::Infallible;
use std::fmt;

use bytes::Bytes;

/// A native string as PEP 3333 defines it: text whose code points are all below 256 (so one
/// byte each, latin-1), which the application sees as a Python `str`. It never contains NUL.
///
/// Made from Rust text (`&str`, `String`, whose characters must each be at most U+00FF),
/// or from bytes (`&[u8]`, `&[u8; N]`, `Vec<u8>`, [`Bytes`]), each byte one code point:
/// that is how PEP 3333 passes bytes that are not latin-1 text, such as a UTF-8 user name,
/// which the application decodes with `value.encode("latin-1").decode("utf-8")`.
///
/// ```
/// use wsgi_core::NativeString;
///
/// let name = NativeString::try_from("José")?;
/// assert_eq!(name.as_bytes(), b"Jos\xe9");
/// // Not latin-1 as text; as UTF-8 bytes, one code point per byte.
/// assert!(NativeString::try_from("Łukasz").is_err());
/// let utf8 = NativeString::try_from("Łukasz".as_bytes())?;
/// assert_eq!(utf8.as_bytes(), "Łukasz".as_bytes());
/// # Ok::<(), wsgi_core::InvalidNativeString>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct NativeString(Bytes);

/// Why a value cannot be a [`NativeString`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidNativeString {
    /// A NUL, which C code reading the environ (and CGI) would take for the end.
    #[error("it contains a NUL at byte {at}")]
    Nul {
        /// Where.
        at: usize,
    },
    /// A character a native string cannot hold as itself.
    #[error(
        "{found:?} is not latin-1 (a native string holds U+0000..=U+00FF only); pass its UTF-8 bytes to send them as PEP 3333 does"
    )]
    NotLatin1 {
        /// The first such character.
        found: char,
    },
}

/// A conversion that cannot fail (a [`NativeString`] into itself) fails as no other does.
impl From<Infallible> for InvalidNativeString {
    fn from(never: Infallible) -> Self {
        match never {}
    }
}

impl NativeString {
    /// The native string whose code points are `bytes`; fails on a NUL.
    pub fn from_latin1(bytes: impl Into<Bytes>) -> Result<Self, InvalidNativeString> {
        let bytes = bytes.into();
        match bytes.iter().position(|&b| b == 0) {
            Some(at) => Err(InvalidNativeString::Nul { at }),
            None => Ok(NativeString(bytes)),
        }
    }

    /// The native string of `text`; fails on a character above U+00FF or a NUL.
    pub fn from_text(text: &str) -> Result<Self, InvalidNativeString> {
        if text.is_ascii() {
            // The usual case: ASCII is its own latin-1.
            return Self::from_latin1(Bytes::copy_from_slice(text.as_bytes()));
        }
        let latin1 = text
            .chars()
            .map(|c| u8::try_from(c).map_err(|_| InvalidNativeString::NotLatin1 { found: c }))
            .collect::<Result<Vec<u8>, _>>()?;
        Self::from_latin1(latin1)
    }

    /// The latin-1 bytes: one per code point.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

/// The text the application sees.
impl fmt::Display for NativeString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0
            .iter()
            .try_for_each(|&b| fmt::Write::write_char(f, char::from(b)))
    }
}

impl fmt::Debug for NativeString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.to_string(), f)
    }
}

impl TryFrom<&str> for NativeString {
    type Error = InvalidNativeString;
    fn try_from(text: &str) -> Result<Self, Self::Error> {
        Self::from_text(text)
    }
}

impl TryFrom<String> for NativeString {
    type Error = InvalidNativeString;
    fn try_from(text: String) -> Result<Self, Self::Error> {
        Self::from_text(&text)
    }
}

impl TryFrom<&String> for NativeString {
    type Error = InvalidNativeString;
    fn try_from(text: &String) -> Result<Self, Self::Error> {
        Self::from_text(text)
    }
}

impl TryFrom<&[u8]> for NativeString {
    type Error = InvalidNativeString;
    fn try_from(bytes: &[u8]) -> Result<Self, Self::Error> {
        Self::from_latin1(Bytes::copy_from_slice(bytes))
    }
}

impl<const N: usize> TryFrom<&[u8; N]> for NativeString {
    type Error = InvalidNativeString;
    fn try_from(bytes: &[u8; N]) -> Result<Self, Self::Error> {
        Self::from_latin1(Bytes::copy_from_slice(bytes))
    }
}

impl TryFrom<Vec<u8>> for NativeString {
    type Error = InvalidNativeString;
    fn try_from(bytes: Vec<u8>) -> Result<Self, Self::Error> {
        Self::from_latin1(bytes)
    }
}

impl TryFrom<Bytes> for NativeString {
    type Error = InvalidNativeString;
    fn try_from(bytes: Bytes) -> Result<Self, Self::Error> {
        Self::from_latin1(bytes)
    }
}

/// Why an entry cannot go into an [`EnvironExtras`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EnvironError {
    /// A key the engine computes from the request, or reserves for the server: a host may
    /// not replace it.
    #[error(
        "the environ key {key:?} is computed by the engine from the request; a host cannot set it"
    )]
    ReservedKey {
        /// The key.
        key: String,
    },
    /// A key that is empty or has a character other than ASCII letters, digits, `_`, `.`
    /// and `-`.
    #[error(
        "{key:?} is not an environ key a host may add: use ASCII letters, digits, `_`, `.` and `-` (`myservice.tenant`, `SSL_CLIENT_S_DN`)"
    )]
    InvalidKey {
        /// The key.
        key: String,
    },
    /// A value that is not a native string.
    #[error("the value of the environ key {key:?} is not a native string: {source}")]
    InvalidValue {
        /// The key.
        key: String,
        /// Why.
        source: InvalidNativeString,
    },
}

/// Environ entries the host adds to one request: `REMOTE_USER` and `AUTH_TYPE`, which say
/// who the host authenticated and how, and keys of its own.
///
/// The engine reads them from the request's extensions
/// ([`http::Request::extensions_mut`]), so any layer in front of the application can add
/// them: a tower layer or axum middleware (`wsgi-axum` hands the request over with its
/// extensions), an actix-web middleware (`wsgi-actix` takes them from the `HttpRequest`'s
/// extensions). They reach the application the same way in this process and in worker
/// processes.
///
/// They cannot be forged and cannot override what the engine computes:
///
/// - Only Rust code puts them there: a request header never becomes `REMOTE_USER` (a
///   `Remote-User:` header is `HTTP_REMOTE_USER`, as in CGI).
/// - A key the engine computes or reserves is refused when it is set
///   ([`EnvironError::ReservedKey`]): `wsgi.*`, `HTTP_*`, `SERVER_*`, `REQUEST_*`,
///   `CONTENT_*`, `PATH_*`, `SCRIPT_*`, `QUERY_*`, `RAW_*`, `GATEWAY_*`, `REMOTE_*` but
///   `REMOTE_USER`, and `HTTPS`, in any case.
/// - Keys are ASCII letters, digits, `_`, `.` and `-`; values are [`NativeString`]s (no NUL,
///   latin-1). Setting a key again replaces the value set before, so a later layer may
///   refine what an earlier one said.
///
/// ```
/// use wsgi_core::EnvironExtras;
///
/// let mut extras = EnvironExtras::new();
/// extras
///     .set_remote_user("alice")?
///     .set_auth_type("Bearer")?
///     .set("myservice.tenant", "acme")?;
/// assert_eq!(extras.remote_user().map(|u| u.to_string()).as_deref(), Some("alice"));
///
/// // Computed variables and invalid values are refused where they are set.
/// assert!(extras.set("PATH_INFO", "/admin").is_err());
/// assert!(extras.set("HTTP_X_USER", "root").is_err());
/// assert!(extras.set("myservice.note", "a\0b").is_err());
///
/// // Handed to the engine with the request.
/// let mut request = http::Request::get("/").body(()).unwrap();
/// request.extensions_mut().insert(extras);
/// # Ok::<(), wsgi_core::EnvironError>(())
/// ```
#[derive(Clone, Default, PartialEq, Eq)]
pub struct EnvironExtras {
    /// In the order they were first set; few, so a list rather than a map.
    entries: Vec<(Cow<'static, str>, NativeString)>,
}

/// `REMOTE_USER`: CGI's name for the user the server authenticated.
const REMOTE_USER: &str = "REMOTE_USER";
/// `AUTH_TYPE`: CGI's name for how (`Basic`, `Bearer`, `Cookie`, a scheme of the host's).
const AUTH_TYPE: &str = "AUTH_TYPE";

/// Prefixes of the keys the engine computes or reserves (`wsgi.*` are the server's, by PEP
/// 3333), compared without case: `http_x_user` is no CGI variable, but a host that writes it
/// surely meant `HTTP_X_USER`.
const RESERVED_PREFIXES: [&str; 10] = [
    "wsgi.", "HTTP_", "SERVER_", "REQUEST_", "CONTENT_", "PATH_", "SCRIPT_", "QUERY_", "RAW_",
    "GATEWAY_",
];

impl EnvironExtras {
    /// No entries.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `REMOTE_USER`, the name of the user the host authenticated (what Django's
    /// `RemoteUserMiddleware` and Flask's `request.remote_user` read).
    pub fn set_remote_user<V>(&mut self, user: V) -> Result<&mut Self, EnvironError>
    where
        V: TryInto<NativeString>,
        V::Error: Into<InvalidNativeString>,
    {
        self.set(REMOTE_USER, user)
    }

    /// Sets `AUTH_TYPE`, how the user was authenticated (`Basic`, `Bearer`, `Cookie`...).
    pub fn set_auth_type<V>(&mut self, auth_type: V) -> Result<&mut Self, EnvironError>
    where
        V: TryInto<NativeString>,
        V::Error: Into<InvalidNativeString>,
    {
        self.set(AUTH_TYPE, auth_type)
    }

    /// Sets the environ key `key` to `value`: a key of the host's own (`myservice.tenant`,
    /// lowercase with a dot, as PEP 3333 suggests for extensions), or a CGI-style one the
    /// engine does not compute (`SSL_CLIENT_S_DN`, `REMOTE_USER`). `value` is anything that
    /// makes a [`NativeString`]: `&str`, `String`, `&[u8]`, `&[u8; N]`, `Vec<u8>`, `Bytes`.
    pub fn set<V>(&mut self, key: &str, value: V) -> Result<&mut Self, EnvironError>
    where
        V: TryInto<NativeString>,
        V::Error: Into<InvalidNativeString>,
    {
        let key = checked_key(key)?;
        let value = value.try_into().map_err(|e| EnvironError::InvalidValue {
            key: key.to_string(),
            source: e.into(),
        })?;
        match self.entries.iter_mut().find(|(k, _)| *k == key) {
            Some((_, old)) => *old = value,
            None => self.entries.push((key, value)),
        }
        Ok(self)
    }

    /// `REMOTE_USER`, if set.
    pub fn remote_user(&self) -> Option<&NativeString> {
        self.get(REMOTE_USER)
    }

    /// `AUTH_TYPE`, if set.
    pub fn auth_type(&self) -> Option<&NativeString> {
        self.get(AUTH_TYPE)
    }

    /// The value of `key`, if set.
    pub fn get(&self, key: &str) -> Option<&NativeString> {
        self.entries.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// The entries, in the order their keys were first set.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&str, &NativeString)> {
        self.entries.iter().map(|(k, v)| (k.as_ref(), v))
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// `key` as kept, if a host may set it.
fn checked_key(key: &str) -> Result<Cow<'static, str>, EnvironError> {
    // The typed ones are spelled with their `&'static str`: no allocation per request.
    for known in [REMOTE_USER, AUTH_TYPE] {
        if key == known {
            return Ok(Cow::Borrowed(known));
        }
    }
    let valid = !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if !valid {
        return Err(EnvironError::InvalidKey { key: key.into() });
    }
    let starts = |prefix: &str| {
        key.get(..prefix.len())
            .is_some_and(|head| head.eq_ignore_ascii_case(prefix))
    };
    // `REMOTE_USER` and `AUTH_TYPE` spelled exactly returned above; in another case
    // (`remote_user`) they are not the CGI variables, and are refused rather than taken for
    // them.
    let reserved = RESERVED_PREFIXES.iter().any(|p| starts(p))
        || starts("REMOTE_")
        || key.eq_ignore_ascii_case("HTTPS")
        || key.eq_ignore_ascii_case(AUTH_TYPE);
    if reserved {
        return Err(EnvironError::ReservedKey { key: key.into() });
    }
    Ok(Cow::Owned(key.to_owned()))
}

impl fmt::Debug for EnvironExtras {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_typed_entries_are_remote_user_and_auth_type() {
        let mut extras = EnvironExtras::new();
        extras
            .set_remote_user("alice")
            .unwrap()
            .set_auth_type("Cookie")
            .unwrap();
        assert_eq!(extras.remote_user().unwrap().as_bytes(), b"alice");
        assert_eq!(extras.auth_type().unwrap().as_bytes(), b"Cookie");
        assert_eq!(extras.get("REMOTE_USER"), extras.remote_user());
        let keys: Vec<&str> = extras.iter().map(|(k, _)| k).collect();
        assert_eq!(keys, ["REMOTE_USER", "AUTH_TYPE"]);
    }

    #[test]
    fn keys_the_engine_computes_are_refused_in_any_case() {
        for key in [
            "PATH_INFO",
            "SCRIPT_NAME",
            "CONTENT_LENGTH",
            "CONTENT_TYPE",
            "QUERY_STRING",
            "REQUEST_METHOD",
            "REQUEST_URI",
            "RAW_URI",
            "SERVER_NAME",
            "SERVER_PORT",
            "SERVER_PROTOCOL",
            "SERVER_SOFTWARE",
            "REMOTE_ADDR",
            "REMOTE_PORT",
            "GATEWAY_INTERFACE",
            "HTTPS",
            "HTTP_HOST",
            "HTTP_REMOTE_USER",
            "http_x_user",
            "wsgi.input",
            "wsgi.url_scheme",
            "WSGI.errors",
            "remote_user",
            "Auth_Type",
        ] {
            let err = EnvironExtras::new().set(key, "x").unwrap_err();
            assert_eq!(err, EnvironError::ReservedKey { key: key.into() }, "{key}");
        }
    }

    #[test]
    fn keys_of_the_hosts_own_are_accepted() {
        let mut extras = EnvironExtras::new();
        for key in [
            "myservice.tenant",
            "SSL_CLIENT_S_DN",
            "x-trace",
            "HTTPSX",
            "wsgix",
        ] {
            extras
                .set(key, "v")
                .unwrap_or_else(|e| panic!("{key}: {e}"));
        }
        assert_eq!(extras.iter().len(), 5);
    }

    #[test]
    fn malformed_keys_are_refused() {
        for key in ["", "my service", "tenant=acme", "café", "a\0b", "a/b"] {
            let err = EnvironExtras::new().set(key, "x").unwrap_err();
            assert!(
                matches!(err, EnvironError::InvalidKey { .. }),
                "{key:?}: {err}"
            );
        }
    }

    #[test]
    fn values_with_a_nul_or_beyond_latin_1_are_refused_naming_the_key() {
        let mut extras = EnvironExtras::new();
        let err = extras.set_remote_user("al\0ice").unwrap_err();
        assert_eq!(
            err,
            EnvironError::InvalidValue {
                key: "REMOTE_USER".into(),
                source: InvalidNativeString::Nul { at: 2 },
            }
        );
        let err = extras.set("myservice.tenant", "Łódź").unwrap_err();
        assert!(err.to_string().contains("myservice.tenant"), "{err}");
        assert!(err.to_string().contains("not latin-1"), "{err}");
        let err = extras.set("myservice.raw", &b"a\0"[..]).unwrap_err();
        assert!(matches!(err, EnvironError::InvalidValue { .. }));
        assert!(extras.is_empty(), "a refused entry leaves nothing behind");
    }

    #[test]
    fn values_are_latin_1_text_or_bytes_one_code_point_each() {
        let mut extras = EnvironExtras::new();
        extras
            .set("a", "José")
            .unwrap()
            .set("b", String::from("x"))
            .unwrap()
            .set("c", "Łukasz".as_bytes())
            .unwrap()
            .set("d", Bytes::from_static(b"\xff"))
            .unwrap()
            .set("e", vec![b'v'])
            .unwrap()
            .set("g", b"\xe9")
            .unwrap()
            .set("f", NativeString::try_from("n").unwrap())
            .unwrap();
        assert_eq!(extras.get("a").unwrap().as_bytes(), b"Jos\xe9");
        assert_eq!(extras.get("a").unwrap().to_string(), "José");
        assert_eq!(extras.get("c").unwrap().as_bytes(), "Łukasz".as_bytes());
        assert_eq!(extras.get("d").unwrap().to_string(), "ÿ");
        assert_eq!(extras.get("g").unwrap().to_string(), "é");
    }

    #[test]
    fn setting_a_key_again_replaces_its_value_in_place() {
        let mut extras = EnvironExtras::new();
        extras.set_remote_user("a").unwrap().set("k", "1").unwrap();
        extras.set_remote_user("b").unwrap();
        assert_eq!(format!("{extras:?}"), r#"{"REMOTE_USER": "b", "k": "1"}"#);
    }
}
