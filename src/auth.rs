//! Short-lived signed session tokens for agents and callers, and API-key checks for
//! management calls.

use chrono::Utc;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::model::PartyRef;

/// Issuer and audience written into every session token.
const ISSUER: &str = "switchboard";
/// Audience of session tokens; tokens for another audience are refused.
const AUDIENCE: &str = "switchboard-session";

/// Why a token or key was refused.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// No credentials were presented.
    #[error("missing credentials")]
    Missing,
    /// The token is malformed, wrongly signed, for another audience, or expired.
    #[error("invalid or expired session token")]
    InvalidToken(#[source] jsonwebtoken::errors::Error),
    /// The API key does not match.
    #[error("invalid API key")]
    InvalidApiKey,
    /// Signing failed (should not happen with an HMAC key).
    #[error("could not sign the session token")]
    Signing(#[source] jsonwebtoken::errors::Error),
}

/// Claims of a session token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionClaims {
    /// `agent:<agentId>` or `caller:<callId>`.
    pub sub: String,
    /// The party the token speaks for.
    pub party: PartyRef,
    /// Issued at (seconds since the epoch).
    pub iat: i64,
    /// Expires at (seconds since the epoch).
    pub exp: i64,
    /// Always `switchboard`.
    pub iss: String,
    /// Always `switchboard-session`.
    pub aud: String,
}

/// A freshly minted session token.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct IssuedToken {
    /// The JWT.
    pub token: String,
    /// When it expires (RFC 3339).
    pub expires_at: chrono::DateTime<Utc>,
}

/// Mints and verifies session tokens with one HMAC secret.
#[derive(Clone)]
pub struct SessionKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    ttl_secs: i64,
}

impl std::fmt::Debug for SessionKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionKeys")
            .field("secret", &"[redacted]")
            .field("ttl_secs", &self.ttl_secs)
            .finish()
    }
}

impl SessionKeys {
    /// Keys from a secret (at least 32 bytes are recommended) and a token lifetime.
    pub fn new(secret: &[u8], ttl_secs: i64) -> Self {
        SessionKeys {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            ttl_secs,
        }
    }

    /// Mints a token for a party.
    pub fn issue(&self, party: PartyRef) -> Result<IssuedToken, AuthError> {
        let now = Utc::now().timestamp();
        let sub = match &party {
            PartyRef::Agent { agent_id } => format!("agent:{agent_id}"),
            PartyRef::Caller { call_id } => format!("caller:{call_id}"),
        };
        let claims = SessionClaims {
            sub,
            party,
            iat: now,
            exp: now + self.ttl_secs,
            iss: ISSUER.into(),
            aud: AUDIENCE.into(),
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(AuthError::Signing)?;
        Ok(IssuedToken {
            token,
            expires_at: chrono::DateTime::from_timestamp(claims.exp, 0).unwrap_or_default(),
        })
    }

    /// Verifies a token's signature, issuer, audience and expiry; returns its party.
    pub fn verify(&self, token: &str) -> Result<PartyRef, AuthError> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[AUDIENCE]);
        validation.leeway = 5;
        let data = jsonwebtoken::decode::<SessionClaims>(token, &self.decoding, &validation)
            .map_err(AuthError::InvalidToken)?;
        Ok(data.claims.party)
    }
}

/// A management API key, kept only as its SHA-256 digest and compared in constant time.
#[derive(Clone)]
pub struct ApiKey {
    digest: [u8; 32],
}

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiKey([redacted])")
    }
}

impl ApiKey {
    /// Wraps the configured key.
    pub fn new(key: &str) -> Self {
        ApiKey {
            digest: Sha256::digest(key.as_bytes()).into(),
        }
    }

    /// Whether a presented key matches, in constant time.
    pub fn matches(&self, presented: &str) -> bool {
        let other: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        self.digest
            .iter()
            .zip(other.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_token_verifies_and_names_its_party() {
        let keys = SessionKeys::new(b"0123456789abcdef0123456789abcdef", 60);
        let party = PartyRef::Caller {
            call_id: "call-1".into(),
        };
        let issued = keys.issue(party.clone()).unwrap();
        assert_eq!(keys.verify(&issued.token).unwrap(), party);
    }

    #[test]
    fn token_from_another_secret_or_expired_is_refused() {
        let keys = SessionKeys::new(b"0123456789abcdef0123456789abcdef", 60);
        let other = SessionKeys::new(b"another-secret-another-secret-xx", 60);
        let party = PartyRef::Agent {
            agent_id: "a".into(),
        };
        let token = other.issue(party.clone()).unwrap().token;
        assert!(keys.verify(&token).is_err());
        let expired = SessionKeys::new(b"0123456789abcdef0123456789abcdef", -60)
            .issue(party)
            .unwrap()
            .token;
        assert!(keys.verify(&expired).is_err());
        assert!(keys.verify("not a jwt").is_err());
    }

    #[test]
    fn api_key_matches_only_itself() {
        let key = ApiKey::new("s3cret");
        assert!(key.matches("s3cret"));
        assert!(!key.matches("s3cret "));
        assert!(!key.matches(""));
        assert!(!format!("{key:?}").contains("s3cret"));
    }
}
