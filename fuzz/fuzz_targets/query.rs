//! Arbitrary bytes as the query of `POST /v1/filter`: `serve::check_query` must never panic, and
//! what it says must be one line of text with nothing raw in it (no control character: a
//! client's bytes are escaped before they are quoted), whether it accepts the query or not.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // A query is bytes on the wire; the server takes it as text, invalid UTF-8 replaced.
    let query = String::from_utf8_lossy(data);
    let said = match gpuconv::serve::check_query(&query) {
        Ok(summary) => summary,
        Err(message) => message,
    };
    assert!(!said.is_empty());
    assert!(
        !said.chars().any(char::is_control),
        "raw control characters in {said:?}"
    );
});
