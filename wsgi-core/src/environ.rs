//! The CGI part of the WSGI environ, computed in Rust from the request head.
//!
//! Values are kept as raw bytes: PEP 3333 wants native strings whose code points are the
//! bytes as received (latin-1), and the conversion to Python `str` happens in
//! [`crate::python`], the only module that touches the interpreter.
//!
//! They are shared with the request head rather than copied: `http` keeps the request target
//! and each header value as `Bytes`, which hyper slices out of its read buffer, so holding
//! on to them (or to a part of one) costs a reference count, where a copy costs an
//! allocation on the I/O thread and a free on the Python thread. A request makes one
//! allocation here (the list of `HTTP_*` variables), more only when it repeats a header
//! (the lines are joined), percent-encodes its path, or lacks a `Host` line.

use std::borrow::Cow;
use std::fmt;
use std::net::IpAddr;
use std::ops::Range;

use bytes::Bytes;
use http::uri::PathAndQuery;
use http::{HeaderName, HeaderValue, Method, Uri, Version, header};
use percent_encoding::percent_decode_str;

use crate::extras::EnvironExtras;
use crate::host::{ConnInfo, Scheme};
use crate::proxy::{Peer, TrustedProxies};

/// The CGI variables of one request.
pub(crate) struct CgiVars {
    pub(crate) method: Method,
    pub(crate) script_name: String,
    /// The request target as received (origin-form: path, then `?` and the query if any),
    /// which [`request_uri`](Self::request_uri), [`query_string`](Self::query_string) and
    /// in most requests [`path_info`](Self::path_info) are read from.
    pub(crate) target: PathAndQuery,
    /// Where `PATH_INFO` is.
    pub(crate) path: PathInfo,
    pub(crate) protocol: &'static str,
    pub(crate) url_scheme: &'static str,
    pub(crate) server_name: Value,
    pub(crate) server_port: Value,
    /// Kept as an address, not text: the environ builder formats it, and only when it
    /// differs from the previous request's (a keep-alive connection repeats it).
    pub(crate) remote_addr: Option<IpAddr>,
    /// Kept as a number, for the same reason as `remote_addr`.
    pub(crate) remote_port: Option<u16>,
    pub(crate) content_type: Option<Value>,
    pub(crate) content_length: Option<Value>,
    /// `HTTP_*` variables, already joined per name.
    pub(crate) headers: Vec<(Cow<'static, str>, Value)>,
    /// What the host added (`REMOTE_USER`, keys of its own), checked when it was set: none
    /// of them is a variable above.
    pub(crate) extras: EnvironExtras,
}

/// Empty variables, a placeholder while the real ones are lent out (a worker-process slot
/// moves them into the message it sends, then takes them back).
impl Default for CgiVars {
    fn default() -> Self {
        CgiVars {
            method: Method::default(),
            script_name: String::new(),
            target: PathAndQuery::from_static("/"),
            path: PathInfo::Own(Bytes::new()),
            protocol: "",
            url_scheme: "",
            server_name: Value::from_static(""),
            server_port: Value::from_static(""),
            remote_addr: None,
            remote_port: None,
            content_type: None,
            content_length: None,
            headers: Vec::new(),
            extras: EnvironExtras::new(),
        }
    }
}

/// Where the bytes of `PATH_INFO` are.
#[derive(Clone)]
pub(crate) enum PathInfo {
    /// In the request target, from this byte of its path on: the path had nothing to
    /// percent-decode (`percent_decode_str` borrows then), the usual case.
    InTarget(usize),
    /// Bytes of their own: the decoded path, or the bytes a worker process received.
    Own(Bytes),
}

/// The bytes of one variable, shared rather than copied.
#[derive(Clone)]
pub(crate) enum Value {
    /// A header value as the host received it, or the part `range` of one (`SERVER_NAME`
    /// and `SERVER_PORT` out of `Host`). `http` keeps a value's `Bytes` to itself, so the
    /// value is kept whole and the range beside it.
    Header(HeaderValue, Range<usize>),
    /// Bytes of their own: lines joined, a value made up, or a slice of the frame a worker
    /// process received.
    Bytes(Bytes),
}

impl Value {
    /// The variable's bytes.
    #[inline]
    pub(crate) fn as_bytes(&self) -> &[u8] {
        match self {
            Value::Header(value, range) => value.as_bytes().get(range.clone()).unwrap_or_default(),
            Value::Bytes(bytes) => bytes,
        }
    }

    /// The bytes at `range` of this value's (which must be within them), shared.
    fn slice(&self, range: Range<usize>) -> Value {
        match self {
            Value::Header(value, whole) => Value::Header(
                value.clone(),
                whole.start + range.start..whole.start + range.end,
            ),
            Value::Bytes(bytes) => Value::Bytes(bytes.slice(range)),
        }
    }

    const fn from_static(text: &'static str) -> Value {
        Value::Bytes(Bytes::from_static(text.as_bytes()))
    }
}

impl From<HeaderValue> for Value {
    fn from(value: HeaderValue) -> Value {
        let len = value.len();
        Value::Header(value, 0..len)
    }
}

impl From<Bytes> for Value {
    fn from(bytes: Bytes) -> Value {
        Value::Bytes(bytes)
    }
}

impl fmt::Debug for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&Shown(self.as_bytes()), f)
    }
}

/// Bytes in `Debug` output as a byte string literal: the same whichever way they are held.
struct Shown<'a>(&'a [u8]);

impl fmt::Debug for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "b\"{}\"", self.0.escape_ascii())
    }
}

/// The variables as the application sees them, not how they are held: two `CgiVars` with
/// the same environ print the same (the worker-process tests compare them so).
impl fmt::Debug for CgiVars {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CgiVars")
            .field("method", &self.method)
            .field("script_name", &self.script_name)
            .field("path_info", &Shown(self.path_info()))
            .field("query_string", &self.query_string())
            .field("request_uri", &self.request_uri())
            .field("protocol", &self.protocol)
            .field("url_scheme", &self.url_scheme)
            .field("server_name", &self.server_name)
            .field("server_port", &self.server_port)
            .field("remote_addr", &self.remote_addr)
            .field("remote_port", &self.remote_port)
            .field("content_type", &self.content_type)
            .field("content_length", &self.content_length)
            .field("headers", &self.headers)
            .field("extras", &self.extras)
            .finish()
    }
}

/// Why a request cannot be handed to the application.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Reject {
    /// The path is not under the mount prefix.
    NotMounted,
}

/// `/py` owns `/py` and `/py/...` but not `/pyx`: prefixes match on a segment boundary.
pub(crate) fn split_mount<'a>(mount: &str, path: &'a str) -> Option<&'a str> {
    let rest = path.strip_prefix(mount)?;
    (rest.is_empty() || rest.starts_with('/') || mount.is_empty()).then_some(rest)
}

pub(crate) fn protocol_name(version: Version) -> &'static str {
    match version {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_2 => "HTTP/2",
        Version::HTTP_3 => "HTTP/3",
        _ => "HTTP/1.1",
    }
}

impl CgiVars {
    /// The variables of the request with the head `head` and the URI `uri`, which the
    /// caller moves out of the head (`head.uri` is not read): the variables keep its target.
    pub(crate) fn new(
        uri: Uri,
        head: &http::request::Parts,
        conn: &ConnInfo,
        proxies: &TrustedProxies,
    ) -> Result<Self, Reject> {
        let http::uri::Parts {
            authority,
            path_and_query,
            ..
        } = uri.into_parts();
        // Authority-form (`CONNECT host:port`) has no path; `PathAndQuery::path` already
        // gives `/` for an empty one (`http://host`).
        let target = path_and_query.unwrap_or_else(|| PathAndQuery::from_static("/"));
        let path = target.path();
        let rest = split_mount(&conn.mount, path).ok_or(Reject::NotMounted)?;
        let path_info = match Cow::from(percent_decode_str(rest)) {
            Cow::Borrowed(_) => PathInfo::InTarget(path.len() - rest.len()),
            Cow::Owned(decoded) => PathInfo::Own(Bytes::from(decoded)),
        };

        let mut forwarded = if proxies.is_empty() {
            None
        } else {
            proxies.read(Peer::of(conn), &head.headers)
        }
        .unwrap_or_default();
        let scheme = match forwarded.https {
            Some(true) => Scheme::Https,
            Some(false) => Scheme::Http,
            None => conn.scheme,
        };
        let host_line = head.headers.get(header::HOST);
        // `HTTP_HOST` is the host a trusted proxy reports, when it does, instead of the
        // `Host` line; without a `Host` line, the URI's authority (HTTP/2 carries the host in
        // `:authority`, which `http` keeps in the URI).
        let other_host: Option<Value> = match forwarded.host.take() {
            Some(host) => Some(Bytes::from(host).into()),
            None if host_line.is_none() => {
                authority.map(|a| Bytes::copy_from_slice(a.as_str().as_bytes()).into())
            }
            None => None,
        };
        let host = other_host
            .clone()
            .or_else(|| host_line.map(|h| Value::from(h.clone())));
        let (server_name, server_port) = server_name_port(host.as_ref(), scheme, conn);

        let mut headers: Vec<(Cow<'static, str>, Value)> =
            Vec::with_capacity(head.headers.keys_len() + usize::from(other_host.is_some()));
        let mut content_type: Option<Value> = None;
        let mut content_length: Option<Value> = None;
        // One pass over the lines, no lookup by name: `HeaderMap` yields the lines of one
        // name one after the other (as its `into_iter` documents), so a line whose name is
        // the previous line's joins the variable that line started. The first line's value
        // is shared; a second line makes a buffer the rest are joined in, which replaces
        // the variable's value once the name's lines are over.
        let mut current: Option<(&HeaderName, Joining)> = None;
        let mut joined: Option<Vec<u8>> = None;
        for (name, value) in &head.headers {
            if let Some((previous, joining)) = current
                && previous == name
            {
                let var = joining.var(&mut content_type, &mut content_length, &mut headers);
                if let Some(var) = var {
                    let buf = joined.get_or_insert_with(|| var.as_bytes().to_vec());
                    buf.extend_from_slice(joining.separator());
                    buf.extend_from_slice(value.as_bytes());
                }
                continue;
            }
            if let Some((_, joining)) = current {
                joining.settle(
                    joined.take(),
                    &mut content_type,
                    &mut content_length,
                    &mut headers,
                );
            }
            let joining = if name == header::CONTENT_TYPE {
                content_type = Some(value.clone().into());
                Joining::ContentType
            } else if name == header::CONTENT_LENGTH {
                content_length = Some(value.clone().into());
                Joining::ContentLength
            } else if let Some(key) = cgi_header_name(name) {
                let sep: &'static [u8] = if name == header::COOKIE {
                    b"; "
                } else {
                    LIST_SEPARATOR
                };
                headers.push((key, value.clone().into()));
                Joining::Header(headers.len() - 1, sep)
            } else {
                Joining::Dropped
            };
            current = Some((name, joining));
        }
        if let Some((_, joining)) = current {
            joining.settle(
                joined.take(),
                &mut content_type,
                &mut content_length,
                &mut headers,
            );
        }
        if let Some(host) = other_host {
            if host_line.is_some() {
                headers.retain(|(k, _)| k != "HTTP_HOST");
            }
            headers.push((Cow::Borrowed("HTTP_HOST"), host));
        }

        Ok(CgiVars {
            method: head.method.clone(),
            script_name: match &forwarded.prefix {
                Some(prefix) => format!("{prefix}{}", conn.mount),
                None => conn.mount.clone(),
            },
            target,
            path: path_info,
            protocol: protocol_name(head.version),
            url_scheme: scheme.as_str(),
            server_name,
            server_port,
            remote_addr: forwarded.client.or(conn.peer_addr.map(|a| a.ip())),
            // The client's port behind a proxy is unknown; the proxy's would mislead.
            remote_port: match forwarded.client {
                Some(_) => None,
                None => conn.peer_addr.map(|a| a.port()),
            },
            content_type,
            content_length,
            headers,
            extras: EnvironExtras::new(),
        })
    }

    /// `PATH_INFO`: the percent-decoded path after the mount prefix.
    pub(crate) fn path_info(&self) -> &[u8] {
        match &self.path {
            PathInfo::InTarget(at) => self.target.path().as_bytes().get(*at..).unwrap_or_default(),
            PathInfo::Own(bytes) => bytes,
        }
    }

    /// `QUERY_STRING`, as received.
    pub(crate) fn query_string(&self) -> &str {
        self.target.query().unwrap_or("")
    }

    /// `REQUEST_URI`: the path as received, then `?` and the query if there is one.
    pub(crate) fn request_uri(&self) -> Cow<'_, str> {
        match self.target.as_str() {
            // An absolute-form target with an empty path (`http://host?q`), whose path is `/`.
            text if text.starts_with('?') => Cow::Owned(format!("/{text}")),
            text => Cow::Borrowed(text),
        }
    }
}

/// What joins the lines of a repeated request header into one variable: RFC 9110 §5.3
/// recommends a comma and a space, which is what Apache, so mod_wsgi, produces (gunicorn
/// joins with a bare comma). `Cookie` lines are joined with `; ` instead (RFC 6265 §5.4),
/// the separator of pairs within one line.
const LIST_SEPARATOR: &[u8] = b", ";

/// The variable that further lines of the current header name are joined to.
#[derive(Clone, Copy)]
enum Joining {
    ContentType,
    ContentLength,
    /// `headers[i]`, with this separator.
    Header(usize, &'static [u8]),
    /// A name that makes no variable.
    Dropped,
}

impl Joining {
    fn separator(self) -> &'static [u8] {
        match self {
            Joining::Header(_, sep) => sep,
            _ => LIST_SEPARATOR,
        }
    }

    /// The variable itself, among those being built.
    fn var<'v>(
        self,
        content_type: &'v mut Option<Value>,
        content_length: &'v mut Option<Value>,
        headers: &'v mut [(Cow<'static, str>, Value)],
    ) -> Option<&'v mut Value> {
        match self {
            Joining::ContentType => content_type.as_mut(),
            Joining::ContentLength => content_length.as_mut(),
            Joining::Header(i, _) => headers.get_mut(i).map(|(_, v)| v),
            Joining::Dropped => None,
        }
    }

    /// The name's lines are over: its variable becomes the lines `joined`, if there were
    /// several.
    fn settle(
        self,
        joined: Option<Vec<u8>>,
        content_type: &mut Option<Value>,
        content_length: &mut Option<Value>,
        headers: &mut [(Cow<'static, str>, Value)],
    ) {
        if let Some(joined) = joined
            && let Some(var) = self.var(content_type, content_length, headers)
        {
            *var = Value::Bytes(Bytes::from(joined));
        }
    }
}

/// `user-agent` -> `HTTP_USER_AGENT`. A name that already contains `_` is dropped: after the
/// `-` to `_` mapping it would be indistinguishable from (and could spoof) the `-` form, which
/// a proxy in front may have vetted.
pub(crate) fn cgi_header_name(name: &HeaderName) -> Option<Cow<'static, str>> {
    // The well-known names first: none has a `_`, and looking for one in every name was a
    // tenth of a request's CGI variables.
    if let Some(known) = known_header(name) {
        return Some(Cow::Borrowed(known));
    }
    let s = name.as_str();
    if s.contains('_') {
        return None;
    }
    let mut key = String::with_capacity(5 + s.len());
    key.push_str("HTTP_");
    key.extend(s.chars().map(|c| {
        if c == '-' {
            '_'
        } else {
            c.to_ascii_uppercase()
        }
    }));
    Some(Cow::Owned(key))
}

fn known_header(name: &HeaderName) -> Option<&'static str> {
    Some(match *name {
        header::HOST => "HTTP_HOST",
        header::USER_AGENT => "HTTP_USER_AGENT",
        header::ACCEPT => "HTTP_ACCEPT",
        header::ACCEPT_ENCODING => "HTTP_ACCEPT_ENCODING",
        header::ACCEPT_LANGUAGE => "HTTP_ACCEPT_LANGUAGE",
        header::CONNECTION => "HTTP_CONNECTION",
        header::COOKIE => "HTTP_COOKIE",
        header::REFERER => "HTTP_REFERER",
        header::AUTHORIZATION => "HTTP_AUTHORIZATION",
        header::CACHE_CONTROL => "HTTP_CACHE_CONTROL",
        header::IF_NONE_MATCH => "HTTP_IF_NONE_MATCH",
        header::IF_MODIFIED_SINCE => "HTTP_IF_MODIFIED_SINCE",
        header::ORIGIN => "HTTP_ORIGIN",
        header::UPGRADE_INSECURE_REQUESTS => "HTTP_UPGRADE_INSECURE_REQUESTS",
        header::EXPECT => "HTTP_EXPECT",
        header::TRANSFER_ENCODING => "HTTP_TRANSFER_ENCODING",
        _ => return None,
    })
}

/// `SERVER_NAME` and `SERVER_PORT` from the host the request names, as parts of it; from
/// the local address when it names none.
fn server_name_port(host: Option<&Value>, scheme: Scheme, conn: &ConnInfo) -> (Value, Value) {
    let default_port = || Value::from_static(scheme.default_port());
    if let Some(host) = host.filter(|h| !h.as_bytes().is_empty()) {
        // `[::1]:8080`, `example.com:8080`, `example.com`, `[::1]`.
        let bytes = host.as_bytes();
        let (name, port) = match bytes.iter().rposition(|&b| b == b':') {
            Some(i) if !bytes[i..].contains(&b']') => {
                (host.slice(0..i), Some(host.slice(i + 1..bytes.len())))
            }
            _ => (host.clone(), None),
        };
        let port = port
            .filter(|p| !p.as_bytes().is_empty() && p.as_bytes().iter().all(u8::is_ascii_digit))
            .unwrap_or_else(default_port);
        return (name, port);
    }
    match conn.local_addr {
        Some(addr) => (
            Bytes::from(addr.ip().to_string()).into(),
            Bytes::from(addr.port().to_string()).into(),
        ),
        None => (Value::from_static("localhost"), default_port()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(uri: &str, headers: &[(&str, &[u8])], mount: &str) -> Result<CgiVars, Reject> {
        let mut req = http::Request::get(uri);
        for (k, v) in headers {
            req = req.header(*k, http::HeaderValue::from_bytes(v).unwrap());
        }
        let (mut parts, ()) = req.body(()).unwrap().into_parts();
        let conn = ConnInfo::new(
            Some("10.1.2.3:4567".parse().unwrap()),
            Some("127.0.0.1:8000".parse().unwrap()),
        )
        .with_mount(mount);
        let uri = std::mem::take(&mut parts.uri);
        CgiVars::new(uri, &parts, &conn, &TrustedProxies::default())
    }

    fn get<'v>(v: &'v CgiVars, key: &str) -> Option<&'v Value> {
        v.headers.iter().find(|(n, _)| n == key).map(|(_, v)| v)
    }

    /// Whether `value` shares the bytes of a header line rather than having its own.
    fn shared(value: &Value) -> bool {
        matches!(value, Value::Header(..))
    }

    #[test]
    fn mount_matches_on_segment_boundary() {
        assert_eq!(split_mount("/py", "/py"), Some(""));
        assert_eq!(split_mount("/py", "/py/a"), Some("/a"));
        assert_eq!(split_mount("/py", "/pyx"), None);
        assert_eq!(split_mount("", "/pyx"), Some("/pyx"));
        assert_eq!(vars("/pyx", &[], "/py").unwrap_err(), Reject::NotMounted);
    }

    #[test]
    fn path_info_is_percent_decoded_bytes() {
        let v = vars("/py/caf%C3%A9/%FF?a=%20b", &[], "/py").unwrap();
        assert_eq!(v.script_name, "/py");
        assert_eq!(v.path_info(), b"/caf\xc3\xa9/\xff");
        assert!(
            matches!(v.path, PathInfo::Own(_)),
            "decoded into bytes of its own"
        );
        assert_eq!(v.query_string(), "a=%20b");
        assert_eq!(v.request_uri(), "/py/caf%C3%A9/%FF?a=%20b");
    }

    #[test]
    fn a_path_without_escapes_is_read_from_the_target() {
        let v = vars("/py/a/b?x=1", &[], "/py").unwrap();
        assert!(matches!(v.path, PathInfo::InTarget(3)));
        assert_eq!(v.path_info(), b"/a/b");
        assert!(matches!(v.request_uri(), Cow::Borrowed("/py/a/b?x=1")));
        // A `%` that escapes nothing is kept as it is, from the target too.
        let v = vars("/a%zz", &[], "").unwrap();
        assert!(matches!(v.path, PathInfo::InTarget(0)));
        assert_eq!(v.path_info(), b"/a%zz");
        let v = vars("/py", &[], "/py").unwrap();
        assert_eq!((v.path_info(), v.query_string()), (&b""[..], ""));
        assert_eq!(v.request_uri(), "/py");
    }

    #[test]
    fn targets_without_a_path_get_slash() {
        let v = vars("http://example.com?q=1", &[], "").unwrap();
        assert_eq!(v.path_info(), b"/");
        assert_eq!(v.query_string(), "q=1");
        assert_eq!(v.request_uri(), "/?q=1");
        let v = vars("http://example.com", &[], "").unwrap();
        assert_eq!((v.path_info(), v.request_uri()), (&b"/"[..], "/".into()));
        // HTTP/2's `:authority`, as `http` keeps it, stands in for the missing Host line.
        assert_eq!(get(&v, "HTTP_HOST").unwrap().as_bytes(), b"example.com");
        assert_eq!(v.server_name.as_bytes(), b"example.com");
    }

    #[test]
    fn headers_are_joined_and_underscores_dropped() {
        let v = vars(
            "/",
            &[
                ("x-a", b"1"),
                ("x-a", b"2"),
                ("cookie", b"a=1"),
                ("cookie", b"b=2"),
                ("cookie", b"c=3"),
                ("x_spoof", b"evil"),
                ("x-latin", b"caf\xe9"),
                ("content-type", b"text/plain"),
            ],
            "",
        )
        .unwrap();
        let get = |k: &str| get(&v, k).map(|v| v.as_bytes());
        assert_eq!(get("HTTP_X_A").unwrap(), b"1, 2");
        assert_eq!(get("HTTP_COOKIE").unwrap(), b"a=1; b=2; c=3");
        assert_eq!(get("HTTP_X_SPOOF"), None);
        assert_eq!(get("HTTP_X_LATIN").unwrap(), b"caf\xe9");
        assert_eq!(get("HTTP_CONTENT_TYPE"), None);
        assert_eq!(
            v.content_type.as_ref().map(Value::as_bytes),
            Some(&b"text/plain"[..])
        );
        assert!(v.content_length.is_none());
    }

    #[test]
    fn single_lines_are_shared_and_repeated_ones_joined_apart() {
        let v = vars(
            "/",
            &[
                ("host", b"example.com:8080"),
                ("accept", b"*/*"),
                ("x-a", b"1"),
                ("x-a", b""),
                ("content-type", b"text/plain"),
            ],
            "",
        )
        .unwrap();
        assert!(shared(get(&v, "HTTP_HOST").unwrap()));
        assert!(shared(get(&v, "HTTP_ACCEPT").unwrap()));
        assert!(shared(v.content_type.as_ref().unwrap()));
        assert!(shared(&v.server_name) && shared(&v.server_port));
        let joined = get(&v, "HTTP_X_A").unwrap();
        assert!(!shared(joined));
        assert_eq!(joined.as_bytes(), b"1, ");
    }

    #[test]
    fn repeated_lines_join_whatever_comes_between() {
        let v = vars(
            "/",
            &[
                ("x-a", b"1"),
                ("content-length", b"5"),
                ("x-b", b"2"),
                ("x_c", b"dropped"),
                ("x-a", b"3"),
                ("content-length", b"5"),
                ("x_c", b"dropped too"),
            ],
            "",
        )
        .unwrap();
        let names: Vec<&str> = v.headers.iter().map(|(n, _)| n.as_ref()).collect();
        assert_eq!(names, ["HTTP_X_A", "HTTP_X_B"]);
        assert_eq!(v.headers[0].1.as_bytes(), b"1, 3");
        assert_eq!(v.headers[1].1.as_bytes(), b"2");
        assert_eq!(
            v.content_length.as_ref().map(Value::as_bytes),
            Some(&b"5, 5"[..])
        );
    }

    #[test]
    fn server_name_from_host_or_local_address() {
        let name_port = |v: &CgiVars| {
            (
                v.server_name.as_bytes().to_vec(),
                v.server_port.as_bytes().to_vec(),
            )
        };
        let v = vars("/", &[("host", b"example.com:8080")], "").unwrap();
        assert_eq!(name_port(&v), (b"example.com".to_vec(), b"8080".to_vec()));
        let v = vars("/", &[("host", b"[::1]")], "").unwrap();
        assert_eq!(name_port(&v), (b"[::1]".to_vec(), b"80".to_vec()));
        let v = vars("/", &[("host", b"[::1]:x1")], "").unwrap();
        assert_eq!(name_port(&v), (b"[::1]".to_vec(), b"80".to_vec()));
        let v = vars("/", &[], "").unwrap();
        assert_eq!(name_port(&v), (b"127.0.0.1".to_vec(), b"8000".to_vec()));
        assert_eq!(v.remote_addr, Some("10.1.2.3".parse().unwrap()));
        assert_eq!(v.remote_port, Some(4567));
    }

    #[test]
    fn a_trusted_proxy_replaces_host_and_client() {
        let req = http::Request::get("/")
            .header("host", "internal:8000")
            .header("x-forwarded-host", "example.org")
            .header("x-forwarded-for", "192.0.2.9")
            .body(())
            .unwrap();
        let (mut parts, ()) = req.into_parts();
        let conn = ConnInfo::new(Some("10.0.0.1:4000".parse().unwrap()), None);
        let proxies = TrustedProxies::parse(&["10.0.0.0/8"]).unwrap();
        let uri = std::mem::take(&mut parts.uri);
        let v = CgiVars::new(uri, &parts, &conn, &proxies).unwrap();
        let hosts: Vec<&[u8]> = v
            .headers
            .iter()
            .filter(|(n, _)| n == "HTTP_HOST")
            .map(|(_, v)| v.as_bytes())
            .collect();
        assert_eq!(hosts, [b"example.org"]);
        assert_eq!(v.server_name.as_bytes(), b"example.org");
        assert_eq!(v.remote_addr, Some("192.0.2.9".parse().unwrap()));
        assert_eq!(v.remote_port, None);
    }

    #[test]
    fn debug_shows_the_variables_however_held() {
        let v = vars("/a%20b?q", &[("x-a", b"1"), ("x-a", b"2")], "").unwrap();
        let text = format!("{v:?}");
        assert!(text.contains(r#"path_info: b"/a b""#), "{text}");
        assert!(text.contains(r#"("HTTP_X_A", b"1, 2")"#), "{text}");
        assert!(text.contains(r#"request_uri: "/a%20b?q""#), "{text}");
    }
}
