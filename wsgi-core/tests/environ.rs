//! The environ dict (PEP 3333 "environ Variables" and "Unicode Issues").

mod common;

use std::sync::Once;

use common::{Environ, TestServer, app_path, start};
use test_support::wire::Conn;

/// Puts variables in this process's environment before any interpreter starts,
/// so a server that copies `os.environ` into the WSGI environ gets caught.
fn plant_process_env_canaries() {
    static PLANT: Once = Once::new();
    PLANT.call_once(|| {
        // SAFETY: every test in this binary calls this first, before it starts a
        // server or an interpreter, and `Once` makes the others wait; no other
        // thread reads the environment while it is being changed.
        unsafe {
            std::env::set_var("HTTP_X_LEAK", "1");
            std::env::set_var("FOO_LEAK", "1");
        }
    });
}

fn server(mount: &str) -> TestServer {
    plant_process_env_canaries();
    start(&app_path("environ_app.py"), |b| b, mount)
}

fn environ(server: &TestServer, method: &str, target: &str, headers: &[(&str, &str)]) -> Environ {
    Environ::parse(&server.request(method, target, headers, b""))
}

/// Sends `request` as raw bytes and parses the environ dump.
fn environ_raw(server: &TestServer, request: &[u8]) -> Environ {
    let mut client = server.client();
    client.send(request);
    Environ::parse(&client.read_response("GET"))
}

#[test]
fn request_method_is_passed_through() {
    let server = server("");
    for method in ["GET", "POST", "DELETE", "PATCH", "OPTIONS"] {
        let env = environ(&server, method, "/m", &[]);
        assert_eq!(env.str("REQUEST_METHOD"), method);
    }
}

#[test]
fn mount_becomes_script_name_and_rest_path_info() {
    let server = server("/py");
    let cases = [
        ("/py", "/py", ""),
        ("/py/", "/py", "/"),
        ("/py/a", "/py", "/a"),
        ("/py/a/b/", "/py", "/a/b/"),
        ("/py?x=1", "/py", ""),
    ];
    for (target, script_name, path_info) in cases {
        let env = environ(&server, "GET", target, &[]);
        assert_eq!(env.str("SCRIPT_NAME"), script_name, "target {target}");
        assert_eq!(env.str("PATH_INFO"), path_info, "target {target}");
    }
}

#[test]
fn root_mount_has_empty_script_name() {
    let server = server("");
    let env = environ(&server, "GET", "/a", &[]);
    assert_eq!(env.str("SCRIPT_NAME"), "");
    assert_eq!(env.str("PATH_INFO"), "/a");
    let env = environ(&server, "GET", "/", &[]);
    assert_eq!(env.str("PATH_INFO"), "/");
}

#[test]
fn paths_outside_the_mount_are_404_without_running_the_app() {
    let server = server("/py");
    for target in ["/pyx", "/pyx/a", "/other", "/"] {
        let response = server.get(target);
        assert_eq!(response.status, 404, "target {target}: {}", response.text());
        // The environ app would have answered 200 with its dump.
        assert!(!response.text().contains('\t'), "the app ran for {target}");
    }
}

#[test]
fn path_info_is_percent_decoded_bytes_as_latin1() {
    let server = server("/py");
    let cases = [
        ("/py/caf%C3%A9", "/caf\u{c3}\u{a9}"),
        ("/py/%FF", "/\u{ff}"),
        ("/py/a%20b", "/a b"),
        ("/py/a+b", "/a+b"),
        ("/py/a%2Fb", "/a/b"),
        ("/py/%25", "/%"),
    ];
    for (target, path_info) in cases {
        let env = environ(&server, "GET", target, &[]);
        assert_eq!(env.str("PATH_INFO"), path_info, "target {target}");
        assert_eq!(env.str("SCRIPT_NAME"), "/py", "target {target}");
    }
}

#[test]
fn query_string_and_request_uri_are_raw() {
    let server = server("/py");
    let target = "/py/caf%C3%A9?x=%41&y=a+b&z&e=%C3%A9";
    let env = environ(&server, "GET", target, &[]);
    assert_eq!(env.str("QUERY_STRING"), "x=%41&y=a+b&z&e=%C3%A9");
    assert_eq!(env.str("REQUEST_URI"), target);
    assert_eq!(env.str("RAW_URI"), target);

    let env = environ(&server, "GET", "/py/plain", &[]);
    assert_eq!(env.get("QUERY_STRING").unwrap_or(""), "");
    assert_eq!(env.str("REQUEST_URI"), "/py/plain");
}

#[test]
fn content_type_and_length_have_no_http_prefix() {
    let server = server("");
    let response = server.request(
        "POST",
        "/upload",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        b"a=1&b",
    );
    let env = Environ::parse(&response);
    assert_eq!(env.str("CONTENT_TYPE"), "application/x-www-form-urlencoded");
    assert_eq!(env.str("CONTENT_LENGTH"), "5");
    assert!(!env.has("HTTP_CONTENT_TYPE"));
    assert!(!env.has("HTTP_CONTENT_LENGTH"));

    let env = environ(&server, "GET", "/nobody", &[]);
    assert!(!env.has("CONTENT_TYPE"), "{:?}", env.get("CONTENT_TYPE"));
    assert!(
        !env.has("CONTENT_LENGTH"),
        "{:?}",
        env.get("CONTENT_LENGTH")
    );
    assert!(!env.has("HTTP_CONTENT_TYPE"));
    assert!(!env.has("HTTP_CONTENT_LENGTH"));
}

#[test]
fn other_headers_become_http_variables() {
    let server = server("");
    let host = server.host();
    let request = format!(
        "GET /h HTTP/1.1\r\nHost: {host}\r\nX-Custom: value 1\r\nx-lower-case: v\r\n\
         X-Multi: a\r\nX-Multi: b\r\nCookie: a=1\r\nCookie: b=2\r\n\
         X-Under: good\r\nX_Under: spoofed\r\nX_Only_Underscore: 1\r\n\
         Connection: close\r\n\r\n"
    );
    let env = environ_raw(&server, request.as_bytes());
    assert_eq!(env.str("HTTP_X_CUSTOM"), "value 1");
    assert_eq!(env.str("HTTP_X_LOWER_CASE"), "v");
    assert_eq!(env.str("HTTP_X_MULTI"), "a, b");
    assert_eq!(env.str("HTTP_COOKIE"), "a=1; b=2");
    assert_eq!(env.str("HTTP_HOST"), host);
    // Names with '_' could spoof a dashed header after the '-' to '_' mapping.
    assert_eq!(env.str("HTTP_X_UNDER"), "good");
    assert!(!env.has("HTTP_X_ONLY_UNDERSCORE"));
}

/// One Python thread keeps the `HTTP_*` keys it has made for the next requests (up to a
/// limit): each environ still has its own request's variables and no other's, past the
/// limit too.
#[test]
fn each_request_has_its_own_http_variables_on_a_thread_that_keeps_keys() {
    plant_process_env_canaries();
    let server = start(&app_path("environ_app.py"), |b| b.threads(1), "");
    for round in 0..100 {
        let name = format!("X-Name-{round}");
        let accept = format!("text/{round}");
        let mut headers = vec![(name.as_str(), "custom"), ("Accept", accept.as_str())];
        if round % 2 == 0 {
            headers.push(("X-Even", "yes"));
        }
        let env = environ(&server, "GET", "/k", &headers);
        assert_eq!(env.str(&format!("HTTP_X_NAME_{round}")), "custom");
        assert_eq!(env.str("HTTP_ACCEPT"), accept);
        assert_eq!(env.has("HTTP_X_EVEN"), round % 2 == 0, "round {round}");
        if round > 0 {
            let previous = format!("HTTP_X_NAME_{}", round - 1);
            assert!(!env.has(&previous), "round {round} has {previous}");
        }
    }
}

#[test]
fn obs_text_header_bytes_decode_as_latin1() {
    let server = server("");
    let mut request =
        format!("GET /h HTTP/1.1\r\nHost: {}\r\nX-Latin: caf", server.host()).into_bytes();
    request.extend_from_slice(b"\xe9 \xff\r\nConnection: close\r\n\r\n");
    let env = environ_raw(&server, &request);
    assert_eq!(env.str("HTTP_X_LATIN"), "caf\u{e9} \u{ff}");
}

#[test]
fn server_name_and_port_come_from_host_header() {
    let server = server("");
    let env = environ(&server, "GET", "/", &[]);
    assert_eq!(env.str("SERVER_NAME"), "127.0.0.1");
    assert_eq!(env.str("SERVER_PORT"), server.addr.port().to_string());

    let env = environ_raw(
        &server,
        b"GET / HTTP/1.1\r\nHost: example.com:8080\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(env.str("SERVER_NAME"), "example.com");
    assert_eq!(env.str("SERVER_PORT"), "8080");

    let env = environ_raw(
        &server,
        b"GET / HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(env.str("SERVER_NAME"), "example.com");
    assert_eq!(
        env.str("SERVER_PORT"),
        "80",
        "default port of the http scheme"
    );
}

#[test]
fn without_host_server_name_is_the_local_address() {
    let server = server("");
    let env = environ_raw(&server, b"GET /old HTTP/1.0\r\n\r\n");
    assert_eq!(env.str("SERVER_NAME"), "127.0.0.1");
    assert_eq!(env.str("SERVER_PORT"), server.addr.port().to_string());
    assert!(!env.has("HTTP_HOST"));
}

#[test]
fn server_protocol_is_the_version_sent() {
    let server = server("");
    let env = environ_raw(&server, b"GET / HTTP/1.0\r\nHost: x\r\n\r\n");
    assert_eq!(env.str("SERVER_PROTOCOL"), "HTTP/1.0");
    let env = environ(&server, "GET", "/", &[]);
    assert_eq!(env.str("SERVER_PROTOCOL"), "HTTP/1.1");
}

#[test]
fn remote_addr_and_port_are_the_client() {
    let server = server("");
    let mut client = Conn::connect(server.addr);
    let local = client.local_addr();
    client.send(
        format!(
            "GET / HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            server.host()
        )
        .as_bytes(),
    );
    let env = Environ::parse(&client.read_response("GET"));
    assert_eq!(env.str("REMOTE_ADDR"), "127.0.0.1");
    assert_eq!(env.str("REMOTE_PORT"), local.port().to_string());
}

#[test]
fn wsgi_variables_have_the_required_values() {
    let server = server("");
    let env = environ(&server, "GET", "/", &[]);
    assert_eq!(env.typed("wsgi.version"), ("tuple", "(1, 0)"));
    assert_eq!(env.str("wsgi.url_scheme"), "http");
    assert_eq!(
        env.typed("wsgi.multithread"),
        ("bool", "True"),
        "two threads"
    );
    assert_eq!(env.typed("wsgi.multiprocess"), ("bool", "False"));
    assert_eq!(env.typed("wsgi.run_once"), ("bool", "False"));
    assert_eq!(env.typed("wsgi.input_terminated"), ("bool", "True"));
    assert!(env.has("wsgi.input"));
    assert!(env.has("wsgi.errors"));
    assert!(env.has("wsgi.file_wrapper"));
    assert_eq!(env.typed("@file_wrapper_callable"), ("bool", "True"));
}

#[test]
fn multithread_is_false_with_one_thread() {
    plant_process_env_canaries();
    let server = start(&app_path("environ_app.py"), |b| b.threads(1), "");
    let env = environ(&server, "GET", "/", &[]);
    assert_eq!(env.typed("wsgi.multithread"), ("bool", "False"));
}

#[test]
fn all_keys_and_cgi_values_are_native_str() {
    let server = server("/py");
    let env = environ(
        &server,
        "POST",
        "/py/caf%C3%A9?q=%FF",
        &[("Content-Type", "text/plain"), ("X-A", "b")],
    );
    for (key, (kind, value)) in &env.entries {
        assert!(!key.starts_with("!nonstr-key"), "non-str key {key}");
        assert_ne!(kind, "str-not-latin1", "{key} = {value:?} is not latin-1");
        if !key.contains('.') && !key.starts_with('@') {
            assert_eq!(kind, "str", "{key} is a {kind} ({value})");
        }
    }
    for key in [
        "REQUEST_METHOD",
        "SCRIPT_NAME",
        "PATH_INFO",
        "SERVER_NAME",
        "SERVER_PORT",
        "SERVER_PROTOCOL",
    ] {
        assert!(env.has(key), "missing {key}");
    }
}

#[test]
fn process_environment_does_not_leak() {
    let server = server("");
    assert_eq!(std::env::var("HTTP_X_LEAK").as_deref(), Ok("1"));
    let env = environ(&server, "GET", "/", &[]);
    assert!(
        !env.has("HTTP_X_LEAK"),
        "process env leaked into the environ"
    );
    assert!(!env.has("FOO_LEAK"), "process env leaked into the environ");
    assert!(!env.has("PATH"), "process env leaked into the environ");
    assert!(!env.has("HOME"), "process env leaked into the environ");
}
