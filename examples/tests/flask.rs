//! A real Flask application (`tests/apps/flask_site.py`) through both adapters, at the root
//! and mounted under `/legacy`.

mod common;

use std::sync::OnceLock;

use common::{Cookies, Part, Site, host_cases, multipart, sha256_hex};
use serde_json::json;
use test_support::gate::Gate;
use test_support::rng::noise;
use test_support::wire::{Framing, Request, send};
use wsgi_core::Engine;

fn flask() -> Option<Engine> {
    static ENGINE: OnceLock<Option<Engine>> = OnceLock::new();
    ENGINE
        .get_or_init(|| common::framework_engine("flask", &common::test_app("flask_site.py"), 4))
        .clone()
}

host_cases!(flask, "/legacy";
    a_json_route_gets_path_and_query_parameters,
    a_form_post_is_parsed,
    login_sets_a_session_and_a_cookie_and_redirects_with_url_for,
    a_multipart_upload_of_several_mib_arrives_intact,
    stream_with_context_streams_with_the_request_context,
    the_404_handler_answers_unknown_paths,
    the_500_handler_answers_a_failing_view,
    send_file_goes_through_wsgi_file_wrapper,
);

/// The bytes `flask_site.py` writes for `/download`.
fn download_bytes() -> Vec<u8> {
    (0..1_500_000u32).map(|i| (i % 251) as u8).collect()
}

fn a_json_route_gets_path_and_query_parameters(site: &Site) {
    let response = site.get("/api/items/42?tag=a&tag=b%20c");
    response.expect(200, "application/json");
    response.assert_length_matches();
    assert_eq!(
        response.json(),
        json!({"id": 42, "name": "item 42", "tags": ["a", "b c"]})
    );
    // A converter that does not match is the app's 404, not a crash.
    assert_eq!(site.get("/api/items/forty-two").status, 404);
}

fn a_form_post_is_parsed(site: &Site) {
    let response = site.send(Request::form(
        "/form",
        &[("name", "Zoë & co"), ("colour", "red"), ("colour", "blue")],
    ));
    response.expect(200, "application/json");
    assert_eq!(
        response.json(),
        json!({
            "name": "Zoë & co",
            "colours": ["red", "blue"],
            "mimetype": "application/x-www-form-urlencoded",
        })
    );
}

fn login_sets_a_session_and_a_cookie_and_redirects_with_url_for(site: &Site) {
    let mut cookies = Cookies::default();
    let login = site.send(Request::form(
        "/login",
        &[("user", "ann"), ("theme", "dark")],
    ));
    assert_eq!(login.status, 302, "{login:?}");
    assert_eq!(
        login.header("location"),
        Some(site.url("/whoami").as_str()),
        "url_for must build the redirect under SCRIPT_NAME"
    );
    let set_cookies = login.header_all("set-cookie");
    assert!(
        set_cookies
            .iter()
            .any(|c| c.starts_with("session=") && c.contains("HttpOnly")),
        "{set_cookies:?}"
    );
    assert!(
        set_cookies.iter().any(|c| c.starts_with("theme=dark;")),
        "{set_cookies:?}"
    );
    cookies.update(&login);

    // Follow the redirect as a browser would: the Location as it is, prefix included.
    let location = login.header("location").unwrap_or_default().to_owned();
    for visit in 1..=2 {
        let me = send(site.server.addr, &cookies.apply(Request::get(&location)));
        me.expect(200, "application/json");
        assert_eq!(
            me.json(),
            json!({"user": "ann", "visits": visit, "theme": "dark", "script_root": site.mount})
        );
        // The session cookie is re-signed on every change.
        cookies.update(&me);
    }

    let stranger = site.get("/whoami").json();
    assert_eq!(stranger["user"], serde_json::Value::Null);
}

fn a_multipart_upload_of_several_mib_arrives_intact(site: &Site) {
    let big = noise(3 * 1024 * 1024 + 17, 11);
    let small = noise(1024 * 1024 + 5, 12);
    let (content_type, body) = multipart(&[
        Part::Field("note", "two files"),
        Part::File("file", "big.bin", "application/octet-stream", &big),
        Part::File("file", "small.dat", "image/x-test", &small),
    ]);
    let response = site.send(Request::post("/upload", &content_type, body));
    response.expect(200, "application/json");
    assert_eq!(
        response.json(),
        json!({
            "note": "two files",
            "files": [
                {
                    "field": "file", "filename": "big.bin", "mimetype": "application/octet-stream",
                    "size": big.len(), "sha256": sha256_hex(&big),
                },
                {
                    "field": "file", "filename": "small.dat", "mimetype": "image/x-test",
                    "size": small.len(), "sha256": sha256_hex(&small),
                },
            ],
        })
    );
}

fn stream_with_context_streams_with_the_request_context(site: &Site) {
    let gate = Gate::new();
    let mut conn = site.open(Request::get(&format!("/stream?name=ann&{}", gate.query())));
    let head = conn.read_head();
    assert_eq!(head.status, 200);
    assert!(
        head.header("content-type")
            .is_some_and(|v| v.starts_with("text/plain")),
        "{head:?}"
    );
    // The view holds its second line until the gate opens, and the gate opens only once
    // the first line has reached the client.
    let mut body = conn.read_chunked_until(b"hello ann\n");
    gate.open();
    body.extend_from_slice(&conn.read_chunked_to_end());
    assert_eq!(
        String::from_utf8_lossy(&body),
        format!("hello ann\nfrom {}/stream\ndone\n", site.mount)
    );
}

fn the_404_handler_answers_unknown_paths(site: &Site) {
    let response = site.get("/no/such/page");
    response.expect(404, "application/json");
    assert_eq!(
        response.json(),
        json!({"error": "not found", "path": "/no/such/page"})
    );
}

fn the_500_handler_answers_a_failing_view(site: &Site) {
    let response = site.get("/boom");
    response.expect(500, "text/plain");
    assert_eq!(response.text(), "custom 500: the view failed\n");
    // The app and the server carry on.
    assert_eq!(site.get("/api/items/1").status, 200);
}

fn send_file_goes_through_wsgi_file_wrapper(site: &Site) {
    let expected = download_bytes();
    let response = site.get("/download");
    response.expect(200, "application/octet-stream");
    assert_eq!(response.framing, Framing::Length(expected.len()));
    assert_eq!(
        response.header("content-disposition"),
        Some("attachment; filename=data.bin")
    );
    assert_eq!(response.header("accept-ranges"), Some("bytes"));
    assert_eq!(
        response.header("x-wsgi-iterable"),
        Some("wsgi_core.FileWrapper"),
        "send_file must hand the file to the server's wsgi.file_wrapper"
    );
    assert!(response.body == expected, "the downloaded bytes differ");

    let etag = response.header("etag").expect("an ETag").to_owned();
    let cached = site.send(Request::get("/download").header("If-None-Match", &etag));
    assert_eq!(cached.status, 304, "{cached:?}");
    assert!(cached.body.is_empty());

    // A range is cut from the same wrapper by Werkzeug, which then iterates it.
    let part = site.send(Request::get("/download").header("Range", "bytes=1000-1999"));
    assert_eq!(part.status, 206, "{part:?}");
    assert_eq!(
        part.header("content-range"),
        Some("bytes 1000-1999/1500000")
    );
    assert!(
        part.body == expected[1000..2000],
        "the range's bytes differ"
    );

    let head = site.send(Request::head("/download"));
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-length"), Some("1500000"));
    assert!(head.body.is_empty());
}
