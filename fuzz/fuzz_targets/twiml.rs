//! TwiML rendered with arbitrary values: always well-formed XML with one `<Response>` root,
//! and no value can add an element (every value is escaped).
#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use quick_xml::events::Event;
use switchboard::twilio::twiml;

/// Element names in a document, in order; panics if it is not well-formed.
fn elements(xml: &str) -> Vec<String> {
    let mut reader = quick_xml::Reader::from_str(xml);
    let mut names = vec![];
    let mut depth = 0usize;
    loop {
        match reader.read_event() {
            Ok(Event::Start(e)) => {
                depth += 1;
                names.push(String::from_utf8_lossy(e.name().as_ref()).into_owned());
                for a in e.attributes() {
                    let a = a.unwrap_or_else(|err| panic!("bad attribute ({err}) in {xml}"));
                    a.unescape_value()
                        .unwrap_or_else(|err| panic!("bad attribute value ({err}) in {xml}"));
                }
            }
            Ok(Event::Empty(e)) => {
                names.push(String::from_utf8_lossy(e.name().as_ref()).into_owned());
                for a in e.attributes() {
                    let a = a.unwrap_or_else(|err| panic!("bad attribute ({err}) in {xml}"));
                    a.unescape_value()
                        .unwrap_or_else(|err| panic!("bad attribute value ({err}) in {xml}"));
                }
            }
            Ok(Event::End(_)) => depth -= 1,
            Ok(Event::Text(t)) => {
                t.decode()
                    .unwrap_or_else(|err| panic!("bad text ({err}) in {xml}"));
            }
            Ok(Event::Eof) => break,
            Ok(_) => {}
            Err(err) => panic!("not well-formed ({err}): {xml}"),
        }
    }
    assert_eq!(depth, 0, "unbalanced: {xml}");
    assert_eq!(names.first().map(String::as_str), Some("Response"), "{xml}");
    names
}

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let mut s = || <&str>::arbitrary(&mut u).unwrap_or("");
    let (a, b, c, d, e) = (s(), s(), s(), s(), s());
    let flags = u.arbitrary::<u8>().unwrap_or(0);
    let join = twiml::join_conference(&twiml::ConferenceJoin {
        conference: a,
        label: b,
        start_on_enter: flags & 1 != 0,
        end_on_exit: flags & 2 != 0,
        wait_url: (flags & 4 != 0).then_some(c),
        muted: flags & 8 != 0,
        beep: flags & 16 != 0,
        status_callback: d,
        status_callback_events: "start end join leave hold",
        say_first: (flags & 32 != 0).then_some(e),
        transcription_callback: (flags & 64 != 0).then_some(d),
    });
    let with_say = flags & 32 != 0;
    let mut expected = vec!["Response"];
    if flags & 64 != 0 {
        expected.extend(["Start", "Transcription"]);
    }
    if with_say {
        expected.push("Say");
    }
    expected.extend(["Dial", "Conference"]);
    assert_eq!(elements(&join), expected, "{join}");
    let gather = twiml::whisper_gather(a, b, c, u32::from(flags), d);
    let names = elements(&gather);
    assert!(names.contains(&"Gather".to_string()), "{gather}");
    assert_eq!(elements(&twiml::play_music(a)), ["Response", "Play"]);
    assert_eq!(
        elements(&twiml::say_and_hangup(b)),
        ["Response", "Say", "Hangup"]
    );
    assert_eq!(elements(&twiml::reject(c)), ["Response", "Reject"]);
    assert_eq!(elements(&twiml::redirect(d)), ["Response", "Redirect"]);
    let _ = twiml::render(e, &[("name", Some(a)), ("other", None)]);
});
