//! TwiML documents: the XML templates of `twiml/`, rendered with quick-xml.
//!
//! A template is a TwiML document with placeholders: `{{name}}` (required) or `{{name?}}`
//! (optional) in text nodes and attribute values. Rendering reads the template with quick-xml
//! and writes every event back through quick-xml's writer with the values substituted into
//! the unescaped text, so every value is escaped on the way out and none can add, close or
//! change an element. Values are never re-scanned for placeholders. An attribute whose value
//! is exactly an optional placeholder that is not given is dropped; an element carrying
//! `sb-if="name"` is kept (without that attribute) only when `name` is given. Characters XML
//! cannot carry (C0 controls other than tab, line feed and carriage return; U+FFFE, U+FFFF)
//! are removed from values; tab, line feed and carriage return in attributes, and carriage
//! return in text, are written as character references so that they survive XML's
//! whitespace normalisation.

use std::borrow::Cow;

use quick_xml::events::attributes::Attribute;
use quick_xml::events::{BytesStart, BytesText, Event};
use quick_xml::name::QName;
use quick_xml::{Reader, Writer};

/// `twiml/join-conference.xml`.
pub const JOIN_CONFERENCE: &str = include_str!("../../twiml/join-conference.xml");
/// `twiml/whisper-gather.xml`.
pub const WHISPER_GATHER: &str = include_str!("../../twiml/whisper-gather.xml");
/// `twiml/music.xml`.
pub const MUSIC: &str = include_str!("../../twiml/music.xml");
/// `twiml/say-hangup.xml`.
pub const SAY_HANGUP: &str = include_str!("../../twiml/say-hangup.xml");
/// `twiml/hangup.xml`.
pub const HANGUP: &str = include_str!("../../twiml/hangup.xml");
/// `twiml/reject.xml`.
pub const REJECT: &str = include_str!("../../twiml/reject.xml");
/// `twiml/redirect.xml`.
pub const REDIRECT: &str = include_str!("../../twiml/redirect.xml");

/// Errors rendering a template (a template and its renderer disagree: a bug, caught by the
/// tests that render every template).
#[derive(Debug, thiserror::Error)]
pub enum TwimlError {
    /// The template is not well-formed XML.
    #[error("the TwiML template is not well-formed")]
    Xml(#[source] quick_xml::Error),
    /// An attribute of the template is malformed.
    #[error("a TwiML template attribute is malformed")]
    Attribute(#[source] quick_xml::events::attributes::AttrError),
    /// The template uses a placeholder the renderer does not provide.
    #[error("the TwiML template uses the unknown placeholder {{{{{0}}}}}")]
    UnknownPlaceholder(String),
    /// A required placeholder has no value.
    #[error("the TwiML template's placeholder {{{{{0}}}}} is required but has no value")]
    Missing(String),
    /// Writing the output failed.
    #[error("could not write the TwiML")]
    Write(#[source] std::io::Error),
}

/// The values of a template's placeholders: `(name, value)`, `None` for an optional value
/// that is not given.
pub type Values<'a> = [(&'a str, Option<&'a str>)];

/// Renders `template` with `values` (see the module docs for the template syntax).
pub fn render(template: &str, values: &Values) -> Result<String, TwimlError> {
    let mut reader = Reader::from_str(template);
    reader.config_mut().trim_text(true);
    let mut writer = Writer::new(Vec::new());
    loop {
        let event = reader.read_event().map_err(TwimlError::Xml)?;
        match event {
            Event::Start(start) => match element(&start, values)? {
                Some(kept) => write(&mut writer, Event::Start(kept))?,
                None => {
                    reader.read_to_end(start.name()).map_err(TwimlError::Xml)?;
                }
            },
            Event::Empty(start) => {
                if let Some(kept) = element(&start, values)? {
                    write(&mut writer, Event::Empty(kept))?;
                }
            }
            Event::Text(text) => {
                let raw = text
                    .decode()
                    .map_err(|e| TwimlError::Xml(quick_xml::Error::Encoding(e)))?;
                let unescaped = quick_xml::escape::unescape(&raw)
                    .map_err(|e| TwimlError::Xml(quick_xml::Error::Escape(e)))?;
                let substituted = substitute(&unescaped, values)?;
                if !substituted.is_empty() {
                    let escaped =
                        quick_xml::escape::escape(substituted.as_str()).replace('\r', "&#13;");
                    write(&mut writer, Event::Text(BytesText::from_escaped(escaped)))?;
                }
            }
            Event::Comment(_) => {}
            Event::Eof => break,
            other => write(&mut writer, other)?,
        }
    }
    // The writer only ever receives UTF-8 (from `&str` input and values).
    Ok(String::from_utf8_lossy(&writer.into_inner()).into_owned())
}

fn write(writer: &mut Writer<Vec<u8>>, event: Event<'_>) -> Result<(), TwimlError> {
    writer.write_event(event).map_err(TwimlError::Write)
}

/// The element with its attributes substituted, or `None` when it is dropped (`sb-if`).
fn element(
    start: &BytesStart<'_>,
    values: &Values,
) -> Result<Option<BytesStart<'static>>, TwimlError> {
    let name = String::from_utf8_lossy(start.name().as_ref()).into_owned();
    let mut out = BytesStart::new(name);
    for attribute in start.attributes() {
        let attribute = attribute.map_err(TwimlError::Attribute)?;
        let key = String::from_utf8_lossy(attribute.key.as_ref()).into_owned();
        let value = attribute.unescape_value().map_err(TwimlError::Xml)?;
        if key == "sb-if" {
            match lookup(value.trim(), values)? {
                Some(_) => continue,
                None => return Ok(None),
            }
        }
        if let Some(name) = whole_optional_placeholder(&value) {
            if lookup(name, values)?.is_none() {
                continue;
            }
        }
        let substituted = substitute(&value, values)?;
        let escaped = quick_xml::escape::escape(substituted.as_str())
            .replace('\t', "&#9;")
            .replace('\n', "&#10;")
            .replace('\r', "&#13;");
        out.push_attribute(Attribute {
            key: QName(key.as_bytes()),
            value: Cow::Owned(escaped.into_bytes()),
        });
    }
    Ok(Some(out))
}

/// `Some(name)` when `value` is exactly `{{name?}}`.
fn whole_optional_placeholder(value: &str) -> Option<&str> {
    value
        .strip_prefix("{{")?
        .strip_suffix("?}}")
        .filter(|name| !name.contains(['{', '}']))
}

/// The value of placeholder `name`: `Ok(None)` when it is not given.
fn lookup<'v>(name: &str, values: &'v Values) -> Result<Option<&'v str>, TwimlError> {
    values
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, v)| *v)
        .ok_or_else(|| TwimlError::UnknownPlaceholder(name.to_owned()))
}

/// Replaces every `{{name}}` / `{{name?}}` in template text `s` in one pass (values are
/// never scanned for placeholders).
fn substitute(s: &str, values: &Values) -> Result<String, TwimlError> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(open) = rest.find("{{") {
        let Some(close) = rest[open + 2..].find("}}") else {
            break;
        };
        out.push_str(&rest[..open]);
        let inner = &rest[open + 2..open + 2 + close];
        let (name, optional) = match inner.strip_suffix('?') {
            Some(name) => (name, true),
            None => (inner, false),
        };
        match lookup(name, values)? {
            Some(value) => out.extend(value.chars().filter(|c| xml_char(*c))),
            None if optional => {}
            None => return Err(TwimlError::Missing(name.to_owned())),
        }
        rest = &rest[open + 2 + close + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Whether XML 1.0 can carry `c` at all (escaped or not).
fn xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r') || (c >= ' ' && c != '\u{FFFE}' && c != '\u{FFFF}')
}

/// Renders one of this module's own templates, whose placeholders its typed renderers
/// always provide (every template is rendered by the tests).
fn render_own(template: &str, values: &Values) -> String {
    render(template, values).unwrap_or_else(|e| {
        panic!("a built-in TwiML template and its renderer disagree (a bug): {e}")
    })
}

fn bool_str(b: bool) -> &'static str {
    if b {
        "true"
    } else {
        "false"
    }
}

/// How a leg joins a conference (`twiml/join-conference.xml`).
#[derive(Debug, Clone)]
pub struct ConferenceJoin<'a> {
    /// The conference's friendly name (the text of `<Conference>`).
    pub conference: &'a str,
    /// `participantLabel`: lets the REST API address this participant by label.
    pub label: &'a str,
    /// `startConferenceOnEnter`: false = wait (with `waitUrl`) until a starter joins.
    pub start_on_enter: bool,
    /// `endConferenceOnExit`: never true on a leg that may be put on hold.
    pub end_on_exit: bool,
    /// `waitUrl` (music while waiting); left out when `None` (Twilio's default music).
    pub wait_url: Option<&'a str>,
    /// `muted`.
    pub muted: bool,
    /// `beep` on enter and exit.
    pub beep: bool,
    /// `statusCallback`: where conference events are POSTed.
    pub status_callback: &'a str,
    /// `statusCallbackEvent`, space-separated (e.g. `"start end join leave hold modify"`).
    pub status_callback_events: &'a str,
    /// A `<Say>` before joining, when given.
    pub say_first: Option<&'a str>,
    /// Where Twilio posts the real-time transcription of this leg's voice
    /// (`<Start><Transcription statusCallbackUrl>`), when it should be transcribed.
    pub transcription_callback: Option<&'a str>,
}

/// `<Response>[<Say>say_first</Say>]<Dial><Conference …>name</Conference></Dial></Response>`.
pub fn join_conference(j: &ConferenceJoin) -> String {
    render_own(
        JOIN_CONFERENCE,
        &[
            ("say_first", j.say_first),
            ("transcription_callback", j.transcription_callback),
            ("conference", Some(j.conference)),
            ("label", Some(j.label)),
            ("start_on_enter", Some(bool_str(j.start_on_enter))),
            ("end_on_exit", Some(bool_str(j.end_on_exit))),
            ("wait_url", j.wait_url),
            ("muted", Some(bool_str(j.muted))),
            ("beep", Some(bool_str(j.beep))),
            ("status_callback", Some(j.status_callback)),
            ("status_callback_events", Some(j.status_callback_events)),
        ],
    )
}

/// Whispers `briefing` and `prompt` while gathering one DTMF digit (POSTed to `action_url`
/// as `Digits`); without a key press within `timeout_secs`, redirects to `no_input_url`.
pub fn whisper_gather(
    briefing: &str,
    prompt: &str,
    action_url: &str,
    timeout_secs: u32,
    no_input_url: &str,
) -> String {
    let timeout = timeout_secs.to_string();
    render_own(
        WHISPER_GATHER,
        &[
            ("briefing", Some(briefing)),
            ("prompt", Some(prompt)),
            ("action_url", Some(action_url)),
            ("timeout_secs", Some(&timeout)),
            ("no_input_url", Some(no_input_url)),
        ],
    )
}

/// `<Play loop="0">url</Play>`: music for a conference's `waitUrl` or a participant's
/// `holdUrl`.
pub fn play_music(url: &str) -> String {
    render_own(MUSIC, &[("url", Some(url))])
}

/// `<Say>text</Say><Hangup/>`.
pub fn say_and_hangup(text: &str) -> String {
    render_own(SAY_HANGUP, &[("text", Some(text))])
}

/// `<Hangup/>`.
pub fn hangup() -> String {
    render_own(HANGUP, &[])
}

/// `<Reject reason="…"/>` (`busy` or `rejected`).
pub fn reject(reason: &str) -> String {
    render_own(REJECT, &[("reason", Some(reason))])
}

/// `<Redirect method="POST">url</Redirect>`.
pub fn redirect(url: &str) -> String {
    render_own(REDIRECT, &[("url", Some(url))])
}

#[cfg(test)]
mod tests;
