//! Twilio Access Tokens with a Voice grant, for the browser Voice SDK (`client` legs).
//!
//! The token is a JWT signed HS256 with an API key secret, shaped exactly as Twilio's own
//! helper libraries make it (header `cty: twilio-fpa;v=1`; claims `jti`, `iss`, `sub`, `nbf`,
//! `exp` and `grants`). Time comes in as data so that minting is deterministic and testable.

use std::collections::BTreeMap;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::secret::Secret;

/// The content type Twilio requires in the JWT header of an Access Token.
pub const ACCESS_TOKEN_CTY: &str = "twilio-fpa;v=1";

/// What a Voice Access Token grants, and to whom.
#[derive(Debug, Clone)]
pub struct VoiceTokenSpec<'a> {
    /// The account (`AC…`): the `sub` claim.
    pub account_sid: &'a str,
    /// The API key (`SK…`) whose secret signs the token: the `iss` claim.
    pub api_key_sid: &'a str,
    /// The API key's secret.
    pub api_key_secret: &'a Secret,
    /// The client identity (`grants.identity`); incoming calls reach `client:<identity>`.
    pub identity: &'a str,
    /// The TwiML App (`AP…`) outgoing calls from the SDK run
    /// (`grants.voice.outgoing.application_sid`); `None` for no outgoing grant.
    pub outgoing_application_sid: Option<&'a str>,
    /// Parameters passed to the TwiML App with every outgoing call
    /// (`grants.voice.outgoing.params`); only sent with an application.
    pub outgoing_params: BTreeMap<String, String>,
    /// Whether the client may receive calls (`grants.voice.incoming.allow`).
    pub incoming_allow: bool,
    /// Lifetime in seconds (Twilio allows at most 24 hours).
    pub ttl_secs: u64,
    /// The current Unix time in seconds (`nbf`, and the base of `exp` and `jti`).
    pub now_secs: u64,
}

/// Errors minting or checking an Access Token.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The spec cannot make a valid token (empty identity, zero or too long lifetime, ...).
    #[error("invalid access token request: {0}")]
    Invalid(String),
    /// Encoding the JWT failed.
    #[error("could not sign the access token")]
    Signing(#[source] jsonwebtoken::errors::Error),
    /// The token is not a JWT signed with this secret, or its claims are malformed.
    #[error("the access token is malformed or its signature does not match")]
    BadToken(#[source] jsonwebtoken::errors::Error),
    /// The header's `cty` is not Twilio's.
    #[error("the access token header has cty {0:?}, not {ACCESS_TOKEN_CTY:?}")]
    WrongContentType(Option<String>),
    /// `exp` is not after `now`.
    #[error("the access token expired at {exp} (now {now})")]
    Expired {
        /// The token's `exp`.
        exp: u64,
        /// The time it was checked at.
        now: u64,
    },
    /// `nbf` is after `now`.
    #[error("the access token is not valid before {nbf} (now {now})")]
    NotYetValid {
        /// The token's `nbf`.
        nbf: u64,
        /// The time it was checked at.
        now: u64,
    },
}

/// Twilio's maximum Access Token lifetime (24 hours).
pub const MAX_TTL_SECS: u64 = 24 * 3600;

/// The claims of a Voice Access Token (what [`decode_voice_access_token`] returns).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VoiceTokenClaims {
    /// `<API key SID>-<iat>`: unique per key and second.
    pub jti: String,
    /// The API key SID.
    pub iss: String,
    /// The account SID.
    pub sub: String,
    /// Not before (Unix seconds).
    pub nbf: u64,
    /// Expiry (Unix seconds).
    pub exp: u64,
    /// The grants.
    pub grants: Grants,
}

/// The `grants` claim.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Grants {
    /// The client identity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<String>,
    /// The Voice grant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub voice: Option<VoiceGrant>,
}

/// `grants.voice`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct VoiceGrant {
    /// `incoming: {allow: true}` when the client may receive calls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incoming: Option<IncomingGrant>,
    /// `outgoing: {application_sid, params?}` when the client may place calls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outgoing: Option<OutgoingGrant>,
}

/// `grants.voice.incoming`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IncomingGrant {
    /// Always true when present.
    pub allow: bool,
}

/// `grants.voice.outgoing`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutgoingGrant {
    /// The TwiML App SID.
    pub application_sid: String,
    /// Parameters for the TwiML App.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub params: Option<BTreeMap<String, String>>,
}

/// Mints a Voice Access Token (JWT, HS256 with the API key secret) exactly as Twilio's
/// helper libraries do: header `{typ: JWT, alg: HS256, cty: twilio-fpa;v=1}`, claims
/// `jti = <key sid>-<now>`, `iss = key sid`, `sub = account sid`, `nbf = now`,
/// `exp = now + ttl`, `grants = {identity, voice: {incoming?, outgoing?}}`.
pub fn voice_access_token(spec: &VoiceTokenSpec) -> Result<String, TokenError> {
    if spec.identity.is_empty() {
        return Err(TokenError::Invalid("the identity is empty".into()));
    }
    if spec.ttl_secs == 0 || spec.ttl_secs > MAX_TTL_SECS {
        return Err(TokenError::Invalid(format!(
            "the lifetime must be 1..={MAX_TTL_SECS} seconds, not {}",
            spec.ttl_secs
        )));
    }
    if spec.api_key_sid.is_empty() || spec.account_sid.is_empty() {
        return Err(TokenError::Invalid(
            "the API key and account SIDs are required".into(),
        ));
    }
    if spec.api_key_secret.expose().is_empty() {
        return Err(TokenError::Invalid("the API key secret is empty".into()));
    }
    let outgoing = match spec.outgoing_application_sid {
        Some("") => return Err(TokenError::Invalid("the TwiML App SID is empty".into())),
        Some(app) => Some(OutgoingGrant {
            application_sid: app.to_owned(),
            params: (!spec.outgoing_params.is_empty()).then(|| spec.outgoing_params.clone()),
        }),
        None => None,
    };
    let claims = VoiceTokenClaims {
        jti: format!("{}-{}", spec.api_key_sid, spec.now_secs),
        iss: spec.api_key_sid.to_owned(),
        sub: spec.account_sid.to_owned(),
        nbf: spec.now_secs,
        exp: spec.now_secs + spec.ttl_secs,
        grants: Grants {
            identity: Some(spec.identity.to_owned()),
            voice: Some(VoiceGrant {
                incoming: spec.incoming_allow.then_some(IncomingGrant { allow: true }),
                outgoing,
            }),
        },
    };
    let mut header = Header::new(Algorithm::HS256);
    header.typ = Some("JWT".into());
    header.cty = Some(ACCESS_TOKEN_CTY.into());
    jsonwebtoken::encode(
        &header,
        &claims,
        &EncodingKey::from_secret(spec.api_key_secret.expose().as_bytes()),
    )
    .map_err(TokenError::Signing)
}

/// Checks a Voice Access Token as Twilio would: HS256 signature with `api_key_secret`, the
/// `cty` header, `nbf <= now < exp`; returns its claims. Used by the Twilio test fake and by
/// tests.
pub fn decode_voice_access_token(
    token: &str,
    api_key_secret: &Secret,
    now_secs: u64,
) -> Result<VoiceTokenClaims, TokenError> {
    let mut validation = Validation::new(Algorithm::HS256);
    // Times are checked below against the given `now`, not the system clock.
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.set_required_spec_claims(&["exp", "nbf", "iss", "sub"]);
    let data = jsonwebtoken::decode::<VoiceTokenClaims>(
        token,
        &DecodingKey::from_secret(api_key_secret.expose().as_bytes()),
        &validation,
    )
    .map_err(TokenError::BadToken)?;
    if data.header.cty.as_deref() != Some(ACCESS_TOKEN_CTY) {
        return Err(TokenError::WrongContentType(data.header.cty));
    }
    let claims = data.claims;
    if claims.exp <= now_secs {
        return Err(TokenError::Expired {
            exp: claims.exp,
            now: now_secs,
        });
    }
    if claims.nbf > now_secs {
        return Err(TokenError::NotYetValid {
            nbf: claims.nbf,
            now: now_secs,
        });
    }
    Ok(claims)
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;

    const NOW: u64 = 1_790_000_000;

    fn spec(secret: &Secret) -> VoiceTokenSpec<'_> {
        VoiceTokenSpec {
            account_sid: "AC00000000000000000000000000000001",
            api_key_sid: "SK00000000000000000000000000000002",
            api_key_secret: secret,
            identity: "agent-7",
            outgoing_application_sid: Some("AP00000000000000000000000000000003"),
            outgoing_params: BTreeMap::from([("conference".to_owned(), "call-1".to_owned())]),
            incoming_allow: true,
            ttl_secs: 600,
            now_secs: NOW,
        }
    }

    fn part(token: &str, i: usize) -> serde_json::Value {
        let raw = token.split('.').nth(i).expect("JWT part");
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(raw)
            .expect("base64url");
        serde_json::from_slice(&bytes).expect("json")
    }

    #[test]
    fn the_token_has_twilios_shape() {
        let secret = Secret::new("s3cret-s3cret-s3cret");
        let token = voice_access_token(&spec(&secret)).expect("mint");
        assert_eq!(
            part(&token, 0),
            serde_json::json!({"typ": "JWT", "alg": "HS256", "cty": "twilio-fpa;v=1"})
        );
        assert_eq!(
            part(&token, 1),
            serde_json::json!({
                "jti": format!("SK00000000000000000000000000000002-{NOW}"),
                "iss": "SK00000000000000000000000000000002",
                "sub": "AC00000000000000000000000000000001",
                "nbf": NOW,
                "exp": NOW + 600,
                "grants": {
                    "identity": "agent-7",
                    "voice": {
                        "incoming": {"allow": true},
                        "outgoing": {
                            "application_sid": "AP00000000000000000000000000000003",
                            "params": {"conference": "call-1"}
                        }
                    }
                }
            })
        );
    }

    #[test]
    fn optional_grants_are_left_out() {
        let secret = Secret::new("s3cret");
        let mut s = spec(&secret);
        s.incoming_allow = false;
        s.outgoing_application_sid = None;
        let token = voice_access_token(&s).expect("mint");
        assert_eq!(part(&token, 1)["grants"]["voice"], serde_json::json!({}));
        // Params without an application are dropped, as Twilio's libraries do.
        let mut s = spec(&secret);
        s.outgoing_params.clear();
        let token = voice_access_token(&s).expect("mint");
        assert_eq!(
            part(&token, 1)["grants"]["voice"]["outgoing"],
            serde_json::json!({"application_sid": "AP00000000000000000000000000000003"})
        );
    }

    #[test]
    fn decoding_checks_signature_time_and_header() {
        let secret = Secret::new("s3cret-s3cret-s3cret");
        let token = voice_access_token(&spec(&secret)).expect("mint");
        let claims = decode_voice_access_token(&token, &secret, NOW + 1).expect("valid");
        assert_eq!(claims.grants.identity.as_deref(), Some("agent-7"));
        assert_eq!(claims.exp, NOW + 600);
        assert!(matches!(
            decode_voice_access_token(&token, &Secret::new("other"), NOW),
            Err(TokenError::BadToken(_))
        ));
        assert!(matches!(
            decode_voice_access_token(&token, &secret, NOW + 600),
            Err(TokenError::Expired { .. })
        ));
        assert!(matches!(
            decode_voice_access_token(&token, &secret, NOW - 1),
            Err(TokenError::NotYetValid { .. })
        ));
        // Same claims and secret, but without Twilio's cty: refused.
        let plain = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(secret.expose().as_bytes()),
        )
        .expect("encode");
        assert!(matches!(
            decode_voice_access_token(&plain, &secret, NOW),
            Err(TokenError::WrongContentType(None))
        ));
        // A tampered payload fails the signature.
        let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
        let mut payload = part(&token, 1);
        payload["grants"]["identity"] = "mallory".into();
        parts[1] = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(serde_json::to_vec(&payload).expect("json"));
        assert!(matches!(
            decode_voice_access_token(&parts.join("."), &secret, NOW),
            Err(TokenError::BadToken(_))
        ));
    }

    #[test]
    fn invalid_specs_are_refused() {
        let secret = Secret::new("s3cret");
        let mut s = spec(&secret);
        s.identity = "";
        assert!(matches!(
            voice_access_token(&s),
            Err(TokenError::Invalid(_))
        ));
        let mut s = spec(&secret);
        s.ttl_secs = MAX_TTL_SECS + 1;
        assert!(matches!(
            voice_access_token(&s),
            Err(TokenError::Invalid(_))
        ));
        let mut s = spec(&secret);
        s.ttl_secs = 0;
        assert!(matches!(
            voice_access_token(&s),
            Err(TokenError::Invalid(_))
        ));
        let empty = Secret::new("");
        assert!(matches!(
            voice_access_token(&spec(&empty)),
            Err(TokenError::Invalid(_))
        ));
    }
}
