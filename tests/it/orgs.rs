//! Organisations: API keys made by admin keys only, shown once, stored hashed,
//! listed without secrets and revocable at once; assistants kept apart per organisation
//! (another organisation's are 404 and never listed), validated, partially updated with
//! versions; the embedded store's file never holds a key's secret.

use serde_json::{json, Value};

use crate::support::app::{send_with_key as send, spawn_app_with, TestApp, TestOptions, TestStore};

const ROOT: &str = "orgs-root-management-key";

/// Every endpoint of this issue (ids that need not exist: authentication comes first).
const NEW_ENDPOINTS: [(&str, &str); 12] = [
    ("POST", "/api/keys"),
    ("GET", "/api/keys"),
    ("DELETE", "/api/keys/k-x"),
    ("POST", "/api/assistants"),
    ("GET", "/api/assistants"),
    ("GET", "/api/assistants/as-x"),
    ("PATCH", "/api/assistants/as-x"),
    ("DELETE", "/api/assistants/as-x"),
    ("POST", "/api/sip/trunks"),
    ("GET", "/api/sip/trunks"),
    ("GET", "/api/sip/trunks/trunk-x"),
    ("DELETE", "/api/sip/trunks/trunk-x"),
];

/// Signs the webhooks of the assistants the management key makes.
fn root_env() -> Vec<(String, String)> {
    vec![(
        "SWITCHBOARD_WEBHOOK_SECRET".into(),
        "whsec_root_secret_for_tests".into(),
    )]
}

async fn root_app() -> TestApp {
    spawn_app_with(TestOptions {
        api_key: Some(ROOT.into()),
        env: root_env(),
        ..Default::default()
    })
    .await
}

/// Makes a key with `maker`; returns the whole answer.
async fn make_key(app: &TestApp, maker: &str, org: &str, user: &str, role: &str) -> Value {
    let (status, body) = send(
        app,
        Some(maker),
        "POST",
        "/api/keys",
        Some(json!({"userName": user, "orgName": org, "userEmail": format!("{user}@example.com"), "role": role})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    body
}

/// The secret part of `sbk_<24 hex>_<secret>` (which may itself hold `_`).
fn secret_of(key: &str) -> &str {
    &key["sbk_".len() + 24 + 1..]
}

fn text<'a>(v: &'a Value, k: &str) -> &'a str {
    v[k].as_str().unwrap_or_else(|| panic!("{k} in {v}"))
}

fn assistant_body(name: &str) -> Value {
    json!({
        "name": name,
        "prompt": "You help {{name}} with order {{orderId}}.",
        "startInstruction": "Hello {{name}}!",
        "tts": {"provider": "cartesia", "voiceId": "248be419-3632-4f38-9500-05f963499d7e"},
        "endCallUrl": "https://hooks.example.com/call-end",
    })
}

#[actix_web::test]
async fn keys_are_made_by_admin_keys_only_shown_once_hashed_listed_without_secrets_and_revoked_at_once(
) {
    let app = root_app().await;
    // No public self-service: without a key, or with an unknown or malformed one, 401.
    let req = json!({"userName": "Ada", "orgName": "Acme Corp", "userEmail": "ada@acme.example"});
    for key in [
        None,
        Some("wrong"),
        Some("sbk_000000000000000000000000_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
        Some("sbk_short"),
    ] {
        let (s, b) = send(&app, key, "POST", "/api/keys", Some(req.clone())).await;
        assert_eq!(s, 401, "{key:?}: {b}");
        assert_eq!(b["code"], "unauthorized");
    }

    let acme = make_key(&app, ROOT, "Acme Corp", "ada", "admin").await;
    let acme_key = text(&acme, "apiKey").to_string();
    assert!(acme_key.starts_with("sbk_"), "{acme}");
    assert_eq!(acme["orgId"], "acme-corp");
    assert_eq!(acme["role"], "admin");
    assert!(text(&acme, "webhookSecret").starts_with("whsec_"));
    let secret_part = secret_of(&acme_key).to_string();
    assert_eq!(secret_part.len(), 43);

    // An org admin makes keys for its own organisation only; the name is matched by slug.
    let member = make_key(&app, &acme_key, "acme corp", "bob", "member").await;
    let member_key = text(&member, "apiKey").to_string();
    assert_eq!(member["orgId"], "acme-corp");
    let (s, b) = send(
        &app,
        Some(&acme_key),
        "POST",
        "/api/keys",
        Some(json!({"userName": "Eve", "orgName": "Globex", "userEmail": "eve@globex.example"})),
    )
    .await;
    assert_eq!((s, b["code"].as_str()), (403, Some("forbidden")), "{b}");
    // A member key makes no keys and lists none.
    let (s, b) = send(
        &app,
        Some(&member_key),
        "POST",
        "/api/keys",
        Some(req.clone()),
    )
    .await;
    assert_eq!(s, 403, "{b}");
    let (s, _) = send(&app, Some(&member_key), "GET", "/api/keys", None).await;
    assert_eq!(s, 403);
    // Validation names the field.
    let (s, b) = send(
        &app,
        Some(ROOT),
        "POST",
        "/api/keys",
        Some(json!({"userName": "Ada", "orgName": "Acme", "userEmail": "not-an-email"})),
    )
    .await;
    assert_eq!(s, 400, "{b}");
    assert_eq!(b["code"], "invalid_field");
    assert!(text(&b, "message").starts_with("userEmail"), "{b}");
    let (s, b) = send(
        &app,
        Some(ROOT),
        "POST",
        "/api/keys",
        Some(json!({"userName": "Ada", "orgName": "***", "userEmail": "a@b.example"})),
    )
    .await;
    assert_eq!(s, 400, "{b}");
    assert!(text(&b, "message").starts_with("orgName"), "{b}");
    let (s, b) = send(&app, Some(ROOT), "POST", "/api/keys",
        Some(json!({"userName": "Ada", "orgName": "Acme", "userEmail": "a@b.example", "role": "owner"}))).await;
    assert_eq!(s, 400, "{b}");

    let globex = make_key(&app, ROOT, "Globex", "gina", "admin").await;
    let globex_key = text(&globex, "apiKey").to_string();

    // Lists carry no secret; an org admin sees its own organisation's keys only.
    let (s, all) = send(&app, Some(ROOT), "GET", "/api/keys", None).await;
    assert_eq!(s, 200);
    let all_text = all.to_string();
    for k in [&acme, &member, &globex] {
        assert!(all_text.contains(text(k, "keyId")));
        assert!(!all_text.contains(text(k, "apiKey")));
        assert!(!all_text.contains(text(k, "webhookSecret")));
    }
    for field in ["apiKey", "digest", "webhookSecret"] {
        assert!(
            all.as_array()
                .unwrap()
                .iter()
                .all(|k| k.get(field).is_none()),
            "{field} listed"
        );
    }
    let (_, only_globex) = send(&app, Some(ROOT), "GET", "/api/keys?orgId=globex", None).await;
    let ids: Vec<&str> = only_globex
        .as_array()
        .unwrap()
        .iter()
        .map(|k| text(k, "keyId"))
        .collect();
    assert_eq!(ids, vec![text(&globex, "keyId")]);
    let (s, own) = send(&app, Some(&acme_key), "GET", "/api/keys", None).await;
    assert_eq!(s, 200);
    let own_ids: Vec<&str> = own
        .as_array()
        .unwrap()
        .iter()
        .map(|k| text(k, "keyId"))
        .collect();
    assert_eq!(own_ids.len(), 2, "{own}");
    assert!(own_ids.contains(&text(&acme, "keyId")) && own_ids.contains(&text(&member, "keyId")));
    let (s, _) = send(&app, Some(&acme_key), "GET", "/api/keys?orgId=globex", None).await;
    assert_eq!(s, 403);

    // Stored hashed: the store's records and its file hold no key's secret text.
    let store = app.store.as_ref().expect("in-process store");
    let stored = serde_json::to_string(&store.list_api_keys(None).await.unwrap()).unwrap();
    for k in [&acme, &member, &globex] {
        let secret = secret_of(text(k, "apiKey"));
        assert!(!stored.contains(secret), "a key's secret is stored");
    }
    let file = std::fs::read(app.data_dir.path().join("switchboard.redb")).unwrap();
    for k in [&acme, &member, &globex] {
        let secret = secret_of(text(k, "apiKey")).as_bytes();
        assert!(
            !file.windows(secret.len()).any(|w| w == secret),
            "secret in the store file"
        );
    }

    // Another organisation cannot revoke (404, not even told it exists); the org admin can,
    // and the key is refused at once.
    let member_id = text(&member, "keyId").to_string();
    let (s, _) = send(
        &app,
        Some(&globex_key),
        "DELETE",
        &format!("/api/keys/{member_id}"),
        None,
    )
    .await;
    assert_eq!(s, 404);
    let (s, _) = send(&app, Some(&member_key), "GET", "/api/assistants", None).await;
    assert_eq!(s, 200);
    let (s, _) = send(
        &app,
        Some(&acme_key),
        "DELETE",
        &format!("/api/keys/{member_id}"),
        None,
    )
    .await;
    assert_eq!(s, 204);
    let (s, b) = send(&app, Some(&member_key), "GET", "/api/assistants", None).await;
    assert_eq!(s, 401, "{b}");
    assert!(text(&b, "message").contains("revoked"), "{b}");
    // Every endpoint of this issue refuses a missing, unknown, malformed or revoked key.
    let unknown = "sbk_000000000000000000000000_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    for key in [
        None,
        Some(unknown),
        Some("sbk_bad"),
        Some(member_key.as_str()),
    ] {
        for (method, path) in NEW_ENDPOINTS {
            let (s, b) = send(&app, key, method, path, Some(json!({}))).await;
            assert_eq!(
                (s, b["code"].as_str()),
                (401, Some("unauthorized")),
                "{method} {path} with {key:?}: {b}"
            );
        }
    }
    let (_, listed) = send(&app, Some(&acme_key), "GET", "/api/keys", None).await;
    let revoked = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["keyId"] == member_id.as_str())
        .unwrap();
    assert!(revoked["revokedAt"].is_string(), "{revoked}");
    // A key whose secret differs from the stored digest is refused.
    let mut forged = acme_key.clone();
    let last = forged.pop().unwrap();
    forged.push(if last == 'A' { 'B' } else { 'A' });
    let (s, _) = send(&app, Some(&forged), "GET", "/api/assistants", None).await;
    assert_eq!(s, 401);
    // The root key revokes anyone's; unknown ids are 404.
    let (s, _) = send(
        &app,
        Some(ROOT),
        "DELETE",
        &format!("/api/keys/{}", text(&globex, "keyId")),
        None,
    )
    .await;
    assert_eq!(s, 204);
    let (s, _) = send(&app, Some(&globex_key), "GET", "/api/assistants", None).await;
    assert_eq!(s, 401);
    let (s, _) = send(&app, Some(ROOT), "DELETE", "/api/keys/nope", None).await;
    assert_eq!(s, 404);
}

#[actix_web::test]
async fn organisation_keys_get_no_management_power() {
    let app = root_app().await;
    let acme = make_key(&app, ROOT, "Acme", "ada", "admin").await;
    let key = text(&acme, "apiKey");
    for (method, path, body) in [
        ("GET", "/api/agents", None),
        (
            "POST",
            "/api/agents",
            Some(json!({"agentId": "zed", "name": "Zed"})),
        ),
        (
            "POST",
            "/api/calls",
            Some(json!({"callerName": "X", "reason": "y"})),
        ),
        ("GET", "/api/transfers", None),
        ("POST", "/api/rooms", Some(json!({}))),
        ("GET", "/api/wallboard", None),
        ("GET", "/metrics", None),
    ] {
        let (s, b) = send(&app, Some(key), method, path, body).await;
        assert_eq!(
            (s, b["code"].as_str()),
            (403, Some("forbidden")),
            "{method} {path}: {b}"
        );
    }
}

#[actix_web::test]
async fn assistants_belong_to_one_organisation_and_are_validated_and_versioned() {
    assistants_flow(&root_app().await).await;
}

/// The same on the DynamoDB store (moto), and a key revoked there is refused at once.
#[actix_web::test]
async fn assistants_and_key_revocation_on_dynamodb() {
    let app = spawn_app_with(TestOptions {
        api_key: Some(ROOT.into()),
        store: TestStore::DynamoDb {
            prefix: crate::support::dynamo::fresh_prefix(),
        },
        env: root_env(),
        ..Default::default()
    })
    .await;
    assistants_flow(&app).await;
    let k = make_key(&app, ROOT, "Initech", "ida", "member").await;
    let key = text(&k, "apiKey");
    let (s, _) = send(&app, Some(key), "GET", "/api/assistants", None).await;
    assert_eq!(s, 200);
    let (s, _) = send(
        &app,
        Some(ROOT),
        "DELETE",
        &format!("/api/keys/{}", text(&k, "keyId")),
        None,
    )
    .await;
    assert_eq!(s, 204);
    let (s, _) = send(&app, Some(key), "GET", "/api/assistants", None).await;
    assert_eq!(s, 401);
}

async fn assistants_flow(app: &TestApp) {
    let acme = make_key(app, ROOT, "Acme", "ada", "admin").await;
    let acme_member = make_key(app, text(&acme, "apiKey"), "Acme", "bob", "member").await;
    let globex = make_key(app, ROOT, "Globex", "gina", "admin").await;
    let (a_key, m_key, g_key) = (
        text(&acme, "apiKey"),
        text(&acme_member, "apiKey"),
        text(&globex, "apiKey"),
    );

    // Without a key: 401 everywhere.
    for (method, path) in [
        ("GET", "/api/assistants"),
        ("POST", "/api/assistants"),
        ("GET", "/api/assistants/as-x"),
        ("PATCH", "/api/assistants/as-x"),
        ("DELETE", "/api/assistants/as-x"),
    ] {
        let (s, _) = send(app, None, method, path, Some(json!({}))).await;
        assert_eq!(s, 401, "{method} {path}");
    }

    // A member key creates in its organisation; the answer is the stored assistant.
    let (s, a) = send(
        app,
        Some(m_key),
        "POST",
        "/api/assistants",
        Some(assistant_body("Support")),
    )
    .await;
    assert_eq!(s, 201, "{a}");
    assert_eq!(a["orgId"], "acme");
    assert_eq!(a["version"], 1);
    assert_eq!(a["createdByKeyId"], acme_member["keyId"]);
    assert_eq!(a["tts"]["voiceId"], "248be419-3632-4f38-9500-05f963499d7e");
    let id = text(&a, "assistantId").to_string();
    let path = format!("/api/assistants/{id}");
    // An org key cannot create in another organisation; the root key must name one.
    let mut other = assistant_body("X");
    other["orgId"] = json!("globex");
    let (s, _) = send(
        app,
        Some(a_key),
        "POST",
        "/api/assistants",
        Some(other.clone()),
    )
    .await;
    assert_eq!(s, 403);
    let (s, b) = send(
        app,
        Some(ROOT),
        "POST",
        "/api/assistants",
        Some(assistant_body("Y")),
    )
    .await;
    assert_eq!(s, 400, "{b}");
    assert!(text(&b, "message").starts_with("orgId"), "{b}");
    let (s, g) = send(app, Some(ROOT), "POST", "/api/assistants", Some(other)).await;
    assert_eq!(s, 201, "{g}");
    assert_eq!(g["createdByKeyId"], "root");

    // Another organisation: 404 on read, change and delete; absent from its list.
    for (method, body) in [
        ("GET", None),
        ("PATCH", Some(json!({"name": "Hijacked"}))),
        ("DELETE", None),
    ] {
        let (s, b) = send(app, Some(g_key), method, &path, body).await;
        assert_eq!(s, 404, "{method}: {b}");
        assert_eq!(b["code"], "not_found");
    }
    let (_, g_list) = send(app, Some(g_key), "GET", "/api/assistants", None).await;
    assert!(!g_list.to_string().contains(&id), "{g_list}");
    assert_eq!(g_list.as_array().unwrap().len(), 1);
    let (_, a_list) = send(app, Some(a_key), "GET", "/api/assistants", None).await;
    let ids: Vec<&str> = a_list
        .as_array()
        .unwrap()
        .iter()
        .map(|x| text(x, "assistantId"))
        .collect();
    assert_eq!(ids, vec![id.as_str()]);
    let (_, all) = send(app, Some(ROOT), "GET", "/api/assistants", None).await;
    assert_eq!(all.as_array().unwrap().len(), 2);
    let (s, _) = send(
        app,
        Some(a_key),
        "GET",
        "/api/assistants?orgId=globex",
        None,
    )
    .await;
    assert_eq!(s, 403);
    let (s, unchanged) = send(app, Some(a_key), "GET", &path, None).await;
    assert_eq!(s, 200);
    assert_eq!(unchanged["name"], "Support");

    // Validation: 400 with {code, message} naming the field.
    let cases = [
        (json!({"name": ""}), "name"),
        (json!({"name": "x".repeat(121)}), "name"),
        (json!({"prompt": ""}), "prompt"),
        (json!({"prompt": "p".repeat(20_001)}), "prompt"),
        (json!({"tts": {"provider": "cartesia"}}), "tts.voiceId"),
        (
            json!({"tts": {"provider": "sarvam", "voiceId": "v"}}),
            "tts.speaker",
        ),
        (
            json!({"tts": {"provider": "acme-tts", "voiceId": "v"}}),
            "tts.provider",
        ),
        (
            json!({"endCallUrl": "ftp://files.example.com/x"}),
            "endCallUrl",
        ),
        (
            json!({"endCallUrl": "https://user:pw@hooks.example.com/"}),
            "endCallUrl",
        ),
    ];
    for (patch, field) in cases {
        let (s, b) = send(app, Some(a_key), "PATCH", &path, Some(patch.clone())).await;
        assert_eq!(s, 400, "{patch}: {b}");
        assert_eq!(b["code"], "invalid_field", "{b}");
        assert!(text(&b, "message").starts_with(field), "{patch}: {b}");
        let mut create = assistant_body("V");
        for (k, v) in patch.as_object().unwrap() {
            create[k] = v.clone();
        }
        let (s, b) = send(app, Some(a_key), "POST", "/api/assistants", Some(create)).await;
        assert_eq!(s, 400, "create {patch}: {b}");
        assert!(text(&b, "message").starts_with(field), "{b}");
    }
    let (s, b) = send(app, Some(a_key), "PATCH", &path, Some(json!({"bogus": 1}))).await;
    assert_eq!(s, 400, "{b}");

    // PATCH is partial; null clears optional fields; each change bumps the version.
    let (s, p) = send(app, Some(a_key), "PATCH", &path,
        Some(json!({"name": "Support 2", "endCallUrl": null, "tts": {"provider": "sarvam", "speaker": "meera"}}))).await;
    assert_eq!(s, 200, "{p}");
    assert_eq!(p["name"], "Support 2");
    assert_eq!(p["endCallUrl"], Value::Null);
    assert_eq!(p["tts"], json!({"provider": "sarvam", "speaker": "meera"}));
    assert_eq!(p["prompt"], a["prompt"]);
    assert_eq!(p["version"], 2);
    let (_, got) = send(app, Some(m_key), "GET", &path, None).await;
    assert_eq!(got, p);

    // Delete: once.
    let (s, _) = send(app, Some(a_key), "DELETE", &path, None).await;
    assert_eq!(s, 204);
    let (s, _) = send(app, Some(a_key), "GET", &path, None).await;
    assert_eq!(s, 404);
    let (s, _) = send(app, Some(a_key), "DELETE", &path, None).await;
    assert_eq!(s, 404);
}

fn trunk_body() -> Value {
    json!({
        "name": "Twilio trunk",
        "address": "acme.pstn.twilio.com",
        "numbers": ["+15550100100"],
        "authUsername": "acme-user",
        "authPassword": "trunk-password-7f3a",
        "transport": "tcp",
    })
}

#[actix_web::test]
async fn sip_trunks_go_to_livekit_with_the_password_which_is_never_stored_or_returned() {
    let app = root_app().await;
    let acme = make_key(&app, ROOT, "Acme", "ada", "admin").await;
    let globex = make_key(&app, ROOT, "Globex", "gina", "member").await;
    let (a_key, g_key) = (text(&acme, "apiKey"), text(&globex, "apiKey"));
    for (method, path) in [
        ("GET", "/api/sip/trunks"),
        ("POST", "/api/sip/trunks"),
        ("GET", "/api/sip/trunks/trunk-x"),
        ("DELETE", "/api/sip/trunks/trunk-x"),
    ] {
        let (s, _) = send(&app, None, method, path, Some(trunk_body())).await;
        assert_eq!(s, 401, "{method} {path}");
        let (s, _) = send(
            &app,
            Some("sbk_000000000000000000000000_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
            method,
            path,
            Some(trunk_body()),
        )
        .await;
        assert_eq!(s, 401, "{method} {path}");
    }

    let (s, t) = send(
        &app,
        Some(a_key),
        "POST",
        "/api/sip/trunks",
        Some(trunk_body()),
    )
    .await;
    assert_eq!(s, 201, "{t}");
    assert_eq!(t["orgId"], "acme");
    assert_eq!(t["hasPassword"], true);
    assert_eq!(t["transport"], "tcp");
    assert!(!t.to_string().contains("trunk-password-7f3a"), "{t}");
    let lk_id = text(&t, "livekitTrunkId").to_string();
    // The password reached LiveKit (the fake keeps the trunk as LiveKit would).
    let in_lk = app
        .livekit
        .sip_trunks()
        .into_iter()
        .find(|x| x.sip_trunk_id == lk_id)
        .expect("trunk in LiveKit");
    assert_eq!(in_lk.auth_password, "trunk-password-7f3a");
    assert_eq!(in_lk.auth_username, "acme-user");
    assert_eq!(in_lk.address, "acme.pstn.twilio.com");
    assert_eq!(in_lk.numbers, vec!["+15550100100".to_string()]);
    let id = text(&t, "trunkId").to_string();
    let path = format!("/api/sip/trunks/{id}");

    // Never returned, never stored.
    let (_, got) = send(&app, Some(a_key), "GET", &path, None).await;
    assert_eq!(got, t);
    let (_, listed) = send(&app, Some(ROOT), "GET", "/api/sip/trunks", None).await;
    assert!(!listed.to_string().contains("trunk-password-7f3a"));
    let file = std::fs::read(app.data_dir.path().join("switchboard.redb")).unwrap();
    assert!(
        !file.windows(19).any(|w| w == b"trunk-password-7f3a"),
        "password in the store file"
    );

    // Another organisation: 404 and not listed.
    for method in ["GET", "DELETE"] {
        let (s, _) = send(&app, Some(g_key), method, &path, None).await;
        assert_eq!(s, 404, "{method}");
    }
    let (_, g_list) = send(&app, Some(g_key), "GET", "/api/sip/trunks", None).await;
    assert_eq!(g_list, json!([]));

    // Validation names the field.
    for (field, value, named) in [
        ("address", json!("sip:acme@pstn.example"), "address"),
        ("address", json!("https://pstn.example/x"), "address"),
        ("numbers", json!(["5550100"]), "numbers"),
        ("numbers", json!([]), "numbers"),
        ("transport", json!("sctp"), "transport"),
        ("name", json!(""), "name"),
    ] {
        let mut b = trunk_body();
        b[field] = value.clone();
        let (s, r) = send(&app, Some(a_key), "POST", "/api/sip/trunks", Some(b)).await;
        assert_eq!(s, 400, "{field}={value}: {r}");
        assert_eq!(r["code"], "invalid_field");
        assert!(text(&r, "message").starts_with(named), "{r}");
    }

    // LiveKit refusing: 400 with its reason, or 502; down: 503. Nothing is stored.
    let before = app.livekit.sip_trunks().len();
    app.livekit.fail_next_twirp(&["invalid_argument"]);
    let (s, r) = send(
        &app,
        Some(a_key),
        "POST",
        "/api/sip/trunks",
        Some(trunk_body()),
    )
    .await;
    assert_eq!(
        (s, r["code"].as_str()),
        (400, Some("livekit_refused")),
        "{r}"
    );
    app.livekit.fail_next_twirp(&["permission_denied"]);
    let (s, r) = send(
        &app,
        Some(a_key),
        "POST",
        "/api/sip/trunks",
        Some(trunk_body()),
    )
    .await;
    assert_eq!((s, r["code"].as_str()), (502, Some("bad_gateway")), "{r}");
    app.livekit.set_api_down(true);
    let (s, r) = send(
        &app,
        Some(a_key),
        "POST",
        "/api/sip/trunks",
        Some(trunk_body()),
    )
    .await;
    assert_eq!((s, r["code"].as_str()), (503, Some("unavailable")), "{r}");
    // Deleting while LiveKit is down keeps the trunk.
    let (s, _) = send(&app, Some(a_key), "DELETE", &path, None).await;
    assert_eq!(s, 503);
    app.livekit.set_api_down(false);
    assert_eq!(app.livekit.sip_trunks().len(), before);
    let (_, mine) = send(&app, Some(a_key), "GET", "/api/sip/trunks", None).await;
    assert_eq!(mine.as_array().unwrap().len(), 1, "{mine}");

    // Delete: gone from LiveKit and from here.
    let (s, _) = send(&app, Some(a_key), "DELETE", &path, None).await;
    assert_eq!(s, 204);
    assert!(app
        .livekit
        .sip_trunks()
        .iter()
        .all(|x| x.sip_trunk_id != lk_id));
    let (s, _) = send(&app, Some(a_key), "GET", &path, None).await;
    assert_eq!(s, 404);
}
