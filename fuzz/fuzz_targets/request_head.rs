//! A request head becoming CGI variables: target, mount and headers from the input.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    wsgi_core::untrusted::check_request_head_bytes(data);
});
