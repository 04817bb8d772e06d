//! The offline summariser: extractive, deterministic and fast (linear in the transcript). It
//! only ever quotes or classifies what was said; with no transcript it says there is none.

use crate::model::{Call, Sentiment, Transcript, Urgency};

use super::Draft;

/// The `model` recorded on offline summaries.
pub const OFFLINE_MODEL: &str = "offline-extractive";

/// Longest excerpt taken from one sentence.
const EXCERPT_CHARS: usize = 160;
/// Longest `summaryText`.
pub const SUMMARY_MAX_CHARS: usize = 900;
/// Longest `whisperText` in words: about 20 seconds of speech at 150 words a minute.
pub const WHISPER_MAX_WORDS: usize = 50;
/// Longest `script`.
pub const SCRIPT_MAX_CHARS: usize = 700;
/// Items kept per list (details, tried, promised).
const LIST_MAX: usize = 3;

const DETAIL_CUES: &[&str] = &[
    "my name is",
    "name's",
    "account",
    "order",
    "reference",
    "invoice",
    "policy",
    "postcode",
    "zip code",
    "date of birth",
    "address",
    "card ending",
    "customer number",
    "membership",
    "serial",
    "model",
    "router",
    "[card]",
    "[email]",
    "[phone]",
    "[national-id]",
];
const TRIED_CUES: &[&str] = &[
    "tried",
    "restarted",
    "rebooted",
    "reset",
    "reinstalled",
    "i checked",
    "i've checked",
    "i have checked",
    "we checked",
    "unplugged",
    "turned it off",
    "cleared",
    "already",
    "looked into",
    "blocked",
    "updated",
    "i ran",
    "we ran",
];
const PROMISE_CUES: &[&str] = &[
    "i will",
    "i'll",
    "we will",
    "we'll",
    "promise",
    "guarantee",
    "you will get",
    "you'll get",
    "you will receive",
    "you'll receive",
    "call you back",
    "within",
];
const NEXT_CUES: &[&str] = &[
    "transfer",
    "specialist",
    "colleague",
    "escalate",
    "needs to",
    "need to",
    "next step",
    "can you",
    "could you",
    "i want",
    "i need",
];
const ANGRY_CUES: &[&str] = &[
    "unacceptable",
    "ridiculous",
    "furious",
    "angry",
    "disgusting",
    "fed up",
    "third time",
    "useless",
    "complaint",
    "sick of",
    "outrageous",
    "lawyer",
];
const NEGATIVE_CUES: &[&str] = &[
    "frustrat",
    "upset",
    "worried",
    "disappointed",
    "not happy",
    "annoyed",
    "stressed",
    "confused",
    "problem",
    "still not",
    "doesn't work",
    "does not work",
];
const POSITIVE_CUES: &[&str] = &[
    "thank you so much",
    "thanks so much",
    "great",
    "perfect",
    "brilliant",
    "appreciate",
    "happy with",
    "lovely",
];
const HIGH_URGENCY_CUES: &[&str] = &[
    "urgent",
    "immediately",
    "right now",
    "asap",
    "emergency",
    "stolen",
    "fraud",
    "lost my card",
    "lost card",
    "can't access",
    "cannot access",
    "locked out",
    "no internet",
    "outage",
    "down for",
    "today",
    "tonight",
];
const LOW_URGENCY_CUES: &[&str] = &[
    "no rush",
    "whenever",
    "just a question",
    "just wondering",
    "not urgent",
    "when you get a chance",
];

fn has_any(haystack_lower: &str, cues: &[&str]) -> bool {
    cues.iter().any(|c| haystack_lower.contains(c))
}

fn cut_chars(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let cut: String = s.chars().take(max.saturating_sub(1)).collect();
    let cut = match cut.rfind(' ') {
        Some(i) if i > max / 2 => cut[..i].to_string(),
        _ => cut,
    };
    format!("{}…", cut.trim_end_matches([',', ';', ':', ' ']))
}

fn cut_words(s: &str, max: usize) -> String {
    let words: Vec<&str> = s.split_whitespace().collect();
    if words.len() <= max {
        return words.join(" ");
    }
    let mut out = words[..max].join(" ");
    out = out.trim_end_matches([',', ';', ':', '.']).to_string();
    out.push('.');
    out
}

/// Splits a chunk into sentences (whitespace normalised): a sentence ends at `.`, `?` or `!`
/// followed by a space or the end, so `49.99` and `ann@example.com` stay whole.
fn sentences(text: &str) -> Vec<String> {
    let words: Vec<&str> = text.split_whitespace().collect();
    let mut out = Vec::new();
    let mut current: Vec<&str> = Vec::new();
    for w in words {
        current.push(w);
        if w.ends_with(['.', '?', '!']) {
            out.push(current.join(" "));
            current.clear();
        }
    }
    if !current.is_empty() {
        out.push(current.join(" "));
    }
    out.retain(|s| s.chars().any(char::is_alphanumeric));
    out
}

/// One sentence, with who said it.
struct Line {
    caller: bool,
    text: String,
    lower: String,
}

fn push_unique(list: &mut Vec<String>, s: &str) {
    let s = cut_chars(s, EXCERPT_CHARS);
    if list.len() < LIST_MAX && !list.contains(&s) {
        list.push(s);
    }
}

fn without_period(s: &str) -> &str {
    s.trim().trim_end_matches(['.', '!'])
}

/// Summarises a call from its transcript without any model.
pub fn summarize(call: &Call, transcripts: &[Transcript]) -> Draft {
    let who = if call.caller_name.trim().is_empty() {
        "The caller".to_string()
    } else {
        format!("Caller {}", call.caller_name.trim())
    };
    let name = if call.caller_name.trim().is_empty() {
        "the caller".to_string()
    } else {
        call.caller_name.trim().to_string()
    };
    let given_reason = call.reason.trim().trim_end_matches('.').to_string();
    let lines: Vec<Line> = transcripts
        .iter()
        .flat_map(|t| {
            let caller = t.speaker == "caller" || t.speaker == call.caller_id;
            sentences(&t.text).into_iter().map(move |text| Line {
                caller,
                lower: text.to_lowercase(),
                text,
            })
        })
        .collect();

    if lines.is_empty() {
        let opening = if given_reason.is_empty() {
            format!("{who} gave no reason.")
        } else {
            format!("{who} called about: {given_reason}.")
        };
        return Draft {
            summary_text: format!("[offline summary] {opening} No transcript yet."),
            reason: given_reason.clone(),
            next_step: "Not stated: there is no transcript yet.".into(),
            whisper_text: format!("Offline summary. {opening} There is no transcript yet."),
            script: format!(
                "I have {name} on the line. {opening} There is no transcript yet, so please \
                 confirm the details with them."
            ),
            ..Draft::default()
        };
    }

    // The caller's own words, in order.
    let caller_lines: Vec<&Line> = lines.iter().filter(|l| l.caller).collect();
    let caller_points: Vec<String> = transcripts
        .iter()
        .filter(|t| t.speaker == "caller" || t.speaker == call.caller_id)
        .filter_map(|t| sentences(&t.text).into_iter().next())
        .map(|s| cut_chars(&s, EXCERPT_CHARS))
        .take(3)
        .collect();
    let reason = if !given_reason.is_empty() {
        given_reason.clone()
    } else {
        caller_lines
            .iter()
            .find(|l| has_any(&l.lower, NEXT_CUES) || has_any(&l.lower, NEGATIVE_CUES))
            .or(caller_lines.first())
            .map(|l| without_period(&cut_chars(&l.text, EXCERPT_CHARS)).to_string())
            .unwrap_or_default()
    };

    let mut details = Vec::new();
    let mut tried = Vec::new();
    let mut promised = Vec::new();
    let mut angry = 0usize;
    let mut negative = 0usize;
    let mut positive = 0usize;
    let mut high = false;
    let mut low = false;
    for l in &lines {
        if l.caller && has_any(&l.lower, DETAIL_CUES) {
            push_unique(&mut details, &l.text);
        }
        if has_any(&l.lower, TRIED_CUES) && !has_any(&l.lower, PROMISE_CUES) {
            push_unique(&mut tried, &l.text);
        }
        if !l.caller && has_any(&l.lower, PROMISE_CUES) {
            push_unique(&mut promised, &l.text);
        }
        if l.caller {
            angry += usize::from(has_any(&l.lower, ANGRY_CUES));
            angry += usize::from(l.text.contains("!!"));
            negative += usize::from(has_any(&l.lower, NEGATIVE_CUES));
            positive += usize::from(has_any(&l.lower, POSITIVE_CUES));
            high |= has_any(&l.lower, HIGH_URGENCY_CUES);
            low |= has_any(&l.lower, LOW_URGENCY_CUES);
        }
    }
    let sentiment = if angry > 0 {
        Sentiment::Angry
    } else if negative > positive {
        Sentiment::Negative
    } else if positive > 0 {
        Sentiment::Positive
    } else {
        Sentiment::Neutral
    };
    let urgency = if high || angry > 1 {
        Urgency::High
    } else if low {
        Urgency::Low
    } else {
        Urgency::Normal
    };
    // The open question: the caller's last question, else the last line that names a next
    // step, else the last thing said.
    let next_step = caller_lines
        .iter()
        .rev()
        .find(|l| l.text.ends_with('?'))
        .copied()
        .or_else(|| lines.iter().rev().find(|l| has_any(&l.lower, NEXT_CUES)))
        .or(lines.last())
        .map(|l| cut_chars(&l.text, EXCERPT_CHARS))
        .unwrap_or_default();

    let mut parts = vec!["[offline summary]".to_string()];
    if given_reason.is_empty() {
        parts.push(format!("{who} gave no reason."));
    } else {
        parts.push(format!("{who} called about: {given_reason}."));
    }
    if !caller_points.is_empty() {
        parts.push(format!("Caller said: {}", caller_points.join(" / ")));
    }
    if !tried.is_empty() {
        parts.push(format!("Tried: {}", tried.join(" / ")));
    }
    if !promised.is_empty() {
        parts.push(format!("Promised: {}", promised.join(" / ")));
    }
    parts.push(format!("Next: {next_step}"));
    parts.push(format!("{} transcript chunk(s).", transcripts.len()));
    let summary_text = cut_chars(&parts.join(" "), SUMMARY_MAX_CHARS);

    let mut spoken = vec![format!(
        "Offline summary. {who}, about {}.",
        without_period(&reason)
    )];
    if let Some(t) = tried.first() {
        spoken.push(format!("Already tried: {}", without_period(t)));
    }
    if let Some(p) = promised.first() {
        spoken.push(format!("Promised: {}", without_period(p)));
    }
    match sentiment {
        Sentiment::Angry => spoken.push("The caller is angry".into()),
        Sentiment::Negative => spoken.push("The caller is unhappy".into()),
        _ => {}
    }
    spoken.push(format!("Open point: {}", without_period(&next_step)));
    let whisper_text = cut_words(&format!("{}.", spoken.join(". ")), WHISPER_MAX_WORDS);

    let mut script = vec![format!(
        "Hi, I have {name} on hold, calling about {}.",
        without_period(&reason)
    )];
    if !details.is_empty() {
        script.push(format!("Details they gave: {}", details.join(" ")));
    }
    if !tried.is_empty() {
        script.push(format!("We already tried: {}", tried.join(" ")));
    }
    if !promised.is_empty() {
        script.push(format!("I promised: {}", promised.join(" ")));
    }
    script.push(format!("Still open: {next_step}"));
    let script = cut_chars(&script.join(" "), SCRIPT_MAX_CHARS);

    Draft {
        summary_text,
        reason,
        customer_details: details,
        tried,
        promised,
        next_step,
        sentiment,
        urgency,
        whisper_text,
        script,
        ..Draft::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{new_id, CallStatus, TranscriptSource};
    use chrono::Utc;

    pub(crate) fn call(name: &str, reason: &str) -> Call {
        Call {
            call_id: "call-1".into(),
            caller_id: "caller-1".into(),
            caller_name: name.into(),
            reason: reason.into(),
            agent_a_id: None,
            agent_b_id: None,
            owner_id: None,
            offered_to: None,
            requested_agent_id: None,
            status: CallStatus::Active,
            main_room: "m".into(),
            hold_room: "h".into(),
            open_transfer_id: None,
            last_summary_id: None,
            end_reason: None,
            created_at: Utc::now(),
            end_at: None,
            metadata: serde_json::Value::Null,
            channel: Default::default(),
            caller_number: None,
            org_id: None,
            direction: Default::default(),
            assistant_id: None,
            outbound: None,
            recording: None,
        }
    }

    fn chunk(speaker: &str, text: &str) -> Transcript {
        Transcript {
            transcript_id: new_id("tx"),
            call_id: "call-1".into(),
            speaker: speaker.into(),
            text: text.into(),
            source: TranscriptSource::Manual,
            created_at: Utc::now(),
        }
    }

    #[test]
    fn without_transcript_it_says_so_and_invents_nothing() {
        let d = summarize(&call("Ann", ""), &[]);
        assert_eq!(
            d.summary_text,
            "[offline summary] Caller Ann gave no reason. No transcript yet."
        );
        assert!(d.customer_details.is_empty() && d.tried.is_empty() && d.promised.is_empty());
        assert_eq!(d.sentiment, Sentiment::Neutral);
        assert!(d.whisper_text.contains("no transcript"));
    }

    #[test]
    fn extracts_caller_points_attempts_promises_and_the_open_question() {
        let t = vec![
            chunk("caller", "My invoice is wrong. It shows two charges."),
            chunk("agent-a", "I checked your account and I see both charges."),
            chunk(
                "caller",
                "I was charged twice in March! This is unacceptable.",
            ),
            chunk("agent-a", "I will refund the second charge within 5 days."),
            chunk("caller", "Can you also waive the late fee?"),
        ];
        let d = summarize(&call("Ann", "billing"), &t);
        assert!(d
            .summary_text
            .starts_with("[offline summary] Caller Ann called about: billing."));
        assert!(d.summary_text.contains(
            "Caller said: My invoice is wrong. / I was charged twice in March! / Can you also waive the late fee?"
        ));
        assert_eq!(d.reason, "billing");
        assert_eq!(d.tried, ["I checked your account and I see both charges."]);
        assert_eq!(
            d.promised,
            ["I will refund the second charge within 5 days."]
        );
        assert_eq!(d.next_step, "Can you also waive the late fee?");
        assert_eq!(d.sentiment, Sentiment::Angry);
        assert!(d.whisper_text.split_whitespace().count() <= WHISPER_MAX_WORDS);
        assert!(d
            .script
            .starts_with("Hi, I have Ann on hold, calling about billing."));
    }

    #[test]
    fn long_text_is_cut_to_the_limits() {
        let long = "a".repeat(1000);
        let d = summarize(&call("", ""), &[chunk("caller", &long)]);
        assert!(d.summary_text.chars().count() <= SUMMARY_MAX_CHARS);
        assert!(d.summary_text.contains('…'));
        assert!(d.whisper_text.split_whitespace().count() <= WHISPER_MAX_WORDS);
        assert!(d.script.chars().count() <= SCRIPT_MAX_CHARS);
    }

    #[test]
    fn sentences_end_at_punctuation_before_a_space_only() {
        assert_eq!(
            sentences("It was 49.99,  twice! Email ann@example.com. Why?no"),
            ["It was 49.99, twice!", "Email ann@example.com.", "Why?no"]
        );
    }

    #[test]
    fn it_is_deterministic() {
        let t = vec![
            chunk("caller", "My router keeps dropping. I restarted it twice."),
            chunk("agent-a", "We'll send an engineer tomorrow."),
        ];
        let a = summarize(&call("Bo", ""), &t);
        let b = summarize(&call("Bo", ""), &t);
        assert_eq!(a, b);
        assert_eq!(a.reason, "My router keeps dropping");
    }
}
