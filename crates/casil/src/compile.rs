//! Turning a policy into an engine: everything that can be wrong with a policy is found
//! here, once, so inspection never meets a bad regex or glob.

use crate::PolicyError;
use crate::detect::Detector;
use crate::document::Policy;
use crate::redact::PathKeys;
use crate::scope::TargetPatterns;

/// A validated, compiled policy. Immutable and `Send + Sync`: swap a new one in (behind an
/// `Arc`) to change the policy; inspections in flight keep the one they started with.
#[derive(Debug, Clone)]
pub struct Engine {
    pub(crate) policy: Policy,
    pub(crate) include: TargetPatterns,
    pub(crate) exclude: TargetPatterns,
    pub(crate) never_log: TargetPatterns,
    pub(crate) detector: Detector,
    pub(crate) paths: PathKeys,
    /// `limits.max_inspect_bytes` as a length (saturated on 32-bit targets).
    pub(crate) max_inspect: usize,
}

impl Engine {
    /// Validates and compiles `policy`, reporting every problem at once: each custom
    /// regex compiles and cannot match the empty string, each glob compiles,
    /// `max_inspect_bytes` is at least 1, and there are no more custom patterns than
    /// `max_patterns`.
    pub fn compile(policy: Policy) -> Result<Engine, PolicyError> {
        let mut problems = Vec::new();
        if policy.limits.max_inspect_bytes < 1 {
            problems.push("CASIL max_inspect_bytes must be >= 1".to_owned());
        }
        let redaction = &policy.policies.redaction;
        let custom = redaction.patterns.len();
        if u64::try_from(custom).map_or(true, |n| n > policy.limits.max_patterns) {
            problems.push(format!(
                "CASIL has {custom} redaction patterns but max_patterns is {}",
                policy.limits.max_patterns
            ));
        }
        let include =
            TargetPatterns::compile("scope.include", &policy.scope.include, &mut problems);
        let exclude =
            TargetPatterns::compile("scope.exclude", &policy.scope.exclude, &mut problems);
        let never_log = TargetPatterns::compile(
            "never_log_payload_for",
            &redaction.never_log_payload_for,
            &mut problems,
        );
        let detector = Detector::compile(
            &redaction.patterns,
            redaction.replace_builtin_patterns,
            &mut problems,
        );
        let paths = PathKeys::new(&redaction.paths);
        PolicyError::check(problems)?;
        let max_inspect = usize::try_from(policy.limits.max_inspect_bytes).unwrap_or(usize::MAX);
        Ok(Engine {
            policy,
            include,
            exclude,
            never_log,
            detector,
            paths,
            max_inspect,
        })
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_engine_can_be_shared_between_threads() {
        fn assert_send_sync<T: Send + Sync + 'static>() {}
        assert_send_sync::<Engine>();
        assert_send_sync::<std::sync::Arc<Engine>>();
    }

    #[test]
    fn the_default_policy_compiles() {
        let engine = Engine::compile(Policy::default()).unwrap();
        assert_eq!(engine.policy(), &Policy::default());
    }

    #[test]
    fn every_problem_is_listed() {
        let mut p = Policy::default();
        p.limits.max_inspect_bytes = 0;
        p.limits.max_patterns = 2;
        p.scope.include = vec!["room-[".into()];
        p.scope.exclude = vec!["ok*".into(), "x[".into()];
        p.policies.redaction.never_log_payload_for = vec!["[z".into()];
        p.policies.redaction.patterns = vec!["(".into(), "fine".into(), ".*".into()];
        let err = Engine::compile(p).unwrap_err();
        let problems = err.problems();
        assert_eq!(problems.len(), 7, "{problems:#?}");
        assert_eq!(problems[0], "CASIL max_inspect_bytes must be >= 1");
        assert_eq!(
            problems[1],
            "CASIL has 3 redaction patterns but max_patterns is 2"
        );
        assert!(problems[2].starts_with("invalid scope.include pattern 'room-['"));
        assert!(problems[3].starts_with("invalid scope.exclude pattern 'x['"));
        assert!(problems[4].starts_with("invalid never_log_payload_for pattern '[z'"));
        assert_eq!(problems[5], "invalid redaction pattern '(': unclosed group");
        assert_eq!(
            problems[6],
            "redaction pattern '.*' matches the empty string"
        );
        assert!(err.to_string().contains("; "));
    }

    #[test]
    fn too_many_custom_patterns_are_refused_not_cut() {
        let mut p = Policy::default();
        p.limits.max_patterns = 1;
        p.policies.redaction.patterns = vec!["a".into(), "b".into()];
        assert!(Engine::compile(p.clone()).is_err());
        p.limits.max_patterns = 2;
        assert!(Engine::compile(p.clone()).is_ok());
        p.limits.max_patterns = 0;
        p.policies.redaction.patterns.clear();
        assert!(
            Engine::compile(p).is_ok(),
            "zero custom patterns fit max_patterns = 0"
        );
    }

    #[test]
    fn builtins_do_not_count_against_max_patterns() {
        let mut p = Policy::default();
        p.limits.max_patterns = 0;
        assert!(Engine::compile(p).is_ok());
    }
}
