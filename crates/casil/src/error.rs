//! The one error of this crate: a policy that cannot be read, changed or compiled.

use std::fmt;

/// Every problem found in a policy, not just the first, so an operator fixes them in one
/// round. The messages are meant for the admin who sent the policy (they name the field
/// and the offending value) and are safe to return in a `VALIDATION_ERROR`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyError {
    problems: Vec<String>,
}

impl PolicyError {
    /// Never empty: an error without a problem is a bug, so it gets a generic message.
    pub(crate) fn new(mut problems: Vec<String>) -> Self {
        if problems.is_empty() {
            problems.push("invalid CASIL policy".to_owned());
        }
        PolicyError { problems }
    }

    pub(crate) fn one(problem: impl Into<String>) -> Self {
        PolicyError {
            problems: vec![problem.into()],
        }
    }

    /// `Ok(())` when `problems` is empty, else the error carrying them all.
    pub(crate) fn check(problems: Vec<String>) -> Result<(), PolicyError> {
        if problems.is_empty() {
            Ok(())
        } else {
            Err(PolicyError::new(problems))
        }
    }

    pub fn problems(&self) -> &[String] {
        &self.problems
    }
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.problems.join("; "))
    }
}

impl std::error::Error for PolicyError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_joins_every_problem() {
        let err = PolicyError::new(vec!["a is wrong".into(), "b is wrong".into()]);
        assert_eq!(err.to_string(), "a is wrong; b is wrong");
        assert_eq!(err.problems().len(), 2);
    }

    #[test]
    fn an_error_always_has_a_problem() {
        assert_eq!(PolicyError::new(Vec::new()).problems().len(), 1);
        assert!(PolicyError::check(Vec::new()).is_ok());
    }
}
