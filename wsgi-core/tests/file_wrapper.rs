//! `wsgi.file_wrapper`: a real file from its current position, honouring the
//! app's Content-Length, and the read(blksize) fallback for file-likes.

mod common;

use common::{TestServer, app_path, assert_no_bytes_past_the_length, request, start};
use test_support::gate::Record;
use test_support::rng::Rng;
use test_support::temp::{path_str, temp_file};

fn server() -> TestServer {
    start(&app_path("response_app.py"), |b| b, "")
}

fn data() -> Vec<u8> {
    Rng::new(99).bytes(300_000)
}

#[test]
fn a_real_file_is_streamed_from_its_current_position() {
    let server = server();
    let data = data();
    let file = temp_file(&data);
    let record = Record::new();
    let response = server.get_with(
        &format!("/file?offset=1000&{}", record.query()),
        &[("X-File", path_str(&file))],
    );
    assert_eq!(response.status, 200);
    assert!(response.complete);
    assert_eq!(response.body.len(), data.len() - 1000);
    assert!(response.body == data[1000..], "file content differs");
    record.wait_for("file-close");
}

#[test]
fn a_real_file_honours_the_app_content_length() {
    let server = server();
    let data = data();
    let file = temp_file(&data);
    let record = Record::new();
    let mut client = server.client();
    let target = format!("/file?offset=1000&cl=5000&{}", record.query());
    client.send(
        &request("GET", &target, &[("X-File", path_str(&file))], b"")
            .keep_alive()
            .to_bytes(server.addr),
    );
    let response = client.read_response("GET");
    assert_eq!(response.header("content-length"), Some("5000"));
    assert!(response.complete);
    assert!(response.body == data[1000..6000], "file slice differs");
    // No byte past the Content-Length may follow on the connection.
    assert_no_bytes_past_the_length(&server, &mut client);
    record.wait_for("file-close");
}

#[test]
fn a_real_file_with_a_small_block_size_is_complete() {
    let server = server();
    let data = data();
    let file = temp_file(&data);
    let response = server.get_with("/file?blksize=100", &[("X-File", path_str(&file))]);
    assert!(response.complete);
    assert!(response.body == data, "file content differs");
}

#[test]
fn a_file_like_without_fileno_is_read_in_blksize_pieces() {
    let server = server();
    let record = Record::new();
    let response = server.get(&format!("/bytesio?size=1000&blksize=7&{}", record.query()));
    assert_eq!(response.status, 200);
    assert!(response.complete);
    let expected: Vec<u8> = (0..1000u32).map(|i| (i % 251) as u8).collect();
    assert!(response.body == expected, "BytesIO content differs");
    let lines = record.wait_until("the BytesIO to be closed", |lines| {
        lines.iter().any(|l| l.starts_with("bytesio-close"))
    });
    assert!(
        lines.contains(&"bytesio-close sizes=[7]".to_owned()),
        "the fallback must call read(blksize): {lines:?}"
    );
}
