//! Twilio webhook forms and signatures: any body parses as a form without panicking, any
//! header is checked without panicking, our own signature of the form always verifies (with
//! a non-empty auth token; an empty one verifies nothing) and a changed one never does.
#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use switchboard::twilio::signature::{sign, verify, verify_json};

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let (Ok(token), Ok(url), Ok(header)) = (
        <&str>::arbitrary(&mut u),
        <&str>::arbitrary(&mut u),
        <&str>::arbitrary(&mut u),
    ) else {
        return;
    };
    let body = u.take_rest();
    let form: Vec<(String, String)> = form_urlencoded::parse(body).into_owned().collect();
    let _ = verify(token, url, &form, header);
    let _ = verify_json(token, url, body, header);
    let good = sign(token, url, &form);
    if token.is_empty() {
        // Anyone can compute an HMAC with an empty key: an unset token verifies nothing.
        assert!(
            !verify(token, url, &form, &good),
            "an empty token verifies nothing"
        );
        return;
    }
    assert!(
        verify(token, url, &form, &good),
        "our own signature must verify"
    );
    let mut bad = good.clone();
    bad.push('A');
    assert!(
        !verify(token, url, &form, &bad),
        "a changed signature must not verify"
    );
    if !form.is_empty() {
        let mut changed = form.clone();
        changed[0].1.push('x');
        assert!(
            !verify(token, url, &changed, &good),
            "a changed parameter must not verify"
        );
    }
});
