//! Tests of the Twilio fake itself, over real HTTP: REST with reqwest, and a local application
//! (actix-web on port 0) that answers TwiML and checks every signature the fake sends.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::dev::ServerHandle;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha1::Sha1;

use crate::support::twilio::{
    CallbackKind, ClientConnectError, FakeTwilio, FakeTwilioConfig, Heard, PhoneScript, RestFault,
    Route,
};

const NUMBER: &str = "+15550000001";
const APP: &str = "AP0123456789abcdef0123456789abcdef";
const WAIT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------------
// The application side: a TwiML server that records and verifies every request

/// One request the fake made to the application.
#[derive(Debug, Clone)]
struct Hit {
    path: String,
    params: Vec<(String, String)>,
    signature_ok: bool,
}

impl Hit {
    fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Default)]
struct AppState {
    base: String,
    auth_token: String,
    twiml: HashMap<String, String>,
    fail_first: HashMap<String, usize>,
    delay: HashMap<String, Duration>,
    hits: Vec<Hit>,
}

struct TestApp {
    base: String,
    state: Arc<Mutex<AppState>>,
    handle: ServerHandle,
}

/// Computes `X-Twilio-Signature` independently of the fake's implementation.
fn expected_signature(token: &str, url: &str, params: &[(String, String)]) -> String {
    let mut names: Vec<&(String, String)> = params.iter().collect();
    names.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)));
    let data: String = std::iter::once(url.to_owned())
        .chain(names.iter().map(|(k, v)| format!("{k}{v}")))
        .collect();
    let mut mac = Hmac::<Sha1>::new_from_slice(token.as_bytes()).expect("key");
    mac.update(data.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

async fn app_entry(
    req: HttpRequest,
    body: web::Bytes,
    data: web::Data<Mutex<AppState>>,
) -> HttpResponse {
    let delay = data
        .lock()
        .expect("app state")
        .delay
        .get(req.path())
        .copied();
    if let Some(delay) = delay {
        tokio::time::sleep(delay).await;
    }
    let mut st = data.lock().expect("app state");
    let mut params: Vec<(String, String)> =
        serde_urlencoded::from_str(req.query_string()).unwrap_or_default();
    let form: Vec<(String, String)> = serde_urlencoded::from_bytes(&body).unwrap_or_default();
    // A GET is signed over the URL alone (its query holds the parameters).
    let signed = if req.method() == actix_web::http::Method::GET {
        Vec::new()
    } else {
        form.clone()
    };
    params.extend(form);
    let url = format!("{}{}", st.base, req.uri());
    let sent = req
        .headers()
        .get("x-twilio-signature")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let signature_ok = sent == expected_signature(&st.auth_token, &url, &signed);
    let path = req.path().to_owned();
    st.hits.push(Hit {
        path: path.clone(),
        params,
        signature_ok,
    });
    if !signature_ok {
        return HttpResponse::Forbidden().finish();
    }
    if let Some(n) = st.fail_first.get_mut(&path) {
        if *n > 0 {
            *n -= 1;
            return HttpResponse::InternalServerError().finish();
        }
    }
    match st.twiml.get(&path) {
        Some(xml) => HttpResponse::Ok()
            .content_type("text/xml")
            .body(xml.clone()),
        None => HttpResponse::NoContent().finish(),
    }
}

impl TestApp {
    async fn start(auth_token: &str) -> TestApp {
        let state = Arc::new(Mutex::new(AppState {
            auth_token: auth_token.to_owned(),
            ..AppState::default()
        }));
        let data = web::Data::from(Arc::clone(&state));
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .default_service(web::to(app_entry))
        })
        .workers(1)
        .disable_signals()
        .bind(("127.0.0.1", 0))
        .expect("bind the test application");
        let base = format!("http://{}", server.addrs()[0]);
        state.lock().expect("app state").base = base.clone();
        let running = server.run();
        let handle = running.handle();
        actix_rt::spawn(running);
        TestApp {
            base,
            state,
            handle,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn twiml(&self, path: &str, xml: &str) {
        self.state
            .lock()
            .expect("app state")
            .twiml
            .insert(path.to_owned(), xml.to_owned());
    }

    fn fail_first(&self, path: &str, n: usize) {
        self.state
            .lock()
            .expect("app state")
            .fail_first
            .insert(path.to_owned(), n);
    }

    fn delay(&self, path: &str, delay: Duration) {
        self.state
            .lock()
            .expect("app state")
            .delay
            .insert(path.to_owned(), delay);
    }

    fn hits(&self, path: &str) -> Vec<Hit> {
        let st = self.state.lock().expect("app state");
        assert!(
            st.hits.iter().all(|h| h.signature_ok),
            "a request from the fake had a bad X-Twilio-Signature: {:?}",
            st.hits.iter().find(|h| !h.signature_ok)
        );
        st.hits.iter().filter(|h| h.path == path).cloned().collect()
    }

    /// The values of `name` in the requests to `path`, in arrival order.
    fn values(&self, path: &str, name: &str) -> Vec<String> {
        self.hits(path)
            .iter()
            .filter_map(|h| h.param(name).map(str::to_owned))
            .collect()
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        drop(self.handle.stop(false));
    }
}

// ---------------------------------------------------------------------------------------------
// REST client and helpers

struct Rest {
    base: String,
    user: String,
    pass: String,
    http: reqwest::Client,
}

impl Rest {
    fn new(fake: &FakeTwilio) -> Rest {
        Rest {
            base: format!(
                "{}/2010-04-01/Accounts/{}",
                fake.base_url(),
                fake.account_sid()
            ),
            user: fake.account_sid(),
            pass: fake.auth_token(),
            http: reqwest::Client::new(),
        }
    }

    async fn send(
        &self,
        method: reqwest::Method,
        rel: &str,
        form: &[(&str, &str)],
    ) -> (u16, Value, reqwest::header::HeaderMap) {
        let body = serde_urlencoded::to_string(form).expect("form");
        let resp = self
            .http
            .request(method, format!("{}{rel}", self.base))
            .basic_auth(&self.user, Some(&self.pass))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .expect("REST request");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await.expect("REST body");
        let value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).expect("JSON body")
        };
        (status, value, headers)
    }

    async fn post(&self, rel: &str, form: &[(&str, &str)]) -> (u16, Value) {
        let (status, value, _) = self.send(reqwest::Method::POST, rel, form).await;
        (status, value)
    }

    async fn get(&self, rel: &str) -> (u16, Value) {
        let (status, value, _) = self.send(reqwest::Method::GET, rel, &[]).await;
        (status, value)
    }
}

fn config() -> FakeTwilioConfig {
    FakeTwilioConfig {
        time_scale: 0.02,
        ..FakeTwilioConfig::default()
    }
}

async fn setup() -> (FakeTwilio, TestApp, Rest) {
    let fake = FakeTwilio::start(config());
    let app = TestApp::start(&fake.auth_token()).await;
    fake.set_number(NUMBER, &app.url("/voice"));
    fake.set_app(APP, &app.url("/client"));
    let rest = Rest::new(&fake);
    (fake, app, rest)
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// An Access Token as the server would mint it.
fn access_token(
    fake: &FakeTwilio,
    secret: Option<&str>,
    claims_patch: Value,
    cty: Option<&str>,
) -> String {
    let key = fake.api_key().expect("API key configured");
    let mut claims = json!({
        "jti": format!("{}-{}", key.sid, now()),
        "iss": key.sid,
        "sub": fake.account_sid(),
        "exp": now() + 600,
        "grants": {"identity": "alice", "voice": {"outgoing": {"application_sid": APP}}},
    });
    if let (Value::Object(target), Value::Object(patch)) = (&mut claims, claims_patch) {
        target.extend(patch);
    }
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    header.cty = cty.map(str::to_owned);
    let secret = secret.unwrap_or(&key.secret);
    jsonwebtoken::encode(
        &header,
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("token")
}

fn good_token(fake: &FakeTwilio) -> String {
    access_token(fake, None, json!({}), Some("twilio-fpa;v=1"))
}

const CONF_EVENTS: &str = "start end join leave hold mute modify";

fn caller_twiml(app: &TestApp) -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?><Response><Say>Please hold &amp; wait</Say><Dial><Conference startConferenceOnEnter="false" waitUrl="/wait" statusCallback="{}" statusCallbackEvent="{CONF_EVENTS}" participantLabel="caller">call-1</Conference></Dial><Say>Goodbye</Say></Response>"#,
        app.url("/conference")
    )
}

const AGENT_TWIML: &str = r#"<Response><Dial><Conference startConferenceOnEnter="true" endConferenceOnExit="true" beep="false" participantLabel="agent">call-1</Conference></Dial></Response>"#;

// ---------------------------------------------------------------------------------------------
// Tests

#[actix_web::test]
async fn rest_checks_credentials_accounts_and_required_parameters() {
    let (fake, app, rest) = setup().await;
    let http = reqwest::Client::new();
    let list = format!("{}/Conferences.json", rest.base);

    let none = http.get(&list).send().await.expect("request");
    assert_eq!(none.status().as_u16(), 401);
    let body: Value = none.json().await.expect("json");
    assert_eq!(body["code"], 20003);
    assert_eq!(body["status"], 401);
    assert!(body["more_info"]
        .as_str()
        .is_some_and(|u| u.ends_with("/20003")));

    let wrong = http
        .get(&list)
        .basic_auth(fake.account_sid(), Some("wrong"))
        .send()
        .await
        .expect("request");
    assert_eq!(wrong.status().as_u16(), 401);

    let key = fake.api_key().expect("API key");
    let with_key = http
        .get(&list)
        .basic_auth(&key.sid, Some(&key.secret))
        .send()
        .await
        .expect("request");
    assert_eq!(with_key.status().as_u16(), 200);
    let other = format!(
        "{}/2010-04-01/Accounts/AC{}/Conferences.json",
        fake.base_url(),
        "f".repeat(32)
    );
    let other = http
        .get(&other)
        .basic_auth(&key.sid, Some(&key.secret))
        .send()
        .await
        .expect("request");
    assert_eq!(other.status().as_u16(), 404);

    let url = app.url("/voice");
    let cases: Vec<(Vec<(&str, &str)>, u64)> = vec![
        (vec![("From", NUMBER), ("Url", &url)], 21201),
        (vec![("To", "+15559990000"), ("Url", &url)], 21213),
        (vec![("To", "+15559990000"), ("From", NUMBER)], 21205),
        (
            vec![
                ("To", "+15559990000"),
                ("From", NUMBER),
                ("Url", &url),
                ("Twiml", "<Response/>"),
            ],
            21205,
        ),
        (
            vec![
                ("To", "+15559990000"),
                ("From", NUMBER),
                ("Url", "not a url"),
            ],
            21205,
        ),
        (
            vec![
                ("To", "+15559990000"),
                ("From", "+15551234567"),
                ("Url", &url),
            ],
            21210,
        ),
    ];
    for (form, code) in cases {
        let (status, body) = rest.post("/Calls.json", &form).await;
        assert_eq!(
            (status, body["code"].as_u64()),
            (400, Some(code)),
            "{form:?}: {body}"
        );
    }
    let (status, body) = rest.get(&format!("/Calls/CA{}.json", "0".repeat(32))).await;
    assert_eq!((status, body["code"].as_u64()), (404, Some(20404)));
    assert!(
        fake.calls().is_empty(),
        "no call may be created by a refused request"
    );
    let log = fake.requests();
    assert_eq!(
        log.iter()
            .filter(|r| r.route == Route::CreateCall && r.status == 400)
            .count(),
        6
    );
    assert_eq!(log.last().map(|r| r.route), Some(Route::FetchCall));
}

#[actix_web::test]
async fn inbound_caller_waits_until_an_agent_starts_the_conference_and_hold_is_reported() {
    let (fake, app, rest) = setup().await;
    app.twiml("/voice", &caller_twiml(&app));
    app.twiml(
        "/wait",
        "<Response><Play>https://example.com/wait.mp3</Play></Response>",
    );
    app.twiml("/client", AGENT_TWIML);
    app.twiml(
        "/announce",
        "<Response><Play>https://example.com/news.mp3</Play></Response>",
    );
    app.twiml(
        "/hold",
        "<Response><Play>https://example.com/hold.mp3</Play></Response>",
    );

    let caller = fake.inbound_call("+15557654321", NUMBER);
    let conf = fake
        .wait_for("the caller in call-1", WAIT, |f| {
            f.conference("call-1").filter(|c| c.participants.len() == 1)
        })
        .await;
    assert_eq!(
        conf.status, "init",
        "a lone participant does not start the conference"
    );
    fake.wait_for("wait music", WAIT, |f| {
        f.heard(&caller)
            .contains(&Heard::WaitMusic("https://example.com/wait.mp3".into()))
            .then_some(())
    })
    .await;
    assert_eq!(
        fake.heard(&caller)[0],
        Heard::Say("Please hold & wait".into())
    );
    let voice = app.hits("/voice");
    assert_eq!(voice[0].param("CallStatus"), Some("ringing"));
    assert_eq!(voice[0].param("Direction"), Some("inbound"));
    assert_eq!(voice[0].param("From"), Some("+15557654321"));
    assert_eq!(voice[0].param("Called"), Some(NUMBER));
    assert_eq!(app.hits("/wait")[0].param("CallSid"), Some(caller.as_str()));

    let agent = fake
        .client_connect(&good_token(&fake), &[("callId", "c-1")])
        .expect("token accepted");
    let conf = fake
        .wait_for("call-1 to start", WAIT, |f| {
            f.conference("call-1").filter(|c| c.status == "in-progress")
        })
        .await;
    assert_eq!(conf.participants.len(), 2);
    let client = app.hits("/client");
    assert_eq!(client[0].param("From"), Some("client:alice"));
    assert_eq!(client[0].param("Caller"), Some("client:alice"));
    assert_eq!(client[0].param("ApplicationSid"), Some(APP));
    assert_eq!(client[0].param("callId"), Some("c-1"));
    assert_eq!(client[0].param("CallSid"), Some(agent.as_str()));

    let (status, body) = rest
        .post(
            &format!("/Conferences/{}/Participants/caller.json", conf.sid),
            &[("Hold", "true"), ("HoldUrl", &app.url("/hold"))],
        )
        .await;
    assert_eq!(
        (status, body["hold"].as_bool()),
        (200, Some(true)),
        "{body}"
    );
    assert_eq!(body["call_sid"], caller.as_str());
    assert_eq!(body["label"], "caller");
    let (status, body) = rest
        .post(
            &format!("/Conferences/{}/Participants/{caller}.json", conf.sid),
            &[("EndConferenceOnExit", "true")],
        )
        .await;
    assert_eq!(
        status, 400,
        "EndConferenceOnExit cannot change while held: {body}"
    );
    let (status, _) = rest
        .post(
            &format!("/Conferences/{}/Participants/{caller}.json", conf.sid),
            &[("Hold", "false")],
        )
        .await;
    assert_eq!(status, 200);
    let (status, body) = rest
        .post(
            &format!("/Conferences/{}/Participants/agent.json", conf.sid),
            &[("Muted", "true"), ("AnnounceUrl", &app.url("/announce"))],
        )
        .await;
    assert_eq!((status, body["muted"].as_bool()), (200, Some(true)));
    fake.wait_for("the announcement", WAIT, |f| {
        f.heard(&agent)
            .contains(&Heard::Announcement("https://example.com/news.mp3".into()))
            .then_some(())
    })
    .await;
    fake.wait_for("hold music", WAIT, |f| {
        f.heard(&caller)
            .contains(&Heard::HoldMusic("https://example.com/hold.mp3".into()))
            .then_some(())
    })
    .await;

    assert!(fake.client_disconnect(&agent));
    fake.wait_for_call_status(&caller, "completed", WAIT).await;
    assert_eq!(
        fake.heard(&caller).last(),
        Some(&Heard::Say("Goodbye".into()))
    );
    let conf = fake.conference("call-1").expect("conference");
    assert_eq!(conf.status, "completed");
    assert_eq!(
        conf.reason_ended.as_deref(),
        Some("participant-with-end-conference-on-exit-left")
    );
    assert_eq!(conf.call_sid_ending.as_deref(), Some(agent.as_str()));

    fake.wait_for_callbacks_idle(WAIT).await;
    let events = app.values("/conference", "StatusCallbackEvent");
    assert_eq!(
        events,
        [
            "participant-join",
            "participant-join",
            "conference-start",
            "participant-hold",
            "participant-unhold",
            "participant-mute",
            "participant-leave",
            "participant-leave",
            "conference-end"
        ]
    );
    let hits = app.hits("/conference");
    let seqs: Vec<u32> = hits
        .iter()
        .map(|h| h.param("SequenceNumber").unwrap().parse().unwrap())
        .collect();
    assert_eq!(seqs, (1..=9).collect::<Vec<u32>>());
    assert_eq!(hits[0].param("ParticipantLabel"), Some("caller"));
    assert_eq!(hits[0].param("StartConferenceOnEnter"), Some("false"));
    assert_eq!(hits[3].param("Hold"), Some("true"));
    assert_eq!(hits[5].param("Muted"), Some("true"));
    assert_eq!(hits[6].param("CallSid"), Some(agent.as_str()));
    assert_eq!(
        hits[6].param("ReasonParticipantLeft"),
        Some("participant_hung_up")
    );
    assert_eq!(hits[8].param("ConferenceSid"), Some(conf.sid.as_str()));
    assert!(fake.errors().is_empty(), "{:?}", fake.errors());
}

#[actix_web::test]
async fn outbound_calls_to_scripted_phones_report_the_right_statuses() {
    let (fake, app, rest) = setup().await;
    fake.set_phone("+15550000010", PhoneScript::busy());
    fake.set_phone("+15550000011", PhoneScript::no_answer());
    fake.set_phone("+15550000012", PhoneScript::failing());
    fake.set_phone(
        "+15550000013",
        PhoneScript::answering_after(Duration::from_millis(50)),
    );
    fake.set_phone(
        "+15550000014",
        PhoneScript::hanging_up_after(Duration::from_millis(100)),
    );
    let twiml = "<Response><Say>hello</Say><Pause length=\"1\"/></Response>";
    let mut sids = Vec::new();
    for (i, to) in [
        "+15550000010",
        "+15550000011",
        "+15550000012",
        "+15550000013",
        "+15550000014",
    ]
    .iter()
    .enumerate()
    {
        let path = format!("/status/{i}");
        let callback = app.url(&path);
        let twiml = if i == 4 {
            "<Response><Pause length=\"600\"/></Response>"
        } else {
            twiml
        };
        let (status, body) = rest
            .post(
                "/Calls.json",
                &[
                    ("To", to),
                    ("From", NUMBER),
                    ("Twiml", twiml),
                    ("Timeout", "5"),
                    ("StatusCallback", &callback),
                    ("StatusCallbackEvent", "initiated ringing"),
                    ("StatusCallbackEvent", "answered completed"),
                    // One call reports with GET: parameters in the query, signed URL only.
                    ("StatusCallbackMethod", if i == 3 { "GET" } else { "POST" }),
                ],
            )
            .await;
        assert_eq!(status, 201, "{body}");
        assert_eq!(body["status"], "queued");
        assert_eq!(body["direction"], "outbound-api");
        sids.push(body["sid"].as_str().expect("sid").to_owned());
    }
    let expected = [
        (vec!["initiated", "ringing", "busy"], Some("486")),
        (vec!["initiated", "ringing", "no-answer"], Some("487")),
        (vec!["initiated", "ringing", "failed"], Some("404")),
        (
            vec!["initiated", "ringing", "in-progress", "completed"],
            None,
        ),
        (
            vec!["initiated", "ringing", "in-progress", "completed"],
            None,
        ),
    ];
    for (i, (statuses, sip)) in expected.iter().enumerate() {
        let last = *statuses.last().unwrap();
        fake.wait_for_call_status(&sids[i], last, WAIT).await;
        let path = format!("/status/{i}");
        fake.wait_for("status callbacks", WAIT, |_| {
            (app.hits(&path).len() == statuses.len()).then_some(())
        })
        .await;
        assert_eq!(&app.values(&path, "CallStatus"), statuses, "call {i}");
        assert_eq!(
            app.values(&path, "SequenceNumber"),
            (0..statuses.len())
                .map(|n| n.to_string())
                .collect::<Vec<_>>()
        );
        let final_hit = app.hits(&path).pop().unwrap();
        assert_eq!(final_hit.param("SipResponseCode"), *sip, "call {i}");
        assert!(final_hit.param("CallDuration").is_some());
        assert_eq!(final_hit.param("CallSid"), Some(sids[i].as_str()));
    }
    let by_get: Vec<_> = fake
        .callback_log()
        .into_iter()
        .filter(|r| r.url.contains("/status/3?"))
        .collect();
    assert_eq!(by_get.len(), 4);
    assert!(by_get
        .iter()
        .all(|r| r.method == "GET" && r.status == Some(204)));
    assert_eq!(fake.heard(&sids[3]), [Heard::Say("hello".into())]);
    assert!(
        fake.heard(&sids[0]).is_empty(),
        "a busy phone hears nothing"
    );
    let (_, body) = rest.get(&format!("/Calls/{}.json", sids[3])).await;
    assert_eq!(body["status"], "completed");
    assert!(body["start_time"].is_string() && body["end_time"].is_string());
}

#[actix_web::test]
async fn gather_posts_scripted_digits_to_its_action_and_times_out_without_them() {
    let (fake, app, rest) = setup().await;
    fake.set_phone(
        "+15550000020",
        PhoneScript::answering().pressing("1#").pressing_nothing(),
    );
    app.twiml("/whisper", r#"<Response><Gather input="dtmf" numDigits="1" action="/gathered" timeout="5"><Say>Press 1 to accept</Say></Gather><Say>unreachable</Say></Response>"#);
    app.twiml("/gathered", r#"<Response><Gather numDigits="1" action="/gathered-again" timeout="5"><Say>again</Say></Gather><Say>nothing pressed</Say></Response>"#);
    let (status, body) = rest
        .post(
            "/Calls.json",
            &[
                ("To", "+15550000020"),
                ("From", NUMBER),
                ("Url", &app.url("/whisper")),
            ],
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let sid = body["sid"].as_str().unwrap().to_owned();
    fake.wait_for_call_status(&sid, "completed", WAIT).await;
    let gathered = app.hits("/gathered");
    assert_eq!(gathered.len(), 1);
    assert_eq!(gathered[0].param("Digits"), Some("1"));
    assert_eq!(gathered[0].param("CallStatus"), Some("in-progress"));
    assert_eq!(gathered[0].param("Direction"), Some("outbound-api"));
    assert!(app.hits("/gathered-again").is_empty());
    assert_eq!(
        fake.heard(&sid),
        [
            Heard::Say("Press 1 to accept".into()),
            Heard::Say("again".into()),
            Heard::Say("nothing pressed".into())
        ]
    );
}

#[actix_web::test]
async fn redirect_through_rest_moves_a_participant_out_of_its_conference() {
    let (fake, app, rest) = setup().await;
    let conf_twiml = format!(
        r#"<Response><Dial><Conference statusCallback="{}" statusCallbackEvent="leave">main</Conference></Dial></Response>"#,
        app.url("/conference")
    );
    app.twiml("/voice", &conf_twiml);
    app.twiml(
        "/moved",
        "<Response><Say>moved</Say><Dial><Conference>consult</Conference></Dial></Response>",
    );
    let a = fake.inbound_call("+15557000001", NUMBER);
    let b = fake.inbound_call("+15557000002", NUMBER);
    let conf = fake
        .wait_for("main to start", WAIT, |f| {
            f.conference("main").filter(|c| c.status == "in-progress")
        })
        .await;

    let (status, body) = rest
        .post(&format!("/Calls/{b}.json"), &[("Url", &app.url("/moved"))])
        .await;
    assert_eq!(status, 200, "{body}");
    fake.wait_for("b in consult", WAIT, |f| {
        f.conference("consult")
            .filter(|c| c.participant(&b).is_some())
    })
    .await;
    let main = fake.conference("main").unwrap();
    assert_eq!(main.sid, conf.sid);
    assert_eq!(
        main.status, "in-progress",
        "the conference goes on without b"
    );
    assert!(main.participant(&a).is_some() && main.participant(&b).is_none());
    assert_eq!(
        fake.call(&b).unwrap().conference.as_deref(),
        Some("consult")
    );
    assert!(fake.heard(&b).contains(&Heard::Say("moved".into())));
    fake.wait_for("the leave callback", WAIT, |_| {
        (!app.hits("/conference").is_empty()).then_some(())
    })
    .await;
    let leave = &app.hits("/conference")[0];
    assert_eq!(leave.param("CallSid"), Some(b.as_str()));
    assert_eq!(
        leave.param("ReasonParticipantLeft"),
        Some("participant_updated_via_api")
    );

    // Ending a conference through REST ends every participant's <Dial>.
    let (status, body) = rest
        .post(
            &format!("/Conferences/{}.json", conf.sid),
            &[("Status", "completed")],
        )
        .await;
    assert_eq!((status, body["status"].as_str()), (200, Some("completed")));
    fake.wait_for_call_status(&a, "completed", WAIT).await;
    assert_eq!(
        fake.conference("main").unwrap().reason_ended.as_deref(),
        Some("conference-ended-via-api")
    );
    let (_, list) = rest
        .get("/Conferences.json?FriendlyName=main&Status=completed")
        .await;
    assert_eq!(list["conferences"].as_array().map(Vec::len), Some(1));
    let (_, list) = rest.get("/Conferences.json?Status=init").await;
    assert_eq!(
        list["conferences"][0]["friendly_name"], "consult",
        "b waits alone in consult"
    );
}

#[actix_web::test]
async fn participants_are_dialled_held_and_removed_through_rest_and_ringing_calls_cancelled() {
    let (fake, app, rest) = setup().await;
    app.twiml(
        "/voice",
        "<Response><Dial><Conference>support</Conference></Dial></Response>",
    );
    let caller = fake.inbound_call("+15557000003", NUMBER);
    let conf = fake
        .wait_for("support", WAIT, |f| f.conference("support"))
        .await;

    let (status, body) = rest
        .post(
            &format!("/Conferences/{}/Participants.json", conf.sid),
            &[
                ("From", NUMBER),
                ("To", "+15550000030"),
                ("Label", "specialist"),
                ("EndConferenceOnExit", "false"),
                ("Beep", "false"),
            ],
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["label"], "specialist");
    assert_eq!(body["conference_sid"], conf.sid.as_str());
    let specialist = body["call_sid"].as_str().unwrap().to_owned();
    fake.wait_for("support to start", WAIT, |f| {
        f.conference("support")
            .filter(|c| c.status == "in-progress")
    })
    .await;
    let (status, body) = rest
        .get(&format!(
            "/Conferences/{}/Participants/specialist.json",
            conf.sid
        ))
        .await;
    assert_eq!((status, body["status"].as_str()), (200, Some("connected")));
    let (_, list) = rest
        .get(&format!("/Conferences/{}/Participants.json", conf.sid))
        .await;
    assert_eq!(list["participants"].as_array().map(Vec::len), Some(2));

    let (status, body) = rest
        .post(
            &format!("/Conferences/{}/Participants/specialist.json", conf.sid),
            &[("Muted", "true")],
        )
        .await;
    assert_eq!((status, body["muted"].as_bool()), (200, Some(true)));
    let (status, _, _) = rest
        .send(
            reqwest::Method::DELETE,
            &format!("/Conferences/{}/Participants/specialist.json", conf.sid),
            &[],
        )
        .await;
    assert_eq!(status, 204);
    fake.wait_for_call_status(&specialist, "completed", WAIT)
        .await;
    let support = fake.conference("support").unwrap();
    assert_eq!(support.status, "in-progress", "the caller is still there");
    assert_eq!(support.participants.len(), 1);
    assert!(fake.hang_up(&caller));
    fake.wait_for_call_status(&caller, "completed", WAIT).await;
    let support = fake.conference("support").unwrap();
    assert_eq!(
        support.reason_ended.as_deref(),
        Some("last-participant-left")
    );

    // Cancel while ringing.
    fake.set_phone(
        "+15550000031",
        PhoneScript::answering_after(Duration::from_secs(30)),
    );
    let (_, body) = rest
        .post(
            "/Calls.json",
            &[
                ("To", "+15550000031"),
                ("From", NUMBER),
                ("Twiml", "<Response/>"),
                ("StatusCallback", &app.url("/cancel")),
            ],
        )
        .await;
    let ringing = body["sid"].as_str().unwrap().to_owned();
    fake.wait_for_call_status(&ringing, "ringing", WAIT).await;
    let (status, body) = rest
        .post(&format!("/Calls/{ringing}.json"), &[("Status", "canceled")])
        .await;
    assert_eq!((status, body["status"].as_str()), (200, Some("canceled")));
    fake.wait_for_call_status(&ringing, "canceled", WAIT).await;
    fake.wait_for("the canceled callback", WAIT, |_| {
        (!app.hits("/cancel").is_empty()).then_some(())
    })
    .await;
    assert_eq!(
        app.values("/cancel", "CallStatus"),
        ["canceled"],
        "only the terminal status was requested"
    );
    let (status, body) = rest
        .post(
            &format!("/Calls/{ringing}.json"),
            &[("Url", &app.url("/voice"))],
        )
        .await;
    assert_eq!((status, body["code"].as_u64()), (400, Some(21220)));
}

#[actix_web::test]
async fn client_connect_checks_access_tokens_like_twilio() {
    let (fake, app, _rest) = setup().await;
    app.twiml("/client", "<Response><Say>hi</Say></Response>");
    let cty = Some("twilio-fpa;v=1");
    let cases = [
        (
            access_token(&fake, Some("not-the-secret"), json!({}), cty),
            "bad signature",
        ),
        (
            access_token(&fake, None, json!({"exp": now() - 5}), cty),
            "expired",
        ),
        (access_token(&fake, None, json!({}), None), "no cty"),
        (
            access_token(
                &fake,
                None,
                json!({"iss": format!("SK{}", "9".repeat(32))}),
                cty,
            ),
            "unknown key",
        ),
        (
            access_token(
                &fake,
                None,
                json!({"sub": format!("AC{}", "9".repeat(32))}),
                cty,
            ),
            "other account",
        ),
        (
            access_token(&fake, None, json!({"grants": {"identity": "alice"}}), cty),
            "no voice grant",
        ),
        (
            access_token(
                &fake,
                None,
                json!({"grants": {"identity": "alice", "voice": {"outgoing": {"application_sid": format!("AP{}", "9".repeat(32))}}}}),
                cty,
            ),
            "unknown app",
        ),
        ("not.a.jwt".to_owned(), "garbage"),
    ];
    for (token, why) in &cases {
        let refused = fake.client_connect(token, &[]);
        assert!(refused.is_err(), "{why}: accepted");
        if *why == "expired" {
            assert_eq!(refused.unwrap_err(), ClientConnectError::Expired);
        }
    }
    assert!(fake.calls().is_empty());
    let sid = fake
        .client_connect(&good_token(&fake), &[("To", "room-7")])
        .expect("accepted");
    fake.wait_for_call_status(&sid, "completed", WAIT).await;
    let hit = &app.hits("/client")[0];
    assert_eq!(hit.param("To"), Some("room-7"));
    assert_eq!(hit.param("From"), Some("client:alice"));
    assert_eq!(fake.heard(&sid), [Heard::Say("hi".into())]);
}

#[actix_web::test]
async fn failing_twiml_is_an_application_error() {
    let (fake, app, _rest) = setup().await;
    app.fail_first("/voice", 1);
    let failed = fake.inbound_call("+15557000004", NUMBER);
    fake.wait_for_call_status(&failed, "completed", WAIT).await;
    assert_eq!(fake.heard(&failed), [Heard::ApplicationError]);
    app.twiml("/voice", "<Response><Say>unclosed</Response>");
    let malformed = fake.inbound_call("+15557000004", NUMBER);
    fake.wait_for_call_status(&malformed, "completed", WAIT)
        .await;
    app.twiml("/voice", "<Response><Record/></Response>");
    let unsupported = fake.inbound_call("+15557000004", NUMBER);
    fake.wait_for_call_status(&unsupported, "completed", WAIT)
        .await;
    let errors = fake.errors();
    assert_eq!(errors.len(), 3, "{errors:?}");
    assert!(errors[0].message.contains("500"), "{errors:?}");
    assert!(errors[1].message.contains("malformed"), "{errors:?}");
    assert_eq!(errors[2].call_sid, unsupported);
}

fn as_refs(v: &[(String, String)]) -> Vec<(&str, &str)> {
    v.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

#[actix_web::test]
async fn fault_switches_rate_limit_duplicate_reorder_drop_and_retry() {
    let (fake, app, rest) = setup().await;
    fake.fail_next(
        Route::CreateCall,
        1,
        RestFault::TooManyRequests {
            retry_after_secs: 2,
        },
    );
    fake.fail_next(Route::FetchCall, 1, RestFault::Unavailable);
    let form = |path: &'static str, app: &TestApp| -> Vec<(String, String)> {
        vec![
            ("To".into(), "+15550000040".into()),
            ("From".into(), NUMBER.into()),
            ("Twiml".into(), "<Response><Say>x</Say></Response>".into()),
            ("StatusCallback".into(), app.url(path)),
            (
                "StatusCallbackEvent".into(),
                "initiated ringing answered completed".into(),
            ),
        ]
    };

    let first = form("/dup", &app);
    let (status, body, headers) = rest
        .send(reqwest::Method::POST, "/Calls.json", &as_refs(&first))
        .await;
    assert_eq!((status, body["code"].as_u64()), (429, Some(20429)));
    assert_eq!(
        headers.get("retry-after").and_then(|v| v.to_str().ok()),
        Some("2")
    );
    fake.duplicate_next_callbacks(2);
    let (status, body) = rest.post("/Calls.json", &as_refs(&first)).await;
    assert_eq!(status, 201, "the second attempt succeeds: {body}");
    let sid = body["sid"].as_str().unwrap().to_owned();
    let (status, _) = rest.get(&format!("/Calls/{sid}.json")).await;
    assert_eq!(status, 503);
    fake.wait_for("6 callbacks", WAIT, |_| {
        (app.hits("/dup").len() == 6).then_some(())
    })
    .await;
    assert_eq!(
        app.values("/dup", "SequenceNumber"),
        ["0", "0", "1", "1", "2", "3"]
    );

    fake.reorder_next_callbacks(4);
    let (_, body) = rest
        .post("/Calls.json", &as_refs(&form("/reordered", &app)))
        .await;
    let sid = body["sid"].as_str().unwrap().to_owned();
    fake.wait_for_call_status(&sid, "completed", WAIT).await;
    fake.wait_for("4 callbacks", WAIT, |_| {
        (app.hits("/reordered").len() == 4).then_some(())
    })
    .await;
    assert_eq!(
        app.values("/reordered", "CallStatus"),
        ["completed", "in-progress", "ringing", "initiated"]
    );

    fake.drop_next_callbacks(1);
    app.fail_first("/flaky", 2);
    let (_, body) = rest
        .post("/Calls.json", &as_refs(&form("/flaky", &app)))
        .await;
    let sid = body["sid"].as_str().unwrap().to_owned();
    fake.wait_for_call_status(&sid, "completed", WAIT).await;
    fake.wait_for_callbacks_idle(WAIT).await;
    let log: Vec<_> = fake
        .callback_log()
        .into_iter()
        .filter(|r| r.kind == CallbackKind::CallStatus && r.url.ends_with("/flaky"))
        .collect();
    assert!(
        log[0].dropped && log[0].param("CallStatus") == Some("initiated"),
        "{log:?}"
    );
    let ringing: Vec<_> = log
        .iter()
        .filter(|r| r.param("CallStatus") == Some("ringing"))
        .map(|r| (r.attempt, r.status))
        .collect();
    assert_eq!(ringing, [(1, Some(500)), (2, Some(500)), (3, Some(204))]);
    assert_eq!(
        app.values("/flaky", "CallStatus"),
        ["ringing", "ringing", "ringing", "in-progress", "completed"]
    );
    let requests = fake.requests();
    let created = requests
        .iter()
        .find(|r| r.route == Route::CreateCall && r.status == 201)
        .unwrap();
    assert_eq!(created.param("To"), Some("+15550000040"));
}

#[actix_web::test]
async fn slow_twiml_times_out_and_rest_latency_delays_answers() {
    let (fake, app, rest) = setup().await;
    app.twiml("/voice", "<Response><Say>too late</Say></Response>");
    app.delay("/voice", Duration::from_millis(500));
    fake.set_twiml_timeout(Some(Duration::from_millis(100)));
    let sid = fake.inbound_call("+15557000005", NUMBER);
    fake.wait_for_call_status(&sid, "completed", WAIT).await;
    assert_eq!(fake.heard(&sid), [Heard::ApplicationError]);
    assert!(
        fake.errors()[0].message.contains("failed"),
        "{:?}",
        fake.errors()
    );

    fake.set_twiml_timeout(None);
    let sid = fake.inbound_call("+15557000005", NUMBER);
    fake.wait_for_call_status(&sid, "completed", WAIT).await;
    assert_eq!(fake.heard(&sid), [Heard::Say("too late".into())]);

    fake.set_rest_latency(Duration::from_millis(300));
    let started = std::time::Instant::now();
    let (status, _) = rest.get("/Conferences.json").await;
    assert_eq!(status, 200);
    assert!(started.elapsed() >= Duration::from_millis(300));
}

#[actix_web::test]
async fn a_participant_added_through_rest_rings_then_can_be_cancelled_by_removal() {
    let (fake, app, rest) = setup().await;
    app.twiml(
        "/voice",
        "<Response><Dial><Conference>consult</Conference></Dial></Response>",
    );
    fake.inbound_call("+15557000006", NUMBER);
    let conf = fake
        .wait_for("consult", WAIT, |f| f.conference("consult"))
        .await;
    fake.set_phone(
        "+15550000050",
        PhoneScript::answering_after(Duration::from_secs(30)),
    );
    let (status, body) = rest
        .post(
            &format!("/Conferences/{}/Participants.json", conf.sid),
            &[
                ("From", NUMBER),
                ("To", "+15550000050"),
                ("Label", "b"),
                ("StatusCallback", &app.url("/b")),
            ],
        )
        .await;
    assert_eq!(
        (status, body["status"].as_str()),
        (201, Some("queued")),
        "{body}"
    );
    let b = body["call_sid"].as_str().unwrap().to_owned();
    fake.wait_for("b ringing", WAIT, |f| {
        f.conference("consult")
            .and_then(|c| c.participant(&b).filter(|p| p.status == "ringing").cloned())
    })
    .await;
    let (status, body) = rest
        .get(&format!("/Conferences/{}/Participants/b.json", conf.sid))
        .await;
    assert_eq!((status, body["status"].as_str()), (200, Some("ringing")));
    assert_eq!(body["call_sid"], b.as_str());
    let (status, _, _) = rest
        .send(
            reqwest::Method::DELETE,
            &format!("/Conferences/{}/Participants/b.json", conf.sid),
            &[],
        )
        .await;
    assert_eq!(status, 204);
    fake.wait_for_call_status(&b, "canceled", WAIT).await;
    assert!(fake
        .conference("consult")
        .unwrap()
        .participant(&b)
        .is_none());
    fake.wait_for("the canceled callback", WAIT, |_| {
        (!app.hits("/b").is_empty()).then_some(())
    })
    .await;
    assert_eq!(app.values("/b", "CallStatus"), ["canceled"]);
}

/// POSTs JSON to the fake's test surface; returns the status and the JSON answer.
async fn test_post(fake: &FakeTwilio, path: &str, body: Value) -> (u16, Value) {
    let resp = reqwest::Client::new()
        .post(format!("{}{path}", fake.base_url()))
        .json(&body)
        .send()
        .await
        .expect("test surface request");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn test_state(fake: &FakeTwilio) -> Value {
    reqwest::get(format!("{}/test/state", fake.base_url()))
        .await
        .expect("GET /test/state")
        .json()
        .await
        .expect("state JSON")
}

#[actix_web::test]
async fn the_test_surface_places_connects_hangs_up_and_shows_the_state_over_http() {
    let (fake, app, _rest) = setup().await;
    app.twiml("/voice", &caller_twiml(&app));
    app.twiml("/wait", "<Response><Pause length=\"600\"/></Response>");
    app.twiml("/client", AGENT_TWIML);

    // A phone call to an owned number; another number is refused.
    let (status, body) = test_post(
        &fake,
        "/test/inbound",
        json!({"from": "+15557654321", "to": NUMBER}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let caller = body["callSid"].as_str().expect("callSid").to_owned();
    let (status, _) = test_post(
        &fake,
        "/test/inbound",
        json!({"from": "+15557654321", "to": "+15559999999"}),
    )
    .await;
    assert_eq!(status, 404);
    let (status, _) = test_post(&fake, "/test/inbound", json!({"from": 1})).await;
    assert_eq!(status, 400);

    // A browser leg: the Access Token is checked like client_connect (a bad one is refused and
    // creates no call), the params reach the TwiML App's voice URL.
    let bad = access_token(
        &fake,
        Some("not-the-secret"),
        json!({}),
        Some("twilio-fpa;v=1"),
    );
    let (status, body) = test_post(
        &fake,
        "/test/client/connect",
        json!({"token": bad, "params": {"callId": "c-1"}}),
    )
    .await;
    assert_eq!(status, 401, "{body}");
    let no_grant = access_token(
        &fake,
        None,
        json!({"grants": {"identity": "alice"}}),
        Some("twilio-fpa;v=1"),
    );
    let (status, _) = test_post(
        &fake,
        "/test/client/connect",
        json!({"token": no_grant, "params": {}}),
    )
    .await;
    assert_eq!(status, 403);
    assert_eq!(fake.calls().len(), 1, "refused tokens create no call");
    let (status, body) = test_post(
        &fake,
        "/test/client/connect",
        json!({"token": good_token(&fake), "params": {"callId": "c-1", "conference": "call-1"}}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let agent = body["callSid"].as_str().expect("callSid").to_owned();
    fake.wait_for("call-1 to start", WAIT, |f| {
        f.conference("call-1").filter(|c| c.status == "in-progress")
    })
    .await;
    let client = &app.hits("/client")[0];
    assert_eq!(client.param("From"), Some("client:alice"));
    assert_eq!(client.param("callId"), Some("c-1"));
    assert_eq!(client.param("conference"), Some("call-1"));
    // CORS for the page's double (another origin).
    let preflight = reqwest::Client::new()
        .request(
            reqwest::Method::OPTIONS,
            format!("{}/test/client/connect", fake.base_url()),
        )
        .send()
        .await
        .expect("preflight");
    assert_eq!(
        preflight
            .headers()
            .get("access-control-allow-origin")
            .and_then(|v| v.to_str().ok()),
        Some("*")
    );

    // The state names every leg and where it is.
    let st = test_state(&fake).await;
    let conf = st["conferences"]
        .as_array()
        .expect("conferences")
        .iter()
        .find(|c| c["friendlyName"] == "call-1")
        .expect("call-1 listed")
        .clone();
    assert_eq!(conf["status"], "in-progress");
    let labels: Vec<(&str, &str, bool, bool)> = conf["participants"]
        .as_array()
        .expect("participants")
        .iter()
        .map(|p| {
            (
                p["label"].as_str().unwrap_or_default(),
                p["callSid"].as_str().unwrap_or_default(),
                p["hold"].as_bool().unwrap_or(true),
                p["muted"].as_bool().unwrap_or(true),
            )
        })
        .collect();
    assert_eq!(
        labels,
        [
            ("caller", caller.as_str(), false, false),
            ("agent", agent.as_str(), false, false)
        ]
    );
    let calls = st["calls"].as_array().expect("calls");
    let leg = calls.iter().find(|c| c["sid"] == agent.as_str()).unwrap();
    assert_eq!(leg["from"], "client:alice");
    assert_eq!(leg["params"]["ApplicationSid"], APP);
    assert_eq!(leg["conference"], "call-1");
    let phone = calls.iter().find(|c| c["sid"] == caller.as_str()).unwrap();
    assert_eq!(phone["heard"][0]["kind"], "say");
    assert_eq!(phone["heard"][0]["what"], "Please hold & wait");

    // The phone hangs up, then the browser (only client legs can be disconnected): both end.
    let (status, body) =
        test_post(&fake, "/test/hangup", json!({"callSid": caller.as_str()})).await;
    assert_eq!((status, &body["hungUp"]), (200, &json!(true)));
    fake.wait_for_call_status(&caller, "completed", WAIT).await;
    let (status, body) =
        test_post(&fake, "/test/hangup", json!({"callSid": caller.as_str()})).await;
    assert_eq!(
        (status, &body["hungUp"]),
        (200, &json!(false)),
        "an ended call cannot hang up again"
    );
    let (status, _) = test_post(
        &fake,
        "/test/client/disconnect",
        json!({"callSid": caller.as_str()}),
    )
    .await;
    assert_eq!(status, 404, "a phone leg is not a client leg");
    let (status, body) = test_post(
        &fake,
        "/test/client/disconnect",
        json!({"callSid": agent.as_str()}),
    )
    .await;
    assert_eq!((status, &body["hungUp"]), (200, &json!(true)));
    fake.wait_for_call_status(&agent, "completed", WAIT).await;
    let st = test_state(&fake).await;
    assert!(st["calls"]
        .as_array()
        .unwrap()
        .iter()
        .all(|c| c["status"] == "completed"));
    assert_eq!(st["errors"], json!([]));
}
