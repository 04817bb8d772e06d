//! Benchmark of the offline summariser on a one-hour call: about 9,000 words in some 380
//! transcript chunks, generated deterministically (a fixed linear congruential generator
//! over a fixed vocabulary of call-centre sentences). Prints the median, minimum and
//! maximum of N runs (`cargo bench --bench summary`; `SUMMARY_BENCH_RUNS` sets N, default
//! 31), with and without redaction.

use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use switchboard::model::{Call, CallStatus, Transcript, TranscriptSource};
use switchboard::summary::{offline, redact};

const CALLER: &[&str] = &[
    "I was charged twice for my March invoice and I want the second charge refunded.",
    "My account number is 44718823 and the order reference is ORD-2026-10458.",
    "I already restarted the router three times this morning and it still drops.",
    "This is the third time I am calling about this and it is unacceptable.",
    "Can you tell me when the engineer will arrive?",
    "My email is jo.bloggs@example.com if you need to send anything.",
    "The card ending 1111 was declined at the supermarket yesterday.",
    "I need this fixed today because I work from home.",
];
const AGENT: &[&str] = &[
    "I checked your account and I can see both charges on the statement.",
    "I will raise a refund for the duplicate payment within five working days.",
    "Let me run a line test while you stay on the call.",
    "We'll send an engineer between eight and twelve tomorrow.",
    "I understand, and I am sorry for the trouble this has caused.",
    "I have reset the port on our side, please check the lights now.",
    "I'm going to transfer you to a billing specialist who can waive the fee.",
    "Could you confirm the first line of your address for security?",
];

fn transcript() -> (Call, Vec<Transcript>) {
    let start = Utc.with_ymd_and_hms(2026, 3, 2, 9, 0, 0).unwrap();
    let call = Call {
        call_id: "call-bench".into(),
        caller_id: "caller-bench".into(),
        caller_name: "Jo Bloggs".into(),
        reason: String::new(),
        agent_a_id: Some("alice".into()),
        agent_b_id: None,
        owner_id: Some("alice".into()),
        offered_to: None,
        requested_agent_id: None,
        status: CallStatus::Active,
        main_room: "main".into(),
        hold_room: "hold".into(),
        open_transfer_id: None,
        last_summary_id: None,
        end_reason: None,
        created_at: start,
        end_at: None,
        metadata: serde_json::Value::Null,
        channel: Default::default(),
        caller_number: None,
        org_id: None,
        direction: Default::default(),
        assistant_id: None,
        outbound: None,
        recording: None,
    };
    let mut seed: u64 = 0x5eed;
    let mut next = move |n: usize| {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((seed >> 33) as usize) % n
    };
    let mut chunks = Vec::new();
    let mut words = 0;
    let mut i = 0;
    while words < 9_000 {
        let caller = i % 2 == 0;
        let pool = if caller { CALLER } else { AGENT };
        let text = format!("{} {}", pool[next(pool.len())], pool[next(pool.len())]);
        words += text.split_whitespace().count();
        chunks.push(Transcript {
            transcript_id: format!("tx-{i:05}"),
            call_id: call.call_id.clone(),
            speaker: if caller {
                "caller".into()
            } else {
                "alice".into()
            },
            text,
            source: TranscriptSource::Livekit,
            created_at: start + chrono::Duration::seconds(i as i64 * 6),
        });
        i += 1;
    }
    (call, chunks)
}

fn measure(runs: usize, mut f: impl FnMut()) -> Vec<Duration> {
    let mut times: Vec<Duration> = (0..runs)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .collect();
    times.sort();
    times
}

fn report(name: &str, times: &[Duration]) {
    println!(
        "{name:<32} median {:>9.3} ms   min {:>9.3} ms   max {:>9.3} ms   ({} runs)",
        times[times.len() / 2].as_secs_f64() * 1e3,
        times[0].as_secs_f64() * 1e3,
        times[times.len() - 1].as_secs_f64() * 1e3,
        times.len()
    );
}

fn main() {
    let runs: usize = std::env::var("SUMMARY_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(31);
    let (call, chunks) = transcript();
    let words: usize = chunks
        .iter()
        .map(|c| c.text.split_whitespace().count())
        .sum();
    println!(
        "offline summariser, one-hour call: {} chunks, {words} words",
        chunks.len()
    );
    let mut out = None;
    let times = measure(runs, || out = Some(offline::summarize(&call, &chunks)));
    report("summarize", &times);
    let times = measure(runs, || {
        let masked: Vec<Transcript> = chunks
            .iter()
            .map(|t| Transcript {
                text: redact::redact(&t.text),
                ..t.clone()
            })
            .collect();
        out = Some(offline::summarize(&call, &masked));
    });
    report("redact + summarize", &times);
    let d = out.expect("ran");
    println!(
        "summaryText {} chars, whisperText {} words, script {} chars",
        d.summary_text.chars().count(),
        d.whisper_text.split_whitespace().count(),
        d.script.chars().count()
    );
}
