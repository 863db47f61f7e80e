//! The Apigee policies, one module each: its XML elements and parsing,
//! its compiled plan and run step, its status rules, the variables it sets
//! and what the checker says of it (docs/configuration.md#policies-required,
//! the element table in the README). [`elements`] holds the element
//! readers they share; this module the parts every policy has (the root
//! element's attributes, `<DisplayName>`, `<Properties>`...) and the one
//! dispatch over them, [`policies!`].
//!
//! A new policy is a new module implementing [`ApigeePolicy`] (what is
//! parsed and compiled) and [`PolicyRun`] (what runs), and one line in
//! [`policies!`].

use std::borrow::Cow;
use std::ops::Range;

use oauthv2info_names::variables::{self, Suffix};
use oauthv2info_names::{Fault, TokenKind};

use crate::catalog::CatalogVar;
use crate::config::FilterConfig;
use crate::error::ConfigError;
use crate::flow::{Flow, Pending};
use crate::plan::{Output, PolicyPlan, ValueRef, Var, VarRef};
use crate::profile::products::{ProductAt, ProductCheck};
use crate::profile::Lookup;
use crate::publish::Publish;
use crate::request::RequestInfo;
use crate::xml;

pub(crate) mod assign_message;
pub(crate) mod elements;
pub(crate) mod get;
pub(crate) mod message;
pub(crate) mod raise_fault;
pub(crate) mod set;
pub(crate) mod verify;
pub(crate) mod verify_api_key;

pub(crate) use assign_message::AssignMessage;
pub(crate) use elements::ValueSource;
use elements::{expect_leaf, parse_bool, properties, truncate, validate_policy_name, Reader};
pub(crate) use get::GetOAuthV2Info;
pub(crate) use raise_fault::RaiseFault;
pub(crate) use set::SetOAuthV2Info;
pub(crate) use verify::VerifyAccessToken;
pub(crate) use verify_api_key::VerifyApiKey;

/// The one dispatch: each policy type, the variant naming it and its
/// module's type. Adding a policy adds a line here.
macro_rules! policies {
    ($($variant:ident($policy:ty)),+ $(,)?) => {
        /// What a policy is, as parsed: one variant per policy type.
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub(crate) enum PolicyKind {
            $($variant($policy)),+
        }

        /// What a policy does at run time, compiled: one variant per
        /// policy type.
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub(crate) enum PolicyAction {
            $($variant(<$policy as ApigeePolicy>::Run)),+
        }

        impl PolicyKind {
            /// Parses the policy type the root element names; `None`: an
            /// unknown root element.
            fn parse(reader: &mut Reader<'_>) -> Option<Result<PolicyKind, ConfigError>> {
                $(if reader.root.name == <$policy as ApigeePolicy>::ROOT {
                    return Some(<$policy as ApigeePolicy>::parse(reader).map(PolicyKind::$variant));
                })+
                None
            }

            /// The children the policy type named `root` accepts, and its
            /// hint for an element it does not.
            fn elements(root: &str) -> Option<(&'static [&'static str], fn(&str) -> Option<&'static str>)> {
                $(if root == <$policy as ApigeePolicy>::ROOT {
                    return Some((<$policy as ApigeePolicy>::ELEMENTS, <$policy as ApigeePolicy>::misplaced));
                })+
                None
            }

            /// A problem found before the elements are checked, that says
            /// more than "unknown element" would: (element, problem).
            fn precheck(root: &xml::Element) -> Option<(&'static str, String)> {
                $(if root.name == <$policy as ApigeePolicy>::ROOT {
                    return <$policy as ApigeePolicy>::precheck(root);
                })+
                None
            }

            /// The known policy types, for the error on an unknown one.
            fn known() -> Vec<&'static str> {
                vec![$(<$policy as ApigeePolicy>::SHOWN),+]
            }

            /// The policy type, as its XML root element is named.
            pub(crate) fn type_name(&self) -> &'static str {
                match self { $(PolicyKind::$variant(_) => <$policy as ApigeePolicy>::ROOT),+ }
            }

            fn references<'a>(&'a self, refs: &mut Vec<(String, &'a str)>) {
                match self { $(PolicyKind::$variant(p) => p.references(refs)),+ }
            }

            pub(crate) fn compile(&self, at: &CompileContext<'_>) -> Compiled<PolicyAction> {
                match self { $(PolicyKind::$variant(p) => p.compile(at).map(PolicyAction::$variant)),+ }
            }

            pub(crate) fn success_variables(&self, policy: &str, out: &mut Vec<CatalogVar>) {
                match self { $(PolicyKind::$variant(p) => p.success_variables(policy, out)),+ }
            }

            fn describe(&self) -> String {
                match self { $(PolicyKind::$variant(p) => p.describe()),+ }
            }
        }

        impl PolicyAction {
            #[inline]
            pub(crate) fn variable_prefix(&self) -> Option<&'static str> {
                match self { $(PolicyAction::$variant(r) => r.variable_prefix()),+ }
            }
            #[inline]
            pub(crate) fn attribute_segment(&self) -> &'static str {
                match self { $(PolicyAction::$variant(r) => r.attribute_segment()),+ }
            }
            pub(crate) fn faultstring(&self, fault: Fault) -> &str {
                match self { $(PolicyAction::$variant(r) => r.faultstring(fault)),+ }
            }
            pub(crate) fn fault_body(&self, fault: Fault) -> Cow<'_, str> {
                match self { $(PolicyAction::$variant(r) => r.fault_body(fault)),+ }
            }
            #[inline]
            pub(crate) fn unresolved_token_faults(&self) -> bool {
                match self { $(PolicyAction::$variant(r) => r.unresolved_token_faults()),+ }
            }
            #[inline]
            pub(crate) fn token_in(&self, value: &str, range: Range<usize>) -> Option<Range<usize>> {
                match self { $(PolicyAction::$variant(r) => r.token_in(value, range)),+ }
            }
            #[inline]
            pub(crate) fn missing_fault(&self, kind: TokenKind) -> Fault {
                match self { $(PolicyAction::$variant(r) => r.missing_fault(kind)),+ }
            }
            #[inline]
            pub(crate) fn reuses_lookup(&self) -> bool {
                match self { $(PolicyAction::$variant(r) => r.reuses_lookup()),+ }
            }
            #[inline]
            pub(crate) fn check(&self, kind: TokenKind, lookup: Lookup<'_>, now_ms: i64) -> Result<(), Fault> {
                match self { $(PolicyAction::$variant(r) => r.check(kind, lookup, now_ms)),+ }
            }
            pub(crate) fn verify(
                &self,
                kind: TokenKind,
                lookup: Lookup<'_>,
                now_ms: i64,
                check: &mut ProductCheck<'_>,
            ) -> Result<Option<ProductAt>, Fault> {
                match self { $(PolicyAction::$variant(r) => r.verify(kind, lookup, now_ms, check)),+ }
            }
            pub(crate) fn bare_attribute_reads(&self) -> bool {
                match self { $(PolicyAction::$variant(r) => r.bare_attribute_reads()),+ }
            }
            #[inline]
            pub(crate) fn checks_products(&self) -> bool {
                match self { $(PolicyAction::$variant(r) => r.checks_products()),+ }
            }
            #[inline]
            pub(crate) fn pending(
                &self,
                flow: &mut Flow,
                config: &FilterConfig,
                request: &RequestInfo,
                kind: TokenKind,
                token: Range<usize>,
            ) -> Result<Pending, Fault> {
                match self { $(PolicyAction::$variant(r) => r.pending(flow, config, request, kind, token)),+ }
            }
            pub(crate) fn values(&self, each: &mut dyn FnMut(&VarRef)) {
                match self { $(PolicyAction::$variant(r) => r.values(each)),+ }
            }
            pub(crate) fn values_mut(&mut self, each: &mut dyn FnMut(&mut VarRef)) {
                match self { $(PolicyAction::$variant(r) => r.values_mut(each)),+ }
            }
            #[inline]
            pub(crate) fn raises(&self) -> Option<Fault> {
                match self { $(PolicyAction::$variant(r) => r.raises()),+ }
            }
            pub(crate) fn fault_prefix(&self) -> &'static str {
                match self { $(PolicyAction::$variant(r) => r.fault_prefix()),+ }
            }
            pub(crate) fn handle(&self, reply: &mut message::Reply, read: &mut message::Read<'_>) -> bool {
                match self { $(PolicyAction::$variant(r) => r.handle(reply, read)),+ }
            }
        }
    };
}

policies! {
    Get(GetOAuthV2Info),
    Set(SetOAuthV2Info),
    Verify(VerifyAccessToken),
    VerifyKey(VerifyApiKey),
    Raise(RaiseFault),
    Assign(AssignMessage),
}

/// A policy type: its XML, parsed and compiled.
pub(crate) trait ApigeePolicy: Sized {
    /// The root element's name.
    const ROOT: &'static str;
    /// How the error on an unknown policy type names it.
    const SHOWN: &'static str;
    /// The children it accepts (docs/configuration.md#policies-required).
    const ELEMENTS: &'static [&'static str];
    /// What it does at run time, compiled.
    type Run: PolicyRun;

    /// A hint for an element this policy does not accept, when another
    /// policy does.
    fn misplaced(_element: &str) -> Option<&'static str> {
        None
    }
    /// A problem that makes the element check moot (an OAuthV2 operation
    /// the filter does not run, whose elements it does not know): (element,
    /// problem).
    fn precheck(_root: &xml::Element) -> Option<(&'static str, String)> {
        None
    }
    /// Reads the policy's own elements (the shared ones are read already).
    fn parse(reader: &mut Reader<'_>) -> Result<Self, ConfigError>;
    /// Every `ref`, with the element it appears on.
    fn references<'a>(&'a self, refs: &mut Vec<(String, &'a str)>);
    fn compile(&self, at: &CompileContext<'_>) -> Compiled<Self::Run>;
    /// The variables it sets on success, for the catalog (docs/variables.md).
    fn success_variables(&self, policy: &str, out: &mut Vec<CatalogVar>);
    /// What it does, in one line, for the checker.
    fn describe(&self) -> String;
}

/// A policy's run step: from its token to what the flow waits for, and the
/// status rules of what the token service answers.
pub(crate) trait PolicyRun {
    /// The prefix of its variables; `None` when they have none.
    fn variable_prefix(&self) -> Option<&'static str>;
    /// What follows `prefix.P.` in its custom attributes' variables.
    fn attribute_segment(&self) -> &'static str;
    /// The fault string of `fault` as this policy raises it.
    fn faultstring(&self, fault: Fault) -> &str {
        fault.faultstring()
    }
    /// The reply body of `fault` as this policy raises it (built on the
    /// fault path, by the one builder, unless the plan holds its own).
    fn fault_body(&self, fault: Fault) -> Cow<'_, str> {
        Cow::Owned(fault_body(fault.faultstring(), fault.errorcode()))
    }
    /// A token ref that resolves to nothing is a fault of its own
    /// (`UnresolvedVariable`), not a missing token.
    fn unresolved_token_faults(&self) -> bool {
        false
    }
    /// Where the token lies in the resolved (non-empty) `value`, which
    /// lies at `range` in the flow's arena: all of it, unless the policy
    /// strips something.
    #[inline]
    fn token_in(&self, _value: &str, range: Range<usize>) -> Option<Range<usize>> {
        Some(range)
    }
    /// The fault when there is no token.
    #[inline]
    fn missing_fault(&self, kind: TokenKind) -> Fault {
        kind.invalid_fault()
    }
    /// A token an earlier policy of the request found is not looked up
    /// again.
    fn reuses_lookup(&self) -> bool {
        true
    }
    /// The status rules for a lookup of the token.
    fn check(&self, kind: TokenKind, lookup: Lookup<'_>, now_ms: i64) -> Result<(), Fault>;
    /// The status rules and, for the policies that authorize a call
    /// ([`PolicyRun::checks_products`]), the API-product check of `check`:
    /// the matching product's place, if one was checked.
    #[inline]
    fn verify(
        &self,
        kind: TokenKind,
        lookup: Lookup<'_>,
        now_ms: i64,
        _check: &mut ProductCheck<'_>,
    ) -> Result<Option<ProductAt>, Fault> {
        self.check(kind, lookup, now_ms).map(|()| None)
    }
    /// A ref `prefix.P.{name}` that names no variable of the policy reads
    /// the custom attribute `{name}` (VerifyAPIKey's app attributes, which
    /// Apigee also shows without their `app.` segment).
    fn bare_attribute_reads(&self) -> bool {
        false
    }
    /// True for the policies that check the app's API products
    /// (VerifyAccessToken, VerifyAPIKey): a request captures its path
    /// suffix and verb for them.
    #[inline]
    fn checks_products(&self) -> bool {
        false
    }
    /// What the flow asks the token service (or the cache) for.
    #[inline]
    fn pending(
        &self,
        _flow: &mut Flow,
        _config: &FilterConfig,
        _request: &RequestInfo,
        kind: TokenKind,
        token: Range<usize>,
    ) -> Result<Pending, Fault> {
        Ok(Pending::Lookup { kind, token })
    }
    /// The refs it reads besides its token.
    fn values(&self, _each: &mut dyn FnMut(&VarRef)) {}
    fn values_mut(&mut self, _each: &mut dyn FnMut(&mut VarRef)) {}
    /// The hook for a policy that resolves no token (RaiseFault): the
    /// fault it raises as soon as it runs, before any token is resolved.
    #[inline]
    fn raises(&self) -> Option<Fault> {
        None
    }
    /// The prefix of its fault variables (`oauthV2.P.failed`...).
    fn fault_prefix(&self) -> &'static str {
        variables::POLICY_PREFIX
    }
    /// As a step of a fault rule: changes the reply being built; true when
    /// it raises a fault there (RaiseFault).
    fn handle(&self, _reply: &mut message::Reply, _read: &mut message::Read<'_>) -> bool {
        false
    }
}

/// The API-product check (docs/decisions.md#api-products): `Ok(None)`
/// when the lookup carried no products (a plain RFC 7662 server), the
/// matching product's place, or `fault` when none allows the call (an
/// empty list allows nothing).
#[inline]
pub(crate) fn check_products(
    profile: &crate::profile::ProfileRef<'_>,
    check: &mut ProductCheck<'_>,
    fault: Fault,
) -> Result<Option<ProductAt>, Fault> {
    if !profile.has_products() {
        return Ok(None);
    }
    check.find(profile.products_span()).map(Some).ok_or(fault)
}

/// A fault's reply body with a fault string the policy's plan holds (one
/// that names its scopes, its ref or its name), its members in their
/// documented order: the one builder of such bodies.
pub(crate) fn fault_body(faultstring: &str, errorcode: &str) -> String {
    let mut body = String::from(r#"{"fault":{"faultstring":""#);
    crate::template::escape_json(faultstring, &mut body);
    body.push_str(r#"","detail":{"errorcode":""#);
    body.push_str(errorcode);
    body.push_str(r#""}}}"#);
    body
}

/// What compiling a policy knows: its name, the policies before it, and
/// the configuration's `publish`.
pub(crate) struct CompileContext<'a> {
    pub(crate) name: &'a str,
    pub(crate) earlier: &'a [PolicyPlan],
    pub(crate) publish: &'a Publish,
    pub(crate) export_secrets: bool,
}

impl CompileContext<'_> {
    /// The standard variables of `list` without a prefix (as
    /// VerifyAccessToken's).
    pub(crate) fn bare_outputs(&self, list: &[Suffix]) -> Vec<Output> {
        list.iter()
            .map(|s| Output {
                var: Var::new(
                    s.name.to_string(),
                    s.secret,
                    self.publish,
                    self.export_secrets,
                ),
                source: s.source,
            })
            .collect()
    }

    /// The standard variables `prefix.P.suffix` of `list`.
    pub(crate) fn outputs(&self, prefix: &str, list: &[Suffix]) -> Vec<Output> {
        list.iter()
            .map(|s| Output {
                var: Var::new(
                    variables::name(prefix, self.name, s.name),
                    s.secret,
                    self.publish,
                    self.export_secrets,
                ),
                source: s.source,
            })
            .collect()
    }
}

/// A policy, compiled: its run step and what the shared plan needs.
pub(crate) struct Compiled<R> {
    pub(crate) run: R,
    /// The kind looked up (an access token for SetOAuthV2Info).
    pub(crate) kind: TokenKind,
    pub(crate) token: ValueRef,
    /// The standard variables, in the order they are set.
    pub(crate) outputs: Vec<Output>,
    pub(crate) attribute_prefix: String,
    /// Custom attributes have no prefix segment, so a name can be a
    /// standard variable's.
    pub(crate) bare_attributes: bool,
    /// Custom attributes it sets, known at load time.
    pub(crate) known_attributes: Vec<String>,
}

impl<R> Compiled<R> {
    fn map<S>(self, f: impl FnOnce(R) -> S) -> Compiled<S> {
        Compiled {
            run: f(self.run),
            kind: self.kind,
            token: self.token,
            outputs: self.outputs,
            attribute_prefix: self.attribute_prefix,
            bare_attributes: self.bare_attributes,
            known_attributes: self.known_attributes,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub name: String,
    pub(crate) display_name: Option<String>,
    pub(crate) continue_on_error: bool,
    pub enabled: bool,
    pub(crate) kind: PolicyKind,
    /// What Apigee's policy schema allows that has no effect here, accepted
    /// and ignored: (element, what was ignored), for the load-time log.
    pub(crate) ignored: Vec<(String, String)>,
}

impl Policy {
    /// The policy type, as its XML root element is named.
    pub fn type_name(&self) -> &'static str {
        self.kind.type_name()
    }

    /// Every `ref` of the policy, with the element it appears on.
    pub(crate) fn references(&self) -> Vec<(String, &str)> {
        let mut refs = Vec::new();
        self.kind.references(&mut refs);
        refs
    }

    /// True for the policies that check the app's API products.
    pub fn checks_products(&self) -> bool {
        matches!(self.kind, PolicyKind::Verify(_) | PolicyKind::VerifyKey(_))
    }

    /// What the policy does, in one line (for the checker).
    pub fn describe(&self) -> String {
        let mut text = self.kind.describe();
        if !self.enabled {
            text.push_str(" [enabled=\"false\": skipped, sets nothing]");
        } else if self.continue_on_error {
            text.push_str(" [continueOnError: a fault does not end the request]");
        }
        text
    }
}

/// Parses one policy document. `index` is the policy's position in
/// the configuration, used to name it in errors when it has no usable name.
pub fn parse_policy(document: &str, index: usize) -> Result<Policy, ConfigError> {
    let unnamed = || format!("#{}", index + 1);
    let root = xml::parse(document)
        .map_err(|problem| ConfigError::policy(unnamed(), "document", problem))?;

    let Some((known, misplaced)) = PolicyKind::elements(&root.name) else {
        let known = PolicyKind::known();
        let (last, rest) = known.split_last().map_or((&"", &[][..]), |(l, r)| (l, r));
        return Err(ConfigError::policy(
            unnamed(),
            format!("<{}>", root.name),
            format!(
                "unknown policy type: expected {} or {last}",
                rest.join(", ")
            ),
        ));
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

    let mut ignored: Vec<(String, String)> = Vec::new();
    let (continue_on_error, enabled) = root_attributes(&root, &name, &mut ignored)?;
    let err = |element: &str, problem: String| ConfigError::policy(&name, element, problem);
    if !root.text.trim().is_empty() {
        return Err(err(
            &root_element,
            format!("unexpected text {:?}", truncate(root.text.trim())),
        ));
    }

    if let Some((element, problem)) = PolicyKind::precheck(&root) {
        return Err(err(element, problem));
    }
    let display_name = shared_children(&root, &name, known, misplaced, &mut ignored)?;

    let mut reader = Reader {
        root: &root,
        policy: &name,
        ignored: &mut ignored,
    };
    let kind = match PolicyKind::parse(&mut reader) {
        Some(kind) => kind?,
        None => return Err(err(&root_element, "unknown policy type".to_string())),
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

/// The root element's attributes: `continueOnError` and `enabled`; the
/// others Apigee's schema allows are checked and ignored.
fn root_attributes(
    root: &xml::Element,
    name: &str,
    ignored: &mut Vec<(String, String)>,
) -> Result<(bool, bool), ConfigError> {
    let root_element = format!("<{}>", root.name);
    let err = |element: &str, problem: String| ConfigError::policy(name, element, problem);
    let mut continue_on_error = false;
    let mut enabled = true;
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
    Ok((continue_on_error, enabled))
}

/// The children every policy shares (`<DisplayName>`, `<Description>`,
/// `<Properties>`, `<FaultRules>`...), and the check that each child is
/// one the policy type accepts (`known`), at most once. Answers the
/// display name.
fn shared_children(
    root: &xml::Element,
    name: &str,
    known: &[&str],
    misplaced: fn(&str) -> Option<&'static str>,
    ignored: &mut Vec<(String, String)>,
) -> Result<Option<String>, ConfigError> {
    let err = |element: &str, problem: String| ConfigError::policy(name, element, problem);
    let mut display_name = None;
    let mut seen: Vec<&str> = Vec::new();
    for child in &root.children {
        let element = format!("<{}>", child.name);
        // The Apigee UI writes `<Properties/>` twice at times: an empty
        // one again says nothing.
        let empty_meta = matches!(child.name.as_str(), "Properties" | "Description")
            && child.children.is_empty()
            && child.text.trim().is_empty()
            && child.attributes.is_empty();
        if seen.contains(&child.name.as_str()) {
            // The same leaf written twice (real bundles have it) says the
            // same thing twice: accepted, with a warning.
            let first = root.children.iter().find(|c| c.name == child.name);
            let same = first.is_some_and(|f| {
                f.children.is_empty()
                    && child.children.is_empty()
                    && f.attributes == child.attributes
                    && f.text.trim() == child.text.trim()
            });
            if same && !empty_meta {
                ignored.push((
                    element.clone(),
                    "a second copy with the same value".to_string(),
                ));
            }
            if !same {
                return Err(err(&element, "appears more than once".to_string()));
            }
            continue;
        }
        seen.push(&child.name);
        if !known.contains(&child.name.as_str()) {
            if let Some(problem) = misplaced(&child.name) {
                return Err(err(&element, problem.to_string()));
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
                        "fault rules inside a policy never run in Apigee; the ProxyEndpoint's rules go in fault_handling (docs/faults.md#fault-rules)"
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

    Ok(display_name)
}

#[cfg(test)]
mod tests;
