//! Secret detection: every pattern in one `RegexSet`, run once over a bounded prefix of
//! the payload text.

use regex::{Regex, RegexSet};

use crate::word_boundary::ascii_word_boundaries;

/// The built-in probable-secret patterns: the original's defaults, then well-known
/// credential shapes. Custom patterns are added to these unless the policy sets
/// `replace_builtin_patterns`.
pub const BUILTIN_PATTERNS: &[&str] = &[
    // The original's defaults.
    r"(?i)api[_-]?key",
    r"(?i)secret",
    r"(?i)token",
    r"(?i)password",
    r"(?i)bearer\s+[A-Za-z0-9\-\._]+",
    r"sk_(live|test)_[0-9a-zA-Z]{16,}",
    r"pk_(live|test)_[0-9a-zA-Z]{16,}",
    // AWS access key ids. ASCII word boundaries: a Unicode `\b` would force the slow
    // engine on any non-ASCII payload, and the key itself is ASCII.
    r"(?-u:\b)(AKIA|ASIA)[0-9A-Z]{16}(?-u:\b)",
    // PEM private key blocks (RSA, EC, OPENSSH, ENCRYPTED, plain PKCS#8).
    r"-----BEGIN [A-Z ]*PRIVATE KEY-----",
    // GitHub tokens: classic (personal, OAuth, user-to-server, server, refresh) and
    // fine-grained personal access tokens.
    r"gh[pousr]_[A-Za-z0-9]{36,}",
    r"github_pat_[A-Za-z0-9_]{22,}",
    // Slack tokens (bot, user, app-level, refresh, ...).
    r"xox[abposr]-[A-Za-z0-9-]{10,}",
    // Stripe restricted keys.
    r"rk_(live|test)_[0-9a-zA-Z]{16,}",
    // JSON Web Tokens: two base64url JSON parts (`eyJ` is `{"`) and a signature.
    r"eyJ[A-Za-z0-9_-]{5,}\.eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}",
];

/// The compiled patterns: one set to detect, and each pattern alone to redact with.
#[derive(Debug, Clone)]
pub(crate) struct Detector {
    set: RegexSet,
    each: Vec<Regex>,
}

impl Detector {
    /// Compiles the effective pattern list. Custom patterns that do not compile, or that
    /// match the empty string (they would flag every payload and redact between every
    /// character), add a problem naming the pattern.
    pub(crate) fn compile(
        custom: &[String],
        replace_builtin: bool,
        problems: &mut Vec<String>,
    ) -> Detector {
        let builtin = if replace_builtin {
            &[][..]
        } else {
            BUILTIN_PATTERNS
        };
        let mut sources: Vec<String> = Vec::with_capacity(builtin.len() + custom.len());
        let mut each: Vec<Regex> = Vec::with_capacity(builtin.len() + custom.len());
        for pattern in builtin {
            match Regex::new(pattern) {
                Ok(re) => {
                    sources.push((*pattern).to_owned());
                    each.push(re);
                }
                Err(err) => problems.push(format!(
                    "built-in pattern '{pattern}' does not compile: {}",
                    regex_error(&err)
                )),
            }
        }
        for pattern in custom {
            match Regex::new(pattern) {
                Ok(re) if re.is_match("") => {
                    problems.push(format!(
                        "redaction pattern '{pattern}' matches the empty string"
                    ));
                }
                Ok(re) => {
                    // Detection and redaction use the same text, so they agree.
                    let fast = ascii_word_boundaries(pattern);
                    match Regex::new(&fast) {
                        Ok(fast_re) => {
                            sources.push(fast.into_owned());
                            each.push(fast_re);
                        }
                        Err(_) => {
                            sources.push(pattern.clone());
                            each.push(re);
                        }
                    }
                }
                Err(err) => problems.push(format!(
                    "invalid redaction pattern '{pattern}': {}",
                    regex_error(&err)
                )),
            }
        }
        let set = RegexSet::new(&sources).unwrap_or_else(|err| {
            problems.push(format!(
                "the redaction patterns together: {}",
                regex_error(&err)
            ));
            RegexSet::empty()
        });
        Detector { set, each }
    }

    /// The indexes of the patterns found in `window`, read both as raw JSON text and,
    /// when it holds escapes, as the text they stand for: `"pass\u0077ord"` is a
    /// password to whoever reads the message, so it must be one here too.
    pub(crate) fn scan(&self, window: &str) -> Vec<usize> {
        let mut hits = Vec::new();
        if self.set.is_match(window) {
            hits.extend(self.set.matches(window).iter());
        }
        if let Some(decoded) = unescape(window)
            && self.set.is_match(&decoded)
        {
            hits.extend(self.set.matches(&decoded).iter());
            hits.sort_unstable();
            hits.dedup();
        }
        hits
    }

    /// The pattern at `index` of the set, for redaction.
    pub(crate) fn pattern(&self, index: usize) -> Option<&Regex> {
        self.each.get(index)
    }
}

/// The longest prefix of `text` of at most `max` bytes that ends on a char boundary.
pub(crate) fn window(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// The regex crate's message without its multi-line diagram: the `error:` line.
fn regex_error(err: &regex::Error) -> String {
    let text = err.to_string();
    text.lines()
        .rev()
        .find_map(|line| line.trim().strip_prefix("error: "))
        .unwrap_or(text.trim())
        .to_owned()
}

/// Decodes JSON string escapes in a stretch of JSON text (which may be cut anywhere),
/// or `None` when there is none. Outside strings JSON has no backslashes, so a plain
/// left-to-right pass is exact; a truncated or malformed escape is kept as written.
fn unescape(text: &str) -> Option<String> {
    let first = text.find('\\')?;
    let mut out = String::with_capacity(text.len());
    out.push_str(&text[..first]);
    let mut rest = &text[first..];
    while let Some(pos) = rest.find('\\') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        let Some(c) = after.chars().next() else {
            rest = after;
            break;
        };
        if c == 'u' {
            match decode_unicode_escape(after) {
                Some((ch, used)) => {
                    out.push(ch);
                    rest = &after[used..];
                }
                None => {
                    out.push('\\');
                    rest = after;
                }
            }
            continue;
        }
        out.push(match c {
            'n' => '\n',
            't' => '\t',
            'r' => '\r',
            'b' => '\u{8}',
            'f' => '\u{c}',
            other => other,
        });
        rest = &after[c.len_utf8()..];
    }
    out.push_str(rest);
    Some(out)
}

/// `after` starts with `u`: the character and how many bytes of `after` it used,
/// joining a surrogate pair; a lone surrogate becomes U+FFFD.
fn decode_unicode_escape(after: &str) -> Option<(char, usize)> {
    let unit = hex4(after.get(1..5)?)?;
    if (0xD800..0xDC00).contains(&unit) {
        if after.get(5..7) == Some("\\u")
            && let Some(low) = after.get(7..11).and_then(hex4)
            && (0xDC00..0xE000).contains(&low)
        {
            let code = 0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00);
            return Some((char::from_u32(code).unwrap_or('\u{FFFD}'), 11));
        }
        return Some(('\u{FFFD}', 5));
    }
    Some((char::from_u32(unit).unwrap_or('\u{FFFD}'), 5))
}

fn hex4(text: &str) -> Option<u32> {
    if text.len() == 4 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
        u32::from_str_radix(text, 16).ok()
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn builtin() -> Detector {
        let mut problems = Vec::new();
        let d = Detector::compile(&[], false, &mut problems);
        assert!(problems.is_empty(), "{problems:?}");
        d
    }

    fn finds(d: &Detector, text: &str) -> bool {
        !d.scan(text).is_empty()
    }

    #[test]
    fn every_builtin_shape_is_found_and_its_near_miss_is_not() {
        let d = builtin();
        let cases: &[(&str, &str)] = &[
            ("my API_KEY is here", "my api key is here"),
            ("top Secret", "secrecy"),
            ("a Token", "toke n"),
            ("PassWord", "passw0rd"),
            ("Authorization: Bearer abc.DEF-123_x", "bearer: none"),
            ("sk_live_0123456789abcdefXYZ", "sk_live_0123456789abcde"),
            ("pk_test_0123456789abcdefXYZ", "pk_prod_0123456789abcdefXYZ"),
            (
                "id AKIAIOSFODNN7EXAMPLE end",
                "id AKIAIOSFODNN7EXAMPLEX end",
            ),
            ("ASIAIOSFODNN7EXAMPL3", "ASIAIOSFODNN7exampl3"),
            (
                "-----BEGIN RSA PRIVATE KEY-----",
                "-----BEGIN PUBLIC KEY-----",
            ),
            ("-----BEGIN PRIVATE KEY-----", "-----BEGIN CERTIFICATE-----"),
            (
                "ghp_0123456789abcdefghijABCDEFGHIJ012345",
                "ghp_0123456789abcdefghij",
            ),
            (
                "gho_0123456789abcdefghijABCDEFGHIJ012345",
                "ghx_0123456789abcdefghijABCDEFGHIJ012345",
            ),
            ("github_pat_11ABCDEFG0123456789_abcdef", "github_pat_short"),
            ("xoxb-1234567890-abcdef", "xoxz-1234567890-abcdef"),
            ("xoxp-12345-67890", "xoxp-123"),
            ("rk_live_0123456789abcdefXYZ", "rk_live_0123"),
            (
                "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.dBjftJeZ4CVPmB92K27uhbUJU1p1r",
                "eyJhbGciOiJIUzI1NiJ9.notjson.dBjftJeZ4CVPmB92K27uhbUJU1p1r",
            ),
        ];
        for (hit, miss) in cases {
            assert!(finds(&d, hit), "should find: {hit}");
            assert!(!finds(&d, miss), "should not find: {miss}");
        }
    }

    #[test]
    fn the_aws_boundary_is_ascii_so_accented_neighbours_do_not_hide_a_key() {
        assert!(finds(&builtin(), "éAKIAIOSFODNN7EXAMPLEé"));
    }

    #[test]
    fn custom_patterns_add_to_the_builtins_or_replace_them() {
        let custom = vec!["malware".to_owned()];
        let mut problems = Vec::new();
        let added = Detector::compile(&custom, false, &mut problems);
        let replaced = Detector::compile(&custom, true, &mut problems);
        assert!(problems.is_empty());
        assert!(finds(&added, "malware here") && finds(&added, "password here"));
        assert!(finds(&replaced, "malware here") && !finds(&replaced, "password here"));
        assert_eq!(added.scan("malware"), [BUILTIN_PATTERNS.len()]);
        assert_eq!(
            added.pattern(BUILTIN_PATTERNS.len()).map(Regex::as_str),
            Some("malware")
        );
    }

    #[test]
    fn custom_word_boundaries_are_ascii_for_detection_and_redaction_alike() {
        let custom = vec![r"\bcaf\b".to_owned()];
        let mut problems = Vec::new();
        let d = Detector::compile(&custom, true, &mut problems);
        assert!(problems.is_empty());
        assert_eq!(d.scan("a caf sign"), [0]);
        assert_eq!(d.scan("café"), [0]);
        assert!(d.scan("cafe").is_empty());
        assert_eq!(
            d.pattern(0).map(Regex::as_str),
            Some(r"(?-u:\b)caf(?-u:\b)")
        );
    }

    #[test]
    fn bad_custom_patterns_are_each_named() {
        let custom = ["(", "ok", "[z-a]", "x*", ""].map(String::from).to_vec();
        let mut problems = Vec::new();
        Detector::compile(&custom, false, &mut problems);
        assert_eq!(
            problems,
            [
                "invalid redaction pattern '(': unclosed group",
                "invalid redaction pattern '[z-a]': invalid character class range, the start must be <= the end",
                "redaction pattern 'x*' matches the empty string",
                "redaction pattern '' matches the empty string",
            ]
        );
    }

    #[test]
    fn escaped_secrets_are_found() {
        let d = builtin();
        assert!(finds(&d, r#"{"note":"pass\u0077ord is hunter2"}"#));
        assert!(finds(&d, r#"{"h":"Bearer\tabc123"}"#));
        assert!(finds(&d, r#"{"k":"\ud83d\ude00 AKIAIOSFODNN7EXAMPLE"}"#));
        assert!(!finds(&d, r#"{"note":"hello\nworld \u00e9"}"#));
    }

    #[test]
    fn unescape_decodes_every_json_escape_and_survives_cut_text() {
        assert_eq!(unescape("plain"), None);
        assert_eq!(
            unescape(r#"a\"b\\c\/d\ne\tf\rg\bh\fi\u0041\ud83d\ude00"#).unwrap(),
            "a\"b\\c/d\ne\tf\rg\u{8}h\u{c}iA\u{1F600}"
        );
        assert_eq!(unescape(r"lone \ud83d x").unwrap(), "lone \u{FFFD} x");
        assert_eq!(unescape(r"cut \u00").unwrap(), r"cut \u00");
        assert_eq!(unescape(r"cut \").unwrap(), "cut ");
        assert_eq!(unescape(r"odd \ué").unwrap(), r"odd \ué");
    }

    #[test]
    fn the_window_never_splits_a_character() {
        assert_eq!(window("hello", 10), "hello");
        assert_eq!(window("hello", 3), "hel");
        assert_eq!(window("héllo", 2), "h", "é is two bytes");
        assert_eq!(window("héllo", 3), "hé");
        assert_eq!(window("😀", 3), "");
    }
}
