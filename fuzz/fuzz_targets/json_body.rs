//! JSON request bodies: any bytes, with or without the JSON content type, are read into the
//! request types or refused with a 400 naming what is wrong; never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard::http::{self, read_object, ApiError};

fn check<T: serde::de::DeserializeOwned>(ct: Option<String>, data: &[u8]) {
    if let Err(e) = read_object::<T>(ct, data) {
        assert!(
            matches!(e, ApiError::BadRequest { .. }),
            "a body is refused with a 400: {e:?}"
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let (ct, body) = match data.split_first() {
        Some((0, rest)) => (None, rest),
        Some((1, rest)) => (Some("text/plain".to_string()), rest),
        _ => (Some("application/json; charset=utf-8".to_string()), data),
    };
    check::<http::calls::NewCall>(ct.clone(), body);
    check::<http::calls::CallPatch>(ct.clone(), body);
    check::<http::calls::ActingAgent>(ct.clone(), body);
    check::<http::transfers::InitiateTransfer>(ct.clone(), body);
    check::<http::agents::NewAgent>(ct.clone(), body);
    check::<http::agents::AgentPatch>(ct, body);
});
