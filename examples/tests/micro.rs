//! Bottle, Falcon and WhiteNoise applications (`tests/apps/`) through both adapters, at the
//! root and mounted under a prefix.

mod common;

use std::sync::OnceLock;

use common::{Site, host_cases};
use serde_json::json;
use test_support::wire::{Framing, Request};
use wsgi_core::Engine;

fn bottle() -> Option<Engine> {
    static ENGINE: OnceLock<Option<Engine>> = OnceLock::new();
    ENGINE
        .get_or_init(|| common::framework_engine("bottle", &common::test_app("bottle_site.py"), 2))
        .clone()
}

fn falcon() -> Option<Engine> {
    static ENGINE: OnceLock<Option<Engine>> = OnceLock::new();
    ENGINE
        .get_or_init(|| common::framework_engine("falcon", &common::test_app("falcon_site.py"), 2))
        .clone()
}

fn whitenoise() -> Option<Engine> {
    static ENGINE: OnceLock<Option<Engine>> = OnceLock::new();
    ENGINE
        .get_or_init(|| {
            common::framework_engine("whitenoise", &common::test_app("static_site.py"), 2)
        })
        .clone()
}

host_cases!(bottle, "/bottle"; bottle_routes_take_path_parameters_queries_and_json);
host_cases!(falcon, "/api/v1"; falcon_resources_take_path_parameters_queries_and_json);
host_cases!(whitenoise, "/site"; whitenoise_serves_a_static_file_through_wsgi_file_wrapper);

fn bottle_routes_take_path_parameters_queries_and_json(site: &Site) {
    let hello = site.get("/hello/W%C3%B6rld?greeting=Hi&punct=%3F");
    hello.expect(200, "text/html");
    assert_eq!(hello.header("x-framework"), Some("bottle"));
    assert_eq!(hello.text(), "Hi, Wörld?");

    let created = site.send(Request::post(
        "/items/7?mode=merge",
        "application/json",
        r#"{"name": "lamp", "tags": ["a", "b"]}"#,
    ));
    created.expect(201, "application/json");
    created.assert_length_matches();
    let addr = site.server.addr;
    assert_eq!(
        created.json(),
        json!({
            "id": 7,
            "mode": "merge",
            "received": {"name": "lamp", "tags": ["a", "b"]},
            // Bottle keeps SCRIPT_NAME with a trailing slash.
            "script_name": format!("{}/", site.mount),
            "url": format!("http://{addr}{}/items/7?mode=merge", site.mount),
        })
    );

    let not_json = site.send(Request::post("/items/7", "text/plain", "lamp"));
    assert_eq!(not_json.status, 415, "{not_json:?}");
    let wrong_method = site.get("/items/7");
    assert_eq!(wrong_method.status, 405, "{wrong_method:?}");
    assert_eq!(wrong_method.header("allow"), Some("POST"));
    assert_eq!(
        site.send(Request::post("/items/seven", "application/json", "{}"))
            .status,
        404
    );
}

fn falcon_resources_take_path_parameters_queries_and_json(site: &Site) {
    let thing = site.get("/things/ann/7?limit=3&tag=x&tag=y");
    thing.expect(200, "application/json");
    assert_eq!(thing.header("x-framework"), Some("falcon"));
    assert_eq!(
        thing.json(),
        json!({"owner": "ann", "id": 7, "limit": 3, "tags": ["x", "y"]})
    );

    let created = site.send(Request::post(
        "/things/ann?dry_run=true",
        "application/json",
        r#"{"id": 9, "name": "kettle"}"#,
    ));
    created.expect(201, "application/json");
    assert_eq!(
        created.header("location"),
        Some(site.url("/things/ann/9").as_str()),
        "req.root_path is SCRIPT_NAME"
    );
    assert_eq!(
        created.json(),
        json!({"owner": "ann", "created": {"id": 9, "name": "kettle"}, "dry_run": true})
    );

    let bad = site.get("/things/ann/seven");
    bad.expect(404, "application/json");
    let bad_json = site.send(Request::post(
        "/things/ann",
        "application/json",
        "{not json",
    ));
    bad_json.expect(400, "application/json");
}

fn whitenoise_serves_a_static_file_through_wsgi_file_wrapper(site: &Site) {
    let path = format!(
        "{}/tests/apps/static/css/site.css",
        env!("CARGO_MANIFEST_DIR")
    );
    let expected = std::fs::read(&path).expect("read site.css");

    let css = site.get("/static/css/site.css");
    css.expect(200, "text/css");
    assert_eq!(css.framing, Framing::Length(expected.len()));
    assert_eq!(css.body, expected);
    assert_eq!(css.header("cache-control"), Some("max-age=3600, public"));
    assert!(css.header("last-modified").is_some(), "{css:?}");
    assert_eq!(
        css.header("x-wsgi-iterable"),
        Some("wsgi_core.FileWrapper"),
        "WhiteNoise must hand the file to the server's wsgi.file_wrapper"
    );

    let etag = css.header("etag").expect("an ETag");
    let cached = site.send(Request::get("/static/css/site.css").header("If-None-Match", etag));
    assert_eq!(cached.status, 304, "{cached:?}");
    assert!(cached.body.is_empty());

    let head = site.send(Request::head("/static/css/site.css"));
    assert_eq!(head.status, 200);
    assert_eq!(
        head.header("content-length"),
        Some(expected.len().to_string().as_str())
    );

    let other = site.get("/not/static");
    other.expect(200, "text/plain");
    assert_eq!(other.text(), "not a static file\n");
    assert_eq!(
        site.get("/static/missing.css").text(),
        "not a static file\n"
    );
}
