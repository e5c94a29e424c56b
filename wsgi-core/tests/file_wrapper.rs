//! `wsgi.file_wrapper`: a real file from its current position, honouring the
//! app's Content-Length, and the read(blksize) fallback for file-likes.

mod common;

use common::{Rng, TempFile, TestServer, app_path, request_bytes, start};

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
    let file = TempFile::with_content("fw-offset", &data);
    let record = common::RecordFile::new("fw-offset");
    let response = server.get_with(
        "/file?offset=1000",
        &[("X-File", file.path_str()), record.header()],
    );
    assert_eq!(response.status(), 200);
    assert!(response.complete);
    assert_eq!(response.body.len(), data.len() - 1000);
    assert!(response.body == data[1000..], "file content differs");
    record.wait_for_line("file-close");
}

#[test]
fn a_real_file_honours_the_app_content_length() {
    let server = server();
    let data = data();
    let file = TempFile::with_content("fw-cl", &data);
    let record = common::RecordFile::new("fw-cl");
    let host = server.host();
    let mut client = server.client();
    client.send(&request_bytes(
        &host,
        "GET",
        "/file?offset=1000&cl=5000",
        &[("X-File", file.path_str()), record.header()],
        b"",
        false,
    ));
    let response = client.read_response("GET");
    assert_eq!(response.header("content-length").as_deref(), Some("5000"));
    assert!(response.complete);
    assert!(response.body == data[1000..6000], "file slice differs");
    // No byte past the Content-Length may follow on the connection.
    let _ = client.try_send(&request_bytes(&host, "GET", "/hello", &[], b"", true));
    let rest = client.read_to_end();
    assert!(
        rest.is_empty() || rest.starts_with(b"HTTP/1.1 200"),
        "stray bytes after the declared length: {:?}",
        String::from_utf8_lossy(&rest[..rest.len().min(60)])
    );
    record.wait_for_line("file-close");
}

#[test]
fn a_real_file_with_a_small_block_size_is_complete() {
    let server = server();
    let data = data();
    let file = TempFile::with_content("fw-blk", &data);
    let response = server.get_with("/file?blksize=100", &[("X-File", file.path_str())]);
    assert!(response.complete);
    assert!(response.body == data, "file content differs");
}

#[test]
fn a_file_like_without_fileno_is_read_in_blksize_pieces() {
    let server = server();
    let record = common::RecordFile::new("fw-bytesio");
    let response = server.get_with("/bytesio?size=1000&blksize=7", &[record.header()]);
    assert_eq!(response.status(), 200);
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
