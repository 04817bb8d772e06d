//! Tests of the REST client against a scripted HTTP server on 127.0.0.1:0.

use super::*;
use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Instant;

use base64::Engine as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const AC: &str = "AC0123456789abcdef0123456789abcdef";
const CA: &str = "CAfedcba9876543210fedcba9876543210";
const CF: &str = "CF00112233445566778899aabbccddeeff";

/// A request the server received.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    authorization: Option<String>,
    content_type: Option<String>,
    body: String,
}

impl Seen {
    fn form(&self) -> Vec<(String, String)> {
        serde_urlencoded::from_str(&self.body).expect("form body")
    }
}

/// A scripted answer: status, extra headers, body, delay before answering.
#[derive(Clone)]
struct Reply {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: String,
    delay: Duration,
}

fn reply(status: u16, body: &str) -> Reply {
    Reply {
        status,
        headers: Vec::new(),
        body: body.to_owned(),
        delay: Duration::ZERO,
    }
}

fn call_json(status: &str) -> String {
    serde_json::json!({
        "sid": CA, "status": status, "to": "+15550002222", "from": "+15550001111",
        "direction": "outbound-api", "account_sid": AC, "parent_call_sid": null,
        "price": null, "subresource_uris": {"notifications": "/x"}
    })
    .to_string()
}

fn participant_json(hold: bool) -> String {
    serde_json::json!({
        "call_sid": CA, "conference_sid": CF, "hold": hold, "muted": false,
        "label": "caller", "status": "connected", "account_sid": AC, "coaching": false
    })
    .to_string()
}

struct Server {
    base: String,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Server {
    /// Answers requests with `replies` in order (the last one repeats).
    async fn start(replies: Vec<Reply>) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let script = Arc::new(Mutex::new(VecDeque::from(replies)));
        let seen2 = seen.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut socket, _)) = listener.accept().await else {
                    return;
                };
                let seen = seen2.clone();
                let script = script.clone();
                tokio::spawn(async move {
                    let Some(request) = read_request(&mut socket).await else {
                        return;
                    };
                    seen.lock().expect("lock").push(request);
                    let reply = {
                        let mut s = script.lock().expect("lock");
                        if s.len() > 1 {
                            s.pop_front().expect("reply")
                        } else {
                            s.front().cloned().expect("a scripted reply")
                        }
                    };
                    tokio::time::sleep(reply.delay).await;
                    let mut head = format!(
                        "HTTP/1.1 {} X\r\nContent-Length: {}\r\nContent-Type: application/json\r\nConnection: close\r\n",
                        reply.status,
                        reply.body.len()
                    );
                    for (k, v) in &reply.headers {
                        head.push_str(&format!("{k}: {v}\r\n"));
                    }
                    head.push_str("\r\n");
                    head.push_str(&reply.body);
                    let _ = socket.write_all(head.as_bytes()).await;
                    let _ = socket.shutdown().await;
                });
            }
        });
        Server { base, seen }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("lock").clone()
    }
}

async fn read_request(socket: &mut tokio::net::TcpStream) -> Option<Seen> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        let n = socket.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let method = first.next()?.to_owned();
    let path = first.next()?.to_owned();
    let header = |name: &str| {
        head.split("\r\n").skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
        })
    };
    let length: usize = header("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    while buf.len() < head_end + length {
        let n = socket.read(&mut chunk).await.ok()?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Some(Seen {
        method,
        path,
        authorization: header("authorization"),
        content_type: header("content-type"),
        body: String::from_utf8_lossy(&buf[head_end..]).into_owned(),
    })
}

fn token_auth() -> TwilioAuth {
    TwilioAuth::AuthToken {
        account_sid: AC.into(),
        auth_token: Secret::new("auth-token-xyz"),
    }
}

fn fast() -> RetryPolicy {
    RetryPolicy {
        max_retries: 3,
        base_delay: Duration::from_millis(5),
        max_delay: Duration::from_secs(2),
        timeout: Duration::from_secs(5),
    }
}

fn client(server: &Server, retry: RetryPolicy) -> TwilioClient {
    TwilioClient::new(&server.base, token_auth(), retry).expect("client")
}

fn basic(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

fn a_call() -> CreateCall {
    CreateCall {
        to: "+15550002222".into(),
        from: "+15550001111".into(),
        url: Some("https://sb.example/twilio/voice?leg=b&x=1".into()),
        status_callback: Some("https://sb.example/twilio/status".into()),
        status_callback_event: vec![
            "initiated".into(),
            "ringing".into(),
            "answered".into(),
            "completed".into(),
        ],
        timeout_secs: Some(25),
        ..CreateCall::default()
    }
}

fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
    p.iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

#[tokio::test]
async fn create_call_sends_a_form_with_repeated_events_and_basic_auth() {
    let server = Server::start(vec![reply(201, &call_json("queued"))]).await;
    let call = client(&server, fast())
        .create_call(&a_call())
        .await
        .expect("created");
    assert_eq!(call.sid, CA);
    assert_eq!(call.status.as_deref(), Some("queued"));
    assert_eq!(call.to.as_deref(), Some("+15550002222"));
    let seen = server.seen();
    assert_eq!(seen.len(), 1);
    let r = &seen[0];
    assert_eq!(r.method, "POST");
    assert_eq!(r.path, format!("/2010-04-01/Accounts/{AC}/Calls.json"));
    assert_eq!(
        r.authorization.as_deref(),
        Some(basic(AC, "auth-token-xyz").as_str())
    );
    assert_eq!(
        r.content_type.as_deref(),
        Some("application/x-www-form-urlencoded")
    );
    assert_eq!(
        r.form(),
        pairs(&[
            ("To", "+15550002222"),
            ("From", "+15550001111"),
            ("Url", "https://sb.example/twilio/voice?leg=b&x=1"),
            ("Method", "POST"),
            ("StatusCallback", "https://sb.example/twilio/status"),
            ("StatusCallbackMethod", "POST"),
            ("StatusCallbackEvent", "initiated"),
            ("StatusCallbackEvent", "ringing"),
            ("StatusCallbackEvent", "answered"),
            ("StatusCallbackEvent", "completed"),
            ("Timeout", "25"),
        ])
    );
    assert!(r.body.contains("To=%2B15550002222"), "{}", r.body);
}

#[tokio::test]
async fn api_key_auth_uses_the_key_on_the_accounts_path() {
    let server = Server::start(vec![reply(200, &participant_json(true))]).await;
    let auth = TwilioAuth::ApiKey {
        account_sid: AC.into(),
        key_sid: "SK0123456789abcdef0123456789abcdef".into(),
        key_secret: Secret::new("key-secret-abc"),
    };
    let client = TwilioClient::new(&format!("{}/", server.base), auth, fast()).expect("client");
    assert_eq!(client.account_sid(), AC);
    let p = client
        .update_participant(
            CF,
            CA,
            &UpdateParticipant {
                hold: Some(true),
                hold_url: Some("https://sb.example/twiml/music".into()),
                hold_method: Some("POST".into()),
                ..UpdateParticipant::default()
            },
        )
        .await
        .expect("updated");
    assert_eq!(p.hold, Some(true));
    assert_eq!(p.conference_sid.as_deref(), Some(CF));
    let r = &server.seen()[0];
    assert_eq!(
        r.path,
        format!("/2010-04-01/Accounts/{AC}/Conferences/{CF}/Participants/{CA}.json")
    );
    assert_eq!(
        r.authorization.as_deref(),
        Some(basic("SK0123456789abcdef0123456789abcdef", "key-secret-abc").as_str())
    );
    assert_eq!(
        r.form(),
        pairs(&[
            ("Hold", "true"),
            ("HoldUrl", "https://sb.example/twiml/music"),
            ("HoldMethod", "POST")
        ])
    );
}

#[tokio::test]
async fn rate_limiting_is_retried_after_retry_after() {
    let mut limited = reply(
        429,
        r#"{"code": 20429, "message": "Too Many Requests", "status": 429}"#,
    );
    limited.headers.push(("Retry-After", "1".into()));
    let server = Server::start(vec![limited, reply(201, &call_json("queued"))]).await;
    let started = Instant::now();
    let call = client(&server, fast())
        .create_call(&a_call())
        .await
        .expect("created after 429");
    assert_eq!(call.sid, CA);
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "Retry-After: 1 was honoured"
    );
    assert_eq!(server.seen().len(), 2, "a create is retried on 429");
    assert_eq!(server.seen()[0].body, server.seen()[1].body);
}

#[tokio::test]
async fn rate_limiting_gives_up_after_the_retries() {
    let server = Server::start(vec![reply(429, "{}")]).await;
    let mut policy = fast();
    policy.max_retries = 2;
    let err = client(&server, policy)
        .end_conference(CF)
        .await
        .expect_err("limited");
    assert!(
        matches!(err, TwilioError::RateLimited { retries: 2 }),
        "{err:?}"
    );
    assert_eq!(server.seen().len(), 3);
}

#[tokio::test]
async fn a_server_error_on_an_update_is_retried() {
    let server = Server::start(vec![
        reply(
            500,
            r#"{"code": 20500, "message": "Internal Server Error", "status": 500}"#,
        ),
        reply(502, "<html>bad gateway</html>"),
        reply(200, &call_json("completed")),
    ])
    .await;
    let call = client(&server, fast())
        .update_call(
            CA,
            &UpdateCall {
                status: Some(CallEndStatus::Completed),
                ..UpdateCall::default()
            },
        )
        .await
        .expect("updated after two 5xx");
    assert_eq!(call.status.as_deref(), Some("completed"));
    let seen = server.seen();
    assert_eq!(seen.len(), 3);
    assert!(seen
        .iter()
        .all(|r| r.path == format!("/2010-04-01/Accounts/{AC}/Calls/{CA}.json")));
    assert!(seen
        .iter()
        .all(|r| r.form() == pairs(&[("Status", "completed")])));
}

thread_local! {
    /// What the capturing subscriber wrote for events of this thread.
    static CAPTURED: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Writes into this thread's [`CAPTURED`].
struct ThreadCapture;

impl std::io::Write for ThreadCapture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        CAPTURED.with(|c| c.borrow_mut().extend_from_slice(buf));
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Installs, once per test binary, a global subscriber writing WARN and above to the
/// emitting thread's buffer. Global rather than scoped: a scoped subscriber's callsite
/// interest races with tests on other threads and loses events now and then.
fn capture_warnings() {
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| {
        let subscriber = tracing_subscriber::fmt()
            .with_writer(|| ThreadCapture)
            .with_ansi(false)
            .with_max_level(tracing::Level::WARN)
            .finish();
        tracing::subscriber::set_global_default(subscriber)
            .expect("no other global subscriber in the unit tests");
    });
    CAPTURED.with(|c| c.borrow_mut().clear());
}

#[tokio::test]
async fn retries_are_logged_at_warn_without_credentials() {
    capture_warnings();
    let server = Server::start(vec![reply(503, "{}"), reply(204, "")]).await;
    client(&server, fast())
        .remove_participant(CF, CA)
        .await
        .expect("removed after a 503");
    let logs = CAPTURED.with(|c| String::from_utf8(c.borrow().clone()).expect("utf-8"));
    assert!(logs.contains("WARN"), "{logs}");
    assert!(logs.contains("Twilio request failed; retrying"), "{logs}");
    assert!(logs.contains("HTTP 503"), "{logs}");
    assert!(
        logs.contains(&format!("Conferences/{CF}/Participants/{CA}.json")),
        "{logs}"
    );
    assert!(!logs.contains("auth-token-xyz"), "{logs}");
    let basic_credentials =
        base64::engine::general_purpose::STANDARD.encode(format!("{AC}:auth-token-xyz"));
    assert!(!logs.contains(&basic_credentials), "{logs}");
}

#[tokio::test]
async fn a_500_on_a_create_is_not_retried_but_a_503_is() {
    let server = Server::start(vec![
        reply(500, r#"{"code": 20500, "message": "Internal Server Error", "more_info": "https://www.twilio.com/docs/errors/20500", "status": 500}"#),
        reply(201, &call_json("queued")),
    ])
    .await;
    let err = client(&server, fast())
        .create_call(&a_call())
        .await
        .expect_err("500");
    match &err {
        TwilioError::Api {
            status,
            code,
            message,
            more_info,
        } => {
            assert_eq!(*status, 500);
            assert_eq!(*code, Some(20500));
            assert_eq!(message, "Internal Server Error");
            assert_eq!(
                more_info.as_deref(),
                Some("https://www.twilio.com/docs/errors/20500")
            );
        }
        other => panic!("expected an API error, got {other:?}"),
    }
    assert_eq!(
        server.seen().len(),
        1,
        "a create that may have dialled is not repeated"
    );

    let server = Server::start(vec![reply(503, "{}"), reply(201, &participant_json(false))]).await;
    let p = client(&server, fast())
        .create_participant(
            CF,
            &CreateParticipant {
                from: "+15550001111".into(),
                to: "+15550003333".into(),
                ..CreateParticipant::default()
            },
        )
        .await
        .expect("created after a 503");
    assert_eq!(p.call_sid, CA);
    assert_eq!(server.seen().len(), 2);
}

#[tokio::test]
async fn not_found_is_recognisable_and_the_error_json_is_parsed() {
    let server = Server::start(vec![reply(
        404,
        r#"{"code": 20404, "message": "The requested resource /2010-04-01/Accounts/AC/Conferences/CF/Participants/CA.json was not found", "more_info": "https://www.twilio.com/docs/errors/20404", "status": 404}"#,
    )])
    .await;
    let err = client(&server, fast())
        .remove_participant(CF, CA)
        .await
        .expect_err("404");
    assert!(err.is_not_found(), "{err:?}");
    assert!(matches!(
        err,
        TwilioError::Api {
            status: 404,
            code: Some(20404),
            ..
        }
    ));
    assert!(err.to_string().contains("20404"), "{err}");
    let seen = server.seen();
    assert_eq!(seen.len(), 1, "a 4xx is not retried");
    assert_eq!(seen[0].method, "DELETE");
    assert_eq!(
        seen[0].path,
        format!("/2010-04-01/Accounts/{AC}/Conferences/{CF}/Participants/{CA}.json")
    );

    // A client error other than 404 is not "not found".
    let server = Server::start(vec![reply(
        400,
        r#"{"code": 21201, "message": "No 'To' number is specified", "status": 400}"#,
    )])
    .await;
    let err = client(&server, fast())
        .create_call(&a_call())
        .await
        .expect_err("400");
    assert!(!err.is_not_found());
    assert!(matches!(
        err,
        TwilioError::Api {
            status: 400,
            code: Some(21201),
            ..
        }
    ));
}

#[tokio::test]
async fn deletes_answer_204_and_end_conference_posts_completed() {
    let server = Server::start(vec![reply(204, "")]).await;
    client(&server, fast())
        .remove_participant(CF, "caller")
        .await
        .expect("removed by label");
    assert_eq!(
        server.seen()[0].path,
        format!("/2010-04-01/Accounts/{AC}/Conferences/{CF}/Participants/caller.json")
    );

    let server = Server::start(vec![reply(
        200,
        r#"{"sid": "CF00112233445566778899aabbccddeeff", "status": "completed"}"#,
    )])
    .await;
    client(&server, fast())
        .end_conference(CF)
        .await
        .expect("ended");
    let r = &server.seen()[0];
    assert_eq!(
        r.path,
        format!("/2010-04-01/Accounts/{AC}/Conferences/{CF}.json")
    );
    assert_eq!(r.form(), pairs(&[("Status", "completed")]));
}

#[tokio::test]
async fn a_slow_answer_times_out_and_only_updates_are_retried() {
    let mut slow = reply(200, &call_json("in-progress"));
    slow.delay = Duration::from_secs(3);
    let mut policy = fast();
    policy.timeout = Duration::from_millis(300);
    policy.max_retries = 1;

    let server = Server::start(vec![slow.clone()]).await;
    let err = client(&server, policy.clone())
        .create_call(&a_call())
        .await
        .expect_err("timeout");
    assert!(err.is_timeout(), "{err:?}");
    assert_eq!(
        server.seen().len(),
        1,
        "a create that timed out may have dialled"
    );

    let server = Server::start(vec![slow.clone(), reply(200, &call_json("in-progress"))]).await;
    let call = client(&server, policy)
        .update_call(
            CA,
            &UpdateCall {
                url: Some("https://sb.example/twiml/next".into()),
                ..UpdateCall::default()
            },
        )
        .await
        .expect("the retry answers in time");
    assert_eq!(call.status.as_deref(), Some("in-progress"));
    assert_eq!(server.seen().len(), 2);
    assert_eq!(
        server.seen()[1].form(),
        pairs(&[("Url", "https://sb.example/twiml/next"), ("Method", "POST")])
    );
}

#[tokio::test]
async fn a_refused_connection_is_a_transport_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    drop(listener);
    let mut policy = fast();
    policy.max_retries = 1;
    let client = TwilioClient::new(&base, token_auth(), policy).expect("client");
    let err = client.end_conference(CF).await.expect_err("refused");
    assert!(matches!(err, TwilioError::Transport(_)), "{err:?}");
}

#[tokio::test]
async fn invalid_requests_are_refused_before_sending() {
    let server = Server::start(vec![reply(201, &call_json("queued"))]).await;
    let client = client(&server, fast());
    let both = CreateCall {
        twiml: Some("<Response/>".into()),
        ..a_call()
    };
    assert!(matches!(
        client.create_call(&both).await,
        Err(TwilioError::Invalid(_))
    ));
    let neither = CreateCall {
        url: None,
        ..a_call()
    };
    assert!(matches!(
        client.create_call(&neither).await,
        Err(TwilioError::Invalid(_))
    ));
    let no_to = CreateCall {
        to: String::new(),
        ..a_call()
    };
    assert!(matches!(
        client.create_call(&no_to).await,
        Err(TwilioError::Invalid(_))
    ));
    assert!(matches!(
        client.update_call(CA, &UpdateCall::default()).await,
        Err(TwilioError::Invalid(_))
    ));
    assert!(matches!(
        client
            .update_call(
                "../Calls",
                &UpdateCall {
                    status: Some(CallEndStatus::Canceled),
                    ..UpdateCall::default()
                }
            )
            .await,
        Err(TwilioError::Invalid(_))
    ));
    assert!(matches!(
        client
            .update_participant(CF, CA, &UpdateParticipant::default())
            .await,
        Err(TwilioError::Invalid(_))
    ));
    assert!(matches!(
        client
            .update_participant(
                CF,
                CA,
                &UpdateParticipant {
                    hold: Some(true),
                    end_conference_on_exit: Some(false),
                    ..UpdateParticipant::default()
                }
            )
            .await,
        Err(TwilioError::Invalid(_))
    ));
    assert!(matches!(
        client.remove_participant("CF/x", CA).await,
        Err(TwilioError::Invalid(_))
    ));
    assert!(server.seen().is_empty(), "nothing invalid was sent");
    assert!(matches!(
        TwilioClient::new("ftp://x", token_auth(), fast()),
        Err(TwilioError::Invalid(_))
    ));
}

#[tokio::test]
async fn twiml_calls_and_participant_creates_encode_every_field() {
    let server = Server::start(vec![reply(201, &call_json("queued"))]).await;
    let twiml = "<Response><Say>Hi &amp; bye</Say></Response>";
    client(&server, fast())
        .create_call(&CreateCall {
            to: "client:agent-7".into(),
            from: "+15550001111".into(),
            twiml: Some(twiml.into()),
            caller_id: Some("+15550001111".into()),
            ..CreateCall::default()
        })
        .await
        .expect("created");
    assert_eq!(
        server.seen()[0].form(),
        pairs(&[
            ("To", "client:agent-7"),
            ("From", "+15550001111"),
            ("Twiml", twiml),
            ("CallerId", "+15550001111")
        ])
    );

    let server = Server::start(vec![reply(201, &participant_json(false))]).await;
    client(&server, fast())
        .create_participant(
            CF,
            &CreateParticipant {
                from: "+15550001111".into(),
                to: "+15550003333".into(),
                label: Some("target".into()),
                status_callback: Some("https://sb.example/twilio/status".into()),
                status_callback_event: vec!["ringing".into(), "answered".into()],
                timeout_secs: Some(20),
                beep: Some("false".into()),
                start_conference_on_enter: Some(true),
                end_conference_on_exit: Some(false),
                muted: Some(false),
                wait_url: Some("https://sb.example/twiml/music".into()),
                conference_status_callback: Some("https://sb.example/twilio/conference".into()),
                conference_status_callback_event: vec!["join".into(), "leave".into()],
                caller_id: None,
            },
        )
        .await
        .expect("created");
    assert_eq!(
        server.seen()[0].form(),
        pairs(&[
            ("From", "+15550001111"),
            ("To", "+15550003333"),
            ("Label", "target"),
            ("StatusCallback", "https://sb.example/twilio/status"),
            ("StatusCallbackMethod", "POST"),
            ("StatusCallbackEvent", "ringing"),
            ("StatusCallbackEvent", "answered"),
            ("Timeout", "20"),
            ("Beep", "false"),
            ("StartConferenceOnEnter", "true"),
            ("EndConferenceOnExit", "false"),
            ("Muted", "false"),
            ("WaitUrl", "https://sb.example/twiml/music"),
            ("WaitMethod", "POST"),
            (
                "ConferenceStatusCallback",
                "https://sb.example/twilio/conference"
            ),
            ("ConferenceStatusCallbackMethod", "POST"),
            ("ConferenceStatusCallbackEvent", "join"),
            ("ConferenceStatusCallbackEvent", "leave"),
        ])
    );
}

#[test]
fn debug_output_redacts_credentials() {
    let token = format!("{:?}", token_auth());
    assert!(!token.contains("auth-token-xyz"), "{token}");
    assert!(token.contains(AC));
    let key = TwilioAuth::ApiKey {
        account_sid: AC.into(),
        key_sid: "SKkey".into(),
        key_secret: Secret::new("key-secret-abc"),
    };
    let client = TwilioClient::new(DEFAULT_BASE_URL, key, RetryPolicy::default()).expect("client");
    let shown = format!("{client:?}");
    assert!(!shown.contains("key-secret-abc"), "{shown}");
    assert!(shown.contains("SKkey"), "{shown}");
}

#[test]
fn backoff_grows_with_jitter_and_is_capped() {
    let policy = RetryPolicy {
        max_retries: 10,
        base_delay: Duration::from_millis(100),
        max_delay: Duration::from_millis(1000),
        timeout: Duration::from_secs(1),
    };
    for _ in 0..50 {
        let d0 = policy.backoff(0);
        assert!(
            d0 >= Duration::from_millis(50) && d0 <= Duration::from_millis(100),
            "{d0:?}"
        );
        let d2 = policy.backoff(2);
        assert!(
            d2 >= Duration::from_millis(200) && d2 <= Duration::from_millis(400),
            "{d2:?}"
        );
        let d9 = policy.backoff(9);
        assert!(
            d9 >= Duration::from_millis(500) && d9 <= Duration::from_millis(1000),
            "{d9:?}"
        );
        assert!(policy.backoff(u32::MAX) <= Duration::from_millis(1000));
    }
    let distinct: std::collections::HashSet<_> = (0..20).map(|_| policy.backoff(3)).collect();
    assert!(distinct.len() > 1, "jittered");
}
