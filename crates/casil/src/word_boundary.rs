//! Custom patterns' `\b` and `\B` made ASCII word boundaries.
//!
//! Why: the regex crate's fast engine (the lazy DFA) gives up on a Unicode word boundary
//! as soon as the haystack holds a non-ASCII byte, and a `RegexSet` then falls back to
//! the PikeVM. With 32 typical DLP patterns on a 1 KB chat message containing one `é`,
//! that is about 600 µs per payload instead of 2 µs (see `benches/inspect.rs`).
//!
//! An ASCII boundary (word characters `[0-9A-Za-z_]`) differs from a Unicode one only
//! next to a non-ASCII letter or digit: `\bcaf\b` then also matches inside `café`. Only
//! patterns written entirely in ASCII are rewritten, so a boundary never sits next to a
//! non-ASCII literal of the pattern itself (`\bélan\b` keeps Unicode boundaries, and the
//! slow engine on non-ASCII payloads).
//!
//! The rewrite is textual but conservative: an escape outside any character class
//! becomes `(?-u:\b)`; anything it does not understand is left alone. The caller keeps
//! the original when the rewrite does not compile.

use std::borrow::Cow;

/// `pattern` with every `\b` / `\B` outside a class written as `(?-u:\b)` / `(?-u:\B)`;
/// borrowed when there is none or the pattern is not all ASCII. `\b{start}` and the like
/// are left as they are.
pub(crate) fn ascii_word_boundaries(pattern: &str) -> Cow<'_, str> {
    if !pattern.is_ascii() || (!pattern.contains("\\b") && !pattern.contains("\\B")) {
        return Cow::Borrowed(pattern);
    }
    let mut out = String::with_capacity(pattern.len() + 16);
    let mut chars = pattern.chars().peekable();
    // Nesting depth of bracketed classes (`[a-z&&[^aeiou]]`), where `\b` is not a
    // boundary.
    let mut class_depth = 0_usize;
    // At the first position of a class (after an optional `^`), `]` is a literal.
    let mut class_start = false;
    while let Some(c) = chars.next() {
        let at_class_start = std::mem::take(&mut class_start);
        match c {
            '\\' => {
                let Some(escaped) = chars.next() else {
                    out.push(c);
                    break;
                };
                let is_boundary = matches!(escaped, 'b' | 'B') && chars.peek() != Some(&'{');
                if is_boundary && class_depth == 0 {
                    out.push_str("(?-u:\\");
                    out.push(escaped);
                    out.push(')');
                } else {
                    out.push(c);
                    out.push(escaped);
                }
            }
            '[' => {
                out.push(c);
                if class_depth > 0 && chars.peek() == Some(&':') {
                    // `[:alpha:]` inside a class: copy through its closing `:]`.
                    while let Some(inner) = chars.next() {
                        out.push(inner);
                        if inner == ':' && chars.peek() == Some(&']') {
                            out.push(']');
                            chars.next();
                            break;
                        }
                    }
                } else {
                    class_depth += 1;
                    if chars.peek() == Some(&'^') {
                        out.push('^');
                        chars.next();
                    }
                    class_start = true;
                }
            }
            ']' if class_depth > 0 && !at_class_start => {
                out.push(c);
                class_depth -= 1;
            }
            _ => out.push(c),
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewrite(p: &str) -> String {
        ascii_word_boundaries(p).into_owned()
    }

    #[test]
    fn boundaries_outside_classes_become_ascii() {
        assert_eq!(rewrite(r"\bkey\b"), r"(?-u:\b)key(?-u:\b)");
        assert_eq!(rewrite(r"a\Bb"), r"a(?-u:\B)b");
        assert_eq!(rewrite(r"(?i)\b(a|b)\b"), r"(?i)(?-u:\b)(a|b)(?-u:\b)");
    }

    #[test]
    fn everything_else_is_left_alone() {
        assert!(matches!(
            ascii_word_boundaries(r"\d{3}-\w+"),
            Cow::Borrowed(_)
        ));
        assert_eq!(rewrite(r"\\b"), r"\\b", "an escaped backslash then b");
        assert_eq!(rewrite(r"\b{start}x"), r"\b{start}x");
        assert_eq!(rewrite(r"[\b]x\b"), r"[\b]x(?-u:\b)");
        assert_eq!(
            rewrite(r"[]\b]\b"),
            r"[]\b](?-u:\b)",
            "a leading ] is a literal"
        );
        assert_eq!(rewrite(r"[^]\b]\b"), r"[^]\b](?-u:\b)");
        assert_eq!(
            rewrite(r"[a[b\b]]\b"),
            r"[a[b\b]](?-u:\b)",
            "nested classes"
        );
        assert_eq!(rewrite(r"[[:alpha:]\b]\b"), r"[[:alpha:]\b](?-u:\b)");
        assert_eq!(rewrite("x\\"), "x\\");
    }

    #[test]
    fn the_rewrite_keeps_ascii_meaning_and_is_safe_next_to_non_ascii() {
        let original = regex::Regex::new(r"\bconfidential\b").unwrap();
        let ascii = regex::Regex::new(&rewrite(r"\bconfidential\b")).unwrap();
        for text in [
            "confidential",
            "a confidential note",
            "(confidential)",
            "nonconfidential",
        ] {
            assert_eq!(original.is_match(text), ascii.is_match(text), "{text}");
        }
        let original = regex::Regex::new(r"\bcaf\b").unwrap();
        let ascii = regex::Regex::new(&rewrite(r"\bcaf\b")).unwrap();
        assert!(!original.is_match("café"));
        assert!(ascii.is_match("café"), "differs next to non-ASCII letters");
    }

    #[test]
    fn patterns_with_non_ascii_characters_keep_unicode_boundaries() {
        assert!(matches!(
            ascii_word_boundaries(r"\bélan\b"),
            Cow::Borrowed(_)
        ));
    }
}
