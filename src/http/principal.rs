//! Who is asking ([`Principal`]): the root API key, an organisation's key, an agent's or a
//! caller's session token, or (with no key configured) a local client.

use actix_web::{web, HttpMessage, HttpRequest};

use super::{check_id, ApiError, AppState};
use crate::config::ManagementAccess;
use crate::model::PartyRef;

/// Who is asking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// Management: a valid `x-api-key`, or a local client when no key is configured.
    Admin,
    /// An agent with a session token.
    Agent(String),
    /// A caller with a session token; reaches one call only.
    Caller(String),
    /// An organisation's API key (`sbk_...`): its own keys, assistants and trunks only.
    Org(OrgKey),
}

/// A verified organisation API key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrgKey {
    /// The key's id.
    pub key_id: String,
    /// Its organisation.
    pub org_id: String,
    /// What it may do there.
    pub role: crate::org::KeyRole,
}

impl Principal {
    /// The organisation of an organisation key; `None` for everyone else (the root key
    /// included: it belongs to no organisation).
    pub fn org_id(&self) -> Option<&str> {
        match self {
            Principal::Org(k) => Some(&k.org_id),
            _ => None,
        }
    }

    /// Fails (403) unless this is the root key or an organisation key.
    pub fn require_org_or_admin(&self) -> Result<(), ApiError> {
        match self {
            Principal::Admin | Principal::Org(_) => Ok(()),
            _ => Err(ApiError::Forbidden(
                "this endpoint needs an API key (x-api-key)".into(),
            )),
        }
    }

    /// Whether a record of organisation `org_id` is visible to this key: the root key sees
    /// every organisation's, an organisation key its own only.
    pub fn sees_org(&self, org_id: &str) -> bool {
        self.org_id().is_none_or(|own| own == org_id)
    }

    /// The organisation a new record (`what`: assistants, trunks) belongs to: an organisation
    /// key's own (naming another is 403), or the `orgId` the root key must give.
    pub fn owning_org(&self, asked: Option<&str>, what: &str) -> Result<String, ApiError> {
        match self {
            Principal::Org(k) => {
                if asked.is_some_and(|o| o != k.org_id) {
                    return Err(ApiError::Forbidden(format!(
                        "an organisation API key creates {what} in its own organisation ({}) only",
                        k.org_id
                    )));
                }
                Ok(k.org_id.clone())
            }
            _ => {
                let org = asked.ok_or_else(|| {
                    ApiError::invalid("orgId", "is required with the management key")
                })?;
                check_id("orgId", org)?;
                Ok(org.to_string())
            }
        }
    }

    /// The 403 of an endpoint that organisation keys may not use (yet).
    pub fn org_forbidden() -> ApiError {
        ApiError::Forbidden(
            "organisation API keys cannot use this endpoint; it needs the management API key"
                .into(),
        )
    }

    /// Whose `Idempotency-Key`s these are: one principal's keys never answer another's
    /// requests (an organisation's keys share its organisation's).
    pub fn scope(&self) -> String {
        match self {
            Principal::Admin => "admin".into(),
            Principal::Agent(a) => format!("agent:{a}"),
            Principal::Caller(c) => format!("caller:{c}"),
            Principal::Org(k) => format!("org:{}", k.org_id),
        }
    }

    /// Fails unless this is management.
    pub fn require_admin(&self) -> Result<(), ApiError> {
        match self {
            Principal::Admin => Ok(()),
            _ => Err(ApiError::Forbidden(
                "this endpoint needs the management API key".into(),
            )),
        }
    }
}

/// A request header as text, if present and visible ASCII.
pub(super) fn header<'a>(req: &'a HttpRequest, name: &str) -> Option<&'a str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

/// Whether a browser request comes from a page of another site (its `Origin` differs from
/// the `Host` it targets, case-insensitively).
fn cross_site(req: &HttpRequest) -> bool {
    match (header(req, "origin"), request_host(req)) {
        (Some(origin), Some(host)) => {
            let origin_host = origin.split("://").nth(1).unwrap_or(origin);
            !origin_host.eq_ignore_ascii_case(host)
        }
        (Some(_), None) => true,
        _ => false,
    }
}

/// The `Host` the request targets (the header, or the URI's authority over HTTP/2).
fn request_host(req: &HttpRequest) -> Option<&str> {
    header(req, "host").or_else(|| req.uri().authority().map(|a| a.as_str()))
}

/// The name or address of a `Host` value without its port (`[::1]:8080` → `::1`), or `None`
/// when it is malformed.
fn host_name(host: &str) -> Option<&str> {
    let digits = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
    if let Some(rest) = host.strip_prefix('[') {
        let (inner, after) = rest.split_once(']')?;
        return match after.strip_prefix(':') {
            None if after.is_empty() => Some(inner),
            Some(port) if digits(port) => Some(inner),
            _ => None,
        };
    }
    let name = match host.split_once(':') {
        None => host,
        Some((name, port)) if digits(port) => name,
        Some(_) => return None,
    };
    (!name.is_empty()).then_some(name)
}

/// Whether `host` (a `Host` value) names this machine's loopback interface: `localhost`,
/// `*.localhost`, `127.0.0.0/8` or `::1`, with or without a port.
pub fn loopback_host(host: &str) -> bool {
    let Some(name) = host_name(host) else {
        return false;
    };
    let name = name.to_ascii_lowercase();
    let name = name.strip_suffix('.').unwrap_or(&name);
    if name == "localhost" || name.ends_with(".localhost") {
        return true;
    }
    if host.starts_with('[') {
        return name
            .parse::<std::net::Ipv6Addr>()
            .is_ok_and(|a| a.is_loopback());
    }
    name.parse::<std::net::Ipv4Addr>()
        .is_ok_and(|a| a.is_loopback())
}

/// Whether local management may answer a request for `host`: a loopback name or address,
/// or one of `allowed` (`SWITCHBOARD_ALLOWED_HOSTS`, with or without its port).
pub fn host_allowed(host: &str, allowed: &[String]) -> bool {
    if loopback_host(host) {
        return true;
    }
    let Some(name) = host_name(host) else {
        return false;
    };
    allowed
        .iter()
        .any(|a| a.eq_ignore_ascii_case(host) || a.eq_ignore_ascii_case(name))
}

/// Works out who is asking, for every endpoint that organisation keys may not use: as
/// [`authenticate`], but a valid organisation key is refused with 403 `forbidden` (it never
/// gets management power).
pub fn principal(req: &HttpRequest, state: &AppState) -> Result<Principal, ApiError> {
    match authenticate(req, state)? {
        Principal::Org(_) => Err(Principal::org_forbidden()),
        other => Ok(other),
    }
}

/// What [`resolve_org_key`] found for the request's organisation key.
#[derive(Debug, Clone)]
enum OrgKeyCheck {
    /// The key is stored, not revoked, and its secret matches.
    Valid(OrgKey),
    /// Unknown, revoked, malformed or wrong secret (401 with this message).
    Refused(&'static str),
    /// The store could not be read (503).
    Unavailable,
}

/// What [`resolve_org_key`] found for the agent of the request's session token.
#[derive(Debug, Clone)]
enum AgentCheck {
    /// Stored and active.
    Active,
    /// Deactivated (403 `forbidden`) or deleted (401).
    Refused(ApiErrorKind, String),
    /// The store could not be read (503).
    Unavailable,
}

/// Which refusal an [`AgentCheck::Refused`] is.
#[derive(Debug, Clone, Copy)]
enum ApiErrorKind {
    Forbidden,
    Unauthorized,
}

/// Middleware: when `x-api-key` holds an organisation key (`sbk_...`, not the root key), looks
/// it up in the store (every request: a revoked key is refused at once); when the request
/// carries an agent's session token, reads the agent (every request: a deactivated agent is
/// refused at once). Leaves the result for [`authenticate`], which stays synchronous.
pub async fn resolve_org_key(
    req: actix_web::dev::ServiceRequest,
    next: actix_web::middleware::Next<impl actix_web::body::MessageBody>,
) -> Result<actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>, actix_web::Error> {
    let presented = header(req.request(), "x-api-key").map(str::to_owned);
    let state = req.app_data::<web::Data<AppState>>().cloned();
    let Some(state) = state else {
        return next.call(req).await;
    };
    if let Some(key) = presented {
        let root =
            matches!(&state.config.management, ManagementAccess::ApiKey(e) if e.matches(&key));
        if !root && crate::org::looks_like_key(&key) {
            let check = check_org_key(&state, &key).await;
            req.extensions_mut().insert(check);
        }
    } else {
        let agent = header(req.request(), "authorization")
            .and_then(|a| a.strip_prefix("Bearer "))
            .and_then(|t| match state.keys.verify(t.trim()) {
                Ok(PartyRef::Agent { agent_id }) => Some(agent_id),
                _ => None,
            });
        if let Some(agent_id) = agent {
            let check = check_agent(&state, &agent_id).await;
            req.extensions_mut().insert(check);
        }
    }
    next.call(req).await
}

async fn check_agent(state: &AppState, agent_id: &str) -> AgentCheck {
    match state.store.get_agent(agent_id).await {
        Ok(Some(a)) if a.active => AgentCheck::Active,
        Ok(Some(_)) => AgentCheck::Refused(
            ApiErrorKind::Forbidden,
            format!("agent {agent_id} is not active"),
        ),
        Ok(None) => AgentCheck::Refused(
            ApiErrorKind::Unauthorized,
            format!("agent {agent_id} no longer exists"),
        ),
        Err(e) => {
            tracing::error!(error = %e, "reading an agent failed");
            AgentCheck::Unavailable
        }
    }
}

/// Whether the agent of a session token may act now, as [`resolve_org_key`] found.
fn active_agent(req: &HttpRequest, agent_id: String) -> Result<Principal, ApiError> {
    match req.extensions().get::<AgentCheck>() {
        Some(AgentCheck::Active) => Ok(Principal::Agent(agent_id)),
        Some(AgentCheck::Refused(ApiErrorKind::Forbidden, m)) => {
            Err(ApiError::Forbidden(m.clone()))
        }
        Some(AgentCheck::Refused(ApiErrorKind::Unauthorized, m)) => {
            Err(ApiError::Unauthorized(m.clone()))
        }
        Some(AgentCheck::Unavailable) => Err(ApiError::Unavailable(
            "agents cannot be checked right now (storage is unavailable)".into(),
        )),
        None => Err(ApiError::Internal(
            "agents are not resolved: resolve_org_key is not installed".into(),
        )),
    }
}

async fn check_org_key(state: &AppState, text: &str) -> OrgKeyCheck {
    let Some((key_id, secret)) = crate::org::parse_key(text) else {
        return OrgKeyCheck::Refused("invalid API key");
    };
    match state.store.get_api_key(key_id).await {
        Ok(Some(k)) if k.secret_matches(secret) => {
            if k.revoked_at.is_some() {
                OrgKeyCheck::Refused("this API key has been revoked")
            } else {
                OrgKeyCheck::Valid(OrgKey {
                    key_id: k.key_id,
                    org_id: k.org_id,
                    role: k.role,
                })
            }
        }
        Ok(_) => OrgKeyCheck::Refused("invalid API key"),
        Err(e) => {
            tracing::error!(error = %e, "reading an API key failed");
            OrgKeyCheck::Unavailable
        }
    }
}

/// Works out who is asking: `x-api-key` (the root key is management, an organisation key is
/// [`Principal::Org`]), then `Authorization: Bearer <session token>` (an agent's only while
/// the agent is active: 403 once deactivated), then (with no key configured) a local client.
pub fn authenticate(req: &HttpRequest, state: &AppState) -> Result<Principal, ApiError> {
    if let Some(key) = header(req, "x-api-key") {
        let root =
            matches!(&state.config.management, ManagementAccess::ApiKey(e) if e.matches(key));
        if !root && crate::org::looks_like_key(key) {
            return match req.extensions().get::<OrgKeyCheck>() {
                Some(OrgKeyCheck::Valid(k)) => Ok(Principal::Org(k.clone())),
                Some(OrgKeyCheck::Refused(m)) => Err(ApiError::Unauthorized((*m).into())),
                Some(OrgKeyCheck::Unavailable) => Err(ApiError::Unavailable(
                    "API keys cannot be checked right now (storage is unavailable)".into(),
                )),
                None => Err(ApiError::Internal(
                    "organisation keys are not resolved: resolve_org_key is not installed".into(),
                )),
            };
        }
        return match &state.config.management {
            ManagementAccess::ApiKey(expected) if expected.matches(key) => Ok(Principal::Admin),
            ManagementAccess::ApiKey(_) => Err(ApiError::Unauthorized("invalid API key".into())),
            ManagementAccess::LoopbackOnly => local_admin(req, state),
        };
    }
    if let Some(auth) = header(req, "authorization") {
        let token = auth.strip_prefix("Bearer ").ok_or_else(|| {
            ApiError::Unauthorized("expected Authorization: Bearer <token>".into())
        })?;
        return match state.keys.verify(token.trim()) {
            Ok(PartyRef::Agent { agent_id }) => active_agent(req, agent_id),
            Ok(PartyRef::Caller { call_id }) => Ok(Principal::Caller(call_id)),
            Err(_) => Err(ApiError::Unauthorized(
                "invalid or expired session token".into(),
            )),
        };
    }
    match &state.config.management {
        ManagementAccess::LoopbackOnly => local_admin(req, state),
        ManagementAccess::ApiKey(_) => Err(ApiError::Unauthorized(
            "send x-api-key (management) or Authorization: Bearer <session token>".into(),
        )),
    }
}

/// Whether a proxy or tunnel (ngrok, a reverse proxy) relayed the request: it then comes
/// from loopback but not from this machine's user.
fn forwarded(req: &HttpRequest) -> bool {
    [
        "forwarded",
        "x-forwarded-for",
        "x-forwarded-host",
        "x-real-ip",
    ]
    .iter()
    .any(|h| req.headers().contains_key(*h))
}

/// Management for a local client while no API key is set. A page of another site whose name
/// resolves to loopback (DNS rebinding) reaches us with its own `Host`: only loopback names
/// and `SWITCHBOARD_ALLOWED_HOSTS` are accepted (403 otherwise), and an `Origin` must be an
/// `http://` or `https://` page of that same host.
fn local_admin(req: &HttpRequest, state: &AppState) -> Result<Principal, ApiError> {
    let host_ok = request_host(req).is_some_and(|h| host_allowed(h, &state.config.allowed_hosts));
    if !host_ok {
        return Err(ApiError::Forbidden(
            "management without SWITCHBOARD_API_KEY answers loopback Host names only \
             (localhost, 127.0.0.1, [::1]) or SWITCHBOARD_ALLOWED_HOSTS"
                .into(),
        ));
    }
    if let Some(origin) = header(req, "origin") {
        if !(origin.starts_with("http://") || origin.starts_with("https://")) {
            return Err(ApiError::Forbidden(
                "management without SWITCHBOARD_API_KEY accepts http:// and https:// origins only"
                    .into(),
            ));
        }
    }
    let local = req.peer_addr().is_some_and(|a| a.ip().is_loopback());
    if local && !cross_site(req) && !forwarded(req) {
        Ok(Principal::Admin)
    } else {
        Err(ApiError::Unauthorized(
            "management endpoints are open to local clients only while SWITCHBOARD_API_KEY is unset"
                .into(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_hosts_are_local() {
        for h in [
            "localhost",
            "LOCALHOST:8080",
            "app.localhost",
            "127.0.0.1",
            "127.1.2.3:80",
            "[::1]",
            "[::1]:8080",
        ] {
            assert!(loopback_host(h), "{h}");
        }
        for h in [
            "evil.test",
            "rebind.evil.test:8080",
            "localhost.evil.test",
            "128.0.0.1",
            "[::2]",
            "::1",
            "127.0.0.1:x",
            "",
            "[::1]x",
        ] {
            assert!(!loopback_host(h), "{h}");
        }
        let allowed = vec!["box.lan".to_string(), "dev.test:9000".to_string()];
        assert!(host_allowed("box.lan:8080", &allowed));
        assert!(host_allowed("DEV.test:9000", &allowed));
        assert!(!host_allowed("dev.test:9001", &allowed));
        assert!(!host_allowed("evil.test", &allowed));
    }
}
