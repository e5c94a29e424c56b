//! Response heads: validation of what the application passes to `start_response`, and the
//! responses the engine makes on its own (errors, overload).

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};

/// Status and headers as committed by the application, plus how the body follows.
#[derive(Debug)]
pub(crate) struct Head {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: HeadBody,
}

/// How the body follows a [`Head`].
#[derive(Debug)]
pub(crate) enum HeadBody {
    /// The whole body, known at once (the list-of-bytes fast path, errors).
    Full(Bytes),
    /// Chunks follow on the pipe, ended by `End` or `Abort`.
    Stream,
}

impl Head {
    /// A plain-text response made by the engine itself.
    pub(crate) fn plain(status: StatusCode, text: &str) -> Head {
        let mut headers = HeaderMap::with_capacity(2);
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(text.len()));
        Head {
            status,
            headers,
            body: HeadBody::Full(Bytes::copy_from_slice(text.as_bytes())),
        }
    }
}

/// Parses a WSGI status line such as `"200 OK"`.
pub(crate) fn parse_status(status: &str) -> Result<StatusCode, String> {
    let bytes = status.as_bytes();
    let well_formed = bytes.len() >= 4
        && bytes[..3].iter().all(u8::is_ascii_digit)
        && bytes[3] == b' '
        && bytes[4..]
            .iter()
            .all(|&b| b == b'\t' || (b' '..=b'~').contains(&b));
    if !well_formed {
        return Err(format!(
            "status must look like '200 OK' (three digits, a space, a reason phrase), got {status:?}"
        ));
    }
    let code: u16 = status[..3]
        .parse()
        .map_err(|_| format!("bad status code in {status:?}"))?;
    if !(100..=599).contains(&code) {
        return Err(format!("status code {code} is outside 100..=599"));
    }
    StatusCode::from_u16(code).map_err(|e| format!("bad status {status:?}: {e}"))
}

/// Headers that describe one connection, which only the server may set (RFC 9110 §7.6.1).
fn is_hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "proxy-connection"
            | "te"
            | "trailer"
            | "trailers"
            | "transfer-encoding"
            | "upgrade"
    )
}

/// Validates one `(name, value)` pair from `start_response`. `value` is a Python `str`
/// whose code points must all be latin-1 (PEP 3333's native strings).
pub(crate) fn parse_header(name: &str, value: &str) -> Result<(HeaderName, HeaderValue), String> {
    let header_name = HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| format!("header name {name:?} is not a valid HTTP token"))?;
    if is_hop_by_hop(&header_name) {
        return Err(format!(
            "hop-by-hop header {name:?} is not allowed from a WSGI application (PEP 3333); \
             the server manages the connection"
        ));
    }
    let mut bytes = Vec::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\r' | '\n' | '\0' => {
                return Err(format!(
                    "header {name:?} has a CR, LF or NUL in its value {value:?}"
                ));
            }
            c if (c as u32) < 256 => bytes.push(c as u32 as u8),
            c => {
                return Err(format!(
                    "header {name:?} value has {c:?}, which is not latin-1; encode it \
                     (e.g. RFC 8187 or percent-encoding) before passing it to start_response"
                ));
            }
        }
    }
    let header_value = HeaderValue::from_bytes(&bytes)
        .map_err(|_| format!("header {name:?} has an invalid value {value:?}"))?;
    Ok((header_name, header_value))
}

/// The application's declared `Content-Length`, if any and well formed.
pub(crate) fn declared_length(headers: &HeaderMap) -> Result<Option<u64>, String> {
    let mut values = headers.get_all(header::CONTENT_LENGTH).iter();
    let Some(first) = values.next() else {
        return Ok(None);
    };
    let parsed = first
        .to_str()
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .ok_or_else(|| format!("Content-Length {first:?} is not a number"))?;
    if values.any(|v| v != first) {
        return Err("conflicting Content-Length headers".into());
    }
    Ok(Some(parsed))
}

/// Statuses whose responses may not carry a `Content-Length` (RFC 9110 §8.6).
pub(crate) fn status_forbids_length(status: StatusCode) -> bool {
    status.is_informational() || status == StatusCode::NO_CONTENT
}

/// Statuses whose responses never carry a body (RFC 9110 §6.4.1).
pub(crate) fn status_forbids_body(status: StatusCode) -> bool {
    status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines() {
        assert_eq!(parse_status("200 OK").unwrap(), StatusCode::OK);
        assert_eq!(
            parse_status("404 Not Found").unwrap(),
            StatusCode::NOT_FOUND
        );
        assert_eq!(parse_status("599 Custom").unwrap().as_u16(), 599);
        for bad in [
            "200",
            "OK",
            "20 OK",
            "2000 OK",
            "600 Nope",
            "099 x",
            "200 OK\r\nX: y",
            "",
        ] {
            assert!(parse_status(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn header_rules() {
        assert!(parse_header("Content-Type", "text/plain").is_ok());
        assert_eq!(
            parse_header("X-Latin", "caf\u{e9}").unwrap().1.as_bytes(),
            b"caf\xe9"
        );
        assert!(parse_header("Connection", "close").is_err());
        assert!(parse_header("transfer-encoding", "chunked").is_err());
        assert!(parse_header("X-Bad", "a\r\nSet-Cookie: x").is_err());
        assert!(parse_header("Bad Name", "x").is_err());
        assert!(parse_header("X-Snow", "\u{2603}").is_err());
    }

    #[test]
    fn content_length() {
        let mut h = HeaderMap::new();
        assert_eq!(declared_length(&h), Ok(None));
        h.append(header::CONTENT_LENGTH, HeaderValue::from_static("12"));
        assert_eq!(declared_length(&h), Ok(Some(12)));
        h.append(header::CONTENT_LENGTH, HeaderValue::from_static("13"));
        assert!(declared_length(&h).is_err());
    }
}
