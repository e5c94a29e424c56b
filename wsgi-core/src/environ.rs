//! The CGI part of the WSGI environ, computed in Rust from the request head.
//!
//! Values are kept as raw bytes: PEP 3333 wants native strings whose code points are the
//! bytes as received (latin-1), and the conversion to Python `str` happens in
//! [`crate::python`], the only module that touches the interpreter.

use std::borrow::Cow;

use http::{HeaderName, Method, Version, header};
use percent_encoding::percent_decode_str;

use crate::host::{ConnInfo, Scheme};
use crate::proxy::TrustedProxies;

/// The CGI variables of one request.
#[derive(Debug, Default)]
pub(crate) struct CgiVars {
    pub(crate) method: Method,
    pub(crate) script_name: String,
    pub(crate) path_info: Vec<u8>,
    pub(crate) query_string: String,
    pub(crate) request_uri: String,
    pub(crate) protocol: &'static str,
    pub(crate) url_scheme: &'static str,
    pub(crate) server_name: Vec<u8>,
    pub(crate) server_port: String,
    pub(crate) remote_addr: Option<String>,
    pub(crate) remote_port: Option<String>,
    pub(crate) content_type: Option<Vec<u8>>,
    pub(crate) content_length: Option<Vec<u8>>,
    /// `HTTP_*` variables, already joined per name.
    pub(crate) headers: Vec<(Cow<'static, str>, Vec<u8>)>,
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
    pub(crate) fn new(
        parts: &http::request::Parts,
        conn: &ConnInfo,
        proxies: &TrustedProxies,
    ) -> Result<Self, Reject> {
        let uri = &parts.uri;
        let path = match uri.path() {
            "" => "/",
            p => p,
        };
        let rest = split_mount(&conn.mount, path).ok_or(Reject::NotMounted)?;
        // Through `Cow`: one allocation of the right size (a collected iterator grows).
        let path_info = Cow::from(percent_decode_str(rest)).into_owned();
        let query_string = uri.query().unwrap_or("").to_owned();
        let request_uri = match uri.query() {
            Some(q) => {
                let mut uri = String::with_capacity(path.len() + 1 + q.len());
                uri.push_str(path);
                uri.push('?');
                uri.push_str(q);
                uri
            }
            None => path.to_owned(),
        };

        let forwarded = if proxies.is_empty() {
            None
        } else {
            proxies.read(conn.peer_addr.map(|a| a.ip()), &parts.headers)
        }
        .unwrap_or_default();
        let scheme = match forwarded.https {
            Some(true) => Scheme::Https,
            Some(false) => Scheme::Http,
            None => conn.scheme,
        };
        let host = match &forwarded.host {
            Some(host) => Some(host.as_bytes()),
            None => parts
                .headers
                .get(header::HOST)
                .map(|h| h.as_bytes())
                .or_else(|| uri.authority().map(|a| a.as_str().as_bytes())),
        };
        let (server_name, server_port) = server_name_port(host, scheme, conn);
        let mut headers: Vec<(Cow<'static, str>, Vec<u8>)> =
            Vec::with_capacity(parts.headers.keys_len());
        let mut content_type: Option<Vec<u8>> = None;
        let mut content_length: Option<Vec<u8>> = None;
        // One pass over the lines, no lookup by name: `HeaderMap` yields the lines of one
        // name one after the other (as its `into_iter` documents), so a line whose name is
        // the previous line's joins the variable that line started.
        let mut current: Option<(&HeaderName, Joining)> = None;
        for (name, value) in &parts.headers {
            let value = value.as_bytes();
            if let Some((previous, joining)) = &current
                && *previous == name
            {
                let (var, sep) = match *joining {
                    Joining::ContentType => (content_type.as_mut(), LIST_SEPARATOR),
                    Joining::ContentLength => (content_length.as_mut(), LIST_SEPARATOR),
                    Joining::Header(i, sep) => (headers.get_mut(i).map(|(_, v)| v), sep),
                    Joining::Dropped => (None, LIST_SEPARATOR),
                };
                if let Some(var) = var {
                    var.extend_from_slice(sep);
                    var.extend_from_slice(value);
                }
                continue;
            }
            let joining = if name == header::CONTENT_TYPE {
                content_type = Some(value.to_vec());
                Joining::ContentType
            } else if name == header::CONTENT_LENGTH {
                content_length = Some(value.to_vec());
                Joining::ContentLength
            } else if let Some(key) = cgi_header_name(name) {
                let sep: &'static [u8] = if name == header::COOKIE {
                    b"; "
                } else {
                    LIST_SEPARATOR
                };
                headers.push((key, value.to_vec()));
                Joining::Header(headers.len() - 1, sep)
            } else {
                Joining::Dropped
            };
            current = Some((name, joining));
        }
        if let Some(host) = &forwarded.host {
            headers.retain(|(k, _)| k != "HTTP_HOST");
            headers.push((Cow::Borrowed("HTTP_HOST"), host.as_bytes().to_vec()));
        } else if !parts.headers.contains_key(header::HOST)
            && let Some(authority) = uri.authority()
        {
            // HTTP/2 carries the host in :authority, which `http` keeps in the URI.
            headers.push((
                Cow::Borrowed("HTTP_HOST"),
                authority.as_str().as_bytes().to_vec(),
            ));
        }

        Ok(CgiVars {
            method: parts.method.clone(),
            script_name: match &forwarded.prefix {
                Some(prefix) => format!("{prefix}{}", conn.mount),
                None => conn.mount.clone(),
            },
            path_info,
            query_string,
            request_uri,
            protocol: protocol_name(parts.version),
            url_scheme: scheme.as_str(),
            server_name,
            server_port,
            remote_addr: forwarded
                .client
                .or(conn.peer_addr.map(|a| a.ip()))
                .map(|ip| ip.to_string()),
            // The client's port behind a proxy is unknown; the proxy's would mislead.
            remote_port: match forwarded.client {
                Some(_) => None,
                None => conn.peer_addr.map(|a| a.port().to_string()),
            },
            content_type,
            content_length,
            headers,
        })
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

/// `user-agent` -> `HTTP_USER_AGENT`. A name that already contains `_` is dropped: after the
/// `-` to `_` mapping it would be indistinguishable from (and could spoof) the `-` form, which
/// a proxy in front may have vetted.
pub(crate) fn cgi_header_name(name: &HeaderName) -> Option<Cow<'static, str>> {
    let s = name.as_str();
    if s.contains('_') {
        return None;
    }
    if let Some(known) = known_header(name) {
        return Some(Cow::Borrowed(known));
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

fn server_name_port(host: Option<&[u8]>, scheme: Scheme, conn: &ConnInfo) -> (Vec<u8>, String) {
    let default_port = || scheme.default_port().to_string();
    if let Some(host) = host.filter(|h| !h.is_empty()) {
        // `[::1]:8080`, `example.com:8080`, `example.com`, `[::1]`.
        let (name, port) = match host.iter().rposition(|&b| b == b':') {
            Some(i) if !host[i..].contains(&b']') => {
                (&host[..i], std::str::from_utf8(&host[i + 1..]).ok())
            }
            _ => (host, None),
        };
        let port = port
            .filter(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
            .map_or_else(default_port, str::to_owned);
        return (name.to_vec(), port);
    }
    match conn.local_addr {
        Some(addr) => (addr.ip().to_string().into_bytes(), addr.port().to_string()),
        None => (b"localhost".to_vec(), default_port()),
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
        let (parts, ()) = req.body(()).unwrap().into_parts();
        let conn = ConnInfo::new(
            Some("10.1.2.3:4567".parse().unwrap()),
            Some("127.0.0.1:8000".parse().unwrap()),
        )
        .with_mount(mount);
        CgiVars::new(&parts, &conn, &TrustedProxies::default())
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
        assert_eq!(v.path_info, b"/caf\xc3\xa9/\xff");
        assert_eq!(v.query_string, "a=%20b");
        assert_eq!(v.request_uri, "/py/caf%C3%A9/%FF?a=%20b");
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
                ("x_spoof", b"evil"),
                ("x-latin", b"caf\xe9"),
                ("content-type", b"text/plain"),
            ],
            "",
        )
        .unwrap();
        let get = |k: &str| {
            v.headers
                .iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.clone())
        };
        assert_eq!(get("HTTP_X_A").unwrap(), b"1, 2");
        assert_eq!(get("HTTP_COOKIE").unwrap(), b"a=1; b=2");
        assert_eq!(get("HTTP_X_SPOOF"), None);
        assert_eq!(get("HTTP_X_LATIN").unwrap(), b"caf\xe9");
        assert_eq!(get("HTTP_CONTENT_TYPE"), None);
        assert_eq!(v.content_type.as_deref(), Some(&b"text/plain"[..]));
        assert_eq!(v.content_length, None);
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
        assert_eq!(v.headers[0].1, b"1, 3");
        assert_eq!(v.headers[1].1, b"2");
        assert_eq!(v.content_length.as_deref(), Some(&b"5, 5"[..]));
    }

    #[test]
    fn server_name_from_host_or_local_address() {
        let v = vars("/", &[("host", b"example.com:8080")], "").unwrap();
        assert_eq!(
            (v.server_name.as_slice(), v.server_port.as_str()),
            (&b"example.com"[..], "8080")
        );
        let v = vars("/", &[("host", b"[::1]")], "").unwrap();
        assert_eq!(
            (v.server_name.as_slice(), v.server_port.as_str()),
            (&b"[::1]"[..], "80")
        );
        let v = vars("/", &[], "").unwrap();
        assert_eq!(
            (v.server_name.as_slice(), v.server_port.as_str()),
            (&b"127.0.0.1"[..], "8000")
        );
        assert_eq!(v.remote_addr.as_deref(), Some("10.1.2.3"));
        assert_eq!(v.remote_port.as_deref(), Some("4567"));
    }
}
