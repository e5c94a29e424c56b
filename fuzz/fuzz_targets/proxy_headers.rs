//! The trusted-proxy list and the `Forwarded`/`X-Forwarded-*` parser.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    wsgi_core::untrusted::check_proxy_headers_bytes(data);
});
