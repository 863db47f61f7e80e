//! The configuration error: one line naming the policy (when there is
//! one), the element or field, and the problem (docs/configuration.md#configuration-errors).

use std::fmt;

/// Boxed: a `Result<_, ConfigError>` is then one word wider than its
/// `Ok`, and the load-time code that hands errors up (hundreds of `?`)
/// moves a pointer, not three strings (docs/performance.md#module-size).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(Box<Details>);

/// What a [`ConfigError`] says (its fields read through it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Details {
    pub(crate) policy: Option<String>,
    pub(crate) element: String,
    pub problem: String,
}

impl std::ops::Deref for ConfigError {
    type Target = Details;

    fn deref(&self) -> &Details {
        &self.0
    }
}

impl ConfigError {
    pub(crate) fn policy(
        policy: impl Into<String>,
        element: impl Into<String>,
        problem: impl Into<String>,
    ) -> Self {
        ConfigError(Box::new(Details {
            policy: Some(policy.into()),
            element: element.into(),
            problem: problem.into(),
        }))
    }

    pub(crate) fn field(field: impl Into<String>, problem: impl Into<String>) -> Self {
        ConfigError(Box::new(Details {
            policy: None,
            element: field.into(),
            problem: problem.into(),
        }))
    }
}

impl fmt::Display for ConfigError {
    /// One log line, whatever the policy's text holds: the element shows
    /// attribute values as written, and an XML character reference
    /// (`&#xd;`) can put a line break in one.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let one_line = |s: &str| s.replace(|c: char| c.is_control(), " ");
        let problem = one_line(&self.problem);
        match &self.policy {
            Some(policy) => write!(
                f,
                "policy {policy:?}, element {}: {problem}",
                one_line(&self.element)
            ),
            None => write!(f, "configuration field {:?}: {problem}", self.element),
        }
    }
}

impl std::error::Error for ConfigError {}

#[cfg(test)]
mod tests {
    use crate::policies::parse_policy;

    /// Found by the fuzz target for policies: an attribute value holding a
    /// line break (written `&#xd;` or `&#xa;`) made a two-line refusal.
    #[test]
    fn a_refusal_is_one_line_whatever_the_policy_holds() {
        for xml in [
            r#"<SetOAuthV2Info name="S"><AccessToken ref="t"/><Attributes><Attribute name="a&#xd;b"/></Attributes></SetOAuthV2Info>"#,
            r#"<SetOAuthV2Info name="S"><AccessToken ref="t"/><Attributes><Attribute name="a&#xa;b&#9;c"/></Attributes></SetOAuthV2Info>"#,
        ] {
            let e = parse_policy(xml, 0).expect_err(xml);
            let line = e.to_string();
            assert!(!line.contains(|c: char| c.is_control()), "{line:?}");
            assert!(line.contains("element <Attribute name=\"a b"), "{line}");
        }
    }
}
