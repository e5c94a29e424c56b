//! What a client sees on the wire and what the log says about it, on both hosts (axum and
//! actix-web), with the app at the root and under `/py`: framing headers, status lines,
//! bodies cut short by the application, joined request headers, and access-log lines that
//! tell the truth. The app is `tests/apps/wire_app.py`, standard library only.
//!
//! This binary installs its own log subscriber, which keeps what is logged so the tests can
//! read it; each test finds its own lines by a token in its request's URI.

mod common;

use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::{Site, host_cases};
use test_support::gate::Record;
use test_support::logs::{Captured, captured};
use test_support::wire::{Chunk, Request};
use wsgi_core::Engine;

fn wire() -> Option<Engine> {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    log();
    Some(
        ENGINE
            .get_or_init(|| common::load("wire_app.py", |b| b.threads(4)))
            .clone(),
    )
}

host_cases!(wire, "/py";
    repeated_request_headers_are_joined_with_a_comma_and_a_space,
    the_access_log_says_cut_short_only_when_the_client_got_less,
    head_with_the_declared_length_and_no_body_is_no_error,
    no_content_length_is_made_up_for_responses_without_a_body,
    the_status_line_carries_the_applications_reason_phrase,
    headers_rfc_2616_called_hop_by_hop_reach_the_client,
    what_the_app_sent_before_failing_arrives_and_the_response_is_cut,
);

/// Everything this test binary logs, captured from before any server starts (the
/// harness's own subscriber then stays out).
fn log() -> &'static Captured {
    captured()
}

/// The log lines that contain `needle`.
fn lines_with(needle: &str) -> Vec<String> {
    log().lines_with(needle)
}

/// A number no other request of this process uses, for a length to find in the log.
fn unique_length() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    1_000_003 + 7 * NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Sends `request` and reads everything until the server closes, without parsing: for
/// responses that may be cut anywhere.
fn raw_exchange(site: &Site, request: Request) -> Vec<u8> {
    let mut conn = site.open(request);
    let mut raw = Vec::new();
    while let Chunk::Data(data) = conn.next_until_close() {
        raw.extend_from_slice(&data);
    }
    raw
}

/// Waits until a log line contains every one of `needles`; returns it.
fn log_line_with(needles: &[&str]) -> String {
    log().wait_for_line_with(needles)
}

/// A string no other request of this process uses, for finding a request's log lines.
fn token() -> String {
    Record::new().token().to_owned()
}

/// The access-log line of the request whose URI contains `token`, once it is written
/// (when the response body has ended or been dropped, a moment after the client has it).
fn access_line(token: &str) -> String {
    log_line_with(&[token, wsgi_core::ACCESS_TARGET])
}

/// RFC 9110 §5.3: a repeated field's lines combine into one list, separated by a comma and
/// optional whitespace, and it recommends `, `: what Apache, so mod_wsgi, passes an
/// application, and what mod_wsgi's test suite expects. gunicorn joins with a bare comma
/// (and joins `Cookie` lines with one too). `Cookie` lines join with `; ` (RFC 6265 §5.4).
fn repeated_request_headers_are_joined_with_a_comma_and_a_space(site: &Site) {
    let env = site
        .send(
            Request::get("/headers")
                .header("X-Multi", "a")
                .header("X-Multi", "b, c")
                .header("Accept", "text/html")
                .header("Accept", "application/json")
                .header("Cookie", "a=1")
                .header("Cookie", "b=2"),
        )
        .json();
    assert_eq!(env["HTTP_X_MULTI"], "a, b, c", "{env}");
    assert_eq!(env["HTTP_ACCEPT"], "text/html, application/json", "{env}");
    assert_eq!(env["HTTP_COOKIE"], "a=1; b=2", "{env}");
}

/// A response whose `Content-Length` was delivered in full is complete, whoever stopped
/// polling its body: hyper drops a body once its declared length is written without asking
/// it for its end, which the access log took for a client that left. Only a client that got
/// less than the response is logged "(cut short)".
fn the_access_log_says_cut_short_only_when_the_client_got_less(site: &Site) {
    for mode in ["gen", "list"] {
        let token = token();
        let response = site.get(&format!("/sized?size=5000&mode={mode}&t={token}"));
        assert_eq!((response.status, response.body.len()), (200, 5000));
        let line = access_line(&token);
        assert!(line.contains(" 200 5000 bytes "), "{mode}: {line}");
        assert!(
            !line.contains("(cut short)") && !line.contains("(response aborted)"),
            "{mode}: a complete response logged as incomplete: {line}"
        );
    }

    // A client that leaves after the head, from a response too large for the socket
    // buffers to swallow.
    let token = token();
    let mut conn = site.open(Request::get(&format!(
        "/sized?size=64000000&mode=gen&piece=65536&t={token}"
    )));
    assert_eq!(conn.read_head().status, 200);
    drop(conn);
    let line = access_line(&token);
    assert!(line.ends_with("(cut short)"), "{line}");
}

/// A HEAD response carries no body, so an application that answers HEAD with an empty body
/// and the `Content-Length` a GET would get (Werkzeug, so Flask, does) did nothing wrong:
/// no ERROR, and the access line is complete. gunicorn and mod_wsgi do not check a HEAD
/// body at all. A GET whose body falls short of its `Content-Length` is still the
/// application's error: logged, and the response aborted.
fn head_with_the_declared_length_and_no_body_is_no_error(site: &Site) {
    let mut quiet = Vec::new();
    for mode in ["list", "gen"] {
        let (length, token) = (unique_length(), token());
        let mut conn = site.open(Request::head(&format!(
            "/sized?size={length}&mode={mode}&t={token}"
        )));
        let head = conn.read_response("HEAD");
        assert_eq!(head.status, 200, "{mode}: {head:?}");
        assert_eq!(
            head.header("content-length"),
            Some(length.to_string().as_str()),
            "{mode}: {head:?}"
        );
        assert_eq!(conn.next_until_close(), Chunk::End, "{mode}");
        let line = access_line(&token);
        assert!(!line.contains('('), "{mode}: {line}");
        quiet.push(length);
    }

    // The control: a GET that really is short is an error, logged under the app's target.
    let (length, token) = (unique_length(), token());
    raw_exchange(
        site,
        Request::get(&format!("/sized?size={length}&mode=list&short=1&t={token}")),
    );
    log_line_with(&[
        "ERROR",
        "wsgi_core::app",
        &format!("{} of the {length} bytes", length / 2),
    ]);
    assert!(access_line(&token).ends_with("(response aborted)"));

    for length in quiet {
        let complaints = lines_with(&format!("of the {length} bytes"));
        assert!(
            complaints.is_empty(),
            "HEAD logged as an error: {complaints:?}"
        );
    }
}

/// RFC 9110 §8.6: a response to HEAD carries the `Content-Length` a GET would get or none,
/// a 1xx or 204 response never one, and a 304 only the length of the representation. The
/// engine used to add `Content-Length: 0` for any empty body the app returned without a
/// length, which Werkzeug does for every HEAD and for 204/304, and the hosts sent it: HEAD of
/// a streamed response (both), HEAD of a 204 (hyper passes a HEAD response's header
/// through), every 304 (actix-web writes what the headers say). gunicorn sends the app's
/// headers as they are, adding nothing.
fn no_content_length_is_made_up_for_responses_without_a_body(site: &Site) {
    let cases = [
        ("HEAD", "/unsized"),
        ("HEAD", "/unsized?head=gen"),
        ("HEAD", "/status?line=204%20No%20Content"),
        ("GET", "/status?line=204%20No%20Content"),
        ("HEAD", "/status?line=304%20Not%20Modified"),
        ("GET", "/status?line=304%20Not%20Modified"),
        // A 204 may not carry one even when the application gives it.
        ("GET", "/status?line=204%20No%20Content&length=0"),
        ("HEAD", "/status?line=204%20No%20Content&length=0"),
    ];
    for (method, target) in cases {
        let mut conn = site.open(Request::new(method, target));
        let response = conn.read_response(method);
        assert!(response.header("content-type").is_some(), "{response:?}");
        assert_eq!(
            response.header("content-length"),
            None,
            "{method} {target}: {response:?}"
        );
        assert_eq!(conn.next_until_close(), Chunk::End, "{method} {target}");
    }

    // An empty 200 to GET does say so.
    let empty = site.get("/status?line=200%20OK");
    assert_eq!(empty.header("content-length"), Some("0"), "{empty:?}");
    // A 304's own length is the representation's, which only the app knows: hyper drops
    // it, actix-web sends it; both are allowed.
    let mut conn = site.open(Request::get(
        "/status?line=304%20Not%20Modified&length=1234",
    ));
    let response = conn.read_response("GET");
    assert!(
        matches!(response.header("content-length"), None | Some("1234")),
        "{response:?}"
    );
    assert_eq!(conn.next_until_close(), Chunk::End);
}

/// The status line as the client reads it, for a request to `target`.
fn status_line(site: &Site, target: &str) -> String {
    let mut conn = site.open(Request::get(target));
    let mut raw = Vec::new();
    while !raw.windows(2).any(|w| w == b"\r\n") {
        match conn.next_until_close() {
            Chunk::Data(data) => raw.extend_from_slice(&data),
            Chunk::End | Chunk::Truncated(_) => break,
        }
    }
    let end = raw
        .windows(2)
        .position(|w| w == b"\r\n")
        .unwrap_or(raw.len());
    String::from_utf8_lossy(&raw[..end]).into_owned()
}

/// PEP 3333 hands the server a whole status line; its phrase is the application's to choose
/// (Django and Flask send `404 NOT FOUND`-style phrases, APIs invent codes). The hosts used
/// to write the standard phrase instead, and actix-web `<unknown status code>` for codes
/// without one. gunicorn sends the application's line as it is, and mod_wsgi hands it to
/// Apache as the status line. An empty phrase gets the standard one, or the status class's
/// name (RFC 9110 §15) for a code that has none.
fn the_status_line_carries_the_applications_reason_phrase(site: &Site) {
    let cases = [
        ("404%20NOT%20FOUND", "404 NOT FOUND"),
        ("404%20Not%20Found", "404 Not Found"),
        ("200%20OK", "200 OK"),
        ("201%20Made%20It", "201 Made It"),
        ("299%20Custom%09Thing", "299 Custom\tThing"),
        ("599%20Network%20Read%20Timeout", "599 Network Read Timeout"),
        ("200%20", "200 OK"),
        ("299%20", "299 Successful"),
        ("599%20", "599 Server Error"),
    ];
    for (sent, expected) in cases {
        let line = status_line(site, &format!("/status?line={sent}"));
        assert_eq!(line, format!("HTTP/1.1 {expected}"), "the app sent {sent}");
    }
}

/// An application that is an authenticating gateway answers `407` with `Proxy-Authenticate`
/// (RFC 9110 §11.7.1). RFC 2616 listed it, `Proxy-Authorization` and `Trailer(s)` as
/// hop-by-hop, and PEP 3333 cites 2616, so these used to be refused and the client got a
/// 500; RFC 9110 §7.6.1 makes them end-to-end, and both hosts pass them on untouched.
fn headers_rfc_2616_called_hop_by_hop_reach_the_client(site: &Site) {
    let response = site.get(
        "/status?line=407%20Proxy%20Authentication%20Required\
         &header=Proxy-Authenticate:Basic%20realm%3D%22gateway%22\
         &header=Proxy-Authorization:Basic%20eDp5&header=Trailer:X-A",
    );
    assert_eq!(response.status, 407, "{}", response.text());
    assert_eq!(
        response.header("proxy-authenticate"),
        Some("Basic realm=\"gateway\"")
    );
    assert_eq!(response.header("proxy-authorization"), Some("Basic eDp5"));
    assert_eq!(response.header("trailer"), Some("X-A"));
    // The connection's own headers are still the server's alone.
    let response = site.get("/status?header=Connection:close");
    assert_eq!(response.status, 500, "{}", response.text());
}

/// When the iterable raises (or yields a `str`) right after its first chunk, the client gets
/// every byte the application produced, then the response is cut, never ended cleanly
/// (chunked: no last chunk; with a `Content-Length`: fewer bytes, then the connection
/// closes). gunicorn and mod_wsgi write each chunk as it comes and then close. Both hosts
/// used to throw away the head and the chunk they had not yet flushed when the body
/// failed, so the client got nothing at all, not even a status line.
fn what_the_app_sent_before_failing_arrives_and_the_response_is_cut(site: &Site) {
    for after in ["raise", "str", "raise-sized"] {
        let token = token();
        let raw = raw_exchange(
            site,
            Request::get(&format!("/fail?after={after}&t={token}")),
        );
        let text = String::from_utf8_lossy(&raw);
        assert!(text.starts_with("HTTP/1.1 200 "), "{after}: {text:?}");
        let body = text.split_once("\r\n\r\n").map_or("", |(_, body)| body);
        if after == "raise-sized" {
            assert_eq!(body, "the first chunk\n", "{after}: {text:?}");
        } else {
            assert!(body.contains("the first chunk\n"), "{after}: {text:?}");
            assert!(
                !body.ends_with("0\r\n\r\n"),
                "{after}: ended cleanly: {text:?}"
            );
        }
        let line = access_line(&token);
        assert!(line.ends_with("(response aborted)"), "{after}: {line}");
    }
}
