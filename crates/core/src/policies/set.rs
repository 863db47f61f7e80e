//! SetOAuthV2Info: adds or changes custom attributes of an access token
//! through the token service (docs/configuration.md#policies-required,
//! docs/variables.md).

use std::ops::Range;

use oauthv2info_names::variables::{self, ACCESS_TOKEN_PREFIX};
use oauthv2info_names::{is_protected_attribute, Fault, TokenKind};

use super::elements::{truncate, Reader, ValueSource, MAX_NAME_LEN};
use super::{ApigeePolicy, CompileContext, Compiled, PolicyRun};
use crate::catalog::CatalogVar;
use crate::config::FilterConfig;
use crate::error::ConfigError;
use crate::flow::{Flow, Pending};
use crate::plan::{ValueRef, VarRef};
use crate::profile::{check_get, Lookup};
use crate::request::RequestInfo;

/// One `<Attribute>` of SetOAuthV2Info.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AttributeSpec {
    pub(crate) name: String,
    pub(crate) value: ValueSource,
}

/// `<SetOAuthV2Info>`, as parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SetOAuthV2Info {
    pub(crate) token: ValueSource,
    pub(crate) attributes: Vec<AttributeSpec>,
    /// `<IgnoreUnresolvedVariables>` (absent: `None`, which behaves
    /// as `true`); `false` makes a ref that resolves to nothing a
    /// fault (docs/faults.md#unresolvedvariable).
    pub(crate) ignore_unresolved_variables: Option<bool>,
}

/// SetOAuthV2Info, compiled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SetRun {
    /// The attributes to write, each name once (the last one wins).
    attributes: Vec<(String, ValueRef)>,
    /// `<IgnoreUnresolvedVariables>false`: a ref that resolves to
    /// nothing faults (`UnresolvedVariable`) instead of being skipped.
    strict: bool,
}

impl ApigeePolicy for SetOAuthV2Info {
    const ROOT: &'static str = "SetOAuthV2Info";
    const SHOWN: &'static str = "<SetOAuthV2Info>";
    const ELEMENTS: &'static [&'static str] = &[
        "DisplayName",
        "AccessToken",
        "Attributes",
        "IgnoreUnresolvedVariables",
        "Description",
        "Properties",
        "FaultRules",
    ];
    type Run = SetRun;

    fn parse(reader: &mut Reader<'_>) -> Result<Self, ConfigError> {
        let token_element = reader
            .child("AccessToken")
            .ok_or_else(|| reader.err("<AccessToken>", "is required in <SetOAuthV2Info>"))?;
        let token = reader.value_source(token_element, "<AccessToken>")?;

        let attributes_element = reader
            .child("Attributes")
            .ok_or_else(|| reader.err("<Attributes>", "is required in <SetOAuthV2Info>"))?;
        if !attributes_element.attributes.is_empty() {
            return Err(reader.err(
                "<Attributes>",
                format!("unknown attribute {}", attributes_element.attributes[0].0),
            ));
        }
        if !attributes_element.text.trim().is_empty() {
            return Err(reader.err(
                "<Attributes>",
                format!(
                    "unexpected text {:?}",
                    truncate(attributes_element.text.trim())
                ),
            ));
        }
        let mut attributes = Vec::new();
        for child in &attributes_element.children {
            if child.name != "Attribute" {
                return Err(reader.err(
                    &format!("<{}>", child.name),
                    "unknown element in <Attributes>: only <Attribute> is allowed",
                ));
            }
            let name = child.attribute("name").unwrap_or_default().to_string();
            let element = format!("<Attribute name=\"{name}\">");
            if name.is_empty() {
                return Err(reader.err(
                    "<Attribute>",
                    "the name attribute is required and may not be empty",
                ));
            }
            if name.chars().count() > MAX_NAME_LEN {
                return Err(reader.err(
                    "<Attribute>",
                    format!("name is longer than {MAX_NAME_LEN} characters"),
                ));
            }
            if is_protected_attribute(&name) {
                return Err(reader.err(
                    &element,
                    format!(
                        "{name:?} is a standard token field; SetOAuthV2Info may only add or change custom attributes"
                    ),
                ));
            }
            let value = reader.value_source(child, &element)?;
            attributes.push(AttributeSpec { name, value });
        }
        if attributes.is_empty() {
            return Err(reader.err("<Attributes>", "needs at least one <Attribute>"));
        }
        let ignore_unresolved_variables = reader.bool_leaf("IgnoreUnresolvedVariables")?;
        Ok(SetOAuthV2Info {
            token,
            attributes,
            ignore_unresolved_variables,
        })
    }

    fn references<'a>(&'a self, refs: &mut Vec<(String, &'a str)>) {
        if let Some(r) = &self.token.reference {
            refs.push(("<AccessToken>".to_string(), r.as_str()));
        }
        for a in &self.attributes {
            if let Some(r) = &a.value.reference {
                refs.push((format!("<Attribute name=\"{}\">", a.name), r.as_str()));
            }
        }
    }

    fn compile(&self, at: &CompileContext<'_>) -> Compiled<SetRun> {
        // Duplicate names: the last one wins (one entry, at its last place).
        let mut set: Vec<(String, ValueRef)> = Vec::with_capacity(self.attributes.len());
        for a in &self.attributes {
            set.retain(|(n, _)| *n != a.name);
            set.push((a.name.clone(), ValueRef::compile(&a.value, at.earlier)));
        }
        let known_attributes = set.iter().map(|(n, _)| n.clone()).collect();
        Compiled {
            run: SetRun {
                attributes: set,
                strict: self.ignore_unresolved_variables == Some(false),
            },
            kind: TokenKind::AccessToken,
            token: ValueRef::compile(&self.token, at.earlier),
            outputs: at.outputs(ACCESS_TOKEN_PREFIX, variables::SET),
            attribute_prefix: format!("{ACCESS_TOKEN_PREFIX}.{}.", at.name),
            bare_attributes: true,
            known_attributes,
        }
    }

    fn success_variables(&self, policy: &str, out: &mut Vec<CatalogVar>) {
        out.extend(
            variables::SET
                .iter()
                .map(|s| CatalogVar::fixed(ACCESS_TOKEN_PREFIX, policy, s.name, s.secret)),
        );
        // The attributes this policy writes, then every other custom
        // attribute the token already has. A name equal to a standard
        // suffix is listed once.
        for attribute in &self.attributes {
            let var = CatalogVar::fixed(ACCESS_TOKEN_PREFIX, policy, &attribute.name, false);
            if !out.iter().any(|v| v.name == var.name) {
                out.push(var);
            }
        }
        out.push(CatalogVar::family(ACCESS_TOKEN_PREFIX, policy, ""));
    }

    fn describe(&self) -> String {
        let names: Vec<String> = self
            .attributes
            .iter()
            .map(|a| format!("{} ({})", a.name, a.value.describe(false)))
            .collect();
        let mut s = format!(
            "sets {} on the access token from {}",
            names.join(", "),
            self.token.describe(true)
        );
        match self.ignore_unresolved_variables {
            Some(false) => s.push_str(
                "; IgnoreUnresolvedVariables false: a ref that resolves to nothing faults (UnresolvedVariable)",
            ),
            Some(true) => s.push_str(
                "; IgnoreUnresolvedVariables true: an attribute whose ref resolves to nothing is skipped",
            ),
            None => {}
        }
        s
    }
}

impl PolicyRun for SetRun {
    fn variable_prefix(&self) -> Option<&'static str> {
        Some(ACCESS_TOKEN_PREFIX)
    }

    fn attribute_segment(&self) -> &'static str {
        ""
    }

    fn unresolved_token_faults(&self) -> bool {
        self.strict
    }

    fn reuses_lookup(&self) -> bool {
        false
    }

    /// With no attribute to write, the token must still be valid.
    fn check(&self, kind: TokenKind, lookup: Lookup<'_>, now_ms: i64) -> Result<(), Fault> {
        check_get(kind, false, lookup, now_ms).map(|_| ())
    }

    /// Resolves the attributes: an update of those that resolve, or a
    /// lookup of the token when none does.
    fn pending(
        &self,
        flow: &mut Flow,
        config: &FilterConfig,
        request: &RequestInfo,
        _kind: TokenKind,
        token: Range<usize>,
    ) -> Result<Pending, Fault> {
        let mut resolved = Vec::with_capacity(self.attributes.len());
        let mut unresolved = false;
        for (name, value) in &self.attributes {
            match flow.resolve(config, value, request) {
                Some(range) => resolved.push((name.clone(), flow.text(&range).to_string())),
                None => unresolved = true,
            }
        }
        if unresolved && self.strict {
            return Err(Fault::UnresolvedVariable);
        }
        Ok(if resolved.is_empty() {
            // Nothing to write: check the token and report it.
            Pending::Lookup {
                kind: TokenKind::AccessToken,
                token,
            }
        } else {
            Pending::Update {
                token,
                attributes: resolved,
            }
        })
    }

    fn values(&self, each: &mut dyn FnMut(&VarRef)) {
        for (_, value) in &self.attributes {
            if let Some(r) = &value.reference {
                each(r);
            }
        }
    }

    fn values_mut(&mut self, each: &mut dyn FnMut(&mut VarRef)) {
        for (_, value) in &mut self.attributes {
            if let Some(r) = value.reference.as_mut() {
                each(r);
            }
        }
    }
}
