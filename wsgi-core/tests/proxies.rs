//! Trusted reverse proxies: forwarding headers count only from a trusted peer.

mod common;

use common::{Environ, app_path, start};

const FORWARDED: [(&str, &str); 4] = [
    ("X-Forwarded-For", "198.51.100.7, 203.0.113.9"),
    ("X-Forwarded-Proto", "https"),
    ("X-Forwarded-Host", "shop.example"),
    ("X-Forwarded-Prefix", "/store"),
];

#[test]
fn a_trusted_proxy_sets_client_scheme_host_and_prefix() {
    let server = start(
        &app_path("environ_app.py"),
        |b| b.trusted_proxies(["127.0.0.0/8"]),
        "/py",
    );
    let env = Environ::parse(&server.request("GET", "/py/cart", &FORWARDED, b""));
    assert_eq!(env.str("REMOTE_ADDR"), "203.0.113.9");
    assert!(
        !env.has("REMOTE_PORT"),
        "the proxy's port must not pose as the client's"
    );
    assert_eq!(env.str("wsgi.url_scheme"), "https");
    assert_eq!(env.str("HTTP_HOST"), "shop.example");
    assert_eq!(env.str("SERVER_NAME"), "shop.example");
    assert_eq!(env.str("SERVER_PORT"), "443");
    assert_eq!(env.str("SCRIPT_NAME"), "/store/py");
    assert_eq!(env.str("PATH_INFO"), "/cart");
}

#[test]
fn the_same_headers_from_an_untrusted_peer_change_nothing() {
    let server = start(
        &app_path("environ_app.py"),
        |b| b.trusted_proxies(["10.0.0.0/8"]),
        "/py",
    );
    let env = Environ::parse(&server.request("GET", "/py/cart", &FORWARDED, b""));
    assert_eq!(env.str("REMOTE_ADDR"), "127.0.0.1");
    assert!(env.has("REMOTE_PORT"));
    assert_eq!(env.str("wsgi.url_scheme"), "http");
    assert_eq!(env.str("SCRIPT_NAME"), "/py");
    assert_ne!(env.str("SERVER_NAME"), "shop.example");
    // Still visible to the application as ordinary headers.
    assert_eq!(env.str("HTTP_X_FORWARDED_PREFIX"), "/store");
}

#[test]
fn a_malformed_proxy_list_is_a_build_error() {
    let err = wsgi_core::Engine::builder(app_path("environ_app.py"))
        .trusted_proxies(["10.0.0.0/33"])
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("10.0.0.0/33"), "{err}");
}
