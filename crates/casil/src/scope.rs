//! Matching a target (`room:channel`, `room`, `channel` or empty) against the scope and
//! `never_log_payload_for` patterns.
//!
//! The original's rule: a pattern ending in `*` is a prefix match on the text before the
//! `*`; any other pattern is a shell glob (`*`, `?`, `[...]`) on the whole target, where
//! `*` crosses every character, `:` included. One refinement: when the text before the
//! final `*` holds a glob character itself (`hr-?:*`), the whole pattern is a glob. The
//! original took such a prefix literally, and since names cannot contain `?`, `[` or `*`
//! it could never match: the operator meant the glob.

use std::borrow::Cow;

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};

/// The text scope patterns see. Empty names count as absent, as they did in the original.
pub(crate) fn target<'a>(room: Option<&'a str>, channel: Option<&'a str>) -> Cow<'a, str> {
    let room = room.filter(|r| !r.is_empty());
    let channel = channel.filter(|c| !c.is_empty());
    match (room, channel) {
        (Some(room), Some(channel)) => Cow::Owned(format!("{room}:{channel}")),
        (Some(one), None) | (None, Some(one)) => Cow::Borrowed(one),
        (None, None) => Cow::Borrowed(""),
    }
}

/// One list of patterns, compiled.
#[derive(Debug, Clone)]
pub(crate) struct TargetPatterns {
    prefixes: Vec<String>,
    globs: GlobSet,
}

impl TargetPatterns {
    /// Compiles `patterns`; a glob that does not compile adds a problem naming `field`.
    pub(crate) fn compile(field: &str, patterns: &[String], problems: &mut Vec<String>) -> Self {
        let mut prefixes = Vec::new();
        let mut globs = GlobSetBuilder::new();
        for pattern in patterns {
            if let Some(prefix) = pattern.strip_suffix('*')
                && !prefix.contains(['*', '?', '['])
            {
                prefixes.push(prefix.to_owned());
                continue;
            }
            // Room and channel names are plain tokens, so a backslash is just a character
            // (as in Python's fnmatch), never an escape.
            match GlobBuilder::new(pattern)
                .literal_separator(false)
                .backslash_escape(false)
                .build()
            {
                Ok(glob) => {
                    globs.add(glob);
                }
                Err(err) => problems.push(format!("invalid {field} pattern '{pattern}': {err}")),
            }
        }
        let globs = globs.build().unwrap_or_else(|err| {
            problems.push(format!("invalid {field} patterns: {err}"));
            GlobSet::empty()
        });
        TargetPatterns { prefixes, globs }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.prefixes.is_empty() && self.globs.is_empty()
    }

    pub(crate) fn matches(&self, target: &str) -> bool {
        self.prefixes.iter().any(|p| target.starts_with(p.as_str()))
            || (!self.globs.is_empty() && self.globs.is_match(target))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn patterns(list: &[&str]) -> TargetPatterns {
        let list: Vec<String> = list.iter().map(|s| s.to_string()).collect();
        let mut problems = Vec::new();
        let compiled = TargetPatterns::compile("scope.include", &list, &mut problems);
        assert!(problems.is_empty(), "{problems:?}");
        compiled
    }

    #[test]
    fn the_target_is_room_channel_room_channel_or_empty() {
        assert_eq!(target(Some("r"), Some("c")), "r:c");
        assert_eq!(target(Some("r"), None), "r");
        assert_eq!(target(None, Some("c")), "c");
        assert_eq!(target(None, None), "");
        assert_eq!(target(Some(""), Some("c")), "c", "an empty room is no room");
        assert!(matches!(target(Some("r"), None), Cow::Borrowed(_)));
    }

    #[test]
    fn a_trailing_star_is_a_prefix() {
        let p = patterns(&["secure-*", "a.b*"]);
        assert!(p.matches("secure-room:updates"));
        assert!(p.matches("secure-"));
        assert!(!p.matches("public:chat"));
        assert!(
            p.matches("a.bc") && !p.matches("axbc"),
            "the prefix is literal"
        );
    }

    #[test]
    fn a_trailing_star_after_other_glob_characters_is_a_glob() {
        // The original read these as literal prefixes, which no name can start with.
        let p = patterns(&["hr-?:*", "team-[0-9]*", "*-audit*"]);
        assert!(p.matches("hr-1:payroll") && !p.matches("hr-12:payroll"));
        assert!(p.matches("team-7") && p.matches("team-7x:chat") && !p.matches("team-x"));
        assert!(p.matches("billing-audit:2024") && !p.matches("billing:audit"));
    }

    #[test]
    fn other_patterns_are_globs_on_the_whole_target() {
        let p = patterns(&["*:updates", "room-?", "team-[0-9]:chat", "a/*b"]);
        assert!(p.matches("secure-room:updates"));
        assert!(p.matches("a:b:updates"), "star crosses ':'");
        assert!(
            !p.matches("secure-room:updates-2"),
            "the whole target must match"
        );
        assert!(p.matches("room-1"));
        assert!(!p.matches("room-12"));
        assert!(p.matches("team-7:chat"));
        assert!(!p.matches("team-x:chat"));
        assert!(p.matches("a/x/y/b"), "star crosses '/' too");
    }

    #[test]
    fn negated_classes_and_alternatives() {
        let p = patterns(&["team-[!0-9]", "{ops,dev}:alerts"]);
        assert!(p.matches("team-x") && !p.matches("team-7"));
        assert!(p.matches("ops:alerts") && p.matches("dev:alerts") && !p.matches("qa:alerts"));
    }

    #[test]
    fn exact_and_empty_patterns() {
        let p = patterns(&["lobby"]);
        assert!(p.matches("lobby"));
        assert!(!p.matches("lobby:main"));
        assert!(!p.matches(""));
        assert!(
            patterns(&["*"]).matches(""),
            "a lone star matches the empty target"
        );
        assert!(patterns(&[""]).matches(""));
        assert!(patterns(&[]).is_empty());
        assert!(!patterns(&[]).matches("x"));
    }

    #[test]
    fn a_bad_glob_is_a_problem_naming_the_field_and_pattern() {
        let mut problems = Vec::new();
        let list = vec!["room-[a".to_owned(), "ok".to_owned()];
        TargetPatterns::compile("scope.exclude", &list, &mut problems);
        assert_eq!(problems.len(), 1);
        assert!(
            problems[0].starts_with("invalid scope.exclude pattern 'room-[a'"),
            "{problems:?}"
        );
    }
}
