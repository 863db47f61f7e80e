//! The configuration error: one line naming the policy (when there is
//! one), the element or field, and the problem (docs/configuration.md#errors).

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub policy: Option<String>,
    pub element: String,
    pub problem: String,
}

impl ConfigError {
    pub fn policy(
        policy: impl Into<String>,
        element: impl Into<String>,
        problem: impl Into<String>,
    ) -> Self {
        ConfigError {
            policy: Some(policy.into()),
            element: element.into(),
            problem: problem.into(),
        }
    }

    pub fn field(field: impl Into<String>, problem: impl Into<String>) -> Self {
        ConfigError {
            policy: None,
            element: field.into(),
            problem: problem.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let problem = self.problem.replace(['\n', '\r'], " ");
        match &self.policy {
            Some(policy) => write!(f, "policy {policy:?}, element {}: {problem}", self.element),
            None => write!(f, "configuration field {:?}: {problem}", self.element),
        }
    }
}

impl std::error::Error for ConfigError {}
