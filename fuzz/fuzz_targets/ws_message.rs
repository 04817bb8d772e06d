//! WebSocket client messages and `?since=`: any text gets a message or a clear error, never
//! a panic; an error always has a code.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard::ws::{parse_client_message, Since};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Err(e) = parse_client_message(&text) {
        assert!(!e.code.is_empty() && !e.message.is_empty());
    }
    if let Err(e) = Since::parse(&text) {
        assert!(!e.code.is_empty());
    }
});
