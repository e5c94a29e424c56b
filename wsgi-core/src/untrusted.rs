//! The paths that take untrusted input, each run with the invariants that PEP 3333 and HTTP
//! promise of its output: the request head becoming CGI variables, the trusted-proxy header
//! parser, and the validation of what an application passes to `start_response`.
//!
//! Each check panics when an invariant breaks, so the property tests below (proptest, in
//! `cargo test`) and the cargo-fuzz targets in `fuzz/` find both crashes and wrong output
//! with the same code. The `*_bytes` forms take one flat byte string, which is what a fuzzer
//! hands over. Compiled for tests and with the `fuzzing` feature only: not part of the API.

use std::net::{IpAddr, SocketAddr};

use http::{HeaderMap, HeaderName, HeaderValue, header};
use percent_encoding::percent_decode_str;

use crate::environ::{CgiVars, Reject, split_mount};
use crate::host::ConnInfo;
use crate::proxy::{Peer, TrustedProxies};
use crate::response::{declared_length, parse_header, parse_status};

/// The address of the proxy a trusted-proxy check trusts, and the client of an untrusted one.
const PROXY: [u8; 4] = [10, 0, 0, 1];
const STRANGER: [u8; 4] = [192, 0, 2, 7];

/// The headers a host's parser would pass on: names and values `http` accepts.
fn header_map(headers: &[(Vec<u8>, Vec<u8>)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        if let (Ok(name), Ok(value)) =
            (HeaderName::from_bytes(name), HeaderValue::from_bytes(value))
        {
            map.append(name, value);
        }
    }
    map
}

/// `name:value` lines of a fuzzer's input as header pairs; lines without a colon are skipped.
fn header_lines<'a>(lines: impl Iterator<Item = &'a [u8]>) -> Vec<(Vec<u8>, Vec<u8>)> {
    lines
        .filter_map(|line| {
            let at = line.iter().position(|&b| b == b':')?;
            Some((line[..at].to_vec(), line[at + 1..].to_vec()))
        })
        .collect()
}

/// Builds the CGI variables of a GET to `target` with `headers`, for an application
/// mounted at `mount`, from a trusted proxy or not, and checks them: no panic; outside the
/// mount only when the path is not under it; `SCRIPT_NAME` + `PATH_INFO` is the decoded
/// path; `REQUEST_URI` and `QUERY_STRING` as sent; every `HTTP_*` name upper-case ASCII and
/// unique; no CR, LF or NUL in any value; a numeric `SERVER_PORT`; repeated lines joined.
/// Inputs a host's HTTP parser would refuse (a target `http` cannot parse, a header value
/// with CR or LF) are skipped, as the engine never sees them.
pub fn check_request_head(
    target: &str,
    headers: &[(Vec<u8>, Vec<u8>)],
    mount: &str,
    proxied: bool,
) {
    let Ok(uri) = http::Uri::try_from(target) else {
        return;
    };
    let map = header_map(headers);
    let mut request = http::Request::get(uri.clone()).body(()).expect("a request");
    *request.headers_mut() = map;
    let (mut parts, ()) = request.into_parts();
    let peer = IpAddr::from(if proxied { PROXY } else { STRANGER });
    let conn = ConnInfo::new(
        Some(SocketAddr::new(peer, 40000)),
        Some("127.0.0.1:8000".parse().expect("an address")),
    )
    .with_mount(mount);
    let proxies = TrustedProxies::parse(&["10.0.0.0/8"]).expect("a proxy range");
    let path = match uri.path() {
        "" => "/",
        p => p,
    };
    let vars = match CgiVars::new(std::mem::take(&mut parts.uri), &parts, &conn, &proxies) {
        Err(Reject::NotMounted) => {
            assert!(
                split_mount(&conn.mount, path).is_none(),
                "{path:?} is under {:?} but was refused",
                conn.mount
            );
            return;
        }
        Ok(vars) => vars,
    };
    // PEP 3333: SCRIPT_NAME + PATH_INFO name the whole (decoded) path. A trusted proxy's
    // X-Forwarded-Prefix goes before the mount.
    let mount_at = vars.script_name.len() - conn.mount.len();
    assert_eq!(&vars.script_name[mount_at..], conn.mount);
    if !proxied {
        assert_eq!(mount_at, 0, "a prefix from an untrusted peer");
    }
    let mut whole: Vec<u8> = percent_decode_str(&conn.mount).collect();
    whole.extend_from_slice(vars.path_info());
    assert_eq!(whole, percent_decode_str(path).collect::<Vec<u8>>());
    assert_eq!(vars.query_string(), uri.query().unwrap_or(""));
    let expected_uri = match uri.query() {
        Some(q) => format!("{path}?{q}"),
        None => path.to_owned(),
    };
    assert_eq!(vars.request_uri(), expected_uri);
    assert!(
        !vars.server_port.as_bytes().is_empty()
            && vars.server_port.as_bytes().iter().all(u8::is_ascii_digit),
        "SERVER_PORT {:?}",
        vars.server_port
    );
    let clean = |what: &str, value: &[u8]| {
        assert!(
            !value.iter().any(|b| matches!(b, b'\r' | b'\n' | 0)),
            "{what} has CR, LF or NUL: {value:?}"
        );
    };
    clean("SERVER_NAME", vars.server_name.as_bytes());
    clean("SCRIPT_NAME", vars.script_name.as_bytes());
    for value in [&vars.content_type, &vars.content_length]
        .into_iter()
        .flatten()
    {
        clean("CONTENT_*", value.as_bytes());
    }
    let mut names = std::collections::HashSet::new();
    for (name, value) in &vars.headers {
        let suffix = name.strip_prefix("HTTP_").expect("HTTP_ prefix");
        assert!(
            !suffix.is_empty()
                && suffix
                    .bytes()
                    .all(|b| b.is_ascii_graphic() && !b.is_ascii_lowercase() && b != b'-'),
            "variable name {name:?}"
        );
        assert!(names.insert(name.clone()), "{name:?} twice");
        clean(name, value.as_bytes());
    }
    // A header given twice without a proxy in play arrives as one joined variable.
    if !proxied {
        for name in parts.headers.keys() {
            let values: Vec<&[u8]> = parts
                .headers
                .get_all(name)
                .iter()
                .map(|v| v.as_bytes())
                .collect();
            let key = crate::environ::cgi_header_name(name);
            let Some(key) =
                key.filter(|_| name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH)
            else {
                continue;
            };
            let separator: &[u8] = if name == header::COOKIE { b"; " } else { b", " };
            let joined = values.join(separator);
            let found = vars
                .headers
                .iter()
                .find(|(n, _)| *n == key)
                .map(|(_, v)| v.as_bytes());
            assert_eq!(found, Some(&joined[..]), "{key}");
        }
    }
}

/// [`check_request_head`] over one byte string: the target on the first line, the mount on
/// the second, then one `name:value` header per line; a first byte that is odd makes the
/// peer a trusted proxy.
pub fn check_request_head_bytes(data: &[u8]) {
    let (proxied, data) = match data.split_first() {
        Some((first, rest)) => (first % 2 == 1, rest),
        None => return,
    };
    let mut lines = data.split(|&b| b == b'\n');
    let target = String::from_utf8_lossy(lines.next().unwrap_or_default());
    let mount = String::from_utf8_lossy(lines.next().unwrap_or_default());
    let headers = header_lines(lines);
    check_request_head(&target, &headers, &mount, proxied);
}

/// Parses `trusted` as a trusted-proxy list and reads forwarding `headers` from `peer`: no
/// panic; a prefix only if it is a clean absolute path without a trailing slash; no control
/// characters in the host; a client that is itself a trusted proxy only when it is an
/// address the headers gave (every address in the chain was trusted).
pub fn check_proxy_headers(trusted: &[String], peer: IpAddr, headers: &[(Vec<u8>, Vec<u8>)]) {
    let Ok(proxies) = TrustedProxies::parse(trusted) else {
        return;
    };
    let map = header_map(headers);
    let Some(forwarded) = proxies.read(Peer::Ip(peer), &map) else {
        return;
    };
    if let Some(prefix) = &forwarded.prefix {
        assert!(prefix.starts_with('/'), "prefix {prefix:?}");
        assert!(!prefix.ends_with('/'), "prefix {prefix:?}");
        assert!(
            !prefix.contains(['?', '#', '\\', '\r', '\n']),
            "prefix {prefix:?}"
        );
    }
    if let Some(host) = &forwarded.host {
        assert!(!host.contains(['\r', '\n', '\0']), "host {host:?}");
    }
    if let Some(client) = forwarded.client
        && proxies.read(Peer::Ip(client), &map).is_some()
    {
        // A trusted client means every address in the chain was trusted; the leftmost is
        // then taken, which can only be an address the headers gave.
        let text = String::from_utf8_lossy(
            &headers
                .iter()
                .flat_map(|(_, v)| v.clone())
                .collect::<Vec<u8>>(),
        )
        .to_ascii_lowercase();
        let ip = client.to_string();
        assert!(
            text.contains(&ip) || client.is_ipv6(),
            "client {client} appears nowhere in {text:?}"
        );
    }
}

/// [`check_proxy_headers`] over one byte string: the trusted list (comma-separated) on the
/// first line, the peer on the second, then one `name:value` header per line.
pub fn check_proxy_headers_bytes(data: &[u8]) {
    let mut lines = data.split(|&b| b == b'\n');
    let trusted: Vec<String> = String::from_utf8_lossy(lines.next().unwrap_or_default())
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(str::to_owned)
        .collect();
    let Ok(peer) = String::from_utf8_lossy(lines.next().unwrap_or_default())
        .trim()
        .parse::<IpAddr>()
    else {
        return;
    };
    let headers = header_lines(lines);
    check_proxy_headers(&trusted, peer, &headers);
}

/// Validates what an application could pass to `start_response`: no panic; an accepted
/// status has a code in 100..=599 and, if the phrase travels, one without control
/// characters that is not the standard phrase; an accepted header has a token name that is
/// not hop-by-hop and a value whose bytes are its code points (latin-1), with no CR, LF, NUL
/// or other control character but tab; a value with a code point past U+00FF is refused.
pub fn check_start_response(status: &str, headers: &[(String, String)]) {
    if let Ok((code, reason)) = parse_status(status) {
        assert!((100..=599).contains(&code.as_u16()), "{status:?}");
        assert_eq!(&status[..3], code.as_str());
        if let Some(reason) = reason {
            let phrase = reason.as_str();
            assert!(!phrase.trim().is_empty(), "{status:?}");
            assert!(
                phrase
                    .bytes()
                    .all(|b| b == b'\t' || (b' '..=b'~').contains(&b)),
                "{phrase:?}"
            );
            assert_ne!(Some(phrase), code.canonical_reason());
        }
    }
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        let Ok((header_name, header_value)) = parse_header(name, value) else {
            continue;
        };
        assert_eq!(header_name.as_str(), name.to_ascii_lowercase());
        assert!(
            !matches!(
                header_name.as_str(),
                "connection"
                    | "keep-alive"
                    | "proxy-connection"
                    | "te"
                    | "transfer-encoding"
                    | "upgrade"
            ),
            "hop-by-hop {name:?} accepted"
        );
        let latin1: Vec<u8> = value
            .chars()
            .map(|c| u8::try_from(u32::from(c)).expect("only latin-1 is accepted"))
            .collect();
        assert_eq!(header_value.as_bytes(), latin1.as_slice());
        assert!(
            !latin1
                .iter()
                .any(|&b| (b < b' ' && b != b'\t') || b == 0x7f),
            "control character in {value:?}"
        );
        map.append(header_name, header_value);
    }
    let _ = declared_length(&map);
}

/// [`check_start_response`] over one byte string: the status on the first line, then one
/// `name:value` header per line, all read as latin-1 (as Python strings reach the engine).
pub fn check_start_response_bytes(data: &[u8]) {
    let latin1 = |bytes: &[u8]| bytes.iter().map(|&b| char::from(b)).collect::<String>();
    let mut lines = data.split(|&b| b == b'\n');
    let status = latin1(lines.next().unwrap_or_default());
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| {
            let at = line.iter().position(|&b| b == b':')?;
            Some((latin1(&line[..at]), latin1(&line[at + 1..])))
        })
        .collect();
    check_start_response(&status, &headers);
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    /// Header names: tokens, some with `_` (dropped by the engine), some repeated.
    fn header_name() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            Just(b"cookie".to_vec()),
            Just(b"x-forwarded-prefix".to_vec()),
            Just(b"x-forwarded-for".to_vec()),
            Just(b"forwarded".to_vec()),
            Just(b"host".to_vec()),
            Just(b"content-type".to_vec()),
            "[A-Za-z0-9!#$%&'*+.^_`|~-]{1,12}".prop_map(String::into_bytes),
        ]
    }

    /// Header values: any latin-1 byte a parser lets through (tab, visible ASCII, 0x80-0xFF).
    fn header_value() -> impl Strategy<Value = Vec<u8>> {
        prop::collection::vec(prop_oneof![Just(b'\t'), 0x20u8..0x7f, 0x80u8..=0xff], 0..24)
    }

    fn headers() -> impl Strategy<Value = Vec<(Vec<u8>, Vec<u8>)>> {
        prop::collection::vec((header_name(), header_value()), 0..8)
    }

    /// Request targets: path segments of raw characters, percent-escapes (valid, broken
    /// and of non-UTF-8 bytes) and a query.
    fn target() -> impl Strategy<Value = String> {
        let segment = prop::collection::vec(
            prop_oneof![
                "[A-Za-z0-9._~!$&'()*+,;=:@-]{1,4}",
                "%[0-9A-Fa-f]{2}",
                "%[0-9A-Za-z]?",
                "%(C3%A9|FF|2F|00|0D%0A)",
            ],
            0..4,
        )
        .prop_map(|parts| parts.concat());
        (
            prop::collection::vec(segment, 0..5),
            prop::option::of("[A-Za-z0-9=&%+/?._-]{0,12}"),
            any::<bool>(),
        )
            .prop_map(|(segments, query, trailing)| {
                let mut target = format!("/{}", segments.join("/"));
                if trailing {
                    target.push('/');
                }
                if let Some(query) = query {
                    target.push('?');
                    target.push_str(&query);
                }
                target
            })
    }

    fn mount() -> impl Strategy<Value = String> {
        prop_oneof![
            Just(String::new()),
            Just("/py".to_owned()),
            Just("/py/".to_owned()),
            "(/[A-Za-z0-9.~%-]{1,4}){1,2}",
        ]
    }

    proptest! {
        #[test]
        fn request_heads_become_sound_cgi_variables(
            target in target(),
            headers in headers(),
            mount in mount(),
            proxied in any::<bool>(),
        ) {
            check_request_head(&target, &headers, &mount, proxied);
        }

        #[test]
        fn any_target_string_is_handled(target in "\\PC{0,40}", mount in mount()) {
            check_request_head(&target, &[], &mount, false);
        }

        #[test]
        fn a_mounted_request_keeps_its_path(
            target in target(),
            mount in "(/[a-z]{1,3}){1,2}",
        ) {
            // The mount itself, and the target under it, always reach the application.
            check_request_head(&format!("{mount}{target}"), &[], &mount, false);
        }

        #[test]
        fn forwarding_headers_never_break_the_parser(
            trusted in prop::collection::vec(
                prop_oneof![
                    Just("10.0.0.0/8".to_owned()),
                    Just("::1".to_owned()),
                    Just("127.0.0.1".to_owned()),
                    "\\PC{0,12}",
                ],
                0..3,
            ),
            peer in prop_oneof![
                Just(IpAddr::from(PROXY)),
                Just(IpAddr::from([127, 0, 0, 1])),
                any::<IpAddr>(),
            ],
            values in prop::collection::vec(
                (
                    prop_oneof![
                        Just(b"forwarded".to_vec()),
                        Just(b"x-forwarded-for".to_vec()),
                        Just(b"x-forwarded-proto".to_vec()),
                        Just(b"x-forwarded-host".to_vec()),
                        Just(b"x-forwarded-prefix".to_vec()),
                    ],
                    prop_oneof![
                        header_value(),
                        "(for|proto|host|by)=\"?[0-9a-f.:\\[\\]]{0,16}\"?(;|, ?)?".prop_map(String::into_bytes),
                        "([0-9]{1,3}\\.){3}[0-9]{1,3}(, ?[0-9a-f:.]{1,15}){0,3}".prop_map(String::into_bytes),
                        "/[A-Za-z0-9/?#\\\\.]{0,10}".prop_map(String::into_bytes),
                    ],
                ),
                0..6,
            ),
        ) {
            check_proxy_headers(&trusted, peer, &values);
        }

        #[test]
        fn start_response_accepts_only_what_can_go_on_the_wire(
            status in prop_oneof![
                "[0-9]{3} [ -~\\t]{0,12}",
                "[1-5][0-9]{2} ",
                "\\PC{0,16}",
                "[0-9]{3} [\\x00-\\xff]{0,8}",
            ],
            headers in prop::collection::vec(
                (
                    prop_oneof![
                        "[A-Za-z0-9!#$%&'*+.^_`|~-]{1,12}",
                        Just("Content-Length".to_owned()),
                        Just("Connection".to_owned()),
                        "\\PC{0,8}",
                    ],
                    prop_oneof![
                        "[\\x00-\\xff]{0,16}",
                        "\\PC{0,12}",
                        "[0-9]{1,20}",
                    ],
                ),
                0..6,
            ),
        ) {
            check_start_response(&status, &headers);
        }

        #[test]
        fn flat_inputs_as_a_fuzzer_gives_them(data in prop::collection::vec(any::<u8>(), 0..96)) {
            check_request_head_bytes(&data);
            check_proxy_headers_bytes(&data);
            check_start_response_bytes(&data);
        }
    }
}
