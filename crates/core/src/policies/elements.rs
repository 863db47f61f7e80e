//! The element readers every policy shares: a value's `ref` and literal
//! text, leaves, booleans, `<Properties>`, names, and the error helper that
//! names the policy and the element (docs/configuration.md#policies-required).

use crate::error::ConfigError;
use crate::xml::Element;

/// The longest policy or attribute name accepted.
pub(crate) const MAX_NAME_LEN: usize = 255;

/// Where a value comes from: a `ref` to a variable, literal text, or both
/// (docs/variables.md#variables-a-ref-can-read: the ref wins when the variable is
/// set, even to "").
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ValueSource {
    pub(crate) reference: Option<String>,
    pub(crate) literal: Option<String>,
}

impl ValueSource {
    /// For the checker: where the value comes from, in words; a `secret`
    /// literal (a token) shows its length only.
    pub(crate) fn describe(&self, secret: bool) -> String {
        let literal = self.literal.as_deref().map(|l| {
            if secret {
                format!("a literal of {} characters", l.chars().count())
            } else {
                format!("literal {l:?}")
            }
        });
        match (&self.reference, literal) {
            (Some(r), Some(l)) => format!("ref {r}, else {l}"),
            (Some(r), None) => format!("ref {r}"),
            (None, Some(l)) => l,
            (None, None) => "nothing".to_string(),
        }
    }
}

/// What a policy's parser reads with: its root element, the error helper
/// naming the policy, and the list of what was accepted and ignored.
pub(crate) struct Reader<'a> {
    pub(crate) root: &'a Element,
    pub(crate) policy: &'a str,
    /// (element, what was ignored), for the load-time log.
    pub(crate) ignored: &'a mut Vec<(String, String)>,
}

impl<'a> Reader<'a> {
    /// A configuration error naming the policy, `element` and `problem`.
    pub(crate) fn err(&self, element: &str, problem: impl Into<String>) -> ConfigError {
        ConfigError::policy(self.policy, element, problem.into())
    }

    /// The root's child named `name`, if any (each appears at most once).
    pub(crate) fn child(&self, name: &str) -> Option<&'a Element> {
        self.root.children.iter().find(|c| c.name == name)
    }

    /// The trimmed text of the leaf child `name`, if it is there.
    pub(crate) fn leaf(&self, name: &str) -> Result<Option<&'a str>, ConfigError> {
        match self.child(name) {
            Some(e) => {
                expect_leaf(e, &[]).map_err(|p| self.err(&format!("<{name}>"), p))?;
                Ok(Some(e.text.trim()))
            }
            None => Ok(None),
        }
    }

    /// The leaf child `name` as `true` or `false`, if it is there.
    pub(crate) fn bool_leaf(&self, name: &str) -> Result<Option<bool>, ConfigError> {
        let element = format!("<{name}>");
        match self.leaf(name)? {
            Some(text) => parse_bool(text)
                .map(Some)
                .ok_or_else(|| self.err(&element, format!("must be true or false, not {text:?}"))),
            None => Ok(None),
        }
    }

    /// Reads `ref` and literal text from `element` (`label` names it).
    pub(crate) fn value_source(
        &mut self,
        element: &Element,
        label: &str,
    ) -> Result<ValueSource, ConfigError> {
        value_source(element, label, self.ignored).map_err(|p| self.err(label, p))
    }
}

/// Reads `ref` and literal text from a token element or `<Attribute>`.
/// The schema's `type` (token elements) and `display` (`<Attribute>`)
/// attributes are accepted and ignored (`label` names the element).
fn value_source(
    element: &Element,
    label: &str,
    ignored: &mut Vec<(String, String)>,
) -> Result<ValueSource, String> {
    let (allowed, schema_only): (&[&str], &str) = if element.name == "Attribute" {
        (&["name", "ref", "display"], "display")
    } else {
        (&["ref", "type"], "type")
    };
    expect_leaf(element, allowed)?;
    if let Some(v) = element.attribute(schema_only) {
        ignored.push((
            label.to_string(),
            format!("attribute {schema_only}={v:?} (no documented effect on this policy)"),
        ));
    }
    let reference = match element.attribute("ref").map(str::trim) {
        None | Some("") => None,
        Some(r) => {
            validate_reference(r)?;
            Some(r.to_string())
        }
    };
    let literal = Some(element.text.trim())
        .filter(|t| !t.is_empty())
        .map(String::from);
    if reference.is_none() && literal.is_none() {
        return Err("needs a ref attribute naming a variable, or a literal value".to_string());
    }
    Ok(ValueSource { reference, literal })
}

/// `<Properties>`: the names of its `<Property name="...">` children.
pub(crate) fn properties(element: &Element) -> Result<Vec<String>, String> {
    if !element.attributes.is_empty() {
        return Err(format!("unknown attribute {}", element.attributes[0].0));
    }
    if !element.text.trim().is_empty() {
        return Err(format!(
            "unexpected text {:?}",
            truncate(element.text.trim())
        ));
    }
    element
        .children
        .iter()
        .map(|p| {
            if p.name != "Property" {
                return Err(format!(
                    "unexpected element <{}> inside it: only <Property> is allowed",
                    p.name
                ));
            }
            expect_leaf(p, &["name"]).map_err(|e| format!("<Property>: {e}"))?;
            p.attribute("name")
                .map(String::from)
                .ok_or_else(|| "<Property>: the name attribute is required".to_string())
        })
        .collect()
}

pub(crate) fn validate_reference(reference: &str) -> Result<(), String> {
    if reference
        .as_bytes()
        .iter()
        .any(|b| matches!(b, b'{' | b'}'))
    {
        let bare = reference.trim_matches(|c| c == '{' || c == '}');
        return Err(format!(
            "ref must be a bare variable name without braces: write ref=\"{bare}\", not ref=\"{reference}\""
        ));
    }
    if reference
        .chars()
        .any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(format!(
            "ref {reference:?} is not a variable name (it contains whitespace)"
        ));
    }
    Ok(())
}

pub(crate) fn expect_leaf(element: &Element, allowed_attributes: &[&str]) -> Result<(), String> {
    if let Some(child) = element.children.first() {
        return Err(format!("unexpected element <{}> inside it", child.name));
    }
    if let Some((key, _)) = element
        .attributes
        .iter()
        .find(|(k, _)| !allowed_attributes.contains(&k.as_str()))
    {
        return Err(format!("unknown attribute {key}"));
    }
    Ok(())
}

pub(crate) fn validate_policy_name(name: &str) -> Result<(), String> {
    if name.trim().is_empty() {
        return Err("the name attribute may not be empty".to_string());
    }
    if name.chars().count() > MAX_NAME_LEN {
        return Err(format!("the name is longer than {MAX_NAME_LEN} characters"));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, ' ' | '-' | '_' | '.')))
    {
        return Err(format!(
            "the name {name:?} contains {c:?}: only letters, digits, spaces, hyphens, underscores and periods are allowed"
        ));
    }
    Ok(())
}

pub(crate) fn parse_bool(value: &str) -> Option<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" => Some(true),
        "false" => Some(false),
        _ => None,
    }
}

pub(crate) fn truncate(text: &str) -> String {
    text.chars().take(40).collect()
}
