//! Twilio webhook signatures (`X-Twilio-Signature`): computing and verifying them.
//!
//! The signature is base64(HMAC-SHA1(auth token, URL + params)), where the URL is the full
//! public URL Twilio requested (scheme, host, port if any, path and query) and, for
//! form-encoded POSTs, the params are the body's fields sorted by name (then by value, for
//! repeated names), each appended as name then value with no separator. JSON-bodied webhooks
//! carry a `bodySHA256` query parameter (hex SHA-256 of the body) and the signature covers
//! the URL only. Twilio's own validators accept the URL with and without the scheme's default
//! port, and so does [`verify`].

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::{Digest, Sha256};

type HmacSha1 = Hmac<Sha1>;

fn mac(auth_token: &str, url: &str, params: &[(String, String)]) -> HmacSha1 {
    // HMAC accepts keys of any length: `new_from_slice` cannot fail for it.
    let mut mac = <HmacSha1 as Mac>::new_from_slice(auth_token.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(url.as_bytes());
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    sorted.sort();
    for (name, value) in sorted {
        mac.update(name.as_bytes());
        mac.update(value.as_bytes());
    }
    mac
}

/// The `X-Twilio-Signature` Twilio sends for a request to `url` with the form fields
/// `params` (empty for a GET or a JSON body): base64(HMAC-SHA1(auth token, URL + the fields
/// sorted by name, then value, each as name then value)).
pub fn sign(auth_token: &str, url: &str, params: &[(String, String)]) -> String {
    base64::engine::general_purpose::STANDARD
        .encode(mac(auth_token, url, params).finalize().into_bytes())
}

/// Whether `signature` is Twilio's signature of a form-encoded request to `url` with the
/// fields `params`. The comparison is constant-time. The URL is tried as given, and with the
/// scheme's default port (`:443` for https, `:80` for http) added when it has no port, or
/// removed when it has exactly that one, as Twilio's own validators do. An empty auth token
/// verifies nothing.
pub fn verify(auth_token: &str, url: &str, params: &[(String, String)], signature: &str) -> bool {
    // Anyone can compute an HMAC with an empty key: an unset token verifies nothing.
    if auth_token.is_empty() {
        return false;
    }
    let Ok(expected) = base64::engine::general_purpose::STANDARD.decode(signature.trim()) else {
        return false;
    };
    url_variants(url).iter().any(|candidate| {
        mac(auth_token, candidate, params)
            .verify_slice(&expected)
            .is_ok()
    })
}

/// Whether `signature` is Twilio's signature of a JSON-bodied request to `url` with the raw
/// body `body`: the URL's `bodySHA256` query parameter must be the hex SHA-256 of the body,
/// and the signature covers the URL alone (ports as in [`verify`]).
pub fn verify_json(auth_token: &str, url: &str, body: &[u8], signature: &str) -> bool {
    let Some(claimed) = query_param(url, "bodySHA256") else {
        return false;
    };
    let actual: String = Sha256::digest(body)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    // Not secret, but compared without an early exit anyway.
    let body_ok = claimed.len() == actual.len()
        && claimed
            .bytes()
            .zip(actual.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a.to_ascii_lowercase() ^ b))
            == 0;
    // Both are evaluated so that timing does not tell which check failed.
    let signature_ok = verify(auth_token, url, &[], signature);
    body_ok & signature_ok
}

/// The raw (not percent-decoded) value of the first query parameter `name` in `url`.
fn query_param<'u>(url: &'u str, name: &str) -> Option<&'u str> {
    let without_fragment = url.split('#').next().unwrap_or(url);
    let (_, query) = without_fragment.split_once('?')?;
    query.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (key == name).then_some(value)
    })
}

/// The URL as given, plus the same URL with the default port added or removed.
fn url_variants(url: &str) -> Vec<String> {
    let mut variants = vec![url.to_owned()];
    let Some((scheme, rest)) = url.split_once("://") else {
        return variants;
    };
    let default_port = match scheme.to_ascii_lowercase().as_str() {
        "https" => "443",
        "http" => "80",
        _ => return variants,
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    // Userinfo (`user:pass@`) may precede the host; the port follows the host.
    let host_start = authority.rfind('@').map_or(0, |at| at + 1);
    let (userinfo, host_port) = authority.split_at(host_start);
    // An IPv6 literal is bracketed: a port can only follow the closing bracket.
    let port_sep = match host_port.rfind(']') {
        Some(bracket) => host_port[bracket..].find(':').map(|i| bracket + i),
        None => host_port.rfind(':'),
    };
    match port_sep {
        Some(i) => {
            let (host, port) = (&host_port[..i], &host_port[i + 1..]);
            if port == default_port {
                variants.push(format!("{scheme}://{userinfo}{host}{tail}"));
            }
        }
        None => variants.push(format!(
            "{scheme}://{userinfo}{host_port}:{default_port}{tail}"
        )),
    }
    variants
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    // Twilio's documented example ("Validating requests are coming from Twilio"): auth token
    // 12345, this URL and these fields sign to this value (also checked against Twilio's
    // Python library in tests/it/twilio_lib.rs).
    const DOC_TOKEN: &str = "12345";
    const DOC_URL: &str = "https://mycompany.com/myapp.php?foo=1&bar=2";
    fn doc_params() -> Vec<(String, String)> {
        p(&[
            ("CallSid", "CA1234567890ABCDE"),
            ("Caller", "+12349013030"),
            ("Digits", "1234"),
            ("From", "+12349013030"),
            ("To", "+18005551212"),
        ])
    }
    const DOC_SIGNATURE: &str = "0/KCTR6DLpKmkAf8muzZqo1nDgQ=";

    #[test]
    fn twilio_documented_example() {
        assert_eq!(sign(DOC_TOKEN, DOC_URL, &doc_params()), DOC_SIGNATURE);
        assert!(verify(DOC_TOKEN, DOC_URL, &doc_params(), DOC_SIGNATURE));
    }

    #[test]
    fn order_of_fields_does_not_matter() {
        let mut reversed = doc_params();
        reversed.reverse();
        assert_eq!(sign(DOC_TOKEN, DOC_URL, &reversed), DOC_SIGNATURE);
        assert!(verify(DOC_TOKEN, DOC_URL, &reversed, DOC_SIGNATURE));
    }

    #[test]
    fn repeated_names_are_sorted_by_value() {
        let a = p(&[
            ("StatusCallbackEvent", "ringing"),
            ("StatusCallbackEvent", "answered"),
        ]);
        let b = p(&[
            ("StatusCallbackEvent", "answered"),
            ("StatusCallbackEvent", "ringing"),
        ]);
        assert_eq!(
            sign("t", "https://x.test/s", &a),
            sign("t", "https://x.test/s", &b)
        );
        // The concatenation is name+value for each, values in order.
        let concatenated = sign(
            "t",
            "https://x.test/sStatusCallbackEventansweredStatusCallbackEventringing",
            &[],
        );
        assert_eq!(sign("t", "https://x.test/s", &a), concatenated);
    }

    #[test]
    fn tampering_is_detected() {
        let sig = sign(DOC_TOKEN, DOC_URL, &doc_params());
        let mut changed = doc_params();
        changed[2].1 = "1235".to_owned();
        assert!(!verify(DOC_TOKEN, DOC_URL, &changed, &sig));
        let mut extra = doc_params();
        extra.push(("Extra".to_owned(), "1".to_owned()));
        assert!(!verify(DOC_TOKEN, DOC_URL, &extra, &sig));
        assert!(!verify(
            DOC_TOKEN,
            &DOC_URL.replace("foo=1", "foo=2"),
            &doc_params(),
            &sig
        ));
        assert!(!verify("12346", DOC_URL, &doc_params(), &sig));
        assert!(!verify(DOC_TOKEN, DOC_URL, &doc_params(), "not base64!"));
        assert!(!verify(DOC_TOKEN, DOC_URL, &doc_params(), ""));
        // An empty token would let anyone sign.
        assert!(!verify(
            "",
            DOC_URL,
            &doc_params(),
            &sign("", DOC_URL, &doc_params())
        ));
        // Moving a character between a name and its value changes the signature only if
        // the concatenation changes; this one does not, which is how Twilio's scheme works.
        let shifted = p(&[("ab", "c")]);
        let unshifted = p(&[("a", "bc")]);
        assert_eq!(sign("t", "u", &shifted), sign("t", "u", &unshifted));
    }

    #[test]
    fn default_ports_are_added_and_removed() {
        let params = doc_params();
        // Signed with the port, checked without it, and the other way round.
        let with = sign("tok", "https://example.com:443/twilio/voice?x=1", &params);
        assert!(verify(
            "tok",
            "https://example.com/twilio/voice?x=1",
            &params,
            &with
        ));
        let without = sign("tok", "https://example.com/twilio/voice?x=1", &params);
        assert!(verify(
            "tok",
            "https://example.com:443/twilio/voice?x=1",
            &params,
            &without
        ));
        let http = sign("tok", "http://example.com/hook", &params);
        assert!(verify("tok", "http://example.com:80/hook", &params, &http));
        let http_port = sign("tok", "http://example.com:80/hook", &params);
        assert!(verify(
            "tok",
            "http://example.com/hook",
            &params,
            &http_port
        ));
        // Only the scheme's default port: :443 is not http's, :8443 is nobody's.
        let other = sign("tok", "http://example.com:443/hook", &params);
        assert!(!verify("tok", "http://example.com/hook", &params, &other));
        let custom = sign("tok", "https://example.com:8443/hook", &params);
        assert!(!verify("tok", "https://example.com/hook", &params, &custom));
        assert!(verify(
            "tok",
            "https://example.com:8443/hook",
            &params,
            &custom
        ));
        // Userinfo and IPv6 hosts keep their colons.
        let creds = sign("tok", "https://u:p@example.com:443/h", &params);
        assert!(verify("tok", "https://u:p@example.com/h", &params, &creds));
        let v6 = sign("tok", "http://[::1]:80/h", &params);
        assert!(verify("tok", "http://[::1]/h", &params, &v6));
    }

    #[test]
    fn url_variants_cover_both_forms() {
        assert_eq!(
            url_variants("https://a.test/p?q=1"),
            ["https://a.test/p?q=1", "https://a.test:443/p?q=1"]
        );
        assert_eq!(
            url_variants("https://a.test:443"),
            ["https://a.test:443", "https://a.test"]
        );
        assert_eq!(
            url_variants("http://[::1]"),
            ["http://[::1]", "http://[::1]:80"]
        );
        assert_eq!(
            url_variants("http://a.test:8080/x"),
            ["http://a.test:8080/x"]
        );
        assert_eq!(url_variants("not a url"), ["not a url"]);
    }

    #[test]
    fn json_bodies_are_checked_by_hash() {
        let body = br#"{"CallSid":"CA123","StatusCallbackEvent":"participant-join"}"#;
        let hash: String = Sha256::digest(body)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let url = format!("https://example.com/twilio/conference?bodySHA256={hash}");
        let sig = sign("tok", &url, &[]);
        assert!(verify_json("tok", &url, body, &sig));
        let with_port = url.replace("example.com", "example.com:443");
        assert!(verify_json("tok", &with_port, body, &sig));
        // A changed body, a URL without the hash, a wrong token: refused.
        assert!(!verify_json("tok", &url, b"{}", &sig));
        let bare = "https://example.com/twilio/conference";
        assert!(!verify_json("tok", bare, body, &sign("tok", bare, &[])));
        assert!(!verify_json("other", &url, body, &sig));
        // A signature over the URL plus form params is not a JSON signature.
        let form_sig = sign("tok", &url, &p(&[("a", "b")]));
        assert!(!verify_json("tok", &url, body, &form_sig));
    }

    #[test]
    fn query_param_finds_raw_values() {
        assert_eq!(
            query_param("https://a/p?x=1&bodySHA256=ab#f", "bodySHA256"),
            Some("ab")
        );
        assert_eq!(query_param("https://a/p?x=1", "bodySHA256"), None);
        assert_eq!(query_param("https://a/p", "x"), None);
    }
}
