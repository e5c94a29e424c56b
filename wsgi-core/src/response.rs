//! Response heads: validation of what the application passes to `start_response`, and the
//! responses the engine makes on its own (errors, overload).

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};

/// Status and headers as committed by the application, plus how the body follows.
#[derive(Debug)]
pub(crate) struct Head {
    pub(crate) status: StatusCode,
    /// The phrase to send when it is not the standard one of `status`.
    pub(crate) reason: Option<ReasonPhrase>,
    pub(crate) headers: HeaderMap,
    pub(crate) body: HeadBody,
}

/// The reason phrase of the application's status line, when the host must send it
/// because it is not the standard phrase of the status code: `404 NOT FOUND`, `299 Custom`.
///
/// `http::Response` has no place for a reason phrase, so the engine puts this in the
/// response's extensions, only when it matters: a phrase that differs from the standard one,
/// or, for a code without a standard phrase (`299`, `599`), the application's phrase or,
/// if it gave an empty one, the name of the status class (RFC 9110 §15: `Successful`,
/// `Server Error`, ...). A host that can write a custom phrase should send it; `wsgi-axum`
/// hands it to hyper as `hyper::ext::ReasonPhrase`, `wsgi-actix` to actix-web's
/// `ResponseHead::reason`. HTTP/2 has no reason phrase.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ReasonPhrase(Box<str>);

impl ReasonPhrase {
    /// The phrase: printable ASCII, spaces and tabs, as `start_response` accepts it.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A phrase already checked by [`ReasonPhrase::for_status`] elsewhere (in a worker process).
    pub(crate) fn checked(phrase: &str) -> ReasonPhrase {
        ReasonPhrase(phrase.into())
    }

    /// The phrase to send for `code` given the application's `phrase`, if not the standard one.
    fn for_status(code: StatusCode, phrase: &str) -> Option<ReasonPhrase> {
        let standard = code.canonical_reason();
        let phrase = if phrase.trim().is_empty() {
            match standard {
                Some(_) => return None,
                None => class_name(code),
            }
        } else {
            phrase
        };
        (Some(phrase) != standard).then(|| ReasonPhrase(phrase.into()))
    }
}

/// The name of `code`'s class (RFC 9110 §15), for a code without a phrase of its own.
fn class_name(code: StatusCode) -> &'static str {
    match code.as_u16() / 100 {
        1 => "Informational",
        2 => "Successful",
        3 => "Redirection",
        4 => "Client Error",
        _ => "Server Error",
    }
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
            reason: None,
            headers,
            body: HeadBody::Full(Bytes::copy_from_slice(text.as_bytes())),
        }
    }
}

/// Parses a WSGI status line such as `"200 OK"`: its code, and its phrase if the host must
/// send it (see [`ReasonPhrase`]).
pub(crate) fn parse_status(status: &str) -> Result<(StatusCode, Option<ReasonPhrase>), String> {
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
    let code = StatusCode::from_u16(code).map_err(|e| format!("bad status {status:?}: {e}"))?;
    Ok((code, ReasonPhrase::for_status(code, &status[4..])))
}

/// Headers that describe one connection, which only the server may set: the connection
/// options of RFC 9110 §7.6.1 (`Connection`, and the fields it lists as connection-specific,
/// `Proxy-Connection`, `Keep-Alive`, `TE`, `Transfer-Encoding`, `Upgrade`). An application
/// cannot send `Connection`, so no other field can be named by it.
///
/// PEP 3333 forbids "hop-by-hop" headers by pointing at RFC 2616 §13.5.1, whose list also
/// had `Proxy-Authenticate`, `Proxy-Authorization` and `Trailers`. RFC 7230 and 9110
/// replaced it: those are end-to-end fields now. A `407` from an application that is itself
/// a proxy, or an auth gateway, needs `Proxy-Authenticate` to mean anything (RFC 9110
/// §11.7.1); refusing it answered such an application 500, and nothing in the servers
/// depends on these fields. So the list here is 9110's.
fn is_hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection" | "keep-alive" | "proxy-connection" | "te" | "transfer-encoding" | "upgrade"
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
    let forbidden = || format!("header {name:?} has a CR, LF or NUL in its value {value:?}");
    let bytes = if value.is_ascii() {
        // Most values: the UTF-8 is the latin-1, and only the three bytes need a look.
        if value.bytes().any(|b| matches!(b, b'\r' | b'\n' | b'\0')) {
            return Err(forbidden());
        }
        value.as_bytes().to_vec()
    } else {
        let mut bytes = Vec::with_capacity(value.len());
        for c in value.chars() {
            match c {
                '\r' | '\n' | '\0' => return Err(forbidden()),
                c if (c as u32) < 256 => bytes.push(c as u32 as u8),
                c => {
                    return Err(format!(
                        "header {name:?} value has {c:?}, which is not latin-1; encode it \
                         (e.g. RFC 8187 or percent-encoding) before passing it to start_response"
                    ));
                }
            }
        }
        bytes
    };
    // The value takes over the buffer rather than copying it.
    let header_value = HeaderValue::from_maybe_shared(Bytes::from(bytes))
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
        assert_eq!(parse_status("200 OK").unwrap(), (StatusCode::OK, None));
        assert_eq!(
            parse_status("404 Not Found").unwrap(),
            (StatusCode::NOT_FOUND, None)
        );
        assert_eq!(parse_status("599 Custom").unwrap().0.as_u16(), 599);
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
    fn reason_phrases_travel_only_when_not_standard() {
        let phrase = |line: &str| parse_status(line).unwrap().1.map(|p| p.as_str().to_owned());
        assert_eq!(phrase("404 NOT FOUND").as_deref(), Some("NOT FOUND"));
        assert_eq!(phrase("404 Not Found"), None);
        assert_eq!(phrase("200 "), None);
        assert_eq!(phrase("200  \t"), None);
        assert_eq!(
            phrase("299 Custom\tThing").as_deref(),
            Some("Custom\tThing")
        );
        assert_eq!(phrase("299 ").as_deref(), Some("Successful"));
        assert_eq!(phrase("599 ").as_deref(), Some("Server Error"));
        assert_eq!(phrase("103 ").as_deref(), None);
        assert_eq!(phrase("199 ").as_deref(), Some("Informational"));
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
        assert!(parse_header("Proxy-Connection", "keep-alive").is_err());
        // End-to-end since RFC 7230, though RFC 2616 (and so PEP 3333) listed them.
        assert!(parse_header("Proxy-Authenticate", "Basic realm=\"x\"").is_ok());
        assert!(parse_header("Proxy-Authorization", "Basic eDp5").is_ok());
        assert!(parse_header("Trailer", "X-A").is_ok());
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
