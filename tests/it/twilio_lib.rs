//! Cross-checks of the Twilio library (`switchboard::twilio`) with independent peers:
//! Twilio's official Python library (signatures, Access Tokens) and Twilio's published
//! OpenAPI description of the 2010-04-01 API served by `prism mock`, which validates every
//! REST request the client can send.

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use switchboard::secret::Secret;
use switchboard::twilio::rest::{
    CallEndStatus, CreateCall, CreateParticipant, RetryPolicy, TwilioAuth, TwilioClient,
    TwilioError, UpdateCall, UpdateParticipant,
};
use switchboard::twilio::signature::{sign, verify, verify_json};
use switchboard::twilio::token::{voice_access_token, VoiceTokenSpec};
use switchboard::twilio::twiml;

/// Runs `tests/py/twilio_check.py COMMAND` with `input` as JSON on stdin; its JSON answer.
fn twilio_check(command: &str, input: &Value) -> Value {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/py/twilio_check.py");
    let mut child = Command::new("python3")
        .arg(script)
        .arg(command)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "python3 is required for the Twilio cross-check and could not be run ({e}); \
                 install Python 3 and `python3 -m pip install -r tests/py/requirements.txt`"
            )
        });
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.to_string().as_bytes())
        .expect("write stdin");
    let out = child.wait_with_output().expect("python3 output");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(
        out.status.code(),
        Some(2),
        "tests/py/twilio_check.py could not run (missing the twilio package? run \
         `python3 -m pip install -r tests/py/requirements.txt`): {stderr}"
    );
    assert!(
        out.status.success(),
        "tests/py/twilio_check.py {command} failed: {stderr}"
    );
    serde_json::from_slice(&out.stdout).expect("twilio_check.py prints JSON")
}

fn params(p: &[(&str, &str)]) -> Vec<(String, String)> {
    p.iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

#[test]
fn twilios_python_library_agrees_with_our_signatures() {
    let token = "f2b9c1e7d5a34c0e9b8a7f6e5d4c3b2a";
    let cases: Vec<(String, Vec<(String, String)>)> = vec![
        // Twilio's documented example.
        (
            "https://mycompany.com/myapp.php?foo=1&bar=2".into(),
            params(&[
                ("CallSid", "CA1234567890ABCDE"),
                ("Caller", "+12349013030"),
                ("Digits", "1234"),
                ("From", "+12349013030"),
                ("To", "+18005551212"),
            ]),
        ),
        // A status callback behind ngrok, with a query and a default port.
        (
            "https://abc123.ngrok.app:443/twilio/status?callId=call-7&leg=b".into(),
            params(&[
                ("CallSid", "CA0123456789abcdef0123456789abcdef"),
                ("CallStatus", "ringing"),
                ("SequenceNumber", "2"),
                ("Timestamp", "Mon, 23 Nov 2026 21:55:00 +0000"),
            ]),
        ),
        (
            "http://localhost:8080/twilio/voice".into(),
            params(&[("From", "+15550001111"), ("To", "+15550002222")]),
        ),
        (
            "http://example.com/twilio/gather".into(),
            params(&[("Digits", "1"), ("Empty", "")]),
        ),
        // Unicode names and values, reserved characters.
        (
            "https://example.com/twilio/conference?name=Zo%C3%AB".into(),
            params(&[
                ("FriendlyName", "Zoë & Björk — 東京 ☎"),
                ("ParticipantLabel", "caller \"A\" <1>"),
                ("Ünïcode", "ok"),
                ("StatusCallbackEvent", "participant-join"),
            ]),
        ),
        // Repeated names, given out of order.
        (
            "https://example.com/twilio/status".into(),
            params(&[
                ("StatusCallbackEvent", "ringing"),
                ("AccountSid", "AC0123456789abcdef0123456789abcdef"),
                ("StatusCallbackEvent", "answered"),
                ("StatusCallbackEvent", "completed"),
            ]),
        ),
        ("https://example.com/no-params".into(), Vec::new()),
    ];
    let body = br#"{"ConferenceSid":"CF00112233445566778899aabbccddeeff","StatusCallbackEvent":"participant-join"}"#;
    let body_hash = {
        use sha2::Digest;
        sha2::Sha256::digest(body)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };
    let json_url = format!("https://example.com/twilio/conference?bodySHA256={body_hash}");
    let json_sig = sign(token, &json_url, &[]);
    assert!(verify_json(token, &json_url, body, &json_sig));

    let mut input_cases: Vec<Value> = cases
        .iter()
        .map(|(url, p)| json!({"url": url, "params": p, "ours": sign(token, url, p)}))
        .collect();
    input_cases.push(json!({
        "url": json_url,
        "body": std::str::from_utf8(body).expect("utf-8"),
        "ours": json_sig,
    }));
    // A tampered case, to show that Python's validate can say no.
    let (url0, p0) = &cases[0];
    let mut tampered = p0.clone();
    tampered[2].1 = "9999".into();
    input_cases.push(json!({"url": url0, "params": tampered, "ours": sign(token, url0, p0)}));

    let answers = twilio_check("signatures", &json!({"token": token, "cases": input_cases}));
    let answers = answers.as_array().expect("a list");
    assert_eq!(answers.len(), cases.len() + 2);
    for (i, (url, p)) in cases.iter().enumerate() {
        let python = answers[i]["python"].as_str().expect("signature");
        assert_eq!(python, sign(token, url, p), "case {i}: {url}");
        assert!(
            verify(token, url, p, python),
            "case {i}: we refuse Python's signature"
        );
        assert_eq!(
            answers[i]["accepts_ours"], true,
            "case {i}: Python refuses ours"
        );
    }
    let json_answer = &answers[cases.len()];
    assert_eq!(
        json_answer["accepts_ours"], true,
        "Python refuses our JSON signature"
    );
    assert!(verify_json(
        token,
        &json_url,
        body,
        json_answer["python"].as_str().expect("signature")
    ));
    assert_eq!(
        answers[cases.len() + 1]["accepts_ours"],
        false,
        "Python accepted a signature for other params"
    );

    // Ports: Python signs the URL one way, we verify it the other way.
    let with_port = "https://example.com:443/twilio/voice?x=1";
    let without_port = "https://example.com/twilio/voice?x=1";
    let p = params(&[("CallSid", "CA1"), ("From", "+1555")]);
    let answers = twilio_check(
        "signatures",
        &json!({"token": token, "cases": [
            {"url": with_port, "params": p, "ours": sign(token, without_port, &p)},
            {"url": without_port, "params": p, "ours": sign(token, with_port, &p)},
        ]}),
    );
    assert!(verify(
        token,
        without_port,
        &p,
        answers[0]["python"].as_str().expect("sig")
    ));
    assert!(verify(
        token,
        with_port,
        &p,
        answers[1]["python"].as_str().expect("sig")
    ));
    assert_eq!(answers[0]["accepts_ours"], true);
    assert_eq!(answers[1]["accepts_ours"], true);
}

#[test]
fn twilios_python_library_mints_the_same_access_token() {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let secret = Secret::new("api-key-secret-0123456789abcdef");
    let app = "AP0123456789abcdef0123456789abcdef";
    let with_params = BTreeMap::from([
        ("callId".to_owned(), "call-7".to_owned()),
        ("conference".to_owned(), "call-7-main".to_owned()),
    ]);
    for (outgoing_params, incoming_allow, app) in [
        (with_params, true, Some(app)),
        (BTreeMap::new(), false, Some(app)),
        (BTreeMap::new(), true, None),
    ] {
        let ours = voice_access_token(&VoiceTokenSpec {
            account_sid: "AC0123456789abcdef0123456789abcdef",
            api_key_sid: "SK0123456789abcdef0123456789abcdef",
            api_key_secret: &secret,
            identity: "agent-7",
            outgoing_application_sid: app,
            outgoing_params: outgoing_params.clone(),
            incoming_allow,
            ttl_secs: 3600,
            now_secs: now,
        })
        .expect("mint");
        let answer = twilio_check(
            "token",
            &json!({
                "account_sid": "AC0123456789abcdef0123456789abcdef",
                "key_sid": "SK0123456789abcdef0123456789abcdef",
                "secret": secret.expose(),
                "identity": "agent-7",
                "app_sid": app,
                "params": outgoing_params,
                "incoming_allow": incoming_allow,
                "ttl": 3600,
                "now": now,
                "ours": ours,
            }),
        );
        assert_eq!(answer["ours"]["header"], answer["python"]["header"]);
        assert_eq!(answer["ours"]["payload"], answer["python"]["payload"]);
        assert_eq!(answer["ours"]["header"]["cty"], "twilio-fpa;v=1");
        assert_eq!(answer["ours"]["payload"]["exp"], json!(now + 3600));
    }
}

// --- Twilio's OpenAPI description, served and enforced by prism ------------------------------

const AC: &str = "AC0123456789abcdef0123456789abcdef";
const CA: &str = "CAfedcba9876543210fedcba9876543210";
const CA2: &str = "CA00000000000000000000000000000abc";
const CF: &str = "CF00112233445566778899aabbccddeeff";

/// The prism mock of Twilio's API that scripts/test.sh starts.
fn openapi_mock() -> String {
    std::env::var("SWITCHBOARD_TEST_TWILIO_OPENAPI_MOCK").unwrap_or_else(|_| {
        panic!(
            "SWITCHBOARD_TEST_TWILIO_OPENAPI_MOCK is not set: run the tests with scripts/test.sh, \
             which installs @twilio/cli-core and @stoplight/prism-cli (npm ci --prefix tests/node) \
             and starts `prism mock` on Twilio's OpenAPI description"
        )
    })
}

fn mock_client(base: &str) -> TwilioClient {
    TwilioClient::new(
        base,
        TwilioAuth::AuthToken {
            account_sid: AC.into(),
            auth_token: Secret::new("auth-token-for-the-mock"),
        },
        RetryPolicy {
            max_retries: 0,
            timeout: Duration::from_secs(20),
            ..RetryPolicy::default()
        },
    )
    .expect("client")
}

fn ok<T>(what: &str, result: Result<T, TwilioError>) -> T {
    result.unwrap_or_else(|e| panic!("prism refused {what}: {e} ({e:?})"))
}

#[tokio::test]
async fn every_request_the_client_sends_is_valid_for_twilios_openapi() {
    let base = openapi_mock();
    let client = mock_client(&base);
    let events: Vec<String> = ["initiated", "ringing", "answered", "completed"]
        .map(String::from)
        .to_vec();

    let call = ok(
        "create call with Url",
        client
            .create_call(&CreateCall {
                to: "+15550002222".into(),
                from: "+15550001111".into(),
                url: Some("https://sb.example/twilio/voice?leg=b".into()),
                timeout_secs: Some(25),
                ..CreateCall::default()
            })
            .await,
    );
    assert!(call.sid.starts_with("CA"), "{call:?}");
    ok(
        "create call with Twiml and status callbacks",
        client
            .create_call(&CreateCall {
                to: "client:agent-7".into(),
                from: "+15550001111".into(),
                twiml: Some(twiml::whisper_gather(
                    "Caller <Ann> & \"Bob\"",
                    "Press 1 to accept, 2 to decline.",
                    "https://sb.example/twilio/gather?t=x1",
                    8,
                    "https://sb.example/twilio/gather?t=x1&none=1",
                )),
                status_callback: Some("https://sb.example/twilio/status".into()),
                status_callback_event: events.clone(),
                timeout_secs: Some(20),
                caller_id: Some("+15550001111".into()),
                machine_detection: None,
                url: None,
            })
            .await,
    );
    ok(
        "update call (redirect to Url)",
        client
            .update_call(
                CA,
                &UpdateCall {
                    url: Some("https://sb.example/twilio/voice?next=1".into()),
                    ..UpdateCall::default()
                },
            )
            .await,
    );
    ok(
        "update call (redirect to Twiml)",
        client
            .update_call(
                CA,
                &UpdateCall {
                    twiml: Some(twiml::redirect("https://sb.example/twilio/voice")),
                    ..UpdateCall::default()
                },
            )
            .await,
    );
    for status in [CallEndStatus::Completed, CallEndStatus::Canceled] {
        ok(
            "update call (Status)",
            client
                .update_call(
                    CA2,
                    &UpdateCall {
                        status: Some(status),
                        ..UpdateCall::default()
                    },
                )
                .await,
        );
    }
    let participant = ok(
        "create participant",
        client
            .create_participant(
                CF,
                &CreateParticipant {
                    from: "+15550001111".into(),
                    to: "+15550003333".into(),
                    label: Some("target".into()),
                    status_callback: Some("https://sb.example/twilio/status".into()),
                    status_callback_event: events.clone(),
                    timeout_secs: Some(20),
                    beep: Some("false".into()),
                    start_conference_on_enter: Some(true),
                    end_conference_on_exit: Some(false),
                    muted: Some(false),
                    wait_url: Some("https://sb.example/twiml/music".into()),
                    conference_status_callback: Some("https://sb.example/twilio/conference".into()),
                    conference_status_callback_event: ["start", "end", "join", "leave", "hold"]
                        .map(String::from)
                        .to_vec(),
                    caller_id: Some("+15550001111".into()),
                },
            )
            .await,
    );
    assert!(participant.call_sid.starts_with("CA"), "{participant:?}");
    let updates = [
        (
            "hold with music",
            UpdateParticipant {
                hold: Some(true),
                hold_url: Some("https://sb.example/twiml/music".into()),
                hold_method: Some("POST".into()),
                ..UpdateParticipant::default()
            },
        ),
        (
            "unhold",
            UpdateParticipant {
                hold: Some(false),
                ..UpdateParticipant::default()
            },
        ),
        (
            "mute",
            UpdateParticipant {
                muted: Some(true),
                ..UpdateParticipant::default()
            },
        ),
        (
            "announce",
            UpdateParticipant {
                announce_url: Some("https://sb.example/twiml/announce".into()),
                announce_method: Some("POST".into()),
                ..UpdateParticipant::default()
            },
        ),
        (
            "end conference on exit",
            UpdateParticipant {
                end_conference_on_exit: Some(true),
                ..UpdateParticipant::default()
            },
        ),
        (
            "coach",
            UpdateParticipant {
                coaching: Some(true),
                call_sid_to_coach: Some(CA2.into()),
                ..UpdateParticipant::default()
            },
        ),
    ];
    for (what, update) in &updates {
        ok(what, client.update_participant(CF, CA, update).await);
    }
    ok(
        "update participant by label",
        client
            .update_participant(
                CF,
                "caller",
                &UpdateParticipant {
                    muted: Some(false),
                    ..UpdateParticipant::default()
                },
            )
            .await,
    );
    ok(
        "remove participant",
        client.remove_participant(CF, CA).await,
    );
    ok("end conference", client.end_conference(CF).await);
    ok(
        "find conferences by name",
        client.find_conferences("call-1--main", "in-progress").await,
    );
}

#[tokio::test]
async fn the_openapi_mock_really_validates_requests() {
    let base = openapi_mock();
    let http = reqwest::Client::new();
    let calls = format!("{base}/2010-04-01/Accounts/{AC}/Calls.json");
    let post = |url: String, form: Vec<(&'static str, &'static str)>| {
        let http = http.clone();
        async move {
            let response = http
                .post(url)
                .basic_auth(AC, Some("token"))
                .form(&form)
                .send()
                .await
                .expect("prism answers");
            let status = response.status().as_u16();
            (status, response.text().await.unwrap_or_default())
        }
    };
    // The same request with and without To: only the complete one is accepted.
    let (status, body) = post(
        calls.clone(),
        vec![
            ("To", "+15550002222"),
            ("From", "+15550001111"),
            ("Url", "https://sb.example/v"),
        ],
    )
    .await;
    assert_eq!(status, 201, "a valid create call: {body}");
    let (status, body) = post(
        calls.clone(),
        vec![("From", "+15550001111"), ("Url", "https://sb.example/v")],
    )
    .await;
    assert_eq!(status, 422, "missing To: {body}");
    assert!(body.contains("To"), "{body}");
    // A wrong type and a wrong enum value in form bodies, a malformed SID in the path.
    let (status, body) = post(
        calls.clone(),
        vec![
            ("To", "+15550002222"),
            ("From", "+15550001111"),
            ("Url", "https://sb.example/v"),
            ("Timeout", "soon"),
        ],
    )
    .await;
    assert_eq!(status, 422, "Timeout=soon: {body}");
    let (status, body) = post(
        format!("{base}/2010-04-01/Accounts/{AC}/Calls/{CA}.json"),
        vec![("Status", "hungup")],
    )
    .await;
    assert_eq!(status, 422, "Status=hungup: {body}");
    let (status, body) = post(
        format!("{base}/2010-04-01/Accounts/{AC}/Calls/CA123.json"),
        vec![("Status", "completed")],
    )
    .await;
    assert_eq!(status, 422, "a malformed call SID: {body}");

    let (status, body) = post(
        calls.clone(),
        vec![
            ("To", "+15550002222"),
            ("From", "+15550001111"),
            ("Url", "not a uri"),
        ],
    )
    .await;
    assert_eq!(status, 422, "Url=not a uri: {body}");
    let (status, body) = post(
        format!("{base}/2010-04-01/Accounts/{AC}/Conferences/{CF}/Participants/{CA}.json"),
        vec![("Hold", "maybe")],
    )
    .await;
    assert_eq!(status, 422, "Hold=maybe: {body}");
    // Without credentials: 401, as the spec's Basic auth requires.
    let response = http
        .post(&calls)
        .form(&[
            ("To", "+15550002222"),
            ("From", "+15550001111"),
            ("Url", "https://sb.example/v"),
        ])
        .send()
        .await
        .expect("prism answers");
    assert_eq!(response.status().as_u16(), 401);

    // And through our client: a value the spec does not allow comes back as an API error.
    let err = mock_client(&base)
        .update_participant(
            CF,
            CA,
            &UpdateParticipant {
                hold: Some(true),
                hold_method: Some("PUT".into()),
                ..UpdateParticipant::default()
            },
        )
        .await
        .expect_err("HoldMethod=PUT is not in the spec");
    assert!(
        matches!(err, TwilioError::Api { status: 422, .. }),
        "{err:?}"
    );
}
