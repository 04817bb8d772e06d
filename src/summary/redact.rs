//! Masks personal data in transcript text before it leaves for an LLM provider and before
//! Agent B is shown it: payment card numbers (Luhn-valid, 13 to 19 digits, spaces or dashes
//! allowed), national ids (US SSN, UK National Insurance number), e-mail addresses and phone
//! numbers (E.164 and common national formats).

use std::borrow::Cow;
use std::sync::LazyLock;

use regex::{Captures, Regex};

/// What a masked card number becomes.
pub const CARD: &str = "[card]";
/// What a masked national id becomes.
pub const NATIONAL_ID: &str = "[national-id]";
/// What a masked e-mail address becomes.
pub const EMAIL: &str = "[email]";
/// What a masked phone number becomes.
pub const PHONE: &str = "[phone]";

static EMAIL_RE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)\b[a-z0-9][a-z0-9._%+-]*@[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)*\.[a-z]{2,}\b")
        .expect("e-mail pattern")
});
/// Runs of digits joined by single spaces or dashes: card candidates.
static DIGIT_RUN_RE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\b\d+(?:[ -]\d+)*\b").expect("digit run pattern"));
static SSN_RE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\b(\d{3})-(\d{2})-(\d{4})\b").expect("SSN pattern"));
/// UK National Insurance number: two prefix letters (not D, F, I, Q, U, V; second not O),
/// six digits (optionally in pairs), a suffix A to D.
static NINO_RE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)\b([A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z]) ?\d{2} ?\d{2} ?\d{2} ?[A-D]\b")
        .expect("NINO pattern")
});
/// International numbers: `+` then 8 to 15 digits with optional separators.
static INTL_PHONE_RE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\+\d{1,3}(?:[ .-]?\(?\d{1,5}\)?){1,6}").expect("international phone pattern")
});
/// National numbers with a trunk 0 (UK, most of Europe): `020 7946 0958`, `07700 900123`,
/// `(0151) 496-0000`.
static TRUNK_PHONE_RE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?:\(0\d{2,4}\)|\b0\d{2,4})[ .-]?\d{3,4}[ .-]?\d{3,4}\b")
        .expect("trunk phone pattern")
});
/// North American numbers: `(555) 123-4567`, `555-123-4567`, `555.123.4567`, `1-555-123-4567`.
static NANP_PHONE_RE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?:\b1[ .-])?(?:\(\d{3}\) ?|\b\d{3}[ .-])\d{3}[ .-]\d{4}\b").expect("NANP pattern")
});

/// Whether a digit string passes the Luhn check.
pub fn luhn_valid(digits: &str) -> bool {
    let mut sum = 0u32;
    for (i, c) in digits.chars().rev().enumerate() {
        let Some(mut d) = c.to_digit(10) else {
            return false;
        };
        if i % 2 == 1 {
            d *= 2;
            if d > 9 {
                d -= 9;
            }
        }
        sum += d;
    }
    !digits.is_empty() && sum.is_multiple_of(10)
}

/// Masks card numbers inside one run of digit groups: the longest group-aligned window of
/// 13 to 19 digits that passes Luhn, scanning from the left.
fn mask_cards_in_run(run: &str) -> Cow<'_, str> {
    // Groups with their byte ranges.
    let mut groups: Vec<(usize, usize)> = Vec::new();
    let mut start = None;
    for (i, c) in run.char_indices() {
        match (c.is_ascii_digit(), start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                groups.push((s, i));
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        groups.push((s, run.len()));
    }
    let total: usize = groups.iter().map(|(a, b)| b - a).sum();
    if total < 13 {
        return Cow::Borrowed(run);
    }
    let mut out = String::with_capacity(run.len());
    let mut copied = 0;
    let mut i = 0;
    while i < groups.len() {
        let mut found = None;
        let mut digits = String::new();
        for (j, (a, b)) in groups.iter().enumerate().skip(i) {
            digits.push_str(&run[*a..*b]);
            if digits.len() > 19 {
                break;
            }
            if digits.len() >= 13 && luhn_valid(&digits) {
                found = Some(j);
            }
        }
        match found {
            Some(j) => {
                out.push_str(&run[copied..groups[i].0]);
                out.push_str(CARD);
                copied = groups[j].1;
                i = j + 1;
            }
            None => i += 1,
        }
    }
    if copied == 0 {
        return Cow::Borrowed(run);
    }
    out.push_str(&run[copied..]);
    Cow::Owned(out)
}

fn digit_count(s: &str) -> usize {
    s.chars().filter(char::is_ascii_digit).count()
}

/// Masks every kind of personal data this module knows in `text`.
pub fn redact(text: &str) -> String {
    let text = EMAIL_RE.replace_all(text, EMAIL);
    let text =
        DIGIT_RUN_RE.replace_all(&text, |c: &Captures| mask_cards_in_run(&c[0]).into_owned());
    let text = SSN_RE.replace_all(&text, |c: &Captures| {
        let valid = &c[1] != "000"
            && &c[1] != "666"
            && !c[1].starts_with('9')
            && &c[2] != "00"
            && &c[3] != "0000";
        if valid {
            NATIONAL_ID.to_string()
        } else {
            c[0].to_string()
        }
    });
    let text = NINO_RE.replace_all(&text, |c: &Captures| {
        let prefix = c[1].to_ascii_uppercase();
        if ["BG", "GB", "NK", "KN", "TN", "NT", "ZZ"].contains(&prefix.as_str()) {
            c[0].to_string()
        } else {
            NATIONAL_ID.to_string()
        }
    });
    let text = INTL_PHONE_RE.replace_all(&text, |c: &Captures| {
        if (8..=15).contains(&digit_count(&c[0])) {
            PHONE.to_string()
        } else {
            c[0].to_string()
        }
    });
    let text = TRUNK_PHONE_RE.replace_all(&text, |c: &Captures| {
        if (10..=11).contains(&digit_count(&c[0])) {
            PHONE.to_string()
        } else {
            c[0].to_string()
        }
    });
    NANP_PHONE_RE.replace_all(&text, PHONE).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn luhn_accepts_test_cards_and_rejects_typos() {
        for good in [
            "4111111111111111",
            "5555555555554444",
            "378282246310005",
            "6011111111111117",
            "4242424242424242",
            "3530111333300000",
        ] {
            assert!(luhn_valid(good), "{good}");
        }
        for bad in ["4111111111111112", "1234567812345678", "", "12a4"] {
            assert!(!luhn_valid(bad), "{bad}");
        }
    }

    #[test]
    fn card_numbers_are_masked_with_any_grouping() {
        let cases = [
            (
                "my card is 4111 1111 1111 1111, expiry 09/27",
                "my card is [card], expiry 09/27",
            ),
            ("it's 5555-5555-5555-4444.", "it's [card]."),
            ("Amex 378282246310005 please", "Amex [card] please"),
            ("4242424242424242", "[card]"),
            (
                "card 3530 1113 3330 0000 and 2 more",
                "card [card] and 2 more",
            ),
        ];
        for (input, want) in cases {
            assert_eq!(redact(input), want, "{input}");
        }
    }

    #[test]
    fn luhn_invalid_runs_order_numbers_and_dates_stay() {
        for keep in [
            "order 1234 5678 1234 5678 was lost",
            "order number 100234587",
            "reference ORD-2026-104583",
            "on 2026-03-15 at 10:30",
            "on 15/03/2026",
            "invoice 2026-0042, amount 1,299.00",
            "tracking 1Z999AA10123456784",
            "I called 3 times in 12 days",
        ] {
            assert_eq!(redact(keep), keep);
        }
    }

    #[test]
    fn national_ids_are_masked() {
        assert_eq!(redact("SSN 123-45-6789 ok"), "SSN [national-id] ok");
        assert_eq!(redact("NI number AB123456C."), "NI number [national-id].");
        assert_eq!(
            redact("it is QQ 12 34 56 A"),
            "it is QQ 12 34 56 A",
            "QQ is not a valid prefix"
        );
        assert_eq!(redact("NI: JG 10 37 52 B"), "NI: [national-id]");
        // Not SSNs: impossible area numbers.
        assert_eq!(redact("code 000-12-3456"), "code 000-12-3456");
        assert_eq!(redact("code 666-12-3456"), "code 666-12-3456");
    }

    #[test]
    fn emails_are_masked() {
        assert_eq!(
            redact("write to ann.smith+bills@example.co.uk or ANN@Example.COM."),
            "write to [email] or [email]."
        );
        assert_eq!(
            redact("the @ sign and user@localhost"),
            "the @ sign and user@localhost"
        );
    }

    #[test]
    fn phone_numbers_are_masked() {
        let cases = [
            (
                "call me on +44 20 7946 0958 tomorrow",
                "call me on [phone] tomorrow",
            ),
            ("+14155552671", "[phone]"),
            ("mobile 07700 900123", "mobile [phone]"),
            ("office (020) 7946-0958", "office [phone]"),
            (
                "US (415) 555-2671 or 415-555-2671 or 415.555.2671",
                "US [phone] or [phone] or [phone]",
            ),
            ("toll free 1-800-555-0199", "toll free [phone]"),
            ("+49 30 901820", "[phone]"),
        ];
        for (input, want) in cases {
            assert_eq!(redact(input), want, "{input}");
        }
    }

    #[test]
    fn ordinary_numbers_are_not_phones() {
        for keep in [
            "it costs 120.50 a month",
            "room 101",
            "version 2.3.4",
            "since 2019, about 45 minutes",
            "+5 points",
        ] {
            assert_eq!(redact(keep), keep);
        }
    }

    #[test]
    fn a_realistic_line_is_masked_throughout() {
        let line = "Hi, I'm Ann Lee, account email ann.lee@gmail.com, phone 07911 123456, \
                    card 4111-1111-1111-1111 and my SSN is 219-09-9999; order 88213 from 2026-02-01.";
        let out = redact(line);
        assert_eq!(
            out,
            "Hi, I'm Ann Lee, account email [email], phone [phone], card [card] and my SSN is \
             [national-id]; order 88213 from 2026-02-01."
        );
    }
}
