//! The policy model and its parser from Apigee policy XML
//! (docs/configuration.md#policies-required, the element table in the README).

use oauthv2info_names::{is_protected_attribute, TokenKind};

use crate::error::ConfigError;
use crate::xml::{self, Element};

/// Where a value comes from: a `ref` to a variable, literal text, or both
/// (docs/variables.md#variables-a-ref-can-read: the ref wins when the variable is
/// set, even to "").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValueSource {
    pub reference: Option<String>,
    pub literal: Option<String>,
}

/// One `<Attribute>` of SetOAuthV2Info.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttributeSpec {
    pub name: String,
    pub value: ValueSource,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicyKind {
    Get {
        kind: TokenKind,
        token: ValueSource,
        ignore_access_token_status: bool,
    },
    Set {
        token: ValueSource,
        attributes: Vec<AttributeSpec>,
        /// `<IgnoreUnresolvedVariables>` (absent: `None`, which behaves
        /// as `true`); `false` makes a ref that resolves to nothing a
        /// fault (docs/faults.md#unresolvedvariable).
        ignore_unresolved_variables: Option<bool>,
    },
    /// OAuthV2 with `<Operation>VerifyAccessToken</Operation>`.
    Verify {
        /// `<AccessToken>`: the variable holding the token (Apigee writes
        /// its name as the element's text); `None`: the `Authorization`
        /// header.
        token: Option<String>,
        /// `<AccessTokenPrefix>`: `Bearer` unless given; empty: none.
        prefix: String,
        /// `<Scope>`: the token must hold at least one of these.
        scopes: Vec<String>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub name: String,
    pub display_name: Option<String>,
    pub continue_on_error: bool,
    pub enabled: bool,
    pub kind: PolicyKind,
    /// What Apigee's policy schema allows that has no effect here, accepted
    /// and ignored: (element, what was ignored), for the load-time log.
    pub ignored: Vec<(String, String)>,
}

impl Policy {
    /// The policy type, as its XML root element is named.
    pub fn type_name(&self) -> &'static str {
        match self.kind {
            PolicyKind::Get { .. } => "GetOAuthV2Info",
            PolicyKind::Set { .. } => "SetOAuthV2Info",
            PolicyKind::Verify { .. } => "OAuthV2",
        }
    }

    /// Every `ref` of the policy, with the element it appears on.
    pub fn references(&self) -> Vec<(String, &str)> {
        let mut refs = Vec::new();
        match &self.kind {
            PolicyKind::Get { kind, token, .. } => {
                if let Some(r) = &token.reference {
                    refs.push((format!("<{}>", kind.element()), r.as_str()));
                }
            }
            PolicyKind::Set {
                token, attributes, ..
            } => {
                if let Some(r) = &token.reference {
                    refs.push(("<AccessToken>".to_string(), r.as_str()));
                }
                for a in attributes {
                    if let Some(r) = &a.value.reference {
                        refs.push((format!("<Attribute name=\"{}\">", a.name), r.as_str()));
                    }
                }
            }
            PolicyKind::Verify { token, .. } => {
                if let Some(r) = token {
                    refs.push(("<AccessToken>".to_string(), r.as_str()));
                }
            }
        }
        refs
    }
}

const MAX_NAME_LEN: usize = 255;

/// Parses one policy document. `index` is the policy's position in
/// the configuration, used to name it in errors when it has no usable name.
pub fn parse_policy(document: &str, index: usize) -> Result<Policy, ConfigError> {
    let unnamed = || format!("#{}", index + 1);
    let root = xml::parse(document)
        .map_err(|problem| ConfigError::policy(unnamed(), "document", problem))?;

    let (is_get, is_verify) = match root.name.as_str() {
        "GetOAuthV2Info" => (true, false),
        "SetOAuthV2Info" => (false, false),
        "OAuthV2" => (false, true),
        other => {
            return Err(ConfigError::policy(
                unnamed(),
                format!("<{other}>"),
                "unknown policy type: expected <GetOAuthV2Info>, <SetOAuthV2Info> or <OAuthV2> (VerifyAccessToken)",
            ))
        }
    };
    let root_element = format!("<{}>", root.name);

    let name = match root.attribute("name") {
        Some(n) => n.to_string(),
        None => {
            return Err(ConfigError::policy(
                unnamed(),
                root_element,
                "the name attribute is required",
            ))
        }
    };
    validate_policy_name(&name).map_err(|p| ConfigError::policy(&name, &root_element, p))?;
    let err = |element: &str, problem: String| ConfigError::policy(&name, element, problem);

    let mut continue_on_error = false;
    let mut enabled = true;
    let mut ignored: Vec<(String, String)> = Vec::new();
    for (key, value) in &root.attributes {
        match key.as_str() {
            "name" => {}
            "continueOnError" => {
                continue_on_error = parse_bool(value).ok_or_else(|| {
                    err(
                        &root_element,
                        format!("continueOnError must be true or false, not {value:?}"),
                    )
                })?
            }
            "enabled" => {
                enabled = parse_bool(value).ok_or_else(|| {
                    err(
                        &root_element,
                        format!("enabled must be true or false, not {value:?}"),
                    )
                })?
            }
            // Deprecated in Apigee: accepted and ignored.
            "async" => {
                parse_bool(value).ok_or_else(|| {
                    err(
                        &root_element,
                        format!("async must be true or false, not {value:?}"),
                    )
                })?;
            }
            other if other.starts_with("xmlns") => {}
            // In Apigee's newer shared policy schema, documented nowhere.
            "version" | "isHybrid" => ignored.push((
                root_element.clone(),
                format!("attribute {key}={value:?} (no documented effect)"),
            )),
            other => {
                return Err(err(
                    &root_element,
                    format!(
                        "unknown attribute {other} (known: name, continueOnError, enabled, async, version, isHybrid)"
                    ),
                ))
            }
        }
    }
    if !root.text.trim().is_empty() {
        return Err(err(
            &root_element,
            format!("unexpected text {:?}", truncate(root.text.trim())),
        ));
    }

    let mut display_name = None;
    let mut seen: Vec<&str> = Vec::new();
    for child in &root.children {
        let element = format!("<{}>", child.name);
        if seen.contains(&child.name.as_str()) {
            return Err(err(&element, "appears more than once".to_string()));
        }
        seen.push(&child.name);
        let known: &[&str] = match (is_get, is_verify) {
            (true, _) => GET_ELEMENTS,
            (_, true) => VERIFY_ELEMENTS,
            _ => SET_ELEMENTS,
        };
        if !known.contains(&child.name.as_str()) {
            if is_get && child.name == "IgnoreUnresolvedVariables" {
                return Err(err(
                    &element,
                    "applies to <SetOAuthV2Info> only (Apigee documents it for no GetOAuthV2Info)"
                        .to_string(),
                ));
            }
            return Err(err(
                &element,
                format!(
                    "unknown element in <{}> (known: {})",
                    root.name,
                    known
                        .iter()
                        .map(|e| format!("<{e}>"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
        match child.name.as_str() {
            "DisplayName" => {
                expect_leaf(child, &[]).map_err(|p| err(&element, p))?;
                display_name = Some(child.text.trim().to_string());
            }
            // What the Apigee UI writes into a new policy: accepted, and
            // ignored without a word when it says nothing.
            "Description" => expect_leaf(child, &[]).map_err(|p| err(&element, p))?,
            "Properties" => {
                let names = properties(child).map_err(|p| err(&element, p))?;
                if !names.is_empty() {
                    ignored.push((
                        element.clone(),
                        format!(
                            "properties {} (no documented effect on this policy)",
                            names.join(", ")
                        ),
                    ));
                }
            }
            "FaultRules" => {
                if !child.children.is_empty() || !child.text.trim().is_empty() {
                    return Err(err(
                        &element,
                        "fault rules inside a policy never run in Apigee; handle faults in the flow (continueOnError and fault.name: docs/faults.md)"
                            .to_string(),
                    ));
                }
                expect_leaf(child, &[]).map_err(|p| err(&element, p))?;
            }
            // In Apigee's policy schema (an Edge-era setting), documented
            // nowhere.
            "OAuthConfig" => {
                expect_leaf(child, &[]).map_err(|p| err(&element, p))?;
                ignored.push((
                    element.clone(),
                    "the element (no documented effect)".to_string(),
                ));
            }
            _ => {}
        }
    }

    let kind = if is_get {
        parse_get(&root, &err, &mut ignored)?
    } else if is_verify {
        parse_verify(&root, &err, &mut ignored)?
    } else {
        parse_set(&root, &err, &mut ignored)?
    };

    Ok(Policy {
        name,
        display_name,
        continue_on_error,
        enabled,
        kind,
        ignored,
    })
}

/// The children each policy accepts (docs/configuration.md#policies-required).
const GET_ELEMENTS: &[&str] = &[
    "DisplayName",
    "AccessToken",
    "RefreshToken",
    "AuthorizationCode",
    "ClientId",
    "IgnoreAccessTokenStatus",
    "Description",
    "Properties",
    "FaultRules",
    "OAuthConfig",
];
const SET_ELEMENTS: &[&str] = &[
    "DisplayName",
    "AccessToken",
    "Attributes",
    "IgnoreUnresolvedVariables",
    "Description",
    "Properties",
    "FaultRules",
];

const VERIFY_ELEMENTS: &[&str] = &[
    "DisplayName",
    "Operation",
    "AccessToken",
    "AccessTokenPrefix",
    "Scope",
    "Description",
    "Properties",
    "FaultRules",
    // OAuthV2 elements of the operations that issue tokens: Apigee's
    // schema allows them on every operation, and the UI's templates carry
    // some; accepted and ignored (docs/decisions.md#verifyaccesstoken).
    "GenerateResponse",
    "GenerateErrorResponse",
    "ExternalAuthorization",
    "Tokens",
    "SupportedGrantTypes",
    "GrantType",
    "ExpiresIn",
    "RefreshTokenExpiresIn",
    "StoreToken",
    "ReuseRefreshToken",
    "Attributes",
    "ExternalAccessToken",
    "Code",
    "RedirectUri",
    "ResponseType",
    "State",
    "UserName",
    "PassWord",
    "AppEndUser",
    "ClientId",
    "RFCCompliantRequestResponse",
];

/// The OAuthV2 operations that issue, refresh or revoke tokens: the token
/// service does those (docs/token-service.md), not the filter.
const TOKEN_SERVICE_OPERATIONS: &[&str] = &[
    "GenerateAccessToken",
    "GenerateAccessTokenImplicitGrant",
    "GenerateAuthorizationCode",
    "RefreshAccessToken",
    "InvalidateToken",
    "ValidateToken",
];

fn parse_verify(
    root: &Element,
    err: &dyn Fn(&str, String) -> ConfigError,
    ignored: &mut Vec<(String, String)>,
) -> Result<PolicyKind, ConfigError> {
    let child = |name: &str| root.children.iter().find(|c| c.name == name);
    let leaf = |name: &str| -> Result<Option<&str>, ConfigError> {
        match child(name) {
            Some(e) => {
                let element = format!("<{name}>");
                expect_leaf(e, &[]).map_err(|p| err(&element, p))?;
                Ok(Some(e.text.trim()))
            }
            None => Ok(None),
        }
    };
    match leaf("Operation")? {
        Some("VerifyAccessToken") => {}
        Some(op) if TOKEN_SERVICE_OPERATIONS.contains(&op) => {
            return Err(err(
                "<Operation>",
                format!("{op} issues or changes tokens: the token service does that (docs/token-service.md); the filter runs VerifyAccessToken only"),
            ))
        }
        Some(op) => {
            return Err(err(
                "<Operation>",
                format!("unknown operation {:?}: the filter runs VerifyAccessToken", truncate(op)),
            ))
        }
        None => {
            return Err(err(
                "<Operation>",
                "is required in <OAuthV2>: <Operation>VerifyAccessToken</Operation>".to_string(),
            ))
        }
    }
    let token = match child("AccessToken") {
        None => None,
        Some(e) => {
            if e.attribute("ref").is_some() {
                return Err(err(
                    "<AccessToken>",
                    "in OAuthV2 the variable's name is the element's text: write <AccessToken>request.header.x-token</AccessToken>, not a ref attribute".to_string(),
                ));
            }
            expect_leaf(e, &[]).map_err(|p| err("<AccessToken>", p))?;
            let name = e.text.trim();
            if name.is_empty() {
                return Err(err(
                    "<AccessToken>",
                    "names the variable holding the token, and is empty (leave it out to read the Authorization header)".to_string(),
                ));
            }
            validate_reference(name).map_err(|p| err("<AccessToken>", p))?;
            Some(name.to_string())
        }
    };
    let prefix = match leaf("AccessTokenPrefix")? {
        Some(p) if p.contains(char::is_whitespace) => {
            return Err(err(
                "<AccessTokenPrefix>",
                format!(
                    "must be one word (an authentication scheme such as Bearer), not {:?}",
                    truncate(p)
                ),
            ))
        }
        Some(p) => p.to_string(),
        None => "Bearer".to_string(),
    };
    let scopes = leaf("Scope")?
        .unwrap_or_default()
        .split_whitespace()
        .map(String::from)
        .collect();
    match leaf("ExternalAuthorization")? {
        Some(v) if parse_bool(v) == Some(true) => {
            return Err(err(
                "<ExternalAuthorization>",
                "true would accept tokens the token service did not issue; VerifyAccessToken checks tokens against the token service only".to_string(),
            ))
        }
        _ => {}
    }
    for e in &root.children {
        let verify_own = matches!(
            e.name.as_str(),
            "DisplayName"
                | "Operation"
                | "AccessToken"
                | "AccessTokenPrefix"
                | "Scope"
                | "Description"
                | "Properties"
                | "FaultRules"
        );
        let empty = e.children.is_empty() && e.text.trim().is_empty() && e.attributes.is_empty();
        if !(verify_own || empty) {
            ignored.push((
                format!("<{}>", e.name),
                "the element (it belongs to the operations that issue tokens)".to_string(),
            ));
        }
    }
    Ok(PolicyKind::Verify {
        token,
        prefix,
        scopes,
    })
}

/// `<Properties>`: the names of its `<Property name="...">` children.
fn properties(element: &Element) -> Result<Vec<String>, String> {
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

fn parse_get(
    root: &Element,
    err: &dyn Fn(&str, String) -> ConfigError,
    ignored: &mut Vec<(String, String)>,
) -> Result<PolicyKind, ConfigError> {
    let tokens: Vec<(TokenKind, &Element)> = root
        .children
        .iter()
        .filter_map(|c| TokenKind::from_element(&c.name).map(|k| (k, c)))
        .collect();
    let (kind, element) = match tokens.as_slice() {
        [one] => *one,
        [] => {
            return Err(err(
                "<GetOAuthV2Info>",
                "needs exactly one of <AccessToken>, <RefreshToken>, <AuthorizationCode>, <ClientId>; found none"
                    .to_string(),
            ))
        }
        many => {
            let names: Vec<String> = many.iter().map(|(k, _)| format!("<{}>", k.element())).collect();
            return Err(err(
                "<GetOAuthV2Info>",
                format!(
                    "needs exactly one of <AccessToken>, <RefreshToken>, <AuthorizationCode>, <ClientId>; found {}",
                    names.join(", ")
                ),
            ));
        }
    };
    let element_name = format!("<{}>", kind.element());
    let token = value_source(element, &element_name, ignored).map_err(|p| err(&element_name, p))?;

    let mut ignore_access_token_status = false;
    if let Some(ignore) = root
        .children
        .iter()
        .find(|c| c.name == "IgnoreAccessTokenStatus")
    {
        let element = "<IgnoreAccessTokenStatus>";
        expect_leaf(ignore, &[]).map_err(|p| err(element, p))?;
        if kind != TokenKind::AccessToken {
            return Err(err(
                element,
                format!("applies to <AccessToken> only, not to {}", element_name),
            ));
        }
        let text = ignore.text.trim();
        ignore_access_token_status = parse_bool(text)
            .ok_or_else(|| err(element, format!("must be true or false, not {text:?}")))?;
    }
    Ok(PolicyKind::Get {
        kind,
        token,
        ignore_access_token_status,
    })
}

fn parse_set(
    root: &Element,
    err: &dyn Fn(&str, String) -> ConfigError,
    ignored: &mut Vec<(String, String)>,
) -> Result<PolicyKind, ConfigError> {
    let token_element = root
        .children
        .iter()
        .find(|c| c.name == "AccessToken")
        .ok_or_else(|| {
            err(
                "<AccessToken>",
                "is required in <SetOAuthV2Info>".to_string(),
            )
        })?;
    let token = value_source(token_element, "<AccessToken>", ignored)
        .map_err(|p| err("<AccessToken>", p))?;

    let attributes_element = root
        .children
        .iter()
        .find(|c| c.name == "Attributes")
        .ok_or_else(|| {
            err(
                "<Attributes>",
                "is required in <SetOAuthV2Info>".to_string(),
            )
        })?;
    if !attributes_element.attributes.is_empty() {
        return Err(err(
            "<Attributes>",
            format!("unknown attribute {}", attributes_element.attributes[0].0),
        ));
    }
    if !attributes_element.text.trim().is_empty() {
        return Err(err(
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
            return Err(err(
                &format!("<{}>", child.name),
                "unknown element in <Attributes>: only <Attribute> is allowed".to_string(),
            ));
        }
        let name = child.attribute("name").unwrap_or_default().to_string();
        let element = format!("<Attribute name=\"{name}\">");
        if name.is_empty() {
            return Err(err(
                "<Attribute>",
                "the name attribute is required and may not be empty".to_string(),
            ));
        }
        if name.chars().count() > MAX_NAME_LEN {
            return Err(err(
                "<Attribute>",
                format!("name is longer than {MAX_NAME_LEN} characters"),
            ));
        }
        if is_protected_attribute(&name) {
            return Err(err(
                &element,
                format!(
                    "{name:?} is a standard token field; SetOAuthV2Info may only add or change custom attributes"
                ),
            ));
        }
        let value = value_source(child, &element, ignored).map_err(|p| err(&element, p))?;
        attributes.push(AttributeSpec { name, value });
    }
    if attributes.is_empty() {
        return Err(err(
            "<Attributes>",
            "needs at least one <Attribute>".to_string(),
        ));
    }
    let mut ignore_unresolved_variables = None;
    if let Some(e) = root
        .children
        .iter()
        .find(|c| c.name == "IgnoreUnresolvedVariables")
    {
        let element = "<IgnoreUnresolvedVariables>";
        expect_leaf(e, &[]).map_err(|p| err(element, p))?;
        let text = e.text.trim();
        ignore_unresolved_variables = Some(
            parse_bool(text)
                .ok_or_else(|| err(element, format!("must be true or false, not {text:?}")))?,
        );
    }
    Ok(PolicyKind::Set {
        token,
        attributes,
        ignore_unresolved_variables,
    })
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

fn validate_reference(reference: &str) -> Result<(), String> {
    if reference.contains('{') || reference.contains('}') {
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

fn expect_leaf(element: &Element, allowed_attributes: &[&str]) -> Result<(), String> {
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

fn validate_policy_name(name: &str) -> Result<(), String> {
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

fn parse_bool(value: &str) -> Option<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" => Some(true),
        "false" => Some(false),
        _ => None,
    }
}

fn truncate(text: &str) -> String {
    text.chars().take(40).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(xml: &str) -> Policy {
        parse_policy(xml, 0).unwrap()
    }

    fn error(xml: &str) -> ConfigError {
        parse_policy(xml, 0).unwrap_err()
    }

    #[test]
    fn oauthv2_verify_access_token() {
        let p = get(
            r#"<OAuthV2 name="V" continueOnError="true"><DisplayName>Verify</DisplayName><Operation>VerifyAccessToken</Operation></OAuthV2>"#,
        );
        assert_eq!(p.type_name(), "OAuthV2");
        assert!(p.continue_on_error);
        assert_eq!(
            p.kind,
            PolicyKind::Verify {
                token: None,
                prefix: "Bearer".into(),
                scopes: vec![],
            }
        );
        assert!(p.ignored.is_empty());
        // What the Apigee UI's template carries, as a community policy shows.
        let p = get(
            r#"<OAuthV2 name="V"><Operation>VerifyAccessToken</Operation><AccessToken>request.header.x-token</AccessToken><AccessTokenPrefix></AccessTokenPrefix><Scope>READ  WRITE</Scope>
              <Attributes/><ExternalAuthorization>false</ExternalAuthorization><SupportedGrantTypes/><GenerateResponse enabled="true"/><Tokens/></OAuthV2>"#,
        );
        assert_eq!(
            p.kind,
            PolicyKind::Verify {
                token: Some("request.header.x-token".into()),
                prefix: "".into(),
                scopes: vec!["READ".into(), "WRITE".into()],
            }
        );
        let ignored: Vec<&str> = p.ignored.iter().map(|(e, _)| e.as_str()).collect();
        assert_eq!(ignored, ["<ExternalAuthorization>", "<GenerateResponse>"]);
        for (xml, element, problem) in [
            (r#"<OAuthV2 name="V"/>"#, "<Operation>", "is required"),
            (
                r#"<OAuthV2 name="V"><Operation>GenerateAccessToken</Operation></OAuthV2>"#,
                "<Operation>",
                "the token service does that",
            ),
            (
                r#"<OAuthV2 name="V"><Operation>RefreshAccessToken</Operation></OAuthV2>"#,
                "<Operation>",
                "the token service does that",
            ),
            (
                r#"<OAuthV2 name="V"><Operation>Fly</Operation></OAuthV2>"#,
                "<Operation>",
                "unknown operation \"Fly\"",
            ),
            (
                r#"<OAuthV2 name="V"><Operation>VerifyAccessToken</Operation><AccessToken ref="t"/></OAuthV2>"#,
                "<AccessToken>",
                "the element's text",
            ),
            (
                r#"<OAuthV2 name="V"><Operation>VerifyAccessToken</Operation><AccessToken> </AccessToken></OAuthV2>"#,
                "<AccessToken>",
                "is empty",
            ),
            (
                r#"<OAuthV2 name="V"><Operation>VerifyAccessToken</Operation><AccessToken>{t}</AccessToken></OAuthV2>"#,
                "<AccessToken>",
                "without braces",
            ),
            (
                r#"<OAuthV2 name="V"><Operation>VerifyAccessToken</Operation><AccessTokenPrefix>My Bearer</AccessTokenPrefix></OAuthV2>"#,
                "<AccessTokenPrefix>",
                "one word",
            ),
            (
                r#"<OAuthV2 name="V"><Operation>VerifyAccessToken</Operation><ExternalAuthorization>true</ExternalAuthorization></OAuthV2>"#,
                "<ExternalAuthorization>",
                "did not issue",
            ),
            (
                r#"<OAuthV2 name="V"><Operation>VerifyAccessToken</Operation><Scopes>A</Scopes></OAuthV2>"#,
                "<Scopes>",
                "unknown element",
            ),
            (
                r#"<OAuthV2 name="V"><Operation>VerifyAccessToken</Operation><Scope><A/></Scope></OAuthV2>"#,
                "<Scope>",
                "unexpected element",
            ),
        ] {
            let e = error(xml);
            assert_eq!(e.element, element, "{xml}: {e}");
            assert!(e.problem.contains(problem), "{xml}: {e}");
        }
        let e = error(r#"<VerifyAPIKey name="K"/>"#);
        assert!(e.problem.contains("<OAuthV2> (VerifyAccessToken)"), "{e}");
    }

    #[test]
    fn parses_the_documented_get_sample() {
        let p = get(r#"<GetOAuthV2Info name="GetTokenAttributes">
              <AccessToken ref="request.queryparam.access_token"></AccessToken>
            </GetOAuthV2Info>"#);
        assert_eq!(p.name, "GetTokenAttributes");
        assert!(p.enabled);
        assert!(!p.continue_on_error);
        assert_eq!(
            p.kind,
            PolicyKind::Get {
                kind: TokenKind::AccessToken,
                token: ValueSource {
                    reference: Some("request.queryparam.access_token".into()),
                    literal: None
                },
                ignore_access_token_status: false,
            }
        );
    }

    #[test]
    fn parses_common_attributes_and_every_token_kind() {
        for kind in TokenKind::ALL {
            let xml = format!(
                r#"<GetOAuthV2Info async="false" continueOnError="true" enabled="false" name="P 1.x_y-z">
                     <DisplayName>Shown</DisplayName><{0}>literal-value</{0}></GetOAuthV2Info>"#,
                kind.element()
            );
            let p = get(&xml);
            assert!(p.continue_on_error);
            assert!(!p.enabled);
            assert_eq!(p.display_name.as_deref(), Some("Shown"));
            match p.kind {
                PolicyKind::Get { kind: k, token, .. } => {
                    assert_eq!(k, kind);
                    assert_eq!(token.literal.as_deref(), Some("literal-value"));
                    assert_eq!(token.reference, None);
                }
                _ => panic!("not a Get"),
            }
        }
    }

    #[test]
    fn ignore_access_token_status() {
        let p = get(
            r#"<GetOAuthV2Info name="G"><IgnoreAccessTokenStatus>true</IgnoreAccessTokenStatus><AccessToken ref="x"/></GetOAuthV2Info>"#,
        );
        assert!(matches!(
            p.kind,
            PolicyKind::Get {
                ignore_access_token_status: true,
                ..
            }
        ));
        let e = error(
            r#"<GetOAuthV2Info name="G"><RefreshToken ref="x"/><IgnoreAccessTokenStatus>true</IgnoreAccessTokenStatus></GetOAuthV2Info>"#,
        );
        assert_eq!(e.element, "<IgnoreAccessTokenStatus>");
        let e = error(
            r#"<GetOAuthV2Info name="G"><AccessToken ref="x"/><IgnoreAccessTokenStatus>yes</IgnoreAccessTokenStatus></GetOAuthV2Info>"#,
        );
        assert!(e.problem.contains("true or false"), "{e}");
    }

    #[test]
    fn parses_set_with_ref_literal_and_both() {
        let p = get(r#"<SetOAuthV2Info name="SetOAuthV2Info">
              <AccessToken ref="request.queryparam.access_token"></AccessToken>
              <Attributes>
                <Attribute name="department.id" ref="request.queryparam.department_id"></Attribute>
                <Attribute name="foo">bar</Attribute>
                <Attribute name="both" ref="request.header.x">  fallback  </Attribute>
                <Attribute name="edge" ref="">READ, WRITE</Attribute>
              </Attributes>
            </SetOAuthV2Info>"#);
        let PolicyKind::Set { attributes, .. } = p.kind else {
            panic!("not a Set")
        };
        assert_eq!(attributes.len(), 4);
        assert_eq!(attributes[1].value.literal.as_deref(), Some("bar"));
        assert_eq!(
            attributes[2].value.reference.as_deref(),
            Some("request.header.x")
        );
        assert_eq!(attributes[2].value.literal.as_deref(), Some("fallback"));
        assert_eq!(attributes[3].value.reference, None);
        assert_eq!(attributes[3].value.literal.as_deref(), Some("READ, WRITE"));
    }

    const SET_PREFIX: &str = "<SetOAuthV2Info name='S'><AccessToken ref='t'/><Attributes><Attribute name='a' ref='v'/></Attributes>";

    fn set_with(extra: &str) -> String {
        format!("{SET_PREFIX}{extra}</SetOAuthV2Info>")
    }

    #[test]
    fn ignore_unresolved_variables_in_set() {
        for (text, expected) in [
            ("true", Some(true)),
            (" false ", Some(false)),
            ("TRUE", Some(true)),
        ] {
            let p = get(&set_with(&format!(
                "<IgnoreUnresolvedVariables>{text}</IgnoreUnresolvedVariables>"
            )));
            let PolicyKind::Set {
                ignore_unresolved_variables,
                ..
            } = p.kind
            else {
                panic!("not a Set")
            };
            assert_eq!(ignore_unresolved_variables, expected, "{text:?}");
            assert!(p.ignored.is_empty());
        }
        let PolicyKind::Set {
            ignore_unresolved_variables,
            ..
        } = get(&set_with("")).kind
        else {
            panic!("not a Set")
        };
        assert_eq!(ignore_unresolved_variables, None);
        for (extra, problem) in [
            ("<IgnoreUnresolvedVariables>yes</IgnoreUnresolvedVariables>", "must be true or false, not \"yes\""),
            ("<IgnoreUnresolvedVariables/>", "must be true or false, not \"\""),
            ("<IgnoreUnresolvedVariables>true</IgnoreUnresolvedVariables><IgnoreUnresolvedVariables>true</IgnoreUnresolvedVariables>", "appears more than once"),
            ("<IgnoreUnresolvedVariables x='1'>true</IgnoreUnresolvedVariables>", "unknown attribute x"),
        ] {
            let e = error(&set_with(extra));
            assert_eq!(e.element, "<IgnoreUnresolvedVariables>", "{e}");
            assert!(e.problem.contains(problem), "{e}");
        }
        let e = error(
            "<GetOAuthV2Info name='G'><AccessToken ref='a'/><IgnoreUnresolvedVariables>true</IgnoreUnresolvedVariables></GetOAuthV2Info>",
        );
        assert_eq!(e.element, "<IgnoreUnresolvedVariables>");
        assert!(
            e.problem.contains("applies to <SetOAuthV2Info> only"),
            "{e}"
        );
    }

    /// What Apigee's policy schema and UI allow besides the documented
    /// elements (docs/decisions.md#elements-and-attributes-apigee-accepts):
    /// accepted silently when it says nothing, accepted and reported when
    /// it would have meant something, refused when accepting it would
    /// mislead.
    #[test]
    fn schema_elements_and_attributes_apigee_accepts() {
        let get_with = |inner: &str| {
            format!("<GetOAuthV2Info name='G'><AccessToken ref='a'/>{inner}</GetOAuthV2Info>")
        };
        // Silent: UI residue that carries nothing.
        for doc in [
            get_with("<Properties/>"),
            get_with("<Description>Reads the token</Description>"),
            get_with("<FaultRules/>"),
            set_with("<Properties></Properties><Description/><FaultRules/>"),
        ] {
            assert_eq!(get(&doc).ignored, Vec::<(String, String)>::new(), "{doc}");
        }
        // Accepted, reported at load time.
        let reported = |doc: &str| {
            get(doc)
                .ignored
                .into_iter()
                .map(|(e, what)| format!("{e}: {what}"))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            reported(&get_with(
                "<Properties><Property name='p1'>x</Property><Property name='p2'/></Properties>"
            )),
            ["<Properties>: properties p1, p2 (no documented effect on this policy)"]
        );
        assert_eq!(
            reported(&get_with("<OAuthConfig>cfg</OAuthConfig>")),
            ["<OAuthConfig>: the element (no documented effect)"]
        );
        assert_eq!(
            reported("<GetOAuthV2Info name='G' version='1.0' isHybrid='false'><ClientId ref='c' type='string'/></GetOAuthV2Info>"),
            [
                "<GetOAuthV2Info>: attribute version=\"1.0\" (no documented effect)",
                "<GetOAuthV2Info>: attribute isHybrid=\"false\" (no documented effect)",
                "<ClientId>: attribute type=\"string\" (no documented effect on this policy)",
            ]
        );
        assert_eq!(
            reported("<SetOAuthV2Info name='S'><AccessToken ref='t' type='x'/><Attributes><Attribute name='a' ref='v' display='false'/></Attributes></SetOAuthV2Info>"),
            [
                "<AccessToken>: attribute type=\"x\" (no documented effect on this policy)",
                "<Attribute name=\"a\">: attribute display=\"false\" (no documented effect on this policy)",
            ]
        );
        // Refused, with the reason.
        for (doc, element, problem) in [
            (get_with("<FaultRules><FaultRule name='f'/></FaultRules>"), "<FaultRules>", "never run in Apigee"),
            (get_with("<Properties><Other/></Properties>"), "<Properties>", "only <Property>"),
            (get_with("<Properties><Property>x</Property></Properties>"), "<Properties>", "name attribute is required"),
            (set_with("<OAuthConfig>cfg</OAuthConfig>"), "<OAuthConfig>", "unknown element in <SetOAuthV2Info> (known: <DisplayName>, <AccessToken>, <Attributes>, <IgnoreUnresolvedVariables>, <Description>, <Properties>, <FaultRules>)"),
            (get_with("<Scope/>"), "<Scope>", "unknown element in <GetOAuthV2Info> (known: <DisplayName>, <AccessToken>, <RefreshToken>, <AuthorizationCode>, <ClientId>, <IgnoreAccessTokenStatus>, <Description>, <Properties>, <FaultRules>, <OAuthConfig>)"),
            ("<SetOAuthV2Info name='S'><AccessToken ref='t'/><Attributes><Attribute name='a' ref='v' type='x'/></Attributes></SetOAuthV2Info>".to_string(), "<Attribute name=\"a\">", "unknown attribute type"),
            ("<GetOAuthV2Info name='G'><AccessToken ref='a' display='x'/></GetOAuthV2Info>".to_string(), "<AccessToken>", "unknown attribute display"),
        ] {
            let e = error(&doc);
            assert_eq!(e.element, element, "{doc}: {e}");
            assert!(e.problem.contains(problem), "{doc}: {e}");
        }
    }

    #[test]
    fn configuration_errors_name_policy_element_and_problem() {
        let cases: &[(&str, Option<&str>, &str, &str)] = &[
            ("<Foo name='x'/>", Some("#1"), "<Foo>", "unknown policy type"),
            ("<GetOAuthV2Info><AccessToken ref='a'/></GetOAuthV2Info>", Some("#1"), "<GetOAuthV2Info>", "name attribute is required"),
            ("<GetOAuthV2Info name='a/b'><AccessToken ref='a'/></GetOAuthV2Info>", Some("a/b"), "<GetOAuthV2Info>", "contains '/'"),
            ("<GetOAuthV2Info name='G' bogus='1'><AccessToken ref='a'/></GetOAuthV2Info>", Some("G"), "<GetOAuthV2Info>", "unknown attribute bogus"),
            ("<GetOAuthV2Info name='G' enabled='maybe'><AccessToken ref='a'/></GetOAuthV2Info>", Some("G"), "<GetOAuthV2Info>", "enabled must be true or false"),
            ("<GetOAuthV2Info name='G'/>", Some("G"), "<GetOAuthV2Info>", "found none"),
            ("<GetOAuthV2Info name='G'><AccessToken ref='a'/><ClientId ref='b'/></GetOAuthV2Info>", Some("G"), "<GetOAuthV2Info>", "found <AccessToken>, <ClientId>"),
            ("<GetOAuthV2Info name='G'><AccessToken ref='a'/><AccessToken ref='b'/></GetOAuthV2Info>", Some("G"), "<AccessToken>", "more than once"),
            ("<GetOAuthV2Info name='G'><AccessToken/></GetOAuthV2Info>", Some("G"), "<AccessToken>", "needs a ref"),
            ("<GetOAuthV2Info name='G'><AccessToken ref='{a}'/></GetOAuthV2Info>", Some("G"), "<AccessToken>", "without braces"),
            ("<GetOAuthV2Info name='G'><AccessToken ref='a' other='b'/></GetOAuthV2Info>", Some("G"), "<AccessToken>", "unknown attribute other"),
            ("<GetOAuthV2Info name='G'><AccessToken ref='a'><X/></AccessToken></GetOAuthV2Info>", Some("G"), "<AccessToken>", "unexpected element <X>"),
            ("<GetOAuthV2Info name='G'><AccessToken ref='a'/><Scope/></GetOAuthV2Info>", Some("G"), "<Scope>", "unknown element"),
            ("<SetOAuthV2Info name='S'><Attributes><Attribute name='a'>v</Attribute></Attributes></SetOAuthV2Info>", Some("S"), "<AccessToken>", "is required"),
            ("<SetOAuthV2Info name='S'><AccessToken ref='t'/></SetOAuthV2Info>", Some("S"), "<Attributes>", "is required"),
            ("<SetOAuthV2Info name='S'><AccessToken ref='t'/><Attributes/></SetOAuthV2Info>", Some("S"), "<Attributes>", "at least one"),
            ("<SetOAuthV2Info name='S'><AccessToken ref='t'/><Attributes><Attribute name='scope'>READ</Attribute></Attributes></SetOAuthV2Info>", Some("S"), "<Attribute name=\"scope\">", "standard token field"),
            ("<SetOAuthV2Info name='S'><AccessToken ref='t'/><Attributes><Attribute name='refresh_token_expires_in'>1</Attribute></Attributes></SetOAuthV2Info>", Some("S"), "<Attribute name=\"refresh_token_expires_in\">", "standard token field"),
            ("<SetOAuthV2Info name='S'><AccessToken ref='t'/><Attributes><Attribute>v</Attribute></Attributes></SetOAuthV2Info>", Some("S"), "<Attribute>", "name attribute is required"),
            ("<SetOAuthV2Info name='S'><AccessToken ref='t'/><Attributes><Attribute name='a'/></Attributes></SetOAuthV2Info>", Some("S"), "<Attribute name=\"a\">", "needs a ref"),
            ("<SetOAuthV2Info name='S'><AccessToken ref='t'/><Attributes><Attr name='a'>v</Attr></Attributes></SetOAuthV2Info>", Some("S"), "<Attr>", "only <Attribute>"),
            ("<SetOAuthV2Info name='S'><AccessToken ref='t'/><Attributes><Attribute name='a'>v</Attribute></Attributes><IgnoreAccessTokenStatus>true</IgnoreAccessTokenStatus></SetOAuthV2Info>", Some("S"), "<IgnoreAccessTokenStatus>", "unknown element"),
            ("<GetOAuthV2Info name='G'><AccessToken ref='a'/>", Some("#1"), "document", "malformed XML"),
        ];
        for (xml, policy, element, problem) in cases {
            let e = error(xml);
            assert_eq!(e.policy.as_deref(), *policy, "{xml}: {e}");
            assert_eq!(e.element, *element, "{xml}: {e}");
            assert!(e.problem.contains(problem), "{xml}: {e}");
        }
    }

    #[test]
    fn long_names_are_refused() {
        let long = "a".repeat(256);
        let e = error(&format!(
            "<GetOAuthV2Info name='{long}'><AccessToken ref='a'/></GetOAuthV2Info>"
        ));
        assert!(e.problem.contains("longer than 255"));
        let ok = "a".repeat(255);
        assert_eq!(
            get(&format!(
                "<GetOAuthV2Info name='{ok}'><AccessToken ref='a'/></GetOAuthV2Info>"
            ))
            .name,
            ok
        );
    }

    #[test]
    fn references_lists_every_ref() {
        let p = get(
            r#"<SetOAuthV2Info name="S"><AccessToken ref="t"/><Attributes>
            <Attribute name="a" ref="x"/><Attribute name="b">lit</Attribute></Attributes></SetOAuthV2Info>"#,
        );
        let refs: Vec<&str> = p.references().into_iter().map(|(_, r)| r).collect();
        assert_eq!(refs, vec!["t", "x"]);
    }
}
