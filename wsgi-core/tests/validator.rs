//! Every fixture app again, wrapped in `wsgiref.validate.validator`: the engine's
//! side of each exchange must satisfy the stdlib's PEP 3333 checker. A violation
//! inside a request is a 500; one outside any request (an iterable dropped
//! without `close()`, a `WSGIWarning`) is collected by validated.py and checked
//! through `/__failures`.

mod common;

use common::{Environ, TestServer, app_path, start, start_a_long_stream};
use test_support::gate::{Gate, Record};
use test_support::temp::{path_str, temp_file};
use test_support::wire::Framing;

type Headers<'a> = &'a [(&'a str, &'a str)];

fn validated(callable: &str, mount: &str) -> TestServer {
    start(&app_path(&format!("validated.py:{callable}")), |b| b, mount)
}

fn assert_no_failures(server: &TestServer) {
    let response = server.get("/__failures");
    assert_eq!(response.status, 200);
    assert_eq!(response.text(), "", "wsgiref.validate found problems");
}

#[test]
fn environ_app_passes_the_validator() {
    let server = validated("validated_environ", "");
    for (method, target, body) in [
        ("GET", "/", &b""[..]),
        ("GET", "/a/b?x=1", b""),
        ("GET", "/caf%C3%A9", b""),
        ("POST", "/form", b"a=1"),
        ("DELETE", "/x", b""),
    ] {
        let response = server.request(method, target, &[("X-A", "1")], body);
        assert_eq!(
            response.status,
            200,
            "{method} {target}: {}",
            response.text()
        );
        Environ::parse(&response);
    }
    let mounted = validated("validated_environ", "/py");
    for target in ["/py", "/py/", "/py/a"] {
        let response = mounted.get(target);
        assert_eq!(response.status, 200, "{target}: {}", response.text());
    }
    assert_no_failures(&server);
}

#[test]
fn input_app_passes_the_validator() {
    let server = validated("validated_input", "");
    let body: Vec<u8> = (0..20_000u32)
        .map(|i| {
            if i % 37 == 0 {
                b'\n'
            } else {
                b'a' + (i % 26) as u8
            }
        })
        .collect();
    // The validator's input wrapper insists on exactly one argument to read().
    for target in [
        "/?mode=read&size=7",
        "/?mode=read&size=-1",
        "/?mode=read_none",
        "/?mode=readline",
        "/?mode=readline&size=5",
        "/?mode=readlines",
        "/?mode=readlines&size=100",
        "/?mode=iter",
        "/?mode=none",
    ] {
        let response = server.post(target, &body);
        assert_eq!(response.status, 200, "{target}: {}", response.text());
        if target != "/?mode=none" {
            assert!(response.body == body, "{target}: body differs");
        }
    }
    assert_no_failures(&server);
}

#[test]
fn response_app_passes_the_validator() {
    let server = validated("validated_response", "");
    let file = temp_file(&[b'f'; 100_000]);
    let open_gate = Gate::new();
    open_gate.open();
    let gate_target = format!("/gate?{}", open_gate.query());
    let cases: &[(&str, &str, Headers)] = &[
        ("GET", "/hello", &[]),
        ("HEAD", "/hello", &[]),
        ("GET", "/tuple", &[]),
        ("GET", "/write", &[]),
        ("GET", "/lazy", &[]),
        ("GET", "/lazy_empty", &[]),
        ("GET", "/cookies", &[]),
        ("GET", "/tiny?n=50", &[]),
        ("GET", "/tracked?n=3", &[]),
        ("HEAD", "/tracked?n=3", &[]),
        ("GET", "/exc_info_before", &[]),
        ("GET", "/second_call", &[]),
        ("GET", "/content_length?declared=10&send=10", &[]),
        ("GET", "/big?chunks=20&size=1000", &[]),
        ("GET", "/errors", &[]),
        ("GET", "/bytesio?size=500&blksize=7", &[]),
        (
            "GET",
            "/file?offset=10&cl=1000",
            &[("X-File", path_str(&file))],
        ),
        ("GET", &gate_target, &[]),
    ];
    for &(method, target, headers) in cases {
        let response = server.request(method, target, headers, b"");
        assert!(
            response.status < 500 && response.complete,
            "{method} {target}: {} {}",
            response.status,
            response.text()
        );
    }
    // Aborted responses must close the iterable too.
    for target in ["/raise_midstream", "/exc_info_after"] {
        let record = Record::new();
        server.get_aborted(
            &format!("{target}?{}", record.query()),
            &[],
            Framing::Chunked,
        );
        record.wait_for("close");
    }
    assert_no_failures(&server);
}

#[test]
fn a_disconnect_mid_stream_still_closes_the_validated_iterable() {
    let server = validated("validated_response", "");
    let record = Record::new();
    drop(start_a_long_stream(&server, &record));
    record.wait_for("close");
    assert_no_failures(&server);
}

#[test]
fn slow_app_passes_the_validator() {
    let server = validated("validated_slow", "");
    let response = server.get("/?tag=v&sleep=0");
    assert_eq!((response.status, response.text().as_str()), (200, "done v"));
    assert_no_failures(&server);
}
