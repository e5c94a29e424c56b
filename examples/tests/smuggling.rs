//! Hostile framing, spoken raw over TCP to both hosts: requests whose body length two
//! HTTP implementations could read differently (RFC 9112 §6.1, §6.3). Each probe hides a
//! second request where one reading of the framing sees a body and the other a new
//! request; the server must answer 400 (or answer and close the connection, as RFC 9112
//! allows for `Content-Length` with `Transfer-Encoding`), and the hidden request must never
//! reach the application. hyper rejects or closes on each of these by itself; actix-web
//! 4 accepted several, so `wsgi-actix` checks the framing before the request is handed on.
//!
//! Also here: a chunked request body with a trailer section (`wsgi-actix` answers 400 and
//! logs why when the trailer is announced; otherwise both hosts read the body and drop the
//! trailer).

mod common;

use std::sync::OnceLock;

use common::{Site, host_cases};
use test_support::gate::Record;
use test_support::wire::{Chunk, Conn, Response};
use wsgi_core::Engine;

fn wire() -> Option<Engine> {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    Some(
        ENGINE
            .get_or_init(|| common::load("wire_app.py", |b| b.threads(4)))
            .clone(),
    )
}

host_cases!(wire, "/py";
    the_hidden_request_is_recorded_when_sent_on_its_own,
    content_length_with_chunked_is_rejected_or_closed,
    transfer_encoding_on_http_1_0_is_rejected,
    transfer_encoding_alone_on_http_1_0_is_rejected,
    duplicate_content_lengths_that_differ_are_rejected,
    a_list_valued_content_length_is_read_as_one_length_or_rejected,
    an_obs_folded_transfer_encoding_is_rejected,
    a_transfer_encoding_other_than_chunked_is_rejected,
    a_request_trailer_is_read_or_answered_400,
    an_unannounced_request_trailer_is_read_and_dropped,
);

/// The request the probes hide: if the application ever sees it, the server was smuggled.
fn hidden(site: &Site, record: &Record) -> String {
    format!(
        "GET {} HTTP/1.1\r\nHost: hidden\r\n\r\n",
        site.url(&format!("/record?{}", record.query()))
    )
}

/// Sends `raw` on a fresh connection and reads what comes back: the first response, then
/// whatever else arrives before the server closes. The connection must close after that
/// one response (a second response means the hidden request ran), and the application
/// must not have recorded the hidden request.
fn probe(site: &Site, record: &Record, raw: &[u8]) -> Response {
    let mut conn = Conn::connect(site.server.addr);
    // The server may close before it has read everything; that is a fine answer.
    let _ = conn.try_send(raw);
    let first = conn.read_response("POST");
    let mut rest = Vec::new();
    while let Chunk::Data(data) = conn.next_until_close() {
        rest.extend_from_slice(&data);
    }
    assert!(
        rest.is_empty(),
        "{:?}: after {first:?} the connection carried on with {:?}",
        site.host(),
        String::from_utf8_lossy(&rest)
    );
    assert_eq!(
        record.lines(),
        Vec::<String>::new(),
        "{:?}: the hidden request reached the application",
        site.host()
    );
    first
}

/// The control: sent on its own, the hidden request does reach the application and is
/// recorded, so an empty record after a probe means something.
fn the_hidden_request_is_recorded_when_sent_on_its_own(site: &Site) {
    let record = Record::new();
    let mut conn = Conn::connect(site.server.addr);
    conn.send(hidden(site, &record).as_bytes());
    let response = conn.read_response("GET");
    assert_eq!(response.status, 200, "{:?}: {response:?}", site.host());
    record.wait_for("GET /record");
}

/// Both framings at once: the chunked body ends at once, and what the Content-Length
/// covers beyond it is a second request. hyper reads it chunked, answers and closes (RFC
/// 9112 §6.1 allows that); actix-web read it chunked and kept the connection open, so the
/// hidden request ran. Rejected with 400 now, as gunicorn does.
fn content_length_with_chunked_is_rejected_or_closed(site: &Site) {
    let record = Record::new();
    let smuggled = hidden(site, &record);
    let body = format!("0\r\n\r\n{smuggled}");
    let raw = format!(
        "POST {} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nTransfer-Encoding: chunked\r\n\r\n{body}",
        site.url("/digest"),
        body.len()
    );
    let first = probe(site, &record, raw.as_bytes());
    assert!(
        first.status == 400 || first.status == 200,
        "{:?}: {first:?}",
        site.host()
    );
}

/// HTTP/1.0 has no chunked coding: a `Transfer-Encoding` there is faulty framing (RFC 9112
/// §6.1). hyper answers 400; actix-web ignored the header, framed by `Content-Length` and
/// kept a keep-alive connection open.
fn transfer_encoding_on_http_1_0_is_rejected(site: &Site) {
    let record = Record::new();
    let smuggled = hidden(site, &record);
    let raw = format!(
        "POST {} HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\nContent-Length: 5\r\n\
         Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n{smuggled}",
        site.url("/digest"),
    );
    let first = probe(site, &record, raw.as_bytes());
    assert_eq!(first.status, 400, "{:?}: {first:?}", site.host());
}

/// The same without `Content-Length`: a server that ignores the header sees no body, and
/// the chunked body becomes the start of the next request.
fn transfer_encoding_alone_on_http_1_0_is_rejected(site: &Site) {
    let record = Record::new();
    let smuggled = hidden(site, &record);
    let chunk = smuggled.as_bytes();
    let raw = format!(
        "POST {} HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\n\
         Transfer-Encoding: chunked\r\n\r\n{:x}\r\n{smuggled}\r\n0\r\n\r\n",
        site.url("/digest"),
        chunk.len(),
    );
    let first = probe(site, &record, raw.as_bytes());
    assert_eq!(first.status, 400, "{:?}: {first:?}", site.host());
}

/// Two `Content-Length` lines that disagree (RFC 9112 §6.3: unrecoverable; 400). Both
/// hosts reject it while parsing.
fn duplicate_content_lengths_that_differ_are_rejected(site: &Site) {
    let record = Record::new();
    let smuggled = hidden(site, &record);
    let raw = format!(
        "POST {} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nContent-Length: {}\r\n\r\n{smuggled}",
        site.url("/digest"),
        smuggled.len(),
    );
    let first = probe(site, &record, raw.as_bytes());
    assert_eq!(first.status, 400, "{:?}: {first:?}", site.host());
}

/// `Content-Length: 5, 5` is one length written twice (RFC 9110 §8.6 lets a recipient
/// take it as 5): hyper does, actix-web answers 400. Either way the 5 bytes are the body,
/// never the start of a request.
fn a_list_valued_content_length_is_read_as_one_length_or_rejected(site: &Site) {
    let mut conn = Conn::connect(site.server.addr);
    let _ = conn.try_send(
        format!(
            "POST {} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 5, 5\r\n\r\nhello",
            site.url("/digest"),
        )
        .as_bytes(),
    );
    let first = conn.read_response("POST");
    match first.status {
        400 => {}
        200 => assert_eq!(first.json()["length"], 5, "{:?}: {first:?}", site.host()),
        _ => panic!("{:?}: {first:?}", site.host()),
    }
}

/// An obs-folded `Transfer-Encoding` (RFC 9112 §5.2: a server must reject or unfold it). A
/// front end that unfolds reads `chunked`; one that does not reads the `Content-Length`.
/// Both hosts reject it while parsing.
fn an_obs_folded_transfer_encoding_is_rejected(site: &Site) {
    let record = Record::new();
    let smuggled = hidden(site, &record);
    let body = format!("0\r\n\r\n{smuggled}");
    let raw = format!(
        "POST {} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nTransfer-Encoding: identity\r\n chunked\r\n\r\n{body}",
        site.url("/digest"),
        body.len(),
    );
    let first = probe(site, &record, raw.as_bytes());
    assert_eq!(first.status, 400, "{:?}: {first:?}", site.host());
}

/// A `Transfer-Encoding` whose final coding is not `chunked` leaves the length unknown: 400
/// and close (RFC 9112 §6.1). hyper does; actix-web took `identity` as no coding at all and
/// framed by `Content-Length`, which a front end that honours the header would not.
fn a_transfer_encoding_other_than_chunked_is_rejected(site: &Site) {
    for coding in ["identity", "gzip", "gzip, chunked", "chunked, identity"] {
        let record = Record::new();
        let smuggled = hidden(site, &record);
        let raw = format!(
            "POST {} HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: {coding}\r\n\r\nhello{smuggled}",
            site.url("/digest"),
        );
        let first = probe(site, &record, raw.as_bytes());
        // "gzip, chunked" is well framed but names a coding the server does not decode:
        // RFC 9112 §6.1 asks for 501 there; 400 is accepted as well.
        assert!(
            matches!(first.status, 400 | 501),
            "{:?} {coding:?}: {first:?}",
            site.host()
        );
    }
}

/// A chunked body with a trailer section (RFC 9112 §7.1.2). hyper reads the body and
/// drops the trailer fields; actix-http cannot parse a trailer, so `wsgi-actix` answers a
/// clear 400 instead of an unexplained dropped connection, and logs why. gunicorn reads
/// the trailer and drops it, like hyper.
fn a_request_trailer_is_read_or_answered_400(site: &Site) {
    let mut conn = Conn::connect(site.server.addr);
    let _ = conn.try_send(
        format!(
            "POST {} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\
             Trailer: X-Checksum\r\n\r\n5\r\nhello\r\n0\r\nX-Checksum: abc\r\n\r\n",
            site.url("/digest"),
        )
        .as_bytes(),
    );
    let response = conn.read_response("POST");
    match site.host() {
        common::Host::Axum => {
            assert_eq!(response.status, 200, "{response:?}");
            assert_eq!(response.json()["length"], 5, "{response:?}");
        }
        common::Host::Actix => {
            assert_eq!(response.status, 400, "{response:?}");
            assert!(
                response.text().contains("trailer"),
                "the answer says why: {response:?}"
            );
        }
    }
}

/// The same trailer without a `Trailer` header to announce it: both hosts read the body and
/// drop the trailer (older actix-http releases dropped the connection instead; the adapter's
/// docs say which release this holds for).
fn an_unannounced_request_trailer_is_read_and_dropped(site: &Site) {
    let mut conn = Conn::connect(site.server.addr);
    let _ = conn.try_send(
        format!(
            "POST {} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n\
             5\r\nhello\r\n0\r\nX-Checksum: abc\r\n\r\n",
            site.url("/digest"),
        )
        .as_bytes(),
    );
    let response = conn.read_response("POST");
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(response.json()["length"], 5, "{response:?}");
}
