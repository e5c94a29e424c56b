//! The validation of the status and headers an application passes to `start_response`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    wsgi_core::untrusted::check_start_response_bytes(data);
});
