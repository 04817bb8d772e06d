//! Tests of the LiveKit fake itself, driven by the official livekit-api client and by the
//! switchboard's own LiveKit client (`media::livekit`: SIP, agent dispatch, egress).
//!
//! Every Twirp call goes through `livekit_api`'s clients or ours (or raw HTTP where the wire
//! format or a grant itself is under test), every webhook is verified by
//! `livekit_api::webhooks::WebhookReceiver` in a small actix-web endpoint, and tokens and
//! webhooks are cross-checked with LiveKit's Python SDK (`tests/py/livekit_check.py`).

use std::collections::HashSet;
use std::io::Write as _;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use actix_web::dev::ServerHandle;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use livekit_api::access_token::{AccessToken, TokenVerifier, VideoGrants};
use livekit_api::services::room::{
    CreateRoomOptions, RoomClient, SendDataOptions, UpdateParticipantOptions,
};
use livekit_api::services::{ServerError, ServiceError};
use livekit_api::webhooks::WebhookReceiver;
use livekit_protocol as proto;
use prost::Message as _;

use crate::support::livekit::{
    AuthErrorMode, EgressFault, FakeJoinError, FakeLiveKit, FakeOptions, SipScript,
};
use livekit_api::access_token::SIPGrants;
use switchboard::config::LiveKitConfig;
use switchboard::media::livekit::{
    EgressStatus, LiveKit, LiveKitError, OutboundTrunkSpec, ParticipantKind, RecordingTarget,
    SipDial, SipDialError, SipTransport,
};
use switchboard::secret::Secret;

const KEY: &str = "APIswitchboardtest";
const SECRET: &str = "switchboard-test-secret-0123456789abcdefghij";
const IDLE: Duration = Duration::from_secs(10);

fn fake() -> FakeLiveKit {
    FakeLiveKit::start(FakeOptions {
        api_key: KEY.to_owned(),
        api_secret: SECRET.to_owned(),
    })
}

fn admin(lk: &FakeLiveKit) -> RoomClient {
    RoomClient::with_api_key(&lk.url(), KEY, SECRET)
}

fn token(identity: &str, grants: VideoGrants) -> String {
    AccessToken::with_api_key(KEY, SECRET)
        .with_identity(identity)
        .with_name(identity)
        .with_grants(grants)
        .to_jwt()
        .expect("mint token")
}

fn join_grants(room: &str) -> VideoGrants {
    VideoGrants {
        room_join: true,
        room: room.to_owned(),
        ..Default::default()
    }
}

/// A token built by hand (for claims the SDK refuses to mint), HS256 with `secret`.
fn raw_token(secret: &str, claims: serde_json::Value) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("encode raw token")
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64
}

/// The Twirp error code of a client error, `None` if the error is not a Twirp error body.
fn twirp(err: &ServiceError) -> Option<(String, String)> {
    match err {
        ServiceError::Twirp(ServerError::Twirp(code)) => {
            Some((code.code.clone(), code.msg.clone()))
        }
        _ => None,
    }
}

fn code_of(err: &ServiceError) -> String {
    twirp(err)
        .map(|(code, _)| code)
        .unwrap_or_else(|| format!("<not a twirp error: {err}>"))
}

fn event_names(lk: &FakeLiveKit, room: &str) -> Vec<(String, Option<String>)> {
    lk.events()
        .into_iter()
        .filter(|e| e.room.as_ref().map(|r| r.name.as_str()) == Some(room))
        .map(|e| (e.event, e.participant.map(|p| p.identity)))
        .collect()
}

fn ev(name: &str, identity: Option<&str>) -> (String, Option<String>) {
    (name.to_owned(), identity.map(str::to_owned))
}

async fn post(
    url: &str,
    content_type: &str,
    auth: Option<&str>,
    body: Vec<u8>,
) -> (u16, String, String) {
    let mut req = reqwest::Client::new()
        .post(url)
        .header("Content-Type", content_type)
        .body(body);
    if let Some(auth) = auth {
        req = req.header("Authorization", auth);
    }
    let resp = req.send().await.expect("send");
    let status = resp.status().as_u16();
    let ct = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    (status, ct, resp.text().await.expect("body"))
}

fn admin_bearer(grants: VideoGrants) -> String {
    format!(
        "Bearer {}",
        AccessToken::with_api_key(KEY, SECRET)
            .with_grants(grants)
            .to_jwt()
            .expect("mint")
    )
}

/// A webhook endpoint verifying every delivery with livekit-api's `WebhookReceiver`.
struct Receiver {
    url: String,
    events: Arc<Mutex<Vec<proto::WebhookEvent>>>,
    handle: ServerHandle,
}

#[derive(Clone)]
struct ReceiverData {
    receiver: WebhookReceiver,
    events: Arc<Mutex<Vec<proto::WebhookEvent>>>,
}

async fn receive_webhook(
    req: HttpRequest,
    body: web::Bytes,
    data: web::Data<ReceiverData>,
) -> HttpResponse {
    let content_type = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if content_type != "application/webhook+json" {
        return HttpResponse::UnsupportedMediaType().finish();
    }
    let auth = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let Ok(body) = std::str::from_utf8(&body) else {
        return HttpResponse::BadRequest().finish();
    };
    match data.receiver.receive(body, auth) {
        Ok(event) => {
            data.events.lock().expect("events").push(event);
            HttpResponse::Ok().finish()
        }
        Err(_) => HttpResponse::Unauthorized().finish(),
    }
}

impl Receiver {
    async fn start(key: &str, secret: &str) -> Receiver {
        let events = Arc::new(Mutex::new(Vec::new()));
        let data = ReceiverData {
            receiver: WebhookReceiver::new(TokenVerifier::with_api_key(key, secret)),
            events: Arc::clone(&events),
        };
        let server = HttpServer::new(move || {
            App::new()
                .app_data(web::Data::new(data.clone()))
                .route("/livekit/webhook", web::post().to(receive_webhook))
        })
        .workers(1)
        .disable_signals()
        .bind(("127.0.0.1", 0))
        .expect("bind receiver");
        let addr = server.addrs()[0];
        let running = server.run();
        let handle = running.handle();
        actix_rt::spawn(running);
        Receiver {
            url: format!("http://{addr}/livekit/webhook"),
            events,
            handle,
        }
    }

    fn events(&self) -> Vec<proto::WebhookEvent> {
        self.events.lock().expect("events").clone()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        drop(self.handle.stop(false));
    }
}

#[actix_web::test]
async fn rooms_are_created_listed_and_deleted_through_the_real_client() {
    let lk = fake();
    let client = admin(&lk);

    let created = client
        .create_room(
            "sales-1",
            CreateRoomOptions {
                max_participants: 3,
                metadata: "queue=sales".to_owned(),
                ..Default::default()
            },
        )
        .await
        .expect("create sales-1");
    assert_eq!(created.name, "sales-1");
    assert!(created.sid.starts_with("RM_"), "sid {}", created.sid);
    assert_eq!(created.max_participants, 3);
    assert_eq!(created.metadata, "queue=sales");
    assert_eq!(created.empty_timeout, 300, "server default empty timeout");
    assert!(created.creation_time > 0);

    let again = client
        .create_room("sales-1", CreateRoomOptions::default())
        .await
        .expect("create sales-1 again");
    assert_eq!(again.sid, created.sid, "CreateRoom is idempotent");
    assert_eq!(again.metadata, "queue=sales");

    client
        .create_room("support-1", CreateRoomOptions::default())
        .await
        .expect("create support-1");

    let all: Vec<String> = client
        .list_rooms(vec![])
        .await
        .expect("list")
        .into_iter()
        .map(|r| r.name)
        .collect();
    assert_eq!(all, ["sales-1", "support-1"]);
    let some: Vec<String> = client
        .list_rooms(vec!["support-1".to_owned(), "nope".to_owned()])
        .await
        .expect("list filtered")
        .into_iter()
        .map(|r| r.name)
        .collect();
    assert_eq!(some, ["support-1"]);

    client.delete_room("sales-1").await.expect("delete");
    assert!(!lk.room_exists("sales-1"));
    assert_eq!(lk.rooms(), ["support-1"]);
    let err = client.delete_room("sales-1").await.unwrap_err();
    assert_eq!(code_of(&err), "not_found");

    assert_eq!(
        event_names(&lk, "sales-1"),
        [ev("room_started", None), ev("room_finished", None)]
    );
    let finished = lk
        .events()
        .into_iter()
        .find(|e| e.event == "room_finished")
        .expect("room_finished");
    assert_eq!(
        finished.room_end_reason,
        proto::RoomEndReason::RoomEndApiDelete as i32
    );

    let log: Vec<(String, String, u16)> = lk
        .requests()
        .into_iter()
        .map(|r| (r.method, r.room, r.status))
        .collect();
    assert_eq!(
        log,
        [
            ("CreateRoom".to_owned(), "sales-1".to_owned(), 200),
            ("CreateRoom".to_owned(), "sales-1".to_owned(), 200),
            ("CreateRoom".to_owned(), "support-1".to_owned(), 200),
            ("ListRooms".to_owned(), String::new(), 200),
            ("ListRooms".to_owned(), String::new(), 200),
            ("DeleteRoom".to_owned(), "sales-1".to_owned(), 200),
            ("DeleteRoom".to_owned(), "sales-1".to_owned(), 404),
        ]
    );
}

#[actix_web::test]
async fn participants_who_joined_are_managed_through_the_real_client() {
    let lk = fake();
    let client = admin(&lk);

    let alice = lk
        .join(&lk.client_token("call-1", "alice"))
        .expect("alice joins");
    assert_eq!(alice.room, "call-1");
    assert!(alice.sid.starts_with("PA_"));
    assert!(lk.room_exists("call-1"), "the first join creates the room");

    let bob_token = AccessToken::with_api_key(KEY, SECRET)
        .with_identity("bob")
        .with_name("Bob B")
        .with_metadata(r#"{"role":"agent"}"#)
        .with_attributes([("team", "blue")])
        .with_grants(VideoGrants {
            room_join: true,
            room: "call-1".to_owned(),
            can_publish: Some(false),
            hidden: true,
            ..Default::default()
        })
        .to_jwt()
        .expect("bob token");
    lk.join(&bob_token).expect("bob joins");
    assert_eq!(lk.participants("call-1"), ["alice", "bob"]);
    assert!(lk.is_in_room("call-1", "bob"));

    let listed = client.list_participants("call-1").await.expect("list");
    let identities: Vec<&str> = listed.iter().map(|p| p.identity.as_str()).collect();
    assert_eq!(identities, ["alice", "bob"]);
    let bob = &listed[1];
    assert_eq!(bob.name, "Bob B");
    assert_eq!(bob.metadata, r#"{"role":"agent"}"#);
    assert_eq!(bob.attributes.get("team").map(String::as_str), Some("blue"));
    assert_eq!(bob.state, proto::participant_info::State::Active as i32);
    let perm = bob.permission.clone().expect("bob permission");
    assert!(!perm.can_publish);
    assert!(!perm.can_publish_data, "canPublishData follows canPublish");
    assert!(perm.can_subscribe);
    assert!(perm.hidden);
    let perm = listed[0].permission.clone().expect("alice permission");
    assert!(perm.can_publish && perm.can_subscribe && perm.can_publish_data && !perm.hidden);

    let got = client.get_participant("call-1", "bob").await.expect("get");
    assert_eq!(got.sid, bob.sid);
    let err = client.get_participant("call-1", "carol").await.unwrap_err();
    assert_eq!(code_of(&err), "not_found");

    let updated = client
        .update_participant(
            "call-1",
            "alice",
            UpdateParticipantOptions {
                metadata: "on-hold".to_owned(),
                name: "Alice A".to_owned(),
                ..Default::default()
            },
        )
        .await
        .expect("update participant");
    assert_eq!(updated.name, "Alice A");
    assert_eq!(
        lk.participant("call-1", "alice").expect("alice").metadata,
        "on-hold"
    );
    let err = client
        .update_participant("call-1", "carol", UpdateParticipantOptions::default())
        .await
        .unwrap_err();
    assert_eq!(code_of(&err), "not_found");

    let room = client
        .update_room_metadata("call-1", "state=ringing")
        .await
        .expect("room metadata");
    assert_eq!(room.metadata, "state=ringing");
    assert_eq!(room.num_participants, 2);

    client
        .send_data(
            "call-1",
            b"hello".to_vec(),
            SendDataOptions {
                topic: Some("transfer".to_owned()),
                destination_identities: vec!["bob".to_owned()],
                ..Default::default()
            },
        )
        .await
        .expect("send data");
    let sent = lk.sent_data();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].data, b"hello");
    assert_eq!(sent[0].topic.as_deref(), Some("transfer"));
    assert_eq!(sent[0].destination_identities, ["bob"]);

    client
        .remove_participant("call-1", "bob")
        .await
        .expect("remove bob");
    assert!(!lk.is_in_room("call-1", "bob"));
    let err = client
        .remove_participant("call-1", "bob")
        .await
        .unwrap_err();
    assert_eq!(code_of(&err), "not_found");

    assert!(client
        .list_participants("no-such-room")
        .await
        .expect("list unknown room")
        .is_empty());

    assert!(lk.leave("call-1", "alice"));
    assert!(!lk.leave("call-1", "alice"));
    assert!(lk.participants("call-1").is_empty());
    assert!(
        lk.room_exists("call-1"),
        "rooms outlive their last participant"
    );
    assert_eq!(lk.expire_empty_rooms(), ["call-1"]);
    assert!(!lk.room_exists("call-1"));

    assert_eq!(
        event_names(&lk, "call-1"),
        [
            ev("room_started", None),
            ev("participant_joined", Some("alice")),
            ev("participant_joined", Some("bob")),
            ev("participant_left", Some("bob")),
            ev("participant_left", Some("alice")),
            ev("room_finished", None),
        ]
    );
    let reasons: Vec<i32> = lk
        .events()
        .into_iter()
        .filter(|e| e.event == "participant_left")
        .map(|e| e.participant.expect("participant").disconnect_reason)
        .collect();
    assert_eq!(
        reasons,
        [
            proto::DisconnectReason::ParticipantRemoved as i32,
            proto::DisconnectReason::ClientInitiated as i32
        ]
    );
}

#[actix_web::test]
async fn rejoining_with_the_same_identity_replaces_the_old_session() {
    let lk = fake();
    let first = lk.join(&lk.client_token("call-2", "alice")).expect("first");
    let second = lk
        .join(&lk.client_token("call-2", "alice"))
        .expect("second");
    assert_ne!(first.sid, second.sid);
    assert_eq!(lk.participants("call-2"), ["alice"]);
    assert_eq!(
        lk.participant("call-2", "alice").expect("alice").sid,
        second.sid
    );
    let events: Vec<(String, String)> = lk
        .events()
        .into_iter()
        .map(|e| (e.event, e.participant.map(|p| p.sid).unwrap_or_default()))
        .collect();
    assert_eq!(
        events,
        [
            ("room_started".to_owned(), String::new()),
            ("participant_joined".to_owned(), first.sid.clone()),
            ("participant_left".to_owned(), first.sid),
            ("participant_joined".to_owned(), second.sid),
        ]
    );
    let left = &lk.events()[2];
    assert_eq!(
        left.participant.as_ref().expect("p").disconnect_reason,
        proto::DisconnectReason::DuplicateIdentity as i32
    );
}

#[actix_web::test]
async fn tokens_without_the_needed_grant_are_refused() {
    let lk = fake();
    admin(&lk)
        .create_room("call-3", CreateRoomOptions::default())
        .await
        .expect("create");

    // A participant's token: roomJoin only.
    let weak = RoomClient::with_token(&lk.url(), &token("caller", join_grants("call-3")));
    let err = weak
        .create_room("other", CreateRoomOptions::default())
        .await
        .unwrap_err();
    assert_eq!(
        twirp(&err),
        Some((
            "unauthenticated".to_owned(),
            "permissions denied".to_owned()
        )),
        "livekit-server answers twirpAuthError(ErrPermissionDenied)"
    );
    assert_eq!(
        code_of(&weak.list_rooms(vec![]).await.unwrap_err()),
        "unauthenticated"
    );
    assert_eq!(
        code_of(&weak.delete_room("call-3").await.unwrap_err()),
        "unauthenticated"
    );
    assert_eq!(
        code_of(&weak.list_participants("call-3").await.unwrap_err()),
        "unauthenticated"
    );
    assert!(!lk.room_exists("other"));
    assert!(lk.room_exists("call-3"));

    // roomAdmin, but for another room.
    let other_admin = RoomClient::with_token(
        &lk.url(),
        &token(
            "ops",
            VideoGrants {
                room_admin: true,
                room: "elsewhere".to_owned(),
                ..Default::default()
            },
        ),
    );
    assert_eq!(
        code_of(&other_admin.list_participants("call-3").await.unwrap_err()),
        "unauthenticated"
    );
    assert!(other_admin
        .list_participants("elsewhere")
        .await
        .expect("own room")
        .is_empty());

    // roomAdmin on the source but no destinationRoom: MoveParticipant refused even on Cloud.
    lk.set_cloud_mode(true);
    lk.join(&lk.client_token("call-3", "caller")).expect("join");
    let no_dest = RoomClient::with_token(
        &lk.url(),
        &token(
            "ops",
            VideoGrants {
                room_admin: true,
                room: "call-3".to_owned(),
                ..Default::default()
            },
        ),
    );
    let err = no_dest
        .move_participant("call-3", "caller", "call-4")
        .await
        .unwrap_err();
    assert_eq!(code_of(&err), "unauthenticated");
    assert!(lk.is_in_room("call-3", "caller"));

    let statuses: Vec<u16> = lk.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [200, 401, 401, 401, 401, 401, 200, 401]);

    // The facts sheet's variant: 403 permission_denied.
    lk.set_auth_error_mode(AuthErrorMode::FactsSheet);
    let err = weak
        .create_room("other", CreateRoomOptions::default())
        .await
        .unwrap_err();
    assert_eq!(code_of(&err), "permission_denied");
    assert_eq!(lk.requests().last().expect("logged").status, 403);
}

#[actix_web::test]
async fn bad_credentials_are_unauthenticated() {
    let lk = fake();
    let list_rooms_url = format!("{}/twirp/livekit.RoomService/ListRooms", lk.url());
    let body = proto::ListRoomsRequest::default().encode_to_vec();

    // Wrong secret: the real server's middleware answers 401 with a plain-text body, which the
    // Rust client cannot decode as a Twirp error.
    let wrong = RoomClient::with_api_key(&lk.url(), KEY, "not-the-secret-0123456789abcdefghijkl");
    let err = wrong.list_rooms(vec![]).await.unwrap_err();
    assert!(twirp(&err).is_none(), "plain-text 401, got {err:?}");
    let record = lk.requests().pop().expect("logged");
    assert_eq!((record.method.as_str(), record.status), ("ListRooms", 401));

    let bad_sig = AccessToken::with_api_key(KEY, "not-the-secret-0123456789abcdefghijkl")
        .with_grants(VideoGrants {
            room_list: true,
            ..Default::default()
        })
        .to_jwt()
        .expect("mint");
    let (status, ct, text) = post(
        &list_rooms_url,
        "application/protobuf",
        Some(&format!("Bearer {bad_sig}")),
        body.clone(),
    )
    .await;
    assert_eq!(status, 401);
    assert!(ct.starts_with("text/plain"), "{ct}");
    assert!(text.starts_with("invalid token: "), "{text}");

    // Unknown API key.
    let unknown = AccessToken::with_api_key("APIunknown", SECRET)
        .with_grants(VideoGrants {
            room_list: true,
            ..Default::default()
        })
        .to_jwt()
        .expect("mint");
    let (status, _, text) = post(
        &list_rooms_url,
        "application/protobuf",
        Some(&format!("Bearer {unknown}")),
        body.clone(),
    )
    .await;
    assert_eq!(
        (status, text.as_str()),
        (401, "invalid API key: APIunknown")
    );

    // Not a bearer token, and not a JWT.
    let (status, _, text) = post(
        &list_rooms_url,
        "application/protobuf",
        Some("Basic abc"),
        body.clone(),
    )
    .await;
    assert_eq!(status, 401);
    assert!(text.starts_with("invalid authorization header"), "{text}");
    let (status, _, text) = post(
        &list_rooms_url,
        "application/protobuf",
        Some("Bearer not-a-jwt"),
        body.clone(),
    )
    .await;
    assert_eq!(
        (status, text.as_str()),
        (401, "invalid authorization token")
    );

    // Expired, and without exp.
    let expired = raw_token(
        SECRET,
        serde_json::json!({"iss": KEY, "exp": now() - 3600, "nbf": now() - 7200, "video": {"roomList": true}}),
    );
    let (status, _, text) = post(
        &list_rooms_url,
        "application/protobuf",
        Some(&format!("Bearer {expired}")),
        body.clone(),
    )
    .await;
    assert_eq!(status, 401);
    assert!(text.contains("ExpiredSignature"), "{text}");
    let eternal = raw_token(
        SECRET,
        serde_json::json!({"iss": KEY, "video": {"roomList": true}}),
    );
    let (status, _, _) = post(
        &list_rooms_url,
        "application/protobuf",
        Some(&format!("Bearer {eternal}")),
        body.clone(),
    )
    .await;
    assert_eq!(status, 401);

    // No token at all: the method's grant check answers, as Twirp JSON.
    let (status, ct, text) =
        post(&list_rooms_url, "application/protobuf", None, body.clone()).await;
    assert_eq!(status, 401);
    assert_eq!(ct, "application/json");
    let json: serde_json::Value = serde_json::from_str(&text).expect("twirp json");
    assert_eq!(json["code"], "unauthenticated");
    assert_eq!(json["msg"], "permissions denied");

    // The same token passed as the access_token query parameter is accepted.
    let good = AccessToken::with_api_key(KEY, SECRET)
        .with_grants(VideoGrants {
            room_list: true,
            ..Default::default()
        })
        .to_jwt()
        .expect("mint");
    let (status, _, _) = post(
        &format!("{list_rooms_url}?access_token={good}"),
        "application/protobuf",
        None,
        body.clone(),
    )
    .await;
    assert_eq!(status, 200);

    // The facts sheet's variant: Twirp JSON unauthenticated, which the client decodes.
    lk.set_auth_error_mode(AuthErrorMode::FactsSheet);
    let err = wrong.list_rooms(vec![]).await.unwrap_err();
    assert_eq!(code_of(&err), "unauthenticated");
    assert!(lk.rooms().is_empty());
}

#[actix_web::test]
async fn joins_are_checked_like_the_signalling_endpoint() {
    let lk = fake();

    let for_b = lk.client_token("room-b", "alice");
    assert_eq!(
        lk.join_room("room-a", &for_b).unwrap_err(),
        FakeJoinError::WrongRoom {
            token_room: "room-b".to_owned(),
            requested: "room-a".to_owned()
        }
    );

    let admin_only = token(
        "alice",
        VideoGrants {
            room_admin: true,
            room: "room-a".to_owned(),
            ..Default::default()
        },
    );
    assert_eq!(
        lk.join(&admin_only).unwrap_err(),
        FakeJoinError::PermissionDenied
    );
    let no_video = AccessToken::with_api_key(KEY, SECRET)
        .with_identity("alice")
        .to_jwt()
        .expect("mint");
    assert_eq!(
        lk.join(&no_video).unwrap_err(),
        FakeJoinError::PermissionDenied
    );

    let expired = raw_token(
        SECRET,
        serde_json::json!({"iss": KEY, "sub": "alice", "exp": now() - 3600,
                           "video": {"roomJoin": true, "room": "room-a"}}),
    );
    match lk.join(&expired).unwrap_err() {
        FakeJoinError::InvalidToken(msg) => assert!(msg.contains("ExpiredSignature"), "{msg}"),
        other => panic!("expired token: {other:?}"),
    }
    let not_yet = raw_token(
        SECRET,
        serde_json::json!({"iss": KEY, "sub": "alice", "nbf": now() + 3600, "exp": now() + 7200,
                           "video": {"roomJoin": true, "room": "room-a"}}),
    );
    assert!(matches!(
        lk.join(&not_yet).unwrap_err(),
        FakeJoinError::InvalidToken(_)
    ));
    let wrong_secret = AccessToken::with_api_key(KEY, "not-the-secret-0123456789abcdefghijkl")
        .with_identity("alice")
        .with_grants(join_grants("room-a"))
        .to_jwt()
        .expect("mint");
    assert!(matches!(
        lk.join(&wrong_secret).unwrap_err(),
        FakeJoinError::InvalidToken(_)
    ));
    let other_key = AccessToken::with_api_key("APIother", SECRET)
        .with_identity("alice")
        .with_grants(join_grants("room-a"))
        .to_jwt()
        .expect("mint");
    match lk.join(&other_key).unwrap_err() {
        FakeJoinError::InvalidToken(msg) => assert!(msg.contains("invalid API key"), "{msg}"),
        other => panic!("unknown key: {other:?}"),
    }
    assert!(matches!(
        lk.join("garbage").unwrap_err(),
        FakeJoinError::InvalidToken(_)
    ));

    let anonymous = raw_token(
        SECRET,
        serde_json::json!({"iss": KEY, "exp": now() + 600, "video": {"roomJoin": true, "room": "room-a"}}),
    );
    let err = lk.join(&anonymous).unwrap_err();
    assert_eq!(
        (err.clone(), err.http_status()),
        (FakeJoinError::MissingIdentity, 400)
    );

    let roomless = raw_token(
        SECRET,
        serde_json::json!({"iss": KEY, "sub": "alice", "exp": now() + 600, "video": {"roomJoin": true}}),
    );
    assert_eq!(lk.join(&roomless).unwrap_err(), FakeJoinError::NoRoomName);

    assert!(lk.rooms().is_empty(), "no refused join created a room");
    assert!(lk.events().is_empty(), "no refused join sent an event");

    // A room-less token joins the room the client asks for.
    let joined = lk.join_room("room-a", &roomless).expect("join room-a");
    assert_eq!(joined.room, "room-a");

    // max_participants is enforced; the same identity may still reconnect.
    admin(&lk)
        .create_room(
            "small",
            CreateRoomOptions {
                max_participants: 1,
                ..Default::default()
            },
        )
        .await
        .expect("create small");
    lk.join(&lk.client_token("small", "alice")).expect("alice");
    assert_eq!(
        lk.join(&lk.client_token("small", "bob")).unwrap_err(),
        FakeJoinError::RoomFull
    );
    lk.join(&lk.client_token("small", "alice"))
        .expect("alice again");
    assert_eq!(lk.participants("small"), ["alice"]);
}

#[actix_web::test]
async fn webhooks_are_signed_and_verified_by_the_real_receiver() {
    let lk = fake();
    let receiver = Receiver::start(KEY, SECRET).await;
    lk.set_webhook_url(Some(receiver.url.clone()));
    let client = admin(&lk);

    client
        .create_room("wh-1", CreateRoomOptions::default())
        .await
        .expect("create");
    lk.join(&lk.client_token("wh-1", "alice")).expect("alice");
    lk.join(&lk.client_token("wh-1", "bob")).expect("bob");
    assert!(lk.leave("wh-1", "bob"));
    client.delete_room("wh-1").await.expect("delete");
    assert!(
        lk.wait_for_webhooks_idle(IDLE).await,
        "webhooks still pending"
    );

    let got: Vec<(String, Option<String>)> = receiver
        .events()
        .into_iter()
        .map(|e| (e.event, e.participant.map(|p| p.identity)))
        .collect();
    assert_eq!(
        got,
        [
            ev("room_started", None),
            ev("participant_joined", Some("alice")),
            ev("participant_joined", Some("bob")),
            ev("participant_left", Some("bob")),
            ev("participant_left", Some("alice")),
            ev("room_finished", None),
        ]
    );

    let deliveries = lk.webhook_deliveries();
    assert_eq!(deliveries.len(), 6);
    assert!(
        deliveries.iter().all(|d| d.status == Some(200)),
        "{deliveries:?}"
    );
    assert!(deliveries.iter().all(|d| d.room == "wh-1"));
    let ids: HashSet<&str> = deliveries.iter().map(|d| d.id.as_str()).collect();
    assert_eq!(ids.len(), 6, "event ids are unique");
    assert!(deliveries
        .iter()
        .all(|d| !d.authorization.starts_with("Bearer ")));

    for event in receiver.events() {
        assert!(
            (event.created_at - now()).abs() < 60,
            "createdAt {}",
            event.created_at
        );
        assert!(event.id.starts_with("EV_"));
        assert_eq!(event.room.as_ref().expect("room").name, "wh-1");
    }

    // The wire format: protojson, int64 as strings, camelCase names.
    let first: serde_json::Value = serde_json::from_str(&deliveries[0].body).expect("json body");
    assert_eq!(first["event"], "room_started");
    assert!(first["createdAt"].is_string(), "{first}");
    assert_eq!(first["room"]["name"], "wh-1");
    assert!(first["room"]["creationTime"].is_string(), "{first}");
    let joined: serde_json::Value = serde_json::from_str(&deliveries[1].body).expect("json body");
    assert_eq!(joined["participant"]["identity"], "alice");
    assert_eq!(joined["participant"]["state"], "ACTIVE");

    // The signature covers the body: a changed body is refused by the real receiver.
    let verifier = WebhookReceiver::new(TokenVerifier::with_api_key(KEY, SECRET));
    let tampered = deliveries[0].body.replace("wh-1", "wh-2");
    assert!(verifier
        .receive(&tampered, &deliveries[0].authorization)
        .is_err());
    let wrong_key = WebhookReceiver::new(TokenVerifier::with_api_key(
        KEY,
        "not-the-secret-0123456789abcdefghijkl",
    ));
    assert!(wrong_key
        .receive(&deliveries[0].body, &deliveries[0].authorization)
        .is_err());
}

#[actix_web::test]
async fn webhooks_are_asynchronous_and_ordered_per_room() {
    let lk = fake();
    let receiver = Receiver::start(KEY, SECRET).await;
    lk.set_webhook_url(Some(receiver.url.clone()));
    let latency = Duration::from_millis(300);
    lk.set_webhook_latency(latency);

    let started = Instant::now();
    for i in 0..3 {
        lk.join(&lk.client_token("room-a", &format!("a{i}")))
            .expect("join a");
        lk.join(&lk.client_token("room-b", &format!("b{i}")))
            .expect("join b");
    }
    assert!(
        started.elapsed() < latency,
        "join() does not wait for webhook delivery"
    );
    assert!(lk.webhooks_pending() > 0);
    assert!(
        lk.webhook_deliveries().is_empty(),
        "deliveries wait for the latency"
    );
    assert!(lk.wait_for_webhooks_idle(IDLE).await);
    assert_eq!(lk.webhooks_pending(), 0);

    for room in ["room-a", "room-b"] {
        let sent: Vec<String> = lk
            .events()
            .into_iter()
            .filter(|e| e.room.as_ref().map(|r| r.name.as_str()) == Some(room))
            .map(|e| e.id)
            .collect();
        let delivered: Vec<String> = lk
            .webhook_deliveries()
            .into_iter()
            .filter(|d| d.room == room)
            .map(|d| d.id)
            .collect();
        let received: Vec<String> = receiver
            .events()
            .into_iter()
            .filter(|e| e.room.as_ref().map(|r| r.name.as_str()) == Some(room))
            .map(|e| e.id)
            .collect();
        assert_eq!(sent.len(), 4, "room_started + 3 joins");
        assert_eq!(delivered, sent, "{room}: delivered in order");
        assert_eq!(received, sent, "{room}: received in order");
    }
}

#[actix_web::test]
async fn webhook_faults_and_answers_are_recorded() {
    let lk = fake();
    let receiver = Receiver::start(KEY, SECRET).await;
    lk.set_webhook_url(Some(receiver.url.clone()));

    // Disabled: events are logged, nothing is sent.
    lk.set_webhooks_enabled(false);
    lk.join(&lk.client_token("f-1", "alice")).expect("join");
    assert!(lk.wait_for_webhooks_idle(IDLE).await);
    assert_eq!(lk.events().len(), 2);
    assert!(lk.webhook_deliveries().is_empty());

    // Enabled again: only new events go out.
    lk.set_webhooks_enabled(true);
    assert!(lk.leave("f-1", "alice"));
    assert!(lk.wait_for_webhooks_idle(IDLE).await);
    let deliveries = lk.webhook_deliveries();
    assert_eq!(deliveries.len(), 1);
    assert_eq!(deliveries[0].event, "participant_left");
    assert_eq!(deliveries[0].identity.as_deref(), Some("alice"));

    // A duplicate delivery, as at-least-once delivery allows.
    assert!(lk.redeliver_webhook(&deliveries[0].id));
    assert!(!lk.redeliver_webhook("EV_unknown"));
    assert!(lk.wait_for_webhooks_idle(IDLE).await);
    let ids: Vec<String> = receiver.events().into_iter().map(|e| e.id).collect();
    assert_eq!(ids, [deliveries[0].id.clone(), deliveries[0].id.clone()]);

    // An endpoint with another secret refuses: its 401 is recorded.
    let strict = Receiver::start(KEY, "another-secret-0123456789abcdefghijklm").await;
    lk.set_webhook_url(Some(strict.url.clone()));
    lk.join(&lk.client_token("f-2", "bob")).expect("join");
    assert!(lk.wait_for_webhooks_idle(IDLE).await);
    let refused: Vec<Option<u16>> = lk
        .webhook_deliveries()
        .into_iter()
        .filter(|d| d.room == "f-2")
        .map(|d| d.status)
        .collect();
    assert_eq!(refused, [Some(401), Some(401)]);
    assert!(strict.events().is_empty());

    // Nobody listening: the transport error is recorded, nothing hangs.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr").port()
    };
    lk.set_webhook_url(Some(format!("http://127.0.0.1:{closed}/hook")));
    lk.join(&lk.client_token("f-3", "carol")).expect("join");
    assert!(lk.wait_for_webhooks_idle(IDLE).await);
    let failed: Vec<_> = lk
        .webhook_deliveries()
        .into_iter()
        .filter(|d| d.room == "f-3")
        .collect();
    assert_eq!(failed.len(), 2);
    assert!(failed
        .iter()
        .all(|d| d.status.is_none() && d.error.is_some()));

    // No URL: nothing is queued.
    lk.set_webhook_url(None);
    lk.join(&lk.client_token("f-4", "dave")).expect("join");
    assert_eq!(lk.webhooks_pending(), 0);
}

/// The chaos switches: a webhook dropped, one delivered twice, one held back so a later one
/// overtakes it; Twirp calls failing with 429/500/503 and then succeeding; Twirp latency.
#[actix_web::test]
async fn chaos_switches_drop_duplicate_reorder_and_fail() {
    let lk = fake();
    let receiver = Receiver::start(KEY, SECRET).await;
    lk.set_webhook_url(Some(receiver.url.clone()));
    let joined_in_c = |r: &Receiver| -> Vec<String> {
        r.events()
            .into_iter()
            .filter(|e| e.room.as_ref().map(|r| r.name.as_str()) == Some("c-1"))
            .map(|e| {
                format!(
                    "{}:{}",
                    e.event,
                    e.participant.map(|p| p.identity).unwrap_or_default()
                )
            })
            .collect()
    };

    // Dropped: room_started never arrives, participant_joined does.
    lk.webhook_faults(1, 0, 0, Duration::ZERO);
    lk.join(&lk.client_token("c-1", "a")).expect("join");
    assert!(lk.wait_for_webhooks_idle(IDLE).await);
    assert_eq!(joined_in_c(&receiver), ["participant_joined:a"]);

    // Duplicated: the same event (same id) arrives twice.
    lk.webhook_faults(0, 1, 0, Duration::ZERO);
    lk.join(&lk.client_token("c-1", "b")).expect("join");
    assert!(lk.wait_for_webhooks_idle(IDLE).await);
    let b: Vec<String> = receiver
        .events()
        .into_iter()
        .filter(|e| e.participant.as_ref().map(|p| p.identity.as_str()) == Some("b"))
        .map(|e| e.id)
        .collect();
    assert_eq!(b.len(), 2);
    assert_eq!(b[0], b[1]);

    // Reordered: c's event is held back, d's (later) arrives first.
    lk.webhook_faults(0, 0, 1, Duration::from_millis(300));
    lk.join(&lk.client_token("c-1", "c")).expect("join");
    lk.join(&lk.client_token("c-1", "d")).expect("join");
    assert!(lk.wait_for_webhooks_idle(IDLE).await);
    let got = joined_in_c(&receiver);
    assert_eq!(
        &got[got.len() - 2..],
        ["participant_joined:d", "participant_joined:c"]
    );

    // Twirp failures, one per code, then the service answers again.
    let client = admin(&lk);
    lk.fail_next_twirp(&["resource_exhausted", "internal", "unavailable"]);
    for code in ["resource_exhausted", "internal", "unavailable"] {
        let err = client.list_rooms(vec![]).await.unwrap_err();
        assert_eq!(code_of(&err), code);
    }
    assert!(client.list_rooms(vec![]).await.is_ok());
    let statuses: Vec<u16> = lk.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses[statuses.len() - 4..], [429, 500, 503, 200]);

    // Latency on every Twirp answer.
    lk.set_api_latency(Duration::from_millis(250));
    let started = Instant::now();
    assert!(client.list_rooms(vec![]).await.is_ok());
    assert!(started.elapsed() >= Duration::from_millis(250));
    lk.set_api_latency(Duration::ZERO);

    // Logs off (load runs): nothing more is recorded, the fake still works.
    lk.set_record(false);
    let before = (lk.requests().len(), lk.events().len());
    assert!(client.list_rooms(vec![]).await.is_ok());
    lk.join(&lk.client_token("c-2", "e")).expect("join");
    assert!(lk.wait_for_webhooks_idle(IDLE).await);
    assert_eq!((lk.requests().len(), lk.events().len()), before);
    assert!(lk.is_in_room("c-2", "e"));
}

#[actix_web::test]
async fn twirp_wire_format_and_errors_match_the_server() {
    let lk = fake();
    let base = format!("{}/twirp/livekit.RoomService", lk.url());
    let create = admin_bearer(VideoGrants {
        room_create: true,
        ..Default::default()
    });
    let list = admin_bearer(VideoGrants {
        room_list: true,
        ..Default::default()
    });

    // protojson in, protojson out; unknown fields are ignored.
    let (status, ct, text) = post(
        &format!("{base}/CreateRoom"),
        "application/json",
        Some(&create),
        br#"{"name":"json-room","emptyTimeout":60,"someFutureField":true}"#.to_vec(),
    )
    .await;
    assert_eq!((status, ct.as_str()), (200, "application/json"), "{text}");
    let room: serde_json::Value = serde_json::from_str(&text).expect("json");
    assert_eq!(room["name"], "json-room");
    assert_eq!(room["emptyTimeout"], 60);
    assert!(room["sid"].as_str().expect("sid").starts_with("RM_"));
    assert!(room["creationTime"].is_string(), "int64 as string: {room}");

    let (status, _, text) = post(
        &format!("{base}/ListRooms"),
        "application/json; charset=utf-8",
        Some(&list),
        b"{}".to_vec(),
    )
    .await;
    assert_eq!(status, 200);
    let rooms: serde_json::Value = serde_json::from_str(&text).expect("json");
    assert_eq!(rooms["rooms"][0]["name"], "json-room");

    // protobuf in, protobuf out.
    let (status, ct, _) = post(
        &format!("{base}/ListRooms"),
        "application/protobuf",
        Some(&list),
        proto::ListRoomsRequest::default().encode_to_vec(),
    )
    .await;
    assert_eq!((status, ct.as_str()), (200, "application/protobuf"));

    let twirp_error = |text: &str| -> String {
        let v: serde_json::Value = serde_json::from_str(text).expect("twirp error json");
        assert!(v["msg"].is_string(), "{v}");
        v["code"].as_str().expect("code").to_owned()
    };
    let (status, _, text) = post(
        &format!("{base}/CreateRoom"),
        "application/protobuf",
        Some(&create),
        vec![0xff, 0xff, 0xff, 0xff],
    )
    .await;
    assert_eq!((status, twirp_error(&text)), (400, "malformed".to_owned()));
    let (status, _, text) = post(
        &format!("{base}/CreateRoom"),
        "application/json",
        Some(&create),
        b"{not json".to_vec(),
    )
    .await;
    assert_eq!((status, twirp_error(&text)), (400, "malformed".to_owned()));
    let (status, _, text) = post(
        &format!("{base}/CreateRoom"),
        "application/json",
        Some(&create),
        br#"{"name": 42}"#.to_vec(),
    )
    .await;
    assert_eq!((status, twirp_error(&text)), (400, "malformed".to_owned()));
    let (status, _, text) = post(
        &format!("{base}/NoSuchMethod"),
        "application/protobuf",
        Some(&create),
        Vec::new(),
    )
    .await;
    assert_eq!((status, twirp_error(&text)), (404, "bad_route".to_owned()));
    let (status, _, text) = post(
        &format!("{}/twirp/livekit.Ingress/ListIngress", lk.url()),
        "application/protobuf",
        Some(&create),
        Vec::new(),
    )
    .await;
    assert_eq!((status, twirp_error(&text)), (404, "bad_route".to_owned()));
    let (status, _, text) = post(
        &format!("{base}/CreateRoom"),
        "text/plain",
        Some(&create),
        b"name".to_vec(),
    )
    .await;
    assert_eq!((status, twirp_error(&text)), (404, "bad_route".to_owned()));
    let resp = reqwest::Client::new()
        .get(format!("{base}/ListRooms"))
        .header("Authorization", &list)
        .send()
        .await
        .expect("get");
    assert_eq!(resp.status().as_u16(), 404);
    assert_eq!(twirp_error(&resp.text().await.expect("body")), "bad_route");

    // A SendData nonce must be empty or 16 bytes.
    lk.join(&lk.client_token("json-room", "alice"))
        .expect("join");
    let room_admin = admin_bearer(VideoGrants {
        room_admin: true,
        room: "json-room".to_owned(),
        ..Default::default()
    });
    let (status, _, text) = post(
        &format!("{base}/SendData"),
        "application/protobuf",
        Some(&room_admin),
        proto::SendDataRequest {
            room: "json-room".to_owned(),
            data: b"x".to_vec(),
            nonce: vec![1, 2, 3],
            ..Default::default()
        }
        .encode_to_vec(),
    )
    .await;
    assert_eq!(
        (status, twirp_error(&text)),
        (400, "invalid_argument".to_owned())
    );
    assert!(lk.sent_data().is_empty());

    // The API can be taken down and brought back.
    let client = admin(&lk);
    lk.set_api_down(true);
    let err = client.list_rooms(vec![]).await.unwrap_err();
    assert_eq!(code_of(&err), "unavailable");
    let err = client
        .create_room("down-room", CreateRoomOptions::default())
        .await
        .unwrap_err();
    assert_eq!(code_of(&err), "unavailable");
    assert!(!lk.room_exists("down-room"));
    let record = lk.requests().pop().expect("logged");
    assert_eq!(
        (
            record.method.as_str(),
            record.status,
            record.code.as_deref()
        ),
        ("CreateRoom", 503, Some("unavailable"))
    );
    lk.set_api_down(false);
    assert_eq!(client.list_rooms(vec![]).await.expect("back up").len(), 1);
}

#[actix_web::test]
async fn move_participant_is_cloud_only() {
    let lk = fake();
    let receiver = Receiver::start(KEY, SECRET).await;
    lk.set_webhook_url(Some(receiver.url.clone()));
    let client = admin(&lk);
    lk.join(&lk.client_token("queue", "caller")).expect("join");

    let err = client
        .move_participant("queue", "caller", "agent-room")
        .await
        .unwrap_err();
    assert_eq!(code_of(&err), "unimplemented");
    assert_eq!(lk.requests().last().expect("logged").status, 501);
    assert!(lk.is_in_room("queue", "caller"));
    assert!(!lk.room_exists("agent-room"));

    lk.set_cloud_mode(true);
    let err = client
        .move_participant("queue", "caller", "queue")
        .await
        .unwrap_err();
    assert_eq!(code_of(&err), "invalid_argument");
    let err = client
        .move_participant("queue", "nobody", "agent-room")
        .await
        .unwrap_err();
    assert_eq!(code_of(&err), "not_found");

    client
        .move_participant("queue", "caller", "agent-room")
        .await
        .expect("move on cloud");
    assert!(!lk.is_in_room("queue", "caller"));
    assert!(lk.is_in_room("agent-room", "caller"));
    assert!(lk.wait_for_webhooks_idle(IDLE).await);
    let summary = |events: Vec<proto::WebhookEvent>| -> Vec<(String, String, Option<String>)> {
        events
            .into_iter()
            .map(|e| {
                (
                    e.event,
                    e.room.map(|r| r.name).unwrap_or_default(),
                    e.participant.map(|p| p.identity),
                )
            })
            .collect()
    };
    // Generation order: the new room starts, the caller leaves the queue, then joins.
    let generated = summary(lk.events());
    let expected = [
        ("room_started".to_owned(), "agent-room".to_owned(), None),
        (
            "participant_left".to_owned(),
            "queue".to_owned(),
            Some("caller".to_owned()),
        ),
        (
            "participant_joined".to_owned(),
            "agent-room".to_owned(),
            Some("caller".to_owned()),
        ),
    ];
    assert_eq!(&generated[generated.len() - 3..], expected);
    // Delivery is ordered per room only, so compare each room's sequence.
    let received = summary(receiver.events());
    for room in ["queue", "agent-room"] {
        let of =
            |list: &[(String, String, Option<String>)]| -> Vec<(String, String, Option<String>)> {
                list.iter().filter(|e| e.1 == room).cloned().collect()
            };
        assert_eq!(of(&received), of(&generated), "{room}");
    }
}

/// Runs `tests/py/livekit_check.py` with `args` and `stdin`; fails the test with a clear message
/// if python3 or the livekit-api package is missing.
pub fn python_check(args: &[&str], stdin: &str) -> (i32, String, String) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/py/livekit_check.py");
    let mut child = Command::new("python3")
        .arg(script)
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "python3 is required for the LiveKit cross-check and could not be run ({e}); \
                 install Python 3 and `python3 -m pip install -r tests/py/requirements.txt`"
            )
        });
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("write stdin");
    let out = child.wait_with_output().expect("python3 output");
    let code = out.status.code().unwrap_or(-1);
    let stdout = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_owned();
    assert_ne!(
        code, 2,
        "tests/py/livekit_check.py could not run (missing livekit-api? run \
         `python3 -m pip install -r tests/py/requirements.txt`): {stderr}"
    );
    (code, stdout, stderr)
}

#[actix_web::test]
async fn the_official_python_sdk_agrees_with_tokens_and_webhooks() {
    // A token minted by livekit-api (Rust), read by the Python SDK.
    let minted = AccessToken::with_api_key(KEY, SECRET)
        .with_identity("agent-7")
        .with_name("Agent Seven")
        .with_grants(VideoGrants {
            room_join: true,
            room: "py-room".to_owned(),
            can_publish: Some(false),
            hidden: true,
            ..Default::default()
        })
        .to_jwt()
        .expect("mint");
    let (code, stdout, stderr) = python_check(&["verify-token", KEY, SECRET, &minted], "");
    assert_eq!(code, 0, "verify-token failed: {stderr}");
    let claims: serde_json::Value = serde_json::from_str(&stdout).expect("verify-token json");
    assert_eq!(claims["identity"], "agent-7");
    assert_eq!(claims["name"], "Agent Seven");
    assert_eq!(claims["video"]["roomJoin"], true);
    assert_eq!(claims["video"]["room"], "py-room");
    assert_eq!(claims["video"]["canPublish"], false);
    assert_eq!(claims["video"]["hidden"], true);
    let (code, _, _) = python_check(
        &[
            "verify-token",
            KEY,
            "not-the-secret-0123456789abcdefghijkl",
            &minted,
        ],
        "",
    );
    assert_eq!(code, 1, "a wrong secret must fail in Python too");

    // A webhook the fake signed, verified by the Python SDK's WebhookReceiver.
    let lk = fake();
    let receiver = Receiver::start(KEY, SECRET).await;
    lk.set_webhook_url(Some(receiver.url.clone()));
    lk.join(&lk.client_token("py-room", "agent-7"))
        .expect("join");
    assert!(lk.wait_for_webhooks_idle(IDLE).await);
    let deliveries = lk.webhook_deliveries();
    assert_eq!(deliveries.len(), 2);
    for d in &deliveries {
        let (code, stdout, stderr) =
            python_check(&["verify-webhook", KEY, SECRET, &d.authorization], &d.body);
        assert_eq!(
            code, 0,
            "Python refused the fake's {} webhook: {stderr}",
            d.event
        );
        assert_eq!(stdout, d.event);
    }
    let tampered = deliveries[0].body.replace("py-room", "py-roon");
    let (code, _, _) = python_check(
        &["verify-webhook", KEY, SECRET, &deliveries[0].authorization],
        &tampered,
    );
    assert_eq!(code, 1, "a tampered body must fail in Python too");

    // And the other way: Python signs a body, the Rust receiver accepts it.
    let body = &deliveries[1].body;
    let (code, auth, stderr) = python_check(&["sign-webhook", KEY, SECRET], body);
    assert_eq!(code, 0, "sign-webhook failed: {stderr}");
    let event = WebhookReceiver::new(TokenVerifier::with_api_key(KEY, SECRET))
        .receive(body, &auth)
        .expect("Rust receiver accepts the Python signature");
    assert_eq!(event.event, "participant_joined");
}

// ---------------------------------------------------------------------------------------------
// SIP, agent dispatch and egress, through the switchboard's own client

/// The switchboard's LiveKit client, pointed at the fake.
fn ours(lk: &FakeLiveKit) -> LiveKit {
    LiveKit::new(&LiveKitConfig {
        url: lk.url().replace("http://", "ws://"),
        api_url: lk.url(),
        api_key: KEY.to_owned(),
        api_secret: Secret::new(SECRET),
    })
}

/// The Twirp code of one of our client's errors.
fn lk_code(e: &LiveKitError) -> String {
    match e {
        LiveKitError::Service {
            source: ServiceError::Twirp(ServerError::Twirp(code)),
            ..
        } => code.code.clone(),
        other => format!("<not a twirp error: {other:?}>"),
    }
}

fn trunk_spec() -> OutboundTrunkSpec {
    OutboundTrunkSpec {
        name: "acme pstn".to_owned(),
        address: "acme.pstn.example.com".to_owned(),
        numbers: vec!["+15550001111".to_owned()],
        auth_username: Some("acme-user".to_owned()),
        auth_password: Some(Secret::new("acme-trunk-password")),
        transport: SipTransport::Tls,
    }
}

fn dial(trunk: &str, number: &str, room: &str, identity: &str, ring: Duration) -> SipDial {
    SipDial {
        sip_trunk_id: trunk.to_owned(),
        to_number: number.to_owned(),
        room: room.to_owned(),
        identity: identity.to_owned(),
        name: format!("callee {number}"),
        ringing_timeout: ring,
    }
}

fn recording_target(bucket: &str) -> RecordingTarget {
    RecordingTarget {
        bucket: bucket.to_owned(),
        region: "eu-west-1".to_owned(),
        endpoint: Some("http://127.0.0.1:9000".to_owned()),
        access_key: "AKIDRECORDER".to_owned(),
        secret: Secret::new("recorder-secret"),
        force_path_style: true,
        prefix: "recordings/".to_owned(),
    }
}

/// A server token with the given video and SIP grants, as a `Bearer` header value.
fn bearer(video: VideoGrants, sip: SIPGrants) -> String {
    format!(
        "Bearer {}",
        AccessToken::with_api_key(KEY, SECRET)
            .with_grants(video)
            .with_sip_grants(sip)
            .to_jwt()
            .expect("mint")
    )
}

/// The Twirp code of an error body (`<not twirp>` if it is not one).
fn twirp_code_of(text: &str) -> String {
    serde_json::from_str::<serde_json::Value>(text)
        .ok()
        .and_then(|v| v["code"].as_str().map(str::to_owned))
        .unwrap_or_else(|| format!("<not twirp: {text}>"))
}

/// The fake's events for `room` as (event, identity, kind).
fn kinds(lk: &FakeLiveKit, room: &str) -> Vec<(String, Option<String>, i32)> {
    lk.events()
        .into_iter()
        .filter(|e| {
            e.room.as_ref().map(|r| r.name.as_str()) == Some(room)
                || e.egress_info.as_ref().map(|i| i.room_name.as_str()) == Some(room)
        })
        .map(|e| {
            let kind = e.participant.as_ref().map(|p| p.kind).unwrap_or(-1);
            (e.event, e.participant.map(|p| p.identity), kind)
        })
        .collect()
}

#[actix_web::test]
async fn sip_trunks_are_created_listed_and_deleted_through_our_client() {
    let lk = fake();
    let ours = ours(&lk);
    let id = ours
        .create_outbound_trunk(&trunk_spec())
        .await
        .expect("create trunk");
    assert!(id.starts_with("ST_"), "{id}");
    let trunks = lk.sip_trunks();
    assert_eq!(trunks.len(), 1);
    let t = &trunks[0];
    assert_eq!(t.sip_trunk_id, id);
    assert_eq!(t.name, "acme pstn");
    assert_eq!(t.address, "acme.pstn.example.com");
    assert_eq!(t.numbers, ["+15550001111"]);
    assert_eq!(t.auth_username, "acme-user");
    assert_eq!(t.auth_password, "acme-trunk-password");
    assert_eq!(t.transport, proto::SipTransport::Tls as i32);

    // Listed by our client (no password) and by the official one.
    let ours_listed = ours.list_outbound_trunks().await.expect("list ours");
    assert_eq!(ours_listed.len(), 1);
    assert_eq!(ours_listed[0].sip_trunk_id, id);
    assert_eq!(ours_listed[0].address, "acme.pstn.example.com");
    assert_eq!(ours_listed[0].numbers, ["+15550001111"]);
    assert_eq!(ours_listed[0].auth_username.as_deref(), Some("acme-user"));
    assert_eq!(ours_listed[0].transport, SipTransport::Tls);
    assert!(!format!("{ours_listed:?}").contains("acme-trunk-password"));
    let sip = livekit_api::services::sip::SIPClient::with_api_key(&lk.url(), KEY, SECRET);
    let listed = sip
        .list_sip_outbound_trunk(livekit_api::services::sip::ListSIPOutboundTrunkFilter::All)
        .await
        .expect("list");
    assert_eq!(
        listed
            .iter()
            .map(|t| t.sip_trunk_id.as_str())
            .collect::<Vec<_>>(),
        [id.as_str()]
    );

    // Validation as livekit/protocol's SIPOutboundTrunkInfo.Validate.
    for (spec, why) in [
        (
            OutboundTrunkSpec {
                numbers: vec![],
                ..trunk_spec()
            },
            "no numbers",
        ),
        (
            OutboundTrunkSpec {
                address: String::new(),
                ..trunk_spec()
            },
            "no address",
        ),
        (
            OutboundTrunkSpec {
                address: "sip:acme.example.com".to_owned(),
                ..trunk_spec()
            },
            "a SIP URI",
        ),
        (
            OutboundTrunkSpec {
                address: "acme.example.com;transport=tcp".to_owned(),
                ..trunk_spec()
            },
            "transport in the URI",
        ),
    ] {
        let e = ours.create_outbound_trunk(&spec).await.unwrap_err();
        assert_eq!(lk_code(&e), "invalid_argument", "{why}");
    }
    assert_eq!(lk.sip_trunks().len(), 1);

    // Protojson, as the Node SDK sends it.
    let admin_sip = bearer(
        VideoGrants::default(),
        SIPGrants {
            admin: true,
            ..Default::default()
        },
    );
    let (status, ct, text) = post(
        &format!("{}/twirp/livekit.SIP/CreateSIPOutboundTrunk", lk.url()),
        "application/json",
        Some(&admin_sip),
        serde_json::to_vec(&serde_json::json!({
            "trunk": {"name": "json", "address": "10.0.0.1", "numbers": ["+15550002222"]}
        }))
        .expect("json"),
    )
    .await;
    assert_eq!((status, ct.as_str()), (200, "application/json"), "{text}");
    let created: serde_json::Value = serde_json::from_str(&text).expect("json");
    assert!(created["sipTrunkId"]
        .as_str()
        .expect("id")
        .starts_with("ST_"));
    assert_eq!(lk.sip_trunks().len(), 2);

    ours.delete_sip_trunk(&id).await.expect("delete");
    assert!(lk.sip_trunks().iter().all(|t| t.sip_trunk_id != id));
    ours.delete_sip_trunk(&id)
        .await
        .expect("deleting a trunk that is gone is fine");
    let raw = sip.delete_sip_trunk(&id).await.unwrap_err();
    assert_eq!(
        code_of(&raw),
        "not_found",
        "the server itself says not_found"
    );
}

#[actix_web::test]
async fn sip_dial_outs_play_the_scripted_outcomes() {
    let lk = fake();
    let receiver = Receiver::start(KEY, SECRET).await;
    lk.set_webhook_url(Some(receiver.url.clone()));
    let ours = ours(&lk);
    let trunk = ours
        .create_outbound_trunk(&trunk_spec())
        .await
        .expect("trunk");
    let ring = Duration::from_secs(2);

    // Unscripted: answered at once.
    let answered = ours
        .dial_sip(&dial(&trunk, "+15551110000", "out-1", "callee-1", ring))
        .await
        .expect("answered");
    assert_eq!(answered.identity, "callee-1");
    assert!(answered.participant_id.starts_with("PA_"));
    assert!(answered.sip_call_id.starts_with("SCL_"));
    let p = lk
        .participant("out-1", "callee-1")
        .expect("callee in the room");
    assert_eq!(p.kind, proto::participant_info::Kind::Sip as i32);
    assert_eq!(p.attributes["sip.callStatus"], "active");
    assert_eq!(p.attributes["sip.phoneNumber"], "+15551110000");
    assert_eq!(p.name, "callee +15551110000");

    // Answered after ringing.
    lk.script_sip(
        "+15552220000",
        SipScript::Answer {
            after: Duration::from_millis(300),
        },
    );
    let started = Instant::now();
    ours.dial_sip(&dial(&trunk, "+15552220000", "out-2", "callee-2", ring))
        .await
        .expect("answered later");
    assert!(started.elapsed() >= Duration::from_millis(300));

    // Busy and declined: the far end's SIP status, and the callee leaves.
    for (number, status, reason, room) in [
        ("+15553330000", 486, "Busy Here", "out-3"),
        ("+15554440000", 603, "Decline", "out-4"),
    ] {
        lk.script_sip(
            number,
            SipScript::Reject {
                status,
                reason: reason.to_owned(),
            },
        );
        let e = ours
            .dial_sip(&dial(&trunk, number, room, "callee", ring))
            .await
            .unwrap_err();
        match &e {
            SipDialError::Rejected {
                sip_status,
                reason: r,
            } => {
                assert_eq!((*sip_status, r.as_str()), (status, reason))
            }
            other => panic!("{number}: {other:?}"),
        }
        assert_eq!(e.sip_status(), Some(status));
        assert!(!lk.is_in_room(room, "callee"), "{room}");
    }

    // No answer: rings for the ringing timeout, then 480.
    lk.script_sip("+15555550000", SipScript::NoAnswer);
    let started = Instant::now();
    let e = ours
        .dial_sip(&dial(
            &trunk,
            "+15555550000",
            "out-5",
            "callee",
            Duration::from_millis(400),
        ))
        .await
        .unwrap_err();
    assert!(started.elapsed() >= Duration::from_millis(400));
    assert_eq!(e.sip_status(), Some(480), "{e:?}");

    // Hang: only the request timeout (ring + 2 s) ends it; our client then removes the leg.
    lk.script_sip("+15556660000", SipScript::Hang);
    let started = Instant::now();
    let e = ours
        .dial_sip(&dial(
            &trunk,
            "+15556660000",
            "out-6",
            "callee",
            Duration::from_millis(500),
        ))
        .await
        .unwrap_err();
    assert!(matches!(e, SipDialError::Service(_)), "{e:?}");
    assert!(started.elapsed() >= Duration::from_millis(2_500));
    assert!(
        !lk.is_in_room("out-6", "callee"),
        "the unanswered leg is removed"
    );

    // Unknown trunk, missing number or room: LiveKit refuses, nobody is dialled.
    let e = ours
        .dial_sip(&dial("ST_nope", "+15557770000", "out-7", "callee", ring))
        .await
        .unwrap_err();
    match &e {
        SipDialError::Service(inner) => assert_eq!(lk_code(inner), "not_found"),
        other => panic!("{other:?}"),
    }
    for (number, room) in [("", "out-7"), ("+15557770000", "")] {
        match ours
            .dial_sip(&dial(&trunk, number, room, "callee", ring))
            .await
            .unwrap_err()
        {
            SipDialError::Service(inner) => assert_eq!(lk_code(&inner), "invalid_argument"),
            other => panic!("{other:?}"),
        }
    }
    assert!(!lk.room_exists("out-7"));

    // What was dialled is recorded.
    let dials = lk.sip_dials();
    assert_eq!(dials.len(), 6);
    assert_eq!(dials[0].sip_trunk_id, trunk);
    assert_eq!(dials[0].sip_call_to, "+15551110000");
    assert_eq!(dials[0].room_name, "out-1");
    assert_eq!(dials[0].participant_identity, "callee-1");
    assert!(dials[0].wait_until_answered);
    assert_eq!(
        dials[0].ringing_timeout.as_ref().map(|d| d.seconds),
        Some(2)
    );

    // The callee hangs up.
    assert!(lk.sip_hangup("out-1", "callee-1"));
    assert!(!lk.is_in_room("out-1", "callee-1"));
    assert!(!lk.sip_hangup("out-1", "callee-1"));

    assert!(lk.wait_for_webhooks_idle(IDLE).await);
    let sip = proto::participant_info::Kind::Sip as i32;
    assert_eq!(
        kinds(&lk, "out-3"),
        [
            ("room_started".to_owned(), None, -1),
            (
                "participant_joined".to_owned(),
                Some("callee".to_owned()),
                sip
            ),
            (
                "participant_left".to_owned(),
                Some("callee".to_owned()),
                sip
            ),
        ]
    );
    // Every delivery verifies with our own webhook check, and carries what we act on.
    let deliveries = lk.webhook_deliveries();
    assert!(deliveries.iter().all(|d| d.status == Some(200)));
    let activities: Vec<_> = deliveries
        .iter()
        .map(|d| {
            ours.verify_webhook(&d.body, &d.authorization)
                .expect("verifies")
        })
        .collect();
    let joined = activities
        .iter()
        .find(|a| a.event == "participant_joined" && a.room == "out-1")
        .expect("joined");
    assert_eq!(joined.participant_kind, Some(ParticipantKind::Sip));
    assert_eq!(joined.participant_attributes["sip.callStatus"], "dialing");
    assert_eq!(
        joined.participant_attributes["sip.phoneNumber"],
        "+15551110000"
    );
    let declined = activities
        .iter()
        .find(|a| a.event == "participant_left" && a.room == "out-4")
        .expect("declined");
    assert_eq!(declined.disconnect_reason.as_deref(), Some("USER_REJECTED"));
    let hung_up = activities
        .iter()
        .find(|a| a.event == "participant_left" && a.room == "out-1")
        .expect("hangup");
    assert_eq!(
        hung_up.disconnect_reason.as_deref(),
        Some("CLIENT_INITIATED")
    );
    assert_eq!(receiver.events().len(), deliveries.len());
}

#[actix_web::test]
async fn sip_errors_carry_the_sip_status_like_livekit() {
    let lk = fake();
    let ours = ours(&lk);
    let trunk = ours
        .create_outbound_trunk(&trunk_spec())
        .await
        .expect("trunk");
    lk.script_sip(
        "+15553330000",
        SipScript::Reject {
            status: 486,
            reason: "Busy Here".to_owned(),
        },
    );
    let caller = bearer(
        VideoGrants::default(),
        SIPGrants {
            call: true,
            ..Default::default()
        },
    );
    let (status, _, text) = post(
        &format!("{}/twirp/livekit.SIP/CreateSIPParticipant", lk.url()),
        "application/json",
        Some(&caller),
        serde_json::to_vec(&serde_json::json!({
            "sipTrunkId": trunk, "sipCallTo": "+15553330000", "roomName": "busy-room",
            "participantIdentity": "callee", "waitUntilAnswered": true, "ringingTimeout": "5s"
        }))
        .expect("json"),
    )
    .await;
    assert_eq!(
        status, 429,
        "resource_exhausted, as livekit/protocol maps 486"
    );
    let body: serde_json::Value = serde_json::from_str(&text).expect("twirp json");
    assert_eq!(body["code"], "resource_exhausted");
    assert_eq!(body["msg"], "sip status 486: Busy Here");
    assert_eq!(body["meta"]["sip_status_code"], "486");
    assert_eq!(body["meta"]["sip_status"], "Busy Here");
    // livekit-api's own helper reads it.
    let sip = livekit_api::services::sip::SIPClient::with_api_key(&lk.url(), KEY, SECRET);
    let err = sip
        .create_sip_participant(
            trunk.clone(),
            "+15553330000".to_owned(),
            "busy-room".to_owned(),
            livekit_api::services::sip::CreateSIPParticipantOptions {
                wait_until_answered: Some(true),
                ..Default::default()
            },
            None,
        )
        .await
        .unwrap_err();
    let parsed = livekit_api::services::SipCallError::from_error(&err).expect("a SIP error");
    assert_eq!(parsed.sip_status_code(), Some(486));
    assert_eq!(parsed.code(), "resource_exhausted");
    // Without waiting, LiveKit answers at once.
    lk.script_sip("+15558880000", SipScript::Hang);
    let info = sip
        .create_sip_participant(
            trunk,
            "+15558880000".to_owned(),
            "nowait".to_owned(),
            Default::default(),
            None,
        )
        .await
        .expect("no wait");
    assert!(lk.is_in_room("nowait", &info.participant_identity));
    assert_eq!(info.participant_identity, "sip_+15558880000");
}

#[actix_web::test]
async fn agents_are_dispatched_and_removed_through_our_client() {
    let lk = fake();
    let receiver = Receiver::start(KEY, SECRET).await;
    lk.set_webhook_url(Some(receiver.url.clone()));
    let ours = ours(&lk);
    let metadata = r#"{"prompt":"You are Ann's assistant"}"#;
    let id = ours
        .dispatch_agent("ai-1", "switchboard-assistant", metadata)
        .await
        .expect("dispatch");
    assert!(id.starts_with("AD_"), "{id}");
    let dispatches = lk.dispatches("ai-1");
    assert_eq!(dispatches.len(), 1);
    assert_eq!(dispatches[0].id, id);
    assert_eq!(dispatches[0].agent_name, "switchboard-assistant");
    assert_eq!(dispatches[0].metadata, metadata);
    let agent = format!("agent-{id}");
    let p = lk.participant("ai-1", &agent).expect("the agent joined");
    assert_eq!(p.kind, proto::participant_info::Kind::Agent as i32);

    // The official client lists it.
    let client = livekit_api::services::agent_dispatch::AgentDispatchClient::with_api_key(
        &lk.url(),
        KEY,
        SECRET,
    );
    let listed = client.list_dispatch("ai-1").await.expect("list");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].agent_name, "switchboard-assistant");
    assert!(client.list_dispatch("ai-2").await.expect("list").is_empty());

    ours.delete_dispatch("ai-1", &id).await.expect("delete");
    assert!(!lk.is_in_room("ai-1", &agent));
    assert!(lk.dispatches("ai-1").is_empty());
    ours.delete_dispatch("ai-1", &id)
        .await
        .expect("deleting a dispatch that is gone is fine");
    let raw = client
        .delete_dispatch(id.clone(), "ai-1")
        .await
        .unwrap_err();
    assert_eq!(code_of(&raw), "not_found");

    // No worker: the dispatch is kept, nobody joins.
    lk.set_agent_workers(false);
    let quiet = ours
        .dispatch_agent("ai-2", "switchboard-assistant", "{}")
        .await
        .expect("dispatch");
    assert_eq!(lk.dispatches("ai-2").len(), 1);
    assert!(!lk.is_in_room("ai-2", &format!("agent-{quiet}")));

    // Validation.
    let e = ours.dispatch_agent("ai-3", "", "{}").await.unwrap_err();
    assert_eq!(lk_code(&e), "invalid_argument");

    assert!(lk.wait_for_webhooks_idle(IDLE).await);
    let agent_kind = proto::participant_info::Kind::Agent as i32;
    assert_eq!(
        kinds(&lk, "ai-1"),
        [
            ("room_started".to_owned(), None, -1),
            (
                "participant_joined".to_owned(),
                Some(agent.clone()),
                agent_kind
            ),
            (
                "participant_left".to_owned(),
                Some(agent.clone()),
                agent_kind
            ),
        ]
    );
    let joined = lk
        .webhook_deliveries()
        .into_iter()
        .find(|d| d.event == "participant_joined" && d.room == "ai-1")
        .expect("delivered");
    let a = ours
        .verify_webhook(&joined.body, &joined.authorization)
        .expect("verifies");
    assert_eq!(a.participant_kind, Some(ParticipantKind::Agent));
    assert_eq!(a.identity.as_deref(), Some(agent.as_str()));
    assert_eq!(receiver.events().len(), lk.webhook_deliveries().len());
}

#[actix_web::test]
async fn audio_recordings_start_stop_and_report_their_file() {
    let lk = fake();
    let receiver = Receiver::start(KEY, SECRET).await;
    lk.set_webhook_url(Some(receiver.url.clone()));
    let ours = ours(&lk);
    let target = recording_target("calls-archive");

    // No room, no recording.
    let e = ours
        .start_audio_recording("rec-1", &target, "call-1")
        .await
        .unwrap_err();
    assert_eq!(lk_code(&e), "not_found");

    ours.ensure_room("rec-1").await.expect("room");
    let egress = ours
        .start_audio_recording("rec-1", &target, "call-1")
        .await
        .expect("start");
    assert!(egress.starts_with("EG_"), "{egress}");
    let requests = lk.egress_requests();
    assert_eq!(requests.len(), 1);
    let req = &requests[0];
    assert!(req.audio_only);
    assert_eq!(req.room_name, "rec-1");
    let file = &req.file_outputs[0];
    assert_eq!(file.filepath, "recordings/call-1.ogg");
    assert_eq!(file.file_type, proto::EncodedFileType::Ogg as i32);
    match &file.output {
        Some(proto::encoded_file_output::Output::S3(s3)) => {
            assert_eq!(s3.bucket, "calls-archive");
            assert_eq!(s3.region, "eu-west-1");
            assert_eq!(s3.endpoint, "http://127.0.0.1:9000");
            assert_eq!(s3.access_key, "AKIDRECORDER");
            assert_eq!(s3.secret, "recorder-secret");
            assert!(s3.force_path_style);
        }
        other => panic!("expected S3, got {other:?}"),
    }

    ours.stop_egress(&egress).await.expect("stop");
    ours.stop_egress(&egress)
        .await
        .expect("stopping an ended egress is fine");
    ours.stop_egress("EG_unknown")
        .await
        .expect("stopping an unknown egress is fine");

    // A recording running when the room is deleted ends with it.
    let second = ours
        .start_audio_recording("rec-1", &target, "call-1-part-2")
        .await
        .expect("start again");
    ours.delete_room("rec-1").await.expect("delete room");

    assert!(lk.wait_for_webhooks_idle(IDLE).await);
    let deliveries = lk.webhook_deliveries();
    let activities: Vec<_> = deliveries
        .iter()
        .map(|d| {
            ours.verify_webhook(&d.body, &d.authorization)
                .expect("verifies")
        })
        .collect();
    let of = |id: &str| -> Vec<(String, EgressStatus, Option<String>)> {
        activities
            .iter()
            .filter_map(|a| {
                let e = a.egress.as_ref()?;
                (e.egress_id == id).then(|| (a.event.clone(), e.status, e.location.clone()))
            })
            .collect()
    };
    let done = Some("s3://calls-archive/recordings/call-1.ogg".to_owned());
    assert_eq!(
        of(&egress),
        [
            ("egress_started".to_owned(), EgressStatus::Starting, None),
            ("egress_updated".to_owned(), EgressStatus::Active, None),
            ("egress_updated".to_owned(), EgressStatus::Ending, None),
            ("egress_ended".to_owned(), EgressStatus::Complete, done),
        ]
    );
    let ended = of(&second).pop().expect("second ended");
    assert_eq!(
        ended,
        (
            "egress_ended".to_owned(),
            EgressStatus::Complete,
            Some("s3://calls-archive/recordings/call-1-part-2.ogg".to_owned())
        )
    );
    assert!(activities
        .iter()
        .filter(|a| a.egress.is_some())
        .all(|a| a.room == "rec-1"));
    // Webhooks never carry the upload secret.
    assert!(deliveries
        .iter()
        .all(|d| !d.body.contains("recorder-secret")));
    assert_eq!(receiver.events().len(), deliveries.len());

    // The official client lists both, ended.
    let client = livekit_api::services::egress::EgressClient::with_api_key(&lk.url(), KEY, SECRET);
    let listed = client
        .list_egress(livekit_api::services::egress::EgressListOptions {
            filter: livekit_api::services::egress::EgressListFilter::Room("rec-1".to_owned()),
            ..Default::default()
        })
        .await
        .expect("list");
    assert_eq!(listed.len(), 2);
    assert!(listed
        .iter()
        .all(|e| e.status == proto::EgressStatus::EgressComplete as i32));
}

#[actix_web::test]
async fn recording_failures_are_reported() {
    let lk = fake();
    let ours = ours(&lk);
    ours.ensure_room("rec-2").await.expect("room");

    // Refused at start (503 after our client's retries).
    lk.fail_egress(EgressFault::StartRefused);
    let e = ours
        .start_audio_recording("rec-2", &recording_target("calls"), "x")
        .await
        .unwrap_err();
    assert_eq!(lk_code(&e), "unavailable");
    assert!(lk.egresses().is_empty());

    // Fails midway: egress_ended with EGRESS_FAILED and an error.
    lk.fail_egress(EgressFault::FailsMidway);
    let id = ours
        .start_audio_recording("rec-2", &recording_target("calls"), "y")
        .await
        .expect("accepted");
    lk.clear_egress_fault();
    let ended = lk
        .events()
        .into_iter()
        .find(|e| e.event == "egress_ended")
        .and_then(|e| e.egress_info)
        .expect("egress_ended");
    assert_eq!(ended.egress_id, id);
    assert_eq!(ended.status, proto::EgressStatus::EgressFailed as i32);
    assert!(!ended.error.is_empty());
    ours.stop_egress(&id)
        .await
        .expect("a failed egress counts as stopped");

    // Without credentials the upload fails at the end, as a real upload would.
    let mut anonymous = recording_target("calls");
    anonymous.access_key = String::new();
    anonymous.secret = Secret::new("");
    let id = ours
        .start_audio_recording("rec-2", &anonymous, "z")
        .await
        .expect("accepted");
    ours.stop_egress(&id).await.expect("stop");
    let failed = lk
        .egresses()
        .into_iter()
        .find(|e| e.info.egress_id == id)
        .expect("kept");
    assert_eq!(failed.info.status, proto::EgressStatus::EgressFailed as i32);
    assert!(
        failed.info.error.contains("credentials"),
        "{}",
        failed.info.error
    );

    // A missing bucket or a request without outputs is refused.
    let e = ours
        .start_audio_recording("rec-2", &recording_target(""), "w")
        .await
        .unwrap_err();
    assert_eq!(lk_code(&e), "invalid_argument");
    let record = bearer(
        VideoGrants {
            room_record: true,
            ..Default::default()
        },
        SIPGrants::default(),
    );
    let (status, _, text) = post(
        &format!("{}/twirp/livekit.Egress/StartRoomCompositeEgress", lk.url()),
        "application/protobuf",
        Some(&record),
        proto::RoomCompositeEgressRequest {
            room_name: "rec-2".to_owned(),
            audio_only: true,
            ..Default::default()
        }
        .encode_to_vec(),
    )
    .await;
    assert_eq!(status, 400, "{text}");
}

#[actix_web::test]
async fn sip_dispatch_and_egress_check_their_grants() {
    let lk = fake();
    lk.set_auth_error_mode(AuthErrorMode::FactsSheet);
    let ours = ours(&lk);
    let trunk = ours
        .create_outbound_trunk(&trunk_spec())
        .await
        .expect("trunk");
    ours.ensure_room("g-1").await.expect("room");
    let base = format!("{}/twirp/livekit", lk.url());
    let no_sip = SIPGrants::default();
    let room_admin = |room: &str| VideoGrants {
        room_admin: true,
        room: room.to_owned(),
        ..Default::default()
    };
    let everything_but = |video: VideoGrants, sip: SIPGrants| bearer(video, sip);
    let trunk_req = proto::CreateSipOutboundTrunkRequest {
        trunk: Some(proto::SipOutboundTrunkInfo {
            name: "t".to_owned(),
            address: "sip.example.com".to_owned(),
            numbers: vec!["+15550003333".to_owned()],
            ..Default::default()
        }),
    }
    .encode_to_vec();
    let dial_req = proto::CreateSipParticipantRequest {
        sip_trunk_id: trunk.clone(),
        sip_call_to: "+15550004444".to_owned(),
        room_name: "g-1".to_owned(),
        ..Default::default()
    }
    .encode_to_vec();
    let dispatch_req = proto::CreateAgentDispatchRequest {
        agent_name: "a".to_owned(),
        room: "g-1".to_owned(),
        ..Default::default()
    }
    .encode_to_vec();
    let egress_req = proto::ListEgressRequest::default().encode_to_vec();
    let cases: Vec<(&str, String, Vec<u8>, &str)> = vec![
        (
            "SIP/CreateSIPOutboundTrunk",
            // sip.call is not sip.admin; room admin is not either.
            everything_but(
                VideoGrants {
                    room_create: true,
                    room_admin: true,
                    room_record: true,
                    ..Default::default()
                },
                SIPGrants {
                    call: true,
                    ..Default::default()
                },
            ),
            trunk_req.clone(),
            "trunk without sip.admin",
        ),
        (
            "SIP/ListSIPOutboundTrunk",
            bearer(room_admin("g-1"), no_sip.clone()),
            proto::ListSipOutboundTrunkRequest::default().encode_to_vec(),
            "list without sip.admin",
        ),
        (
            "SIP/DeleteSIPTrunk",
            bearer(
                VideoGrants::default(),
                SIPGrants {
                    call: true,
                    ..Default::default()
                },
            ),
            proto::DeleteSipTrunkRequest {
                sip_trunk_id: trunk.clone(),
            }
            .encode_to_vec(),
            "delete without sip.admin",
        ),
        (
            "SIP/CreateSIPParticipant",
            bearer(
                room_admin("g-1"),
                SIPGrants {
                    admin: true,
                    ..Default::default()
                },
            ),
            dial_req.clone(),
            "dial without sip.call",
        ),
        (
            "AgentDispatchService/CreateDispatch",
            bearer(room_admin("elsewhere"), no_sip.clone()),
            dispatch_req.clone(),
            "dispatch with roomAdmin of another room",
        ),
        (
            "AgentDispatchService/CreateDispatch",
            bearer(
                VideoGrants {
                    room: "g-1".to_owned(),
                    room_create: true,
                    ..Default::default()
                },
                no_sip.clone(),
            ),
            dispatch_req.clone(),
            "dispatch without roomAdmin",
        ),
        (
            "AgentDispatchService/ListDispatch",
            bearer(VideoGrants::default(), no_sip.clone()),
            proto::ListAgentDispatchRequest {
                room: "g-1".to_owned(),
                ..Default::default()
            }
            .encode_to_vec(),
            "list dispatches without roomAdmin",
        ),
        (
            "Egress/ListEgress",
            bearer(
                room_admin("g-1"),
                SIPGrants {
                    admin: true,
                    call: true,
                },
            ),
            egress_req.clone(),
            "egress without roomRecord",
        ),
        (
            "Egress/StopEgress",
            bearer(room_admin("g-1"), no_sip.clone()),
            proto::StopEgressRequest {
                egress_id: "EG_x".to_owned(),
            }
            .encode_to_vec(),
            "stop egress without roomRecord",
        ),
    ];
    for (path, auth, body, why) in &cases {
        let (status, _, text) = post(
            &format!("{base}.{path}"),
            "application/protobuf",
            Some(auth),
            body.clone(),
        )
        .await;
        assert_eq!(
            (status, twirp_code_of(&text)),
            (403, "permission_denied".to_owned()),
            "{why}"
        );
    }
    assert_eq!(lk.sip_trunks().len(), 1, "no trunk was created");
    assert!(lk.sip_dials().is_empty(), "nobody was dialled");
    assert!(lk.dispatches("g-1").is_empty(), "no agent was dispatched");

    // The right grant passes.
    for (path, auth, body) in [
        (
            "SIP/CreateSIPParticipant",
            bearer(
                VideoGrants::default(),
                SIPGrants {
                    call: true,
                    ..Default::default()
                },
            ),
            dial_req,
        ),
        (
            "AgentDispatchService/CreateDispatch",
            bearer(room_admin("g-1"), no_sip.clone()),
            dispatch_req,
        ),
        (
            "Egress/ListEgress",
            bearer(
                VideoGrants {
                    room_record: true,
                    ..Default::default()
                },
                no_sip.clone(),
            ),
            egress_req,
        ),
        (
            "SIP/CreateSIPOutboundTrunk",
            bearer(
                VideoGrants::default(),
                SIPGrants {
                    admin: true,
                    ..Default::default()
                },
            ),
            trunk_req,
        ),
    ] {
        let (status, _, text) = post(
            &format!("{base}.{path}"),
            "application/protobuf",
            Some(&auth),
            body,
        )
        .await;
        assert_eq!(status, 200, "{path}: {text}");
    }

    // livekit-server's own answer (the default mode): 401 unauthenticated.
    lk.set_auth_error_mode(AuthErrorMode::Server);
    let (status, _, text) = post(
        &format!("{base}.SIP/CreateSIPOutboundTrunk"),
        "application/protobuf",
        Some(&bearer(room_admin("g-1"), no_sip)),
        Vec::new(),
    )
    .await;
    assert_eq!(
        (status, twirp_code_of(&text)),
        (401, "unauthenticated".to_owned())
    );
}

#[actix_web::test]
async fn deleting_a_room_ends_its_sip_legs_agents_and_recordings() {
    let lk = fake();
    let ours = ours(&lk);
    let trunk = ours
        .create_outbound_trunk(&trunk_spec())
        .await
        .expect("trunk");
    ours.ensure_room("full").await.expect("room");
    ours.dial_sip(&dial(
        &trunk,
        "+15551230000",
        "full",
        "callee",
        Duration::from_secs(5),
    ))
    .await
    .expect("answered");
    let dispatch = ours
        .dispatch_agent("full", "switchboard-assistant", "{}")
        .await
        .expect("dispatch");
    let egress = ours
        .start_audio_recording("full", &recording_target("calls"), "full")
        .await
        .expect("record");
    ours.delete_room("full").await.expect("delete");

    let agent = format!("agent-{dispatch}");
    let tail: Vec<(String, Option<String>)> = kinds(&lk, "full")
        .into_iter()
        .skip_while(|(e, ..)| e != "participant_left")
        .map(|(e, id, _)| (e, id))
        .collect();
    assert_eq!(
        tail,
        [
            ev("participant_left", Some("callee")),
            ev("participant_left", Some(&agent)),
            ev("egress_updated", None),
            ev("egress_ended", None),
            ev("room_finished", None),
        ]
    );
    assert!(lk.dispatches("full").is_empty());
    let ended = lk
        .egresses()
        .into_iter()
        .find(|e| e.info.egress_id == egress)
        .expect("egress");
    assert_eq!(
        ended.info.status,
        proto::EgressStatus::EgressComplete as i32
    );

    // A callee still ringing when the room goes is cancelled (487), and leaves.
    lk.script_sip("+15559990000", SipScript::Hang);
    let dialling = {
        let ours = ours.clone();
        let d = dial(
            &trunk,
            "+15559990000",
            "ringing",
            "callee",
            Duration::from_secs(5),
        );
        actix_rt::spawn(async move { ours.dial_sip(&d).await })
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while !lk.is_in_room("ringing", "callee") {
        assert!(Instant::now() < deadline, "the callee never joined");
        actix_rt::time::sleep(Duration::from_millis(10)).await;
    }
    ours.delete_room("ringing").await.expect("delete");
    let e = dialling.await.expect("task").unwrap_err();
    assert_eq!(e.sip_status(), Some(487), "{e:?}");
}

#[actix_web::test]
async fn fault_switches_apply_to_the_new_services() {
    let lk = fake();
    let receiver = Receiver::start(KEY, SECRET).await;
    lk.set_webhook_url(Some(receiver.url.clone()));
    let ours = ours(&lk);

    // A 503 before anything was done is retried for creations; a 500 is not.
    lk.fail_next_twirp(&["unavailable"]);
    let trunk = ours
        .create_outbound_trunk(&trunk_spec())
        .await
        .expect("retried after 503");
    lk.fail_next_twirp(&["internal"]);
    let e = ours
        .dispatch_agent("chaos", "switchboard-assistant", "{}")
        .await
        .unwrap_err();
    assert_eq!(lk_code(&e), "internal");
    assert!(lk.dispatches("chaos").is_empty());
    // A dial is never repeated after a server error.
    lk.fail_next_twirp(&["unavailable"]);
    let e = ours
        .dial_sip(&dial(
            &trunk,
            "+15550000001",
            "chaos",
            "callee",
            Duration::from_secs(2),
        ))
        .await
        .unwrap_err();
    assert!(matches!(e, SipDialError::Service(_)), "{e:?}");
    assert!(lk.sip_dials().is_empty());
    let dial_attempts = lk
        .requests()
        .iter()
        .filter(|r| r.method == "CreateSIPParticipant")
        .count();
    assert_eq!(dial_attempts, 1);

    // API down.
    lk.set_api_down(true);
    let e = ours
        .start_audio_recording("chaos", &recording_target("calls"), "c")
        .await
        .unwrap_err();
    assert_eq!(lk_code(&e), "unavailable");
    lk.set_api_down(false);

    // Latency applies.
    lk.set_api_latency(Duration::from_millis(300));
    let started = Instant::now();
    ours.delete_sip_trunk(&trunk).await.expect("slow but fine");
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert!(lk.sip_trunks().is_empty());
    lk.set_api_latency(Duration::ZERO);

    // Dropped and duplicated webhooks apply to egress events too.
    ours.ensure_room("chaos").await.expect("room");
    assert!(lk.wait_for_webhooks_idle(IDLE).await);
    let before = lk.webhook_deliveries().len();
    lk.webhook_faults(1, 1, 0, Duration::ZERO);
    ours.start_audio_recording("chaos", &recording_target("calls"), "d")
        .await
        .expect("record");
    assert!(lk.wait_for_webhooks_idle(IDLE).await);
    let new: Vec<String> = lk.webhook_deliveries()[before..]
        .iter()
        .map(|d| d.event.clone())
        .collect();
    assert_eq!(
        new,
        ["egress_updated", "egress_updated"],
        "started dropped, updated twice"
    );
}

#[actix_web::test]
async fn the_official_python_sdk_drives_sip_dispatch_and_egress() {
    let lk = fake();
    lk.script_sip(
        "+15550004860",
        SipScript::Reject {
            status: 486,
            reason: "Busy Here".to_owned(),
        },
    );
    let (code, stdout, stderr) = python_check(&["drive-services", &lk.url(), KEY, SECRET], "");
    assert_eq!(code, 0, "the Python SDK failed against the fake: {stderr}");
    let out: serde_json::Value = serde_json::from_str(&stdout).expect("json");
    assert!(out["trunk"].as_str().expect("trunk").starts_with("ST_"));
    assert_eq!(out["answered"]["identity"], "py-callee");
    assert_eq!(out["answered"]["room"], "py-sip");
    assert_eq!(out["busy"]["type"], "SipCallError", "{}", out["busy"]);
    assert_eq!(out["busy"]["metadata"]["sip_status_code"], "486");
    assert_eq!(out["busy"]["metadata"]["sip_status"], "Busy Here");
    assert_eq!(out["dispatch"]["listed"], serde_json::json!(["py-agent"]));
    assert_eq!(out["egress"]["stoppedStatus"], "EGRESS_ENDING");
    assert_eq!(
        out["egress"]["locations"],
        serde_json::json!(["s3://py-bucket/py/rec.ogg"])
    );
    // What the SDK sent, as the fake saw it.
    assert!(lk.sip_trunks().is_empty(), "the SDK deleted its trunk");
    assert!(lk.dispatches("py-sip").is_empty());
    assert!(lk.is_in_room("py-sip", "py-callee"));
    assert!(!lk.is_in_room("py-sip", "py-busy"));
    let requests = lk.egress_requests();
    assert_eq!(requests.len(), 1);
    assert!(requests[0].audio_only);
    let failures: Vec<_> = lk
        .requests()
        .into_iter()
        .filter(|r| r.status != 200)
        .map(|r| (r.method, r.status))
        .collect();
    assert_eq!(failures, [("CreateSIPParticipant".to_owned(), 429)]);
}
