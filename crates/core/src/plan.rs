//! The compiled form of the policies: built once when Envoy loads the
//! configuration, so that a request does no name building, no pattern
//! matching and no string search for what is known at load time.
//!
//! For each policy, the variables it can set, in the order it sets them,
//! each with its full name, where its value comes from, whether it is
//! published and through which internal header (docs/configuration.md#publish);
//! every `ref` resolved to what sets it ([`VarRef`]).

use oauthv2info_names::variables::{self, Source, FAULT_NAME};
use oauthv2info_names::{Fault, TokenKind};

use crate::condition::Condition;
use crate::policies::{CompileContext, Policy, PolicyAction, ValueSource};
use crate::publish::{Family, Publish};
use crate::request::RequestVar;

/// A variable with a name known at load time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Var {
    pub(crate) name: String,
    /// Reaches filter state and dynamic metadata.
    pub(crate) published: bool,
    /// The internal header that carries it to `header_to_metadata`
    /// (`metadata_bridge: "header_to_metadata"`), an index into
    /// [`crate::config::MetadataPlan::headers`].
    pub(crate) header: Option<u16>,
    /// The name as a netstring, ready for the Lua bridge's entry.
    pub(crate) bridge_key: Vec<u8>,
}

impl Var {
    pub fn new(name: String, secret: bool, publish: &Publish, export_secrets: bool) -> Var {
        let mut bridge_key = Vec::with_capacity(name.len() + 6);
        crate::publish::push_netstring(&mut bridge_key, name.as_bytes());
        Var {
            published: (export_secrets || !secret) && publish.matches(&name),
            name,
            header: None,
            bridge_key,
        }
    }
}

/// One standard variable of a policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Output {
    pub(crate) var: Var,
    pub(crate) source: Source,
}

/// A policy, compiled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyPlan {
    pub(crate) name: String,
    pub(crate) enabled: bool,
    pub(crate) continue_on_error: bool,
    pub(crate) action: PolicyAction,
    /// The kind looked up (an access token for SetOAuthV2Info).
    pub(crate) kind: TokenKind,
    pub(crate) token: ValueRef,
    /// The standard variables, in the order they are set.
    pub(crate) outputs: Vec<Output>,
    /// How many of `outputs`, at its end, are the matching API product's
    /// (`apiproduct.*`): a result without a product skips them.
    pub(crate) product_outputs: usize,
    /// How many of `outputs`, at its very end, are the quota's
    /// (`apiproduct.developer.quota.*`): a match whose quota has no
    /// setting skips them.
    pub(crate) quota_outputs: usize,
    /// The prefix of the custom-attribute variables:
    /// `oauthv2accesstoken.P.accesstoken.`, `oauthv2authcode.P.`, ...
    pub(crate) attribute_prefix: String,
    /// Which custom attributes are published.
    pub(crate) attributes_published: Family,
    /// Custom attributes have no prefix segment (`oauthv2authcode.P.{name}`),
    /// so a name can be a standard variable's.
    pub(crate) bare_attributes: bool,
    /// Custom attributes whose names are known at load time (set by this
    /// policy, mapped to a header, read by a later policy, or named by a
    /// `publish` pattern), with their variable: these can have internal
    /// headers.
    pub(crate) known_attributes: Vec<(String, Var)>,
    /// The prefix of the matching API product's attributes
    /// (`apiproduct.`, `verifyapikey.P.apiproduct.`); empty for a policy
    /// that checks no product.
    pub(crate) product_prefix: String,
    /// Which product attributes (`{product_prefix}{name}`), and which
    /// operation attributes (`{product_prefix}operation.attributes.{name}`),
    /// are published.
    pub(crate) product_attributes_published: Family,
    pub(crate) operation_attributes_published: Family,
    pub(crate) failed: Var,
    pub(crate) fault_name: Var,
    pub(crate) fault_cause: Var,
}

impl PolicyPlan {
    /// The custom attribute named `name` (an attribute of this policy's
    /// result), when `suffix` (after `prefix.P.`) names one.
    fn attribute_of<'a>(&self, suffix: &'a str) -> Option<&'a str> {
        suffix
            .strip_prefix(self.action.attribute_segment())
            .filter(|n| !n.is_empty())
    }

    /// The product attribute a suffix (after `prefix.P.`, or the whole
    /// name for VerifyAccessToken) names: (operation attribute, name).
    fn product_attribute_of<'a>(&self, suffix: &'a str) -> Option<(bool, &'a str)> {
        if self.product_prefix.is_empty() {
            return None;
        }
        let rest = suffix.strip_prefix(variables::PRODUCT_ATTRIBUTE_SEGMENT)?;
        match rest.strip_prefix("operation.attributes.") {
            Some(name) if !name.is_empty() => Some((true, name)),
            _ if rest.is_empty()
                || rest.starts_with("operation")
                || variables::is_standard_product_suffix(rest.as_bytes()) =>
            {
                None
            }
            _ => Some((false, rest)),
        }
    }

    /// The prefix of the policy's variables; `None` for VerifyAccessToken,
    /// whose variables have none.
    fn prefix(&self) -> Option<&'static str> {
        self.action.variable_prefix()
    }

    /// The fault string of `fault` as this policy raises it.
    pub(crate) fn faultstring(&self, fault: Fault) -> &str {
        self.action.faultstring(fault)
    }

    /// The reply body of `fault` as this policy raises it.
    pub fn fault_body(&self, fault: Fault) -> std::borrow::Cow<'_, str> {
        self.action.fault_body(fault)
    }
}

/// A step's `<Condition>`, compiled: the policy runs only when it holds.
#[derive(Debug, Clone)]
pub struct StepCondition {
    /// As written (for the checker and log lines).
    pub text: String,
    pub condition: Condition,
    /// What each of [`Condition::variables`] reads, by the same index.
    pub(crate) reads: Vec<VarRef>,
}

/// Where a value comes from (`ref` and literal text), compiled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ValueRef {
    pub(crate) reference: Option<VarRef>,
    pub(crate) literal: Option<String>,
}

/// What a `ref` reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum VarRef {
    Request(RequestVar),
    /// A standard variable of an earlier policy (index into its outputs);
    /// when `or_attribute` is given and the standard value is absent, the
    /// custom attribute of that name (kinds whose attributes have no
    /// prefix segment, where a name can be either).
    Output {
        policy: usize,
        output: usize,
        or_attribute: Option<String>,
    },
    /// A custom attribute of an earlier policy's result.
    Attribute {
        policy: usize,
        name: String,
    },
    /// A custom attribute of the API product (or of its operation
    /// configuration) that allowed an earlier policy's call.
    ProductAttribute {
        policy: usize,
        name: String,
        operation: bool,
    },
    Failed {
        policy: usize,
    },
    FaultName {
        policy: usize,
    },
    FaultCause {
        policy: usize,
    },
    /// `fault.name`: the last fault of the request.
    LastFault,
    /// Nothing sets it (a load-time warning says so).
    Unset,
}

impl VarRef {
    /// Resolves a variable name against the request variables and the
    /// policies that run before (`earlier`).
    pub(crate) fn resolve(name: &str, earlier: &[PolicyPlan]) -> VarRef {
        if let Some(var) = RequestVar::parse(name) {
            return VarRef::Request(var);
        }
        if name == FAULT_NAME {
            return if earlier.iter().any(|p| p.enabled) {
                VarRef::LastFault
            } else {
                VarRef::Unset
            };
        }
        // VerifyAccessToken's variables have no prefix: bound to the last
        // earlier VerifyAccessToken here; at run time they are read from the
        // last one that succeeded, which may be another (flow/mod.rs, `bound`).
        let verified = earlier
            .iter()
            .enumerate()
            .rev()
            .find(|(_, p)| p.enabled && p.prefix().is_none() && p.action.raises().is_none());
        // VerifyAPIKey's bare variables (`client_id`, `apiproduct.name`...):
        // bound to the last earlier VerifyAPIKey when it comes after the
        // last VerifyAccessToken.
        let keyed = earlier.iter().enumerate().rev().find_map(|(policy, p)| {
            if !p.enabled || p.prefix().is_none_or(|prefix| name.starts_with(prefix)) {
                return None;
            }
            Some((policy, p.outputs.iter().position(|o| o.var.name == name)?))
        });
        if let Some((policy, output)) = keyed {
            if verified.is_none_or(|(v, _)| v < policy) {
                return VarRef::Output {
                    policy,
                    output,
                    or_attribute: None,
                };
            }
        }
        if let Some((policy, plan)) = verified {
            if let Some(output) = plan.outputs.iter().position(|o| o.var.name == name) {
                return VarRef::Output {
                    policy,
                    output,
                    or_attribute: None,
                };
            }
            if let Some(attr) = plan.attribute_of(name) {
                return VarRef::Attribute {
                    policy,
                    name: attr.to_string(),
                };
            }
            if let Some((operation, attr)) = plan.product_attribute_of(name) {
                return VarRef::ProductAttribute {
                    policy,
                    name: attr.to_string(),
                    operation,
                };
            }
        }
        for (policy, plan) in earlier.iter().enumerate().filter(|(_, p)| p.enabled) {
            if let Some(suffix) = variables::suffix_of(name, plan.action.fault_prefix(), &plan.name)
            {
                match suffix {
                    "failed" => return VarRef::Failed { policy },
                    "fault.name" => return VarRef::FaultName { policy },
                    "fault.cause" => return VarRef::FaultCause { policy },
                    _ => {}
                }
            }
            let Some(suffix) = plan
                .prefix()
                .and_then(|prefix| variables::suffix_of(name, prefix, &plan.name))
            else {
                continue;
            };
            let standard = plan.outputs.iter().position(|o| o.var.name == name);
            let attribute = plan.attribute_of(suffix);
            match (standard, attribute) {
                (Some(output), attr) => {
                    return VarRef::Output {
                        policy,
                        output,
                        or_attribute: attr.map(String::from),
                    }
                }
                (None, Some(attr)) => {
                    return VarRef::Attribute {
                        policy,
                        name: attr.to_string(),
                    }
                }
                (None, None) => {
                    if let Some((operation, attr)) = plan.product_attribute_of(suffix) {
                        return VarRef::ProductAttribute {
                            policy,
                            name: attr.to_string(),
                            operation,
                        };
                    }
                    // VerifyAPIKey: an app's attribute also reads without
                    // its `app.` segment (`verifyapikey.P.{name}`).
                    if plan.action.bare_attribute_reads() {
                        return VarRef::Attribute {
                            policy,
                            name: suffix.to_string(),
                        };
                    }
                }
            }
        }
        VarRef::Unset
    }

    /// The request variable this reads, if it reads one.
    pub(crate) fn request(&self) -> Option<&RequestVar> {
        match self {
            VarRef::Request(var) => Some(var),
            _ => None,
        }
    }
}

impl ValueRef {
    pub(crate) fn compile(source: &ValueSource, earlier: &[PolicyPlan]) -> ValueRef {
        ValueRef {
            reference: source
                .reference
                .as_deref()
                .map(|r| VarRef::resolve(r, earlier)),
            literal: source.literal.clone(),
        }
    }
}

/// Compiles a policy; `earlier` are the policies before it.
pub(crate) fn compile(
    policy: &Policy,
    earlier: &[PolicyPlan],
    publish: &Publish,
    export_secrets: bool,
) -> PolicyPlan {
    let name = &policy.name;
    let compiled = policy.kind.compile(&CompileContext {
        name,
        earlier,
        publish,
        export_secrets,
    });
    // Custom attributes are never secrets.
    let attributes_published = publish.family(&compiled.attribute_prefix);
    // `oauthV2.P.failed`..., or the policy type's own prefix (RaiseFault's
    // `raisefault.P.failed`).
    let fault_prefix = compiled.run.fault_prefix();
    let fault_var = |suffix: &str| {
        Var::new(
            variables::name(fault_prefix, name, suffix),
            false,
            publish,
            export_secrets,
        )
    };
    // The matching product's attributes: `apiproduct.{name}` for
    // VerifyAccessToken, `verifyapikey.P.apiproduct.{name}` for VerifyAPIKey.
    let product_prefix = if compiled.run.checks_products() {
        match compiled.run.variable_prefix() {
            Some(p) => format!("{p}.{name}.{}", variables::PRODUCT_ATTRIBUTE_SEGMENT),
            None => variables::PRODUCT_ATTRIBUTE_SEGMENT.to_string(),
        }
    } else {
        String::new()
    };
    let (product_attributes_published, operation_attributes_published) =
        if product_prefix.is_empty() {
            (Family::None, Family::None)
        } else {
            // A standard variable named exactly (`apiproduct.name`,
            // `apiproduct.developer.quota.limit`) is published as itself,
            // not as a product attribute.
            let standard = |n: &str| compiled.outputs.iter().any(|o| o.var.name == n);
            (
                publish.family_except(&product_prefix, standard),
                publish.family(&format!("{product_prefix}operation.attributes.")),
            )
        };
    let mut plan = PolicyPlan {
        name: name.clone(),
        enabled: policy.enabled,
        continue_on_error: policy.continue_on_error,
        action: compiled.run,
        kind: compiled.kind,
        token: compiled.token,
        product_outputs: compiled
            .outputs
            .iter()
            .rev()
            .take_while(|o| matches!(o.source, variables::Source::Product(_)))
            .count(),
        quota_outputs: compiled
            .outputs
            .iter()
            .rev()
            .take_while(|o| matches!(o.source, variables::Source::Product(p) if p.is_quota()))
            .count(),
        outputs: compiled.outputs,
        attribute_prefix: compiled.attribute_prefix,
        attributes_published,
        bare_attributes: compiled.bare_attributes,
        known_attributes: Vec::new(),
        product_prefix,
        product_attributes_published,
        operation_attributes_published,
        failed: fault_var("failed"),
        fault_name: fault_var("fault.name"),
        fault_cause: fault_var("fault.cause"),
    };
    for attribute in compiled.known_attributes {
        plan.know_attribute(&attribute, publish);
    }
    plan
}

impl PolicyPlan {
    /// True when some published variable's name is known only at run
    /// time: custom attributes, or the matching product's (the Lua bridge
    /// carries those).
    pub(crate) fn publishes_a_family(&self) -> bool {
        [
            self.attributes_published,
            self.product_attributes_published,
            self.operation_attributes_published,
        ]
        .iter()
        .any(|f| *f != Family::None)
    }

    /// Records a custom attribute name known at load time.
    pub(crate) fn know_attribute(&mut self, name: &str, publish: &Publish) {
        let full = format!("{}{name}", self.attribute_prefix);
        // A name that is also a standard variable is that variable.
        if self.outputs.iter().any(|o| o.var.name == full)
            || self.known_attributes.iter().any(|(n, _)| n == name)
        {
            return;
        }
        self.known_attributes
            .push((name.to_string(), Var::new(full, false, publish, true)));
    }

    /// The custom attribute a full variable name names, if it is one of
    /// this policy's.
    pub(crate) fn attribute_named<'a>(&self, variable: &'a str) -> Option<&'a str> {
        variable
            .strip_prefix(self.attribute_prefix.as_str())
            .filter(|n| !n.is_empty())
    }
}
