//! The SSRF guard of outgoing webhooks: a receiver URL must be `http`/`https` with a host and
//! no user info, and every address its host resolves to must be public. Loopback, private
//! (RFC 1918), link-local (the cloud metadata address included), unique-local, CGNAT,
//! unspecified, multicast, broadcast and reserved addresses are refused, also in their
//! IPv4-mapped and IPv4-compatible IPv6 forms, as are `localhost` names. The delivery then
//! connects to the checked addresses only (no second DNS lookup, no redirects), so a DNS
//! answer that changes between check and connect (rebinding) cannot slip past.
//!
//! Private receivers are reachable only when configured: `allow_private` (all of them) or an
//! allow-list of `host[:port]` entries.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use reqwest::Url;

/// Which receivers outside the public internet are allowed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EgressPolicy {
    /// `SWITCHBOARD_WEBHOOK_ALLOW_PRIVATE=true`: every address is allowed.
    pub allow_private: bool,
    /// `SWITCHBOARD_WEBHOOK_ALLOWED_HOSTS=host[:port],...`: these hosts (on that port, or on
    /// any port when none is given) are allowed whatever they resolve to.
    pub allowed_hosts: Vec<AllowedHost>,
}

/// One entry of the allow-list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedHost {
    /// Lower-case host name or IP literal (IPv6 without brackets).
    pub host: String,
    /// The only port allowed, if given.
    pub port: Option<u16>,
}

impl AllowedHost {
    /// Parses `host`, `host:port`, `[v6]` or `[v6]:port`.
    pub fn parse(entry: &str) -> Result<AllowedHost, String> {
        let entry = entry.trim().to_ascii_lowercase();
        let (host, port) = if let Some(rest) = entry.strip_prefix('[') {
            let (h, after) = rest
                .split_once(']')
                .ok_or_else(|| format!("{entry:?}: unclosed ["))?;
            let port = match after {
                "" => None,
                p => Some(
                    p.strip_prefix(':')
                        .ok_or_else(|| format!("{entry:?}: bad port"))?,
                ),
            };
            (h.to_string(), port)
        } else {
            match entry.rsplit_once(':') {
                Some((h, p)) if !h.contains(':') => (h.to_string(), Some(p)),
                _ => (entry.clone(), None),
            }
        };
        if host.is_empty() {
            return Err(format!("{entry:?}: empty host"));
        }
        let port = port
            .map(|p| {
                p.parse::<u16>()
                    .map_err(|_| format!("{entry:?}: bad port {p:?}"))
            })
            .transpose()?;
        Ok(AllowedHost { host, port })
    }
}

impl EgressPolicy {
    /// Whether the URL's host (and port) is on the allow-list, or everything is allowed.
    pub fn allows(&self, url: &Url) -> bool {
        if self.allow_private {
            return true;
        }
        let Some(host) = host_of(url) else {
            return false;
        };
        let port = url.port_or_known_default();
        self.allowed_hosts
            .iter()
            .any(|a| a.host == host && a.port.is_none_or(|p| Some(p) == port))
    }
}

/// Why a receiver URL was refused.
#[derive(Debug, thiserror::Error)]
pub enum SsrfError {
    /// Not a URL.
    #[error("webhook URL is not a valid URL: {0}")]
    Invalid(String),
    /// A scheme other than http or https (`file:`, `gopher:`, ...).
    #[error("webhook URL scheme {0:?} is not allowed (only http and https)")]
    Scheme(String),
    /// No host.
    #[error("webhook URL has no host")]
    NoHost,
    /// `user:password@` in the URL.
    #[error("webhook URL must not contain user info")]
    UserInfo,
    /// A `localhost` name.
    #[error("webhook host {0} is a local name; refused (set SWITCHBOARD_WEBHOOK_ALLOWED_HOSTS to allow it)")]
    LocalName(String),
    /// The host is or resolves to a non-public address.
    #[error("webhook host {host} resolves to {addr}, a {class} address; refused (set SWITCHBOARD_WEBHOOK_ALLOWED_HOSTS to allow it)")]
    Forbidden {
        /// The host of the URL.
        host: String,
        /// The refused address.
        addr: IpAddr,
        /// Which class it belongs to (`loopback`, `private`, ...).
        class: &'static str,
    },
    /// DNS resolution failed (may be temporary).
    #[error("could not resolve webhook host {host}")]
    Resolve {
        /// The host.
        host: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// DNS gave no address.
    #[error("webhook host {0} has no address")]
    NoAddress(String),
}

impl SsrfError {
    /// Whether trying again later may succeed (a DNS failure), as opposed to a refusal.
    pub fn is_temporary(&self) -> bool {
        matches!(self, SsrfError::Resolve { .. } | SsrfError::NoAddress(_))
    }
}

/// The URL's host, lower-case, IPv6 without brackets.
fn host_of(url: &Url) -> Option<String> {
    let h = url.host_str()?;
    let h = h
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(h);
    Some(h.trim_end_matches('.').to_ascii_lowercase())
}

/// The class of a non-public IPv4 address, `None` for a public one.
fn v4_class(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    Some(match (a, b, c) {
        _ if ip.is_unspecified() || a == 0 => "unspecified",
        _ if ip.is_loopback() => "loopback",
        (10, _, _) | (192, 168, _) => "private",
        (172, b, _) if (16..32).contains(&b) => "private",
        (169, 254, _) => "link-local",
        (100, b, _) if (64..128).contains(&b) => "shared (CGNAT)",
        (192, 0, 0) => "IETF protocol assignment",
        (198, 18..=19, _) => "benchmarking",
        _ if ip.is_broadcast() => "broadcast",
        _ if ip.is_multicast() => "multicast",
        _ if a >= 240 => "reserved",
        _ => return None,
    })
}

/// The class of a non-public address, `None` for a public one. IPv4-mapped
/// (`::ffff:a.b.c.d`), IPv4-compatible (`::a.b.c.d`) and NAT64 (`64:ff9b::a.b.c.d`) IPv6
/// addresses are judged by the IPv4 address they carry.
pub fn forbidden_class(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => v4_class(v4),
        IpAddr::V6(v6) => v6_class(v6),
    }
}

fn v6_class(ip: Ipv6Addr) -> Option<&'static str> {
    let seg = ip.segments();
    if ip.is_unspecified() {
        return Some("unspecified");
    }
    if ip.is_loopback() {
        return Some("loopback");
    }
    if let Some(v4) = ip.to_ipv4_mapped() {
        return v4_class(v4).or(Some("IPv4-mapped"));
    }
    // ::a.b.c.d (deprecated IPv4-compatible) and 64:ff9b::a.b.c.d (NAT64) carry an IPv4
    // address in the last 32 bits.
    let embedded = Ipv4Addr::new(
        (seg[6] >> 8) as u8,
        seg[6] as u8,
        (seg[7] >> 8) as u8,
        seg[7] as u8,
    );
    if seg[..6] == [0; 6] {
        return v4_class(embedded).or(Some("IPv4-compatible"));
    }
    if seg[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return v4_class(embedded);
    }
    match seg[0] {
        s if s & 0xffc0 == 0xfe80 => Some("link-local"),
        s if s & 0xffc0 == 0xfec0 => Some("site-local"),
        s if s & 0xfe00 == 0xfc00 => Some("unique-local"),
        s if s & 0xff00 == 0xff00 => Some("multicast"),
        0x2001 if seg[1] == 0x0db8 => Some("documentation"),
        _ => None,
    }
}

/// Checks a receiver URL without DNS: scheme, host, user info, `localhost` names and
/// literal IP addresses. Returns the parsed URL.
pub fn check_url(url: &str, policy: &EgressPolicy) -> Result<Url, SsrfError> {
    let parsed = Url::parse(url.trim()).map_err(|e| SsrfError::Invalid(e.to_string()))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(SsrfError::Scheme(parsed.scheme().to_string()));
    }
    let host = host_of(&parsed)
        .filter(|h| !h.is_empty())
        .ok_or(SsrfError::NoHost)?;
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(SsrfError::UserInfo);
    }
    if policy.allows(&parsed) {
        return Ok(parsed);
    }
    if host == "localhost" || host.ends_with(".localhost") {
        return Err(SsrfError::LocalName(host));
    }
    if let Ok(ip) = host.parse::<IpAddr>() {
        if let Some(class) = forbidden_class(ip) {
            return Err(SsrfError::Forbidden {
                host,
                addr: ip,
                class,
            });
        }
    }
    Ok(parsed)
}

/// Resolves a URL checked by [`check_url`] to the addresses the delivery may connect to:
/// all of them must be public unless the policy allows the host.
pub async fn resolve(url: &Url, policy: &EgressPolicy) -> Result<Vec<SocketAddr>, SsrfError> {
    let host = host_of(url).ok_or(SsrfError::NoHost)?;
    let port = url.port_or_known_default().unwrap_or(80);
    let addrs: Vec<SocketAddr> = match host.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => tokio::net::lookup_host((host.as_str(), port))
            .await
            .map_err(|source| SsrfError::Resolve {
                host: host.clone(),
                source,
            })?
            .collect(),
    };
    if addrs.is_empty() {
        return Err(SsrfError::NoAddress(host));
    }
    if !policy.allows(url) {
        for a in &addrs {
            if let Some(class) = forbidden_class(a.ip()) {
                return Err(SsrfError::Forbidden {
                    host,
                    addr: a.ip(),
                    class,
                });
            }
        }
    }
    Ok(addrs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(s: &str) -> Option<&'static str> {
        forbidden_class(s.parse().unwrap())
    }

    #[test]
    fn every_address_class() {
        for (ip, want) in [
            ("127.0.0.1", "loopback"),
            ("127.255.0.9", "loopback"),
            ("0.0.0.0", "unspecified"),
            ("0.1.2.3", "unspecified"),
            ("10.0.0.1", "private"),
            ("172.16.0.1", "private"),
            ("172.31.255.255", "private"),
            ("192.168.1.1", "private"),
            ("169.254.169.254", "link-local"),
            ("100.64.0.1", "shared (CGNAT)"),
            ("100.127.255.254", "shared (CGNAT)"),
            ("224.0.0.1", "multicast"),
            ("255.255.255.255", "broadcast"),
            ("240.0.0.1", "reserved"),
            ("192.0.0.8", "IETF protocol assignment"),
            ("198.18.0.1", "benchmarking"),
            ("::1", "loopback"),
            ("::", "unspecified"),
            ("fe80::1", "link-local"),
            ("febf::1", "link-local"),
            ("fc00::1", "unique-local"),
            ("fd12:3456::1", "unique-local"),
            ("ff02::1", "multicast"),
            ("fec0::1", "site-local"),
            ("::ffff:127.0.0.1", "loopback"),
            ("::ffff:10.1.2.3", "private"),
            ("::ffff:169.254.169.254", "link-local"),
            ("::127.0.0.1", "loopback"),
            ("::10.0.0.1", "private"),
            ("64:ff9b::a9fe:a9fe", "link-local"),
            ("2001:db8::1", "documentation"),
        ] {
            assert_eq!(class(ip), Some(want), "{ip}");
        }
        for ip in [
            "8.8.8.8",
            "1.1.1.1",
            "172.15.255.255",
            "172.32.0.1",
            "100.63.255.255",
            "100.128.0.1",
            "169.253.1.1",
            "192.167.1.1",
            "2606:4700:4700::1111",
            "2a00:1450:4001::200e",
            "64:ff9b::808:808",
        ] {
            assert_eq!(class(ip), None, "{ip} is public");
        }
        // Mapped and compatible forms of public addresses have no business in a DNS answer
        // for a webhook receiver: refused too, by form.
        assert_eq!(class("::8.8.8.8"), Some("IPv4-compatible"));
        assert_eq!(class("::ffff:8.8.8.8"), Some("IPv4-mapped"));
    }

    fn refused(url: &str) -> SsrfError {
        check_url(url, &EgressPolicy::default()).expect_err(url)
    }

    #[test]
    fn static_checks() {
        assert!(matches!(refused("file:///etc/passwd"), SsrfError::Scheme(s) if s == "file"));
        assert!(matches!(
            refused("gopher://example.com/"),
            SsrfError::Scheme(_)
        ));
        assert!(matches!(refused("not a url"), SsrfError::Invalid(_)));
        assert!(matches!(
            refused("https://u:p@example.com/"),
            SsrfError::UserInfo
        ));
        assert!(matches!(
            refused("https://u@example.com/"),
            SsrfError::UserInfo
        ));
        assert!(matches!(
            refused("http://localhost:8080/"),
            SsrfError::LocalName(_)
        ));
        assert!(matches!(
            refused("http://a.localhost/"),
            SsrfError::LocalName(_)
        ));
        assert!(matches!(
            refused("http://LOCALHOST./"),
            SsrfError::LocalName(_)
        ));
        for (url, want) in [
            ("http://127.0.0.1/", "loopback"),
            ("http://[::1]:9/", "loopback"),
            ("http://10.0.0.1/", "private"),
            ("http://169.254.169.254/latest/meta-data/", "link-local"),
            ("http://[::ffff:127.0.0.1]/", "loopback"),
            ("http://100.64.0.1/", "shared (CGNAT)"),
            // Other spellings of 127.0.0.1 that URL parsers normalise.
            ("http://2130706433/", "loopback"),
            ("http://0x7f.1/", "loopback"),
            ("http://0/", "unspecified"),
        ] {
            match refused(url) {
                SsrfError::Forbidden { class, .. } => assert_eq!(class, want, "{url}"),
                other => panic!("{url}: {other}"),
            }
        }
        let ok = check_url("https://hooks.example.com/x?y=1", &EgressPolicy::default()).unwrap();
        assert_eq!(ok.as_str(), "https://hooks.example.com/x?y=1");
    }

    #[test]
    fn policy_allows_configured_hosts_only() {
        let policy = EgressPolicy {
            allow_private: false,
            allowed_hosts: vec![
                AllowedHost::parse("127.0.0.1:9000").unwrap(),
                AllowedHost::parse("Receiver.internal").unwrap(),
                AllowedHost::parse("[::1]:7000").unwrap(),
            ],
        };
        assert!(check_url("http://127.0.0.1:9000/hook", &policy).is_ok());
        assert!(check_url("http://127.0.0.1:9001/hook", &policy).is_err());
        assert!(check_url("http://receiver.internal:1234/", &policy).is_ok());
        assert!(check_url("http://[::1]:7000/", &policy).is_ok());
        assert!(check_url("http://[::1]:7001/", &policy).is_err());
        // The allow-list never allows other schemes or user info.
        assert!(check_url("file://127.0.0.1:9000/x", &policy).is_err());
        assert!(check_url("http://a:b@127.0.0.1:9000/", &policy).is_err());
        let all = EgressPolicy {
            allow_private: true,
            allowed_hosts: vec![],
        };
        assert!(check_url("http://10.0.0.1/", &all).is_ok());
        assert!(check_url("http://localhost/", &all).is_ok());
        assert!(AllowedHost::parse("host:notaport").is_err());
        assert!(AllowedHost::parse("").is_err());
        assert!(AllowedHost::parse("[::1").is_err());
    }

    #[tokio::test]
    async fn resolution_refuses_names_of_private_addresses() {
        let url = Url::parse("http://127.0.0.1.nip.invalid/").unwrap();
        // `.invalid` never resolves: a temporary (DNS) error, not a pass.
        let err = resolve(&url, &EgressPolicy::default()).await.unwrap_err();
        assert!(err.is_temporary(), "{err}");
        // A literal is resolved without DNS and judged like any address.
        let url = Url::parse("http://[fd00::1]:8080/").unwrap();
        assert!(matches!(
            resolve(&url, &EgressPolicy::default()).await,
            Err(SsrfError::Forbidden {
                class: "unique-local",
                ..
            })
        ));
        let policy = EgressPolicy {
            allow_private: false,
            allowed_hosts: vec![AllowedHost::parse("localhost").unwrap()],
        };
        // An allowed name resolves (through the system resolver) to loopback and is kept.
        let url = Url::parse("http://localhost:8080/").unwrap();
        let addrs = resolve(&url, &policy).await.unwrap();
        assert!(addrs
            .iter()
            .all(|a| a.ip().is_loopback() && a.port() == 8080));
        // Not allowed: the same name is refused by its resolved address.
        let err = resolve(&url, &EgressPolicy::default()).await.unwrap_err();
        assert!(
            matches!(
                err,
                SsrfError::Forbidden {
                    class: "loopback",
                    ..
                }
            ),
            "{err}"
        );
    }
}
