//! Conformance checks of organisations' API keys, assistants and SIP trunks
//! ([`OrgStore`](crate::store::OrgStore)).

use crate::store::{Store, StoreError};

fn org_key(org_id: &str, offset_ms: i64) -> crate::org::ApiKeyRecord {
    let req = crate::org::KeyRequest {
        user_name: "Ada".into(),
        org_name: org_id.into(),
        user_email: "ada@example.com".into(),
        role: crate::org::KeyRole::Admin,
    };
    let at = chrono::Utc::now() + chrono::Duration::milliseconds(offset_ms);
    crate::org::generate_key(&req, at).unwrap().record
}

fn org_assistant(org_id: &str, offset_ms: i64) -> crate::org::Assistant {
    let at = chrono::Utc::now() + chrono::Duration::milliseconds(offset_ms);
    crate::org::Assistant::create(
        crate::org::NewAssistant {
            org_id: None,
            name: "Support".into(),
            description: "d".into(),
            prompt: "You help {{name}}.".into(),
            start_instruction: "Hi {{name}}".into(),
            tts: crate::org::Tts {
                provider: "sarvam".into(),
                voice_id: None,
                speaker: Some("meera".into()),
            },
            end_call_url: Some("https://hooks.example/end".into()),
            record: true,
        },
        crate::model::new_id("as"),
        org_id.into(),
        "k1".into(),
        at,
    )
    .unwrap()
}

fn org_trunk(org_id: &str, offset_ms: i64) -> crate::org::SipTrunk {
    crate::org::SipTrunk {
        trunk_id: crate::model::new_id("tr"),
        org_id: org_id.into(),
        name: "Twilio".into(),
        address: "example.pstn.twilio.com:5060".into(),
        numbers: vec!["+15550100000".into()],
        auth_username: Some("user".into()),
        has_password: true,
        transport: "auto".into(),
        livekit_trunk_id: crate::model::new_id("ST"),
        created_at: chrono::Utc::now() + chrono::Duration::milliseconds(offset_ms),
    }
}

/// Keys: created once, read back whole (digest, webhook secret), listed by organisation in
/// creation order, revoked once (a second revoke keeps the first time).
pub async fn org_api_keys_create_get_list_revoke(store: &dyn Store) {
    let org_a = crate::model::new_id("org");
    let org_b = crate::model::new_id("org");
    let k2 = org_key(&org_a, 10);
    let k1 = org_key(&org_a, 0);
    let kb = org_key(&org_b, 0);
    for k in [&k2, &k1, &kb] {
        store.create_api_key(k).await.unwrap();
    }
    assert!(matches!(
        store.create_api_key(&k1).await,
        Err(StoreError::AlreadyExists { .. })
    ));
    let got = store
        .get_api_key(&k1.key_id)
        .await
        .unwrap()
        .expect("stored key");
    assert_eq!(got, k1);
    assert_eq!(got.webhook_secret.expose(), k1.webhook_secret.expose());
    let ids =
        |v: Vec<crate::org::ApiKeyRecord>| v.into_iter().map(|k| k.key_id).collect::<Vec<_>>();
    assert_eq!(
        ids(store.list_api_keys(Some(&org_a)).await.unwrap()),
        vec![k1.key_id.clone(), k2.key_id.clone()]
    );
    assert_eq!(
        ids(store.list_api_keys(Some(&org_b)).await.unwrap()),
        vec![kb.key_id.clone()]
    );
    let all = ids(store.list_api_keys(None).await.unwrap());
    for k in [&k1, &k2, &kb] {
        assert!(
            all.contains(&k.key_id),
            "{} in the list of all keys",
            k.key_id
        );
    }
    let at = chrono::Utc::now();
    let revoked = store.revoke_api_key(&k1.key_id, at).await.unwrap();
    assert_eq!(revoked.revoked_at, Some(at));
    let again = store
        .revoke_api_key(&k1.key_id, at + chrono::Duration::seconds(5))
        .await
        .unwrap();
    assert_eq!(
        again.revoked_at,
        Some(at),
        "the first revocation time stays"
    );
    let got = store.get_api_key(&k1.key_id).await.unwrap().unwrap();
    assert_eq!(got.revoked_at, Some(at));
    assert_eq!(
        store
            .get_api_key(&k2.key_id)
            .await
            .unwrap()
            .unwrap()
            .revoked_at,
        None
    );
    assert!(matches!(
        store.revoke_api_key("no-such-key", at).await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(store.get_api_key("no-such-key").await.unwrap().is_none());
    assert!(store
        .list_api_keys(Some("no-such-org"))
        .await
        .unwrap()
        .is_empty());
}

/// Assistants: version 1 on create, conditional replace by version, listed by organisation
/// only, deleted once.
pub async fn org_assistants_versioned_by_org(store: &dyn Store) {
    let org_a = crate::model::new_id("org");
    let org_b = crate::model::new_id("org");
    let mut a2 = org_assistant(&org_a, 10);
    a2.version = 7; // create always starts at 1
    let a1 = org_assistant(&org_a, 0);
    let b1 = org_assistant(&org_b, 0);
    let a2 = store.create_assistant(&a2).await.unwrap();
    assert_eq!(a2.version, 1);
    store.create_assistant(&a1).await.unwrap();
    store.create_assistant(&b1).await.unwrap();
    assert!(matches!(
        store.create_assistant(&a1).await,
        Err(StoreError::AlreadyExists { .. })
    ));
    assert_eq!(
        store.get_assistant(&a1.assistant_id).await.unwrap(),
        Some(a1.clone())
    );
    let ids =
        |v: Vec<crate::org::Assistant>| v.into_iter().map(|a| a.assistant_id).collect::<Vec<_>>();
    assert_eq!(
        ids(store.list_assistants(Some(&org_a)).await.unwrap()),
        vec![a1.assistant_id.clone(), a2.assistant_id.clone()]
    );
    assert_eq!(
        ids(store.list_assistants(Some(&org_b)).await.unwrap()),
        vec![b1.assistant_id.clone()]
    );
    let all = ids(store.list_assistants(None).await.unwrap());
    assert!(all.contains(&a1.assistant_id) && all.contains(&b1.assistant_id));

    let mut changed = a1.clone();
    changed.name = "Renamed".into();
    let v2 = store.update_assistant(&changed).await.unwrap();
    assert_eq!(v2.version, 2);
    assert_eq!(
        store.get_assistant(&a1.assistant_id).await.unwrap(),
        Some(v2.clone())
    );
    // A writer that read version 1 loses.
    assert!(matches!(
        store.update_assistant(&changed).await,
        Err(StoreError::VersionConflict { expected: 1, .. })
    ));
    let ghost = org_assistant(&org_a, 0);
    assert!(matches!(
        store.update_assistant(&ghost).await,
        Err(StoreError::NotFound { .. })
    ));
    // Two concurrent writers of version 2: exactly one wins.
    let (x, y) = tokio::join!(store.update_assistant(&v2), store.update_assistant(&v2));
    assert_eq!(
        [x.is_ok(), y.is_ok()].iter().filter(|ok| **ok).count(),
        1,
        "{x:?} {y:?}"
    );
    assert!(store.delete_assistant(&a1.assistant_id).await.unwrap());
    assert!(!store.delete_assistant(&a1.assistant_id).await.unwrap());
    assert!(store
        .get_assistant(&a1.assistant_id)
        .await
        .unwrap()
        .is_none());
    assert_eq!(
        ids(store.list_assistants(Some(&org_a)).await.unwrap()),
        vec![a2.assistant_id.clone()]
    );
}

/// SIP trunks: created once, listed by organisation, deleted once.
pub async fn org_sip_trunks_by_org(store: &dyn Store) {
    let org_a = crate::model::new_id("org");
    let org_b = crate::model::new_id("org");
    let t2 = org_trunk(&org_a, 10);
    let t1 = org_trunk(&org_a, 0);
    let tb = org_trunk(&org_b, 0);
    for t in [&t2, &t1, &tb] {
        store.create_sip_trunk(t).await.unwrap();
    }
    assert!(matches!(
        store.create_sip_trunk(&t1).await,
        Err(StoreError::AlreadyExists { .. })
    ));
    assert_eq!(
        store.get_sip_trunk(&t1.trunk_id).await.unwrap(),
        Some(t1.clone())
    );
    let ids = |v: Vec<crate::org::SipTrunk>| v.into_iter().map(|t| t.trunk_id).collect::<Vec<_>>();
    assert_eq!(
        ids(store.list_sip_trunks(Some(&org_a)).await.unwrap()),
        vec![t1.trunk_id.clone(), t2.trunk_id.clone()]
    );
    assert_eq!(
        ids(store.list_sip_trunks(Some(&org_b)).await.unwrap()),
        vec![tb.trunk_id.clone()]
    );
    assert!(ids(store.list_sip_trunks(None).await.unwrap()).contains(&tb.trunk_id));
    assert!(store.delete_sip_trunk(&t1.trunk_id).await.unwrap());
    assert!(!store.delete_sip_trunk(&t1.trunk_id).await.unwrap());
    assert!(store.get_sip_trunk(&t1.trunk_id).await.unwrap().is_none());
    assert!(store
        .get_sip_trunk("no-such-trunk")
        .await
        .unwrap()
        .is_none());
}
