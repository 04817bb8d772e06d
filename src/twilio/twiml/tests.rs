//! Tests of the TwiML templates: well-formed output, exact structure, no injection.

use super::*;
use proptest::prelude::*;

/// An element of a parsed document: name, attributes in order, children, and its text (the
/// concatenation of its text nodes).
#[derive(Debug, Clone, PartialEq)]
struct Node {
    name: String,
    attrs: Vec<(String, String)>,
    children: Vec<Node>,
    text: String,
}

/// Parses `xml` strictly (every end tag checked, one root) into its root element.
fn parse(xml: &str) -> Node {
    let mut reader = Reader::from_str(xml);
    reader.config_mut().check_end_names = true;
    let mut stack: Vec<Node> = Vec::new();
    let mut root = None;
    let open = |e: &BytesStart| Node {
        name: String::from_utf8(e.name().as_ref().to_vec()).expect("utf-8 name"),
        attrs: e
            .attributes()
            .with_checks(true)
            .map(|a| {
                let a = a.expect("well-formed attribute");
                (
                    String::from_utf8(a.key.as_ref().to_vec()).expect("utf-8 key"),
                    a.unescape_value().expect("attribute value").into_owned(),
                )
            })
            .collect(),
        children: Vec::new(),
        text: String::new(),
    };
    let mut close = |node: Node, stack: &mut Vec<Node>| match stack.last_mut() {
        Some(parent) => parent.children.push(node),
        None => {
            assert!(root.is_none(), "more than one root element in {xml}");
            root = Some(node);
        }
    };
    loop {
        match reader
            .read_event()
            .unwrap_or_else(|e| panic!("not well-formed ({e}): {xml}"))
        {
            Event::Start(e) => stack.push(open(&e)),
            Event::Empty(e) => {
                let node = open(&e);
                close(node, &mut stack);
            }
            Event::End(_) => {
                let node = stack.pop().expect("balanced");
                close(node, &mut stack);
            }
            Event::Text(t) => {
                let raw = t.decode().expect("utf-8 text");
                let text = quick_xml::escape::unescape(&raw).expect("text escapes");
                match stack.last_mut() {
                    Some(node) => node.text.push_str(&text),
                    None => assert!(text.trim().is_empty(), "text outside the root: {xml}"),
                }
            }
            Event::GeneralRef(r) => {
                let resolved = match r.resolve_char_ref().expect("char ref") {
                    Some(c) => c.to_string(),
                    None => {
                        let name = r.decode().expect("utf-8 ref");
                        quick_xml::escape::resolve_predefined_entity(&name)
                            .unwrap_or_else(|| panic!("unknown entity &{name}; in {xml}"))
                            .to_owned()
                    }
                };
                stack
                    .last_mut()
                    .expect("ref inside an element")
                    .text
                    .push_str(&resolved);
            }
            Event::CData(_) => panic!("no CDATA expected in {xml}"),
            Event::Decl(_) => {}
            Event::Eof => break,
            other => panic!("unexpected {other:?} in {xml}"),
        }
    }
    assert!(stack.is_empty(), "unclosed elements in {xml}");
    root.expect("a root element")
}

fn el(name: &str, attrs: &[(&str, &str)], text: &str, children: Vec<Node>) -> Node {
    Node {
        name: name.to_owned(),
        attrs: attrs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        children,
        text: text.to_owned(),
    }
}

fn response(children: Vec<Node>) -> Node {
    el("Response", &[], "", children)
}

fn join(say_first: Option<&str>, wait_url: Option<&str>, conference: &str, label: &str) -> String {
    join_conference(&ConferenceJoin {
        conference,
        label,
        start_on_enter: true,
        end_on_exit: false,
        wait_url,
        muted: false,
        beep: true,
        status_callback: "https://sb.example/twilio/conference?call=c1&x=\"y\"",
        status_callback_events: "start end join leave hold modify",
        say_first,
        transcription_callback: None,
    })
}

#[test]
fn a_transcribed_leg_starts_its_transcription_before_joining() {
    let url = "https://sb.example/twilio/transcription?callId=c1&speaker=caller-\"1\"";
    let xml = join_conference(&ConferenceJoin {
        conference: "c1--main",
        label: "caller-1",
        start_on_enter: false,
        end_on_exit: false,
        wait_url: None,
        muted: false,
        beep: false,
        status_callback: "https://sb.example/twilio/conference?callId=c1",
        status_callback_events: "start end join leave hold modify",
        say_first: None,
        transcription_callback: Some(url),
    });
    let start = xml.find("<Start>").expect("a <Start>");
    assert!(start < xml.find("<Dial>").expect("a <Dial>"), "{xml}");
    assert!(
        xml.contains(r#"<Transcription statusCallbackUrl="https://sb.example/twilio/transcription?callId=c1&amp;speaker=caller-&quot;1&quot;" track="inbound_track"/>"#),
        "{xml}"
    );
    // Without a callback there is no <Start> at all.
    assert!(!join(None, None, "c1--main", "a").contains("Start"));
}

fn expected_join(
    say_first: Option<&str>,
    wait_url: Option<&str>,
    conference: &str,
    label: &str,
) -> Node {
    let mut attrs = vec![
        ("startConferenceOnEnter", "true"),
        ("endConferenceOnExit", "false"),
    ];
    if let Some(url) = wait_url {
        attrs.push(("waitUrl", url));
    }
    attrs.extend([
        ("waitMethod", "POST"),
        ("muted", "false"),
        ("beep", "true"),
        ("participantLabel", label),
        (
            "statusCallback",
            "https://sb.example/twilio/conference?call=c1&x=\"y\"",
        ),
        ("statusCallbackEvent", "start end join leave hold modify"),
        ("statusCallbackMethod", "POST"),
    ]);
    let dial = el(
        "Dial",
        &[],
        "",
        vec![el("Conference", &attrs, conference, vec![])],
    );
    let mut children = Vec::new();
    if let Some(text) = say_first {
        children.push(el("Say", &[], text, vec![]));
    }
    children.push(dial);
    response(children)
}

#[test]
fn join_conference_renders_every_attribute() {
    let xml = join(
        None,
        Some("https://sb.example/twiml/music?x=1&y=2"),
        "call-1-main",
        "caller",
    );
    assert!(
        xml.starts_with(r#"<?xml version="1.0" encoding="UTF-8"?><Response>"#),
        "{xml}"
    );
    assert!(xml.contains("x=1&amp;y=2"), "values are escaped: {xml}");
    assert_eq!(
        parse(&xml),
        expected_join(
            None,
            Some("https://sb.example/twiml/music?x=1&y=2"),
            "call-1-main",
            "caller"
        )
    );
}

#[test]
fn join_conference_drops_an_absent_wait_url_and_keeps_say_first_only_when_given() {
    let xml = join(None, None, "room", "agent");
    assert!(!xml.contains("waitUrl"), "{xml}");
    assert!(!xml.contains("<Say"), "{xml}");
    assert!(!xml.contains("sb-if"), "{xml}");
    assert_eq!(parse(&xml), expected_join(None, None, "room", "agent"));
    let xml = join(Some("Connecting you now."), None, "room", "agent");
    assert!(!xml.contains("sb-if"), "{xml}");
    assert_eq!(
        parse(&xml),
        expected_join(Some("Connecting you now."), None, "room", "agent")
    );
}

#[test]
fn whisper_gather_renders() {
    let xml = whisper_gather(
        "Caller Ann asks about a refund.",
        "Press 1 to accept, 2 to decline.",
        "https://sb.example/twilio/gather?t=x1",
        7,
        "https://sb.example/twilio/gather?t=x1&none=1",
    );
    assert_eq!(
        parse(&xml),
        response(vec![
            el(
                "Gather",
                &[
                    ("input", "dtmf"),
                    ("numDigits", "1"),
                    ("action", "https://sb.example/twilio/gather?t=x1"),
                    ("method", "POST"),
                    ("timeout", "7"),
                ],
                "",
                vec![
                    el("Say", &[], "Caller Ann asks about a refund.", vec![]),
                    el("Say", &[], "Press 1 to accept, 2 to decline.", vec![]),
                ],
            ),
            el(
                "Redirect",
                &[("method", "POST")],
                "https://sb.example/twilio/gather?t=x1&none=1",
                vec![]
            ),
        ])
    );
}

#[test]
fn the_small_documents_render() {
    assert_eq!(
        parse(&play_music("https://sb.example/hold.mp3")),
        response(vec![el(
            "Play",
            &[("loop", "0")],
            "https://sb.example/hold.mp3",
            vec![]
        )])
    );
    assert_eq!(
        parse(&say_and_hangup("Goodbye.")),
        response(vec![
            el("Say", &[], "Goodbye.", vec![]),
            el("Hangup", &[], "", vec![])
        ])
    );
    assert_eq!(
        parse(&hangup()),
        response(vec![el("Hangup", &[], "", vec![])])
    );
    assert_eq!(
        parse(&reject("busy")),
        response(vec![el("Reject", &[("reason", "busy")], "", vec![])])
    );
    assert_eq!(
        parse(&redirect("https://sb.example/twilio/voice?a=1&b=2")),
        response(vec![el(
            "Redirect",
            &[("method", "POST")],
            "https://sb.example/twilio/voice?a=1&b=2",
            vec![]
        )])
    );
}

const HOSTILE: &[&str] = &[
    "<",
    "&",
    "\"",
    "'",
    "]]>",
    "</Say><Hangup/>",
    "</Say></Gather><Dial><Number>+15550001111</Number></Dial><Gather><Say>",
    "\"/><Hangup/><Say a=\"",
    "<![CDATA[x]]>",
    "&amp; &lt;Hangup/&gt; &#60;",
    "<?xml version=\"1.0\"?>",
    "<!-- c -->",
    "{{briefing}} {{conference}} {{nope}}",
    "Ann O'Neil & \"Bob\" <bob@example.com>",
    "tab\there\nline\r\nend",
];

#[test]
fn hostile_values_cannot_inject_twiml() {
    for hostile in HOSTILE {
        // A summary and a prompt in the whisper.
        let xml = whisper_gather(hostile, hostile, hostile, 5, hostile);
        let tree = parse(&xml);
        assert_eq!(
            tree,
            response(vec![
                el(
                    "Gather",
                    &[
                        ("input", "dtmf"),
                        ("numDigits", "1"),
                        ("action", hostile),
                        ("method", "POST"),
                        ("timeout", "5"),
                    ],
                    "",
                    vec![
                        el("Say", &[], hostile, vec![]),
                        el("Say", &[], hostile, vec![])
                    ],
                ),
                el("Redirect", &[("method", "POST")], hostile, vec![]),
            ]),
            "value {hostile:?} rendered as {xml}"
        );
        // A conference name, a caller name as the label, a wait URL and a greeting.
        let xml = join(Some(hostile), Some(hostile), hostile, hostile);
        assert_eq!(
            parse(&xml),
            expected_join(Some(hostile), Some(hostile), hostile, hostile),
            "value {hostile:?} rendered as {xml}"
        );
        let xml = say_and_hangup(hostile);
        assert_eq!(
            parse(&xml),
            response(vec![
                el("Say", &[], hostile, vec![]),
                el("Hangup", &[], "", vec![])
            ]),
            "value {hostile:?} rendered as {xml}"
        );
        for xml in [play_music(hostile), redirect(hostile), reject(hostile)] {
            let tree = parse(&xml);
            assert_eq!(tree.children.len(), 1, "{xml}");
            assert!(tree.children[0].children.is_empty(), "{xml}");
        }
    }
}

#[test]
fn characters_xml_cannot_carry_are_removed() {
    let xml = say_and_hangup("a\u{0}b\u{1b}c\u{FFFF}d\u{7}");
    assert_eq!(parse(&xml).children[0].text, "abcd");
}

#[test]
fn unknown_and_missing_placeholders_are_errors() {
    assert!(matches!(
        render("<Say>{{a}}</Say>", &[]),
        Err(TwimlError::UnknownPlaceholder(name)) if name == "a"
    ));
    assert!(matches!(
        render("<Say>{{a}}</Say>", &[("a", None)]),
        Err(TwimlError::Missing(name)) if name == "a"
    ));
    assert_eq!(
        render("<Say>{{a?}}</Say>", &[("a", None)]).expect("render"),
        "<Say></Say>"
    );
    assert_eq!(
        render(r#"<P x="{{a?}}" y="pre-{{a?}}"/>"#, &[("a", None)]).expect("render"),
        r#"<P y="pre-"/>"#
    );
    assert!(matches!(render("<a><b></a>", &[]), Err(TwimlError::Xml(_))));
}

/// Characters a value keeps after rendering (those XML can carry).
fn kept(s: &str) -> String {
    s.chars().filter(|c| xml_char(*c)).collect()
}

proptest! {
    #[test]
    fn arbitrary_values_always_render_well_formed_and_round_trip(
        briefing in any::<String>(),
        prompt in "\\PC*",
        url in any::<String>(),
        name in "[<>&\"'\\]\\[!/ a-zA-Z{}?=-]*",
    ) {
        let xml = whisper_gather(&briefing, &prompt, &url, 9, &name);
        let tree = parse(&xml);
        prop_assert_eq!(tree.children.len(), 2);
        let gather = &tree.children[0];
        prop_assert_eq!(gather.name.as_str(), "Gather");
        prop_assert_eq!(gather.attrs[2].1.clone(), kept(&url));
        prop_assert_eq!(gather.children.len(), 2);
        prop_assert_eq!(gather.children[0].text.clone(), kept(&briefing));
        prop_assert_eq!(gather.children[1].text.clone(), kept(&prompt));
        prop_assert_eq!(tree.children[1].text.clone(), kept(&name));

        let xml = join(Some(&briefing), Some(&url), &name, &prompt);
        let kept_briefing = kept(&briefing);
        let kept_url = kept(&url);
        prop_assert_eq!(
            parse(&xml),
            expected_join(Some(&kept_briefing), Some(&kept_url), &kept(&name), &kept(&prompt))
        );
    }
}
