//! Subject, queue group, key and name rules, and wildcard matching.
//!
//! Both backends call these before doing anything, so they accept and refuse exactly the
//! same input. The rules are those of the NATS server, made strict where async-nats alone
//! would let a bad subject through to be misrouted (it only refuses whitespace on
//! publish, so `a.*` would reach `a.*` subscribers and `a..b` would reach the server).

use crate::error::BusError;

/// Longest subject accepted. The NATS control line (`PUB subject reply size`) is limited
/// to 4 KiB by default; this leaves room for the reply subject.
pub(crate) const MAX_SUBJECT_LEN: usize = 2048;

/// Checks a subject to publish to: non-empty dot-separated tokens, no wildcard tokens.
pub(crate) fn validate_publish(subject: &str) -> Result<(), BusError> {
    validate(subject, false)
}

/// Checks a subject to subscribe to: like [`validate_publish`], but a token may be `*`
/// (exactly one token) and the last token may be `>` (one or more tokens).
pub(crate) fn validate_subscribe(subject: &str) -> Result<(), BusError> {
    validate(subject, true)
}

fn validate(subject: &str, wildcards: bool) -> Result<(), BusError> {
    let invalid = |why: &str| Err(BusError::InvalidSubject(format!("{subject:?}: {why}")));
    if subject.is_empty() {
        return invalid("empty");
    }
    if subject.len() > MAX_SUBJECT_LEN {
        return invalid("too long");
    }
    if subject.starts_with('$') {
        return invalid("subjects starting with '$' are reserved for the server");
    }
    if subject.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return invalid("contains whitespace or control characters");
    }
    let mut tokens = subject.split('.').peekable();
    while let Some(token) = tokens.next() {
        match token {
            "" => return invalid("empty token"),
            "*" | ">" if !wildcards => return invalid("wildcards cannot be published to"),
            ">" if tokens.peek().is_some() => return invalid("'>' must be the last token"),
            _ => {}
        }
    }
    Ok(())
}

/// Whether a subject has no wildcard token.
pub(crate) fn is_literal(subject: &str) -> bool {
    subject.split('.').all(|t| t != "*" && t != ">")
}

/// Checks a queue group name: non-empty, no whitespace or control characters.
pub(crate) fn validate_queue_group(group: &str) -> Result<(), BusError> {
    if group.is_empty() || group.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(BusError::InvalidSubject(format!(
            "queue group {group:?} must be non-empty without whitespace"
        )));
    }
    Ok(())
}

/// Whether the literal `subject` matches the (possibly wildcard) `pattern`. Allocates
/// nothing: it runs once per subscription per message on the embedded bus.
pub(crate) fn matches(pattern: &str, subject: &str) -> bool {
    // The part before the first wildcard must be the subject's start; most patterns fail
    // here, for the price of one comparison (this runs for every wildcard subscription on
    // every embedded publish).
    let Some(wildcard) = first_wildcard(pattern) else {
        return pattern == subject;
    };
    let (literal, pattern) = pattern.split_at(wildcard);
    let Some(subject) = subject.strip_prefix(literal) else {
        return false;
    };
    let mut pattern = pattern.split('.');
    let mut subject = subject.split('.');
    loop {
        match (pattern.next(), subject.next()) {
            (None, None) => return true,
            (Some(">"), Some(_)) => return true,
            (Some(p), Some(s)) if p == "*" || p == s => {}
            _ => return false,
        }
    }
}

/// Where the first wildcard token (`*` or `>` alone; `a*` is a literal) of `pattern`
/// starts.
fn first_wildcard(pattern: &str) -> Option<usize> {
    let bytes = pattern.as_bytes();
    pattern
        .match_indices(['*', '>'])
        .map(|(i, _)| i)
        .find(|&i| (i == 0 || bytes[i - 1] == b'.') && bytes.get(i + 1).is_none_or(|&b| b == b'.'))
}

/// Whether some literal subject matches both patterns (JetStream refuses two streams
/// whose subjects overlap).
pub(crate) fn overlaps(a: &str, b: &str) -> bool {
    let mut a = a.split('.');
    let mut b = b.split('.');
    loop {
        match (a.next(), b.next()) {
            (None, None) => return true,
            (Some(">"), Some(_)) | (Some(_), Some(">")) => return true,
            (Some(x), Some(y)) if x == "*" || y == "*" || x == y => {}
            _ => return false,
        }
    }
}

/// Checks a KV key as NATS KV does (`[-/_=.a-zA-Z0-9]+`, no leading or trailing `.`),
/// and also refuses empty tokens (`a..b`), which would make an invalid subject.
pub(crate) fn validate_key(key: &str) -> Result<(), BusError> {
    let valid = !key.is_empty()
        && key.len() <= MAX_SUBJECT_LEN / 2
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-/_=.".contains(&b))
        && key.split('.').all(|token| !token.is_empty());
    if valid {
        Ok(())
    } else {
        Err(BusError::InvalidKey(format!(
            "{key:?}: keys are [-/_=.a-zA-Z0-9]+ without empty tokens or leading/trailing '.'"
        )))
    }
}

/// Checks a filter over KV keys: like a key, but a token may be `*` (exactly one token)
/// and the last token may be `>` (one or more tokens).
pub(crate) fn validate_key_filter(filter: &str) -> Result<(), BusError> {
    let mut tokens = filter.split('.').peekable();
    let mut valid = !filter.is_empty() && filter.len() <= MAX_SUBJECT_LEN / 2;
    while valid && let Some(token) = tokens.next() {
        valid = match token {
            "*" => true,
            ">" => tokens.peek().is_none(),
            _ => {
                !token.is_empty()
                    && token
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-/_=".contains(&b))
            }
        };
    }
    if valid {
        Ok(())
    } else {
        Err(BusError::InvalidKey(format!(
            "{filter:?}: a key filter is key tokens, `*` tokens and a final `>`"
        )))
    }
}

/// Checks a bucket or stream name: `[a-zA-Z0-9_-]+`, at most 128 characters.
pub(crate) fn validate_name(what: &str, name: &str) -> Result<(), BusError> {
    let valid = !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if valid {
        Ok(())
    } else {
        Err(BusError::InvalidConfig(format!(
            "{what} name {name:?} must be [a-zA-Z0-9_-]+ (at most 128 characters)"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every pattern and subject of up to three tokens from a small alphabet: `matches`
    /// (with its literal-prefix shortcut) agrees with a plain token-by-token match.
    #[test]
    fn matches_agrees_with_token_by_token_matching() {
        fn reference(pattern: &str, subject: &str) -> bool {
            let (mut p, mut s) = (pattern.split('.'), subject.split('.'));
            loop {
                match (p.next(), s.next()) {
                    (None, None) => return true,
                    (Some(">"), Some(_)) => return true,
                    (Some(x), Some(y)) if x == "*" || x == y => {}
                    _ => return false,
                }
            }
        }
        fn all(tokens: &[&str]) -> Vec<String> {
            let mut out: Vec<String> = tokens.iter().map(|t| (*t).to_owned()).collect();
            for _ in 0..2 {
                let longer: Vec<String> = out
                    .iter()
                    .flat_map(|p| tokens.iter().map(move |t| format!("{p}.{t}")))
                    .collect();
                out.extend(longer);
            }
            out.sort();
            out.dedup();
            out
        }
        let patterns: Vec<String> = all(&["a", "b", "a*", "*", ">"])
            .into_iter()
            .filter(|p| validate_subscribe(p).is_ok())
            .collect();
        let subjects = all(&["a", "b", "a*", "ab"]);
        let mut checked = 0;
        for pattern in &patterns {
            for subject in &subjects {
                assert_eq!(
                    matches(pattern, subject),
                    reference(pattern, subject),
                    "{pattern} ~ {subject}"
                );
                checked += 1;
            }
        }
        assert!(checked > 5000, "{checked}");
    }

    #[test]
    fn publish_subjects() {
        for ok in ["a", "a.b.c", "_INBOX.x1", "a*.b>", "tenant-1.room_2.ch"] {
            assert!(validate_publish(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            ".a",
            "a.",
            "a..b",
            "a.*",
            "*",
            ">",
            "a.>",
            "a b",
            "a\tb",
            "a\nb",
            "$JS.API.x",
        ] {
            assert!(
                matches!(validate_publish(bad), Err(BusError::InvalidSubject(_))),
                "{bad:?}"
            );
        }
        assert!(validate_publish(&"a".repeat(MAX_SUBJECT_LEN + 1)).is_err());
    }

    #[test]
    fn subscribe_subjects() {
        for ok in ["a", "a.*", "*", ">", "a.>", "*.b.>", "a.*.c"] {
            assert!(validate_subscribe(ok).is_ok(), "{ok}");
        }
        for bad in ["", "a.>.b", ">.a", "a..b", ".a", "a.", "a b", "$SYS.>"] {
            assert!(validate_subscribe(bad).is_err(), "{bad:?}");
        }
        assert!(is_literal("a.b"));
        assert!(is_literal("a*.b"));
        assert!(!is_literal("a.*"));
        assert!(!is_literal(">"));
    }

    #[test]
    fn wildcard_matching() {
        assert!(matches("a.b", "a.b"));
        assert!(!matches("a.b", "a.b.c"));
        assert!(!matches("a.b.c", "a.b"));
        assert!(matches("a.*", "a.b"));
        assert!(!matches("a.*", "a.b.c"));
        assert!(!matches("a.*", "a"));
        assert!(matches("a.>", "a.b"));
        assert!(matches("a.>", "a.b.c"));
        assert!(!matches("a.>", "a"));
        assert!(matches(">", "a"));
        assert!(matches("*.b.>", "x.b.y.z"));
        assert!(!matches("*.b.>", "x.c.y"));
        assert!(!matches("a*", "ab"), "'a*' is a literal token");
    }

    #[test]
    fn overlap() {
        assert!(overlaps("a.>", "a.b"));
        assert!(overlaps("a.*", "*.b"));
        assert!(overlaps(">", "x.y"));
        assert!(!overlaps("a.>", "b.>"));
        assert!(!overlaps("a.*", "a.b.c"));
        assert!(!overlaps("a.>", "a"));
        assert!(overlaps("a.b", "a.b"));
    }

    #[test]
    fn keys_and_names() {
        for ok in ["k", "a.b", "A-z_0=9/x", "policy.v1"] {
            assert!(validate_key(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".a", "a.", "a..b", "a b", "a*", "a>", "é", "a:b"] {
            assert!(
                matches!(validate_key(bad), Err(BusError::InvalidKey(_))),
                "{bad:?}"
            );
        }
        for ok in [
            "k",
            ">",
            "*",
            "a.*",
            "a.>",
            "*.b.>",
            "rooms.*.members",
            "A-z_0=9/x.*",
        ] {
            assert!(validate_key_filter(ok).is_ok(), "{ok}");
        }
        for bad in [
            "", ".a", "a.", "a..b", "a b", "a*", "a>", ">.a", "a.>.b", "**", "é", "a:b",
        ] {
            assert!(
                matches!(validate_key_filter(bad), Err(BusError::InvalidKey(_))),
                "{bad:?}"
            );
        }
        assert!(validate_key_filter(&"a".repeat(MAX_SUBJECT_LEN)).is_err());
        assert!(validate_name("bucket", "policy_v1-a").is_ok());
        for bad in ["", "a.b", "a b", "a*", "a/b"] {
            assert!(
                matches!(
                    validate_name("bucket", bad),
                    Err(BusError::InvalidConfig(_))
                ),
                "{bad:?}"
            );
        }
    }
}
