//! The proxy's own error handling: `fault_handling` in the configuration
//! (docs/configuration.md#fault_handling), its FaultRules and
//! DefaultFaultRule, and the reply they build when a policy raises a fault
//! (docs/faults.md#fault-rules; Apigee's semantics and their sources:
//! docs/decisions.md#fault-handling-faultrules-defaultfaultrule-raisefault-issue-19).
//!
//! All of it runs on the fault path only: a request that raises no fault
//! never reaches this module.

use log::debug;
use serde_json::{Map, Value};

use oauthv2info_names::variables::FAULT_NAME;
use oauthv2info_names::Fault;

use crate::condition::{Condition, Kind, Scratch, Vars};
use crate::config::FilterConfig;
use crate::error::ConfigError;
use crate::flow::Flow;
use crate::plan::{self, PolicyPlan, VarRef};
use crate::policies::message::{self, Reply};
use crate::policies::{parse_policy, Policy, PolicyKind};
use crate::publish::Publish;
use crate::request::RequestInfo;
use crate::xml::{self, Element};

/// A `<Condition>`, as written and parsed.
#[derive(Debug, Clone)]
pub(crate) struct Cond {
    pub(crate) text: String,
    pub(crate) condition: Condition,
}

/// Where a step's policy is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StepPolicy {
    /// In `fault_handling.policies`.
    Own(usize),
    /// A RaiseFault of `policies` (a flow step reused in a rule).
    Flow(usize),
}

#[derive(Debug, Clone)]
pub(crate) struct HandlerStep {
    pub(crate) name: String,
    pub(crate) policy: StepPolicy,
    pub(crate) condition: Option<Cond>,
}

#[derive(Debug, Clone)]
pub(crate) struct Rule {
    pub(crate) name: String,
    /// `None`: no `<Condition>`, which always holds.
    pub(crate) condition: Option<Cond>,
    pub(crate) steps: Vec<HandlerStep>,
}

#[derive(Debug, Clone)]
pub(crate) struct DefaultRule {
    pub(crate) steps: Vec<HandlerStep>,
    pub(crate) always_enforce: bool,
}

/// `fault_handling`, parsed and compiled.
#[derive(Debug, Clone, Default)]
pub struct FaultHandling {
    pub(crate) policies: Vec<Policy>,
    pub(crate) plans: Vec<PolicyPlan>,
    /// In the order written; evaluated from the last up.
    pub(crate) rules: Vec<Rule>,
    pub(crate) default_rule: Option<DefaultRule>,
    /// Every variable its handlers (and the flow's RaiseFaults) read, by
    /// name, compiled against all the flow's policies: request variables
    /// among them are captured like a step condition's.
    pub(crate) reads: Vec<(String, VarRef)>,
}

const FIELD: &str = "fault_handling";

/// `fault_handling` (absent: `None`), and the variables the flow's
/// RaiseFaults read (which then need a [`FaultHandling`] without rules).
pub(crate) fn configure(
    value: Option<Value>,
    flow: &[Policy],
    flow_plans: &[PolicyPlan],
    publish: &Publish,
    warnings: &mut Vec<String>,
) -> Result<Option<Box<FaultHandling>>, ConfigError> {
    let mut handling = match value {
        None | Some(Value::Null) => None,
        Some(value) => Some(parse(value, flow, flow_plans, publish, warnings)?),
    };
    let raisers = flow.iter().filter(|p| p.type_name() == "RaiseFault");
    let mut names: Vec<String> = Vec::new();
    for policy in raisers {
        names.extend(policy.references().into_iter().map(|(_, n)| n.to_string()));
    }
    if let Some(h) = &handling {
        let assigned: Vec<&str> = h.policies.iter().flat_map(assigns).collect();
        for policy in &h.policies {
            for (element, name) in policy.references() {
                if VarRef::resolve(name, flow_plans) == VarRef::Unset
                    && !is_handler_variable(name)
                    && !assigned.contains(&name)
                {
                    warnings.push(format!(
                        "policy {:?}, element {element}: variable {name:?} is neither a request variable nor set by a policy or a fault handler; it will be empty at run time",
                        policy.name
                    ));
                }
                names.push(name.to_string());
            }
        }
        let conditions = h
            .rules
            .iter()
            .flat_map(|r| {
                r.condition
                    .iter()
                    .chain(r.steps.iter().filter_map(|s| s.condition.as_ref()))
            })
            .chain(
                h.default_rule
                    .iter()
                    .flat_map(|d| d.steps.iter().filter_map(|s| s.condition.as_ref())),
            );
        for c in conditions {
            names.extend(c.condition.variables().iter().cloned());
        }
    }
    if names.is_empty() && handling.is_none() {
        return Ok(None);
    }
    let h = handling.get_or_insert_with(FaultHandling::default);
    for name in names {
        if h.reads.iter().any(|(n, _)| *n == name) {
            continue;
        }
        let var = VarRef::resolve(&name, flow_plans);
        if var != VarRef::Unset {
            h.reads.push((name, var));
        }
    }
    Ok(handling.map(Box::new))
}

/// The variables a handler policy assigns (`<AssignVariable><Name>`).
fn assigns(policy: &Policy) -> Vec<&str> {
    match &policy.kind {
        PolicyKind::Raise(r) => message::assigns(&r.ops).collect(),
        PolicyKind::Assign(a) => message::assigns(&a.ops).collect(),
        _ => Vec::new(),
    }
}

/// The variables a fault handler has besides the request's and the
/// policies': `error.*` and those an `<AssignVariable>` sets (any name).
fn is_handler_variable(name: &str) -> bool {
    name.starts_with("error.")
}

fn field_err(key: &str, problem: impl Into<String>) -> ConfigError {
    ConfigError::field(format!("{FIELD}.{key}"), problem.into())
}

/// Parses `fault_handling`: `{"policies": [...], "fault_rules": "<FaultRules>...",
/// "default_fault_rule": "<DefaultFaultRule>..."}`. `flow` are the
/// request flow's policies (a rule may name a RaiseFault of theirs).
fn parse(
    value: Value,
    flow: &[Policy],
    flow_plans: &[PolicyPlan],
    publish: &Publish,
    warnings: &mut Vec<String>,
) -> Result<FaultHandling, ConfigError> {
    let Value::Object(mut object) = value else {
        return Err(ConfigError::field(
            FIELD,
            "must be an object {\"policies\": [...], \"fault_rules\": \"<FaultRules>...\", \"default_fault_rule\": \"<DefaultFaultRule>...\"}",
        ));
    };
    let mut handling = FaultHandling::default();
    match object.remove("policies") {
        None => {}
        Some(Value::Array(items)) => {
            for (i, item) in items.into_iter().enumerate() {
                let Value::String(document) = item else {
                    return Err(field_err(
                        &format!("policies[{i}]"),
                        "must be a string holding one RaiseFault or AssignMessage policy's XML",
                    ));
                };
                let policy = parse_policy(&document, flow.len() + i)?;
                if !matches!(policy.type_name(), "RaiseFault" | "AssignMessage") {
                    return Err(ConfigError::policy(
                        &policy.name,
                        format!("<{}>", policy.type_name()),
                        "a fault handler's steps here are RaiseFault or AssignMessage policies; put this policy in \"policies\"",
                    ));
                }
                if flow
                    .iter()
                    .chain(&handling.policies)
                    .any(|p| p.name == policy.name)
                {
                    return Err(ConfigError::policy(
                        &policy.name,
                        format!("<{}>", policy.type_name()),
                        "two policies have this name: policy names must be unique",
                    ));
                }
                for (element, what) in &policy.ignored {
                    warnings.push(format!(
                        "policy {:?}, element {element}: accepted and ignored: {what}",
                        policy.name
                    ));
                }
                handling
                    .plans
                    .push(plan::compile(&policy, flow_plans, publish, false));
                handling.policies.push(policy);
            }
        }
        Some(_) => {
            return Err(field_err(
                "policies",
                "must be an array of RaiseFault and AssignMessage policy XML strings",
            ))
        }
    }
    let rules_xml = string_field(&mut object, "fault_rules")?;
    let default_xml = string_field(&mut object, "default_fault_rule")?;
    if let Some(key) = object.keys().next() {
        return Err(field_err(
            key,
            "unknown field (known: policies, fault_rules, default_fault_rule)",
        ));
    }
    if let Some(text) = rules_xml {
        let root = xml::parse(&text).map_err(|p| field_err("fault_rules", p))?;
        if root.name != "FaultRules" {
            return Err(field_err(
                "fault_rules",
                format!("must be one <FaultRules> element, not <{}>", root.name),
            ));
        }
        no_attributes_or_text(&root, "<FaultRules>").map_err(|p| field_err("fault_rules", p))?;
        for rule in &root.children {
            if rule.name != "FaultRule" {
                return Err(field_err(
                    "fault_rules",
                    format!(
                        "unknown element <{}> in <FaultRules> (known: <FaultRule>)",
                        rule.name
                    ),
                ));
            }
            handling
                .rules
                .push(parse_rule(rule, flow, &handling, warnings)?);
        }
    }
    if let Some(text) = default_xml {
        let root = xml::parse(&text).map_err(|p| field_err("default_fault_rule", p))?;
        if root.name != "DefaultFaultRule" {
            return Err(field_err(
                "default_fault_rule",
                format!(
                    "must be one <DefaultFaultRule> element, not <{}>",
                    root.name
                ),
            ));
        }
        let mut always_enforce = false;
        let mut steps = Vec::new();
        for (k, _) in &root.attributes {
            if k != "name" {
                return Err(field_err(
                    "default_fault_rule",
                    format!("<DefaultFaultRule>: unknown attribute {k} (known: name)"),
                ));
            }
        }
        for c in &root.children {
            match c.name.as_str() {
                "AlwaysEnforce" => {
                    let text = c.text.trim();
                    always_enforce = match text {
                        "true" => true,
                        "false" => false,
                        _ => {
                            return Err(field_err(
                                "default_fault_rule",
                                format!("<AlwaysEnforce> must be true or false, not {text:?}"),
                            ))
                        }
                    };
                }
                "Step" => steps.push(parse_step(c, "DefaultFaultRule", flow, &handling, warnings)?),
                // What the Apigee UI writes: no effect.
                "Condition" | "Description" => {}
                other => {
                    return Err(field_err(
                        "default_fault_rule",
                        format!("unknown element <{other}> in <DefaultFaultRule> (known: <Step>, <AlwaysEnforce>)"),
                    ))
                }
            }
        }
        handling.default_rule = Some(DefaultRule {
            steps,
            always_enforce,
        });
    }
    Ok(handling)
}

fn string_field(object: &mut Map<String, Value>, key: &str) -> Result<Option<String>, ConfigError> {
    match object.remove(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(field_err(key, "must be a string holding the element's XML")),
    }
}

fn no_attributes_or_text(e: &Element, label: &str) -> Result<(), String> {
    if let Some((k, _)) = e.attributes.first() {
        return Err(format!("{label}: unknown attribute {k}"));
    }
    if !e.text.trim().is_empty() {
        return Err(format!("{label}: unexpected text"));
    }
    Ok(())
}

fn condition(text: &str, owner: &str, warnings: &mut Vec<String>) -> Result<Cond, ConfigError> {
    let condition = Condition::parse(text)
        .map_err(|e| field_err("fault_rules", format!("{owner}, <Condition>: {e}")))?;
    for warning in &condition.warnings {
        warnings.push(format!("{FIELD}: {owner}, <Condition>: {warning}"));
    }
    Ok(Cond {
        text: text.to_string(),
        condition,
    })
}

fn parse_rule(
    rule: &Element,
    flow: &[Policy],
    handling: &FaultHandling,
    warnings: &mut Vec<String>,
) -> Result<Rule, ConfigError> {
    let name = rule.attribute("name").unwrap_or("").to_string();
    let owner = format!("<FaultRule name={name:?}>");
    for (k, _) in &rule.attributes {
        if k != "name" {
            return Err(field_err(
                "fault_rules",
                format!("{owner}: unknown attribute {k}"),
            ));
        }
    }
    let mut cond = None;
    let mut steps = Vec::new();
    for c in &rule.children {
        match c.name.as_str() {
            "Condition" => {
                let text = c.text.trim();
                if !text.is_empty() {
                    cond = Some(condition(text, &owner, warnings)?);
                }
            }
            "Step" => steps.push(parse_step(c, &owner, flow, handling, warnings)?),
            "Description" => {}
            other => {
                return Err(field_err(
                    "fault_rules",
                    format!("{owner}: unknown element <{other}> (known: <Condition>, <Step>)"),
                ))
            }
        }
    }
    if cond.is_none() {
        warnings.push(format!(
            "{FIELD}: {owner} has no <Condition>: it matches every fault, and hides the rules above it"
        ));
    }
    Ok(Rule {
        name,
        condition: cond,
        steps,
    })
}

fn parse_step(
    step: &Element,
    owner: &str,
    flow: &[Policy],
    handling: &FaultHandling,
    warnings: &mut Vec<String>,
) -> Result<HandlerStep, ConfigError> {
    let field = if owner == "DefaultFaultRule" {
        "default_fault_rule"
    } else {
        "fault_rules"
    };
    let mut name = None;
    let mut cond = None;
    for c in &step.children {
        match c.name.as_str() {
            "Name" => name = Some(c.text.trim().to_string()),
            "Condition" => {
                let text = c.text.trim();
                if !text.is_empty() {
                    cond = Some(condition(text, &format!("{owner}, <Step>"), warnings)?);
                }
            }
            // What the Apigee UI writes into a step: nothing.
            "FaultRules" if c.children.is_empty() => {}
            other => {
                return Err(field_err(
                    field,
                    format!(
                        "{owner}, <Step>: unknown element <{other}> (known: <Name>, <Condition>)"
                    ),
                ))
            }
        }
    }
    let Some(name) = name.filter(|n| !n.is_empty()) else {
        return Err(field_err(field, format!("{owner}, <Step>: needs a <Name>")));
    };
    let policy = if let Some(i) = handling.policies.iter().position(|p| p.name == name) {
        StepPolicy::Own(i)
    } else if let Some(i) = flow.iter().position(|p| p.name == name) {
        if flow[i].type_name() != "RaiseFault" {
            return Err(field_err(
                field,
                format!(
                    "{owner}, <Step> {name:?}: a {} cannot run in a fault handler here (RaiseFault and AssignMessage can)",
                    flow[i].type_name()
                ),
            ));
        }
        StepPolicy::Flow(i)
    } else {
        return Err(field_err(
            field,
            format!("{owner}, <Step> {name:?}: no policy has this name (give it in fault_handling.policies)"),
        ));
    };
    Ok(HandlerStep {
        name,
        policy,
        condition: cond,
    })
}

/// The condition variables of a fault handler, read by name.
struct HandlerVars<'a, 'b> {
    read: &'a mut dyn FnMut(&str, &mut String) -> bool,
    names: &'b [String],
}

impl Vars for HandlerVars<'_, '_> {
    fn read(&mut self, index: usize, out: &mut String) -> Option<Kind> {
        let name = self.names.get(index)?;
        (self.read)(name, out).then_some(Kind::Text)
    }
}

impl FaultHandling {
    /// Its own policies (RaiseFault, AssignMessage), for the checker.
    pub fn policies(&self) -> &[Policy] {
        &self.policies
    }

    /// What runs, one line a rule, for the checker.
    pub fn describe(&self) -> Vec<String> {
        let steps = |steps: &[HandlerStep]| {
            if steps.is_empty() {
                return "no steps".to_string();
            }
            steps
                .iter()
                .map(|s| match &s.condition {
                    Some(c) => format!("{} (when {})", s.name, c.text),
                    None => s.name.clone(),
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut lines = Vec::new();
        for rule in self.rules.iter().rev() {
            lines.push(format!(
                "FaultRule {:?} when {}: {}",
                rule.name,
                rule.condition
                    .as_ref()
                    .map_or("always", |c| c.text.as_str()),
                steps(&rule.steps)
            ));
        }
        if let Some(d) = &self.default_rule {
            lines.push(format!(
                "DefaultFaultRule ({}): {}",
                if d.always_enforce {
                    "AlwaysEnforce: after any FaultRule but one that raised"
                } else {
                    "when no FaultRule ran"
                },
                steps(&d.steps)
            ));
        }
        lines
    }

    fn plan<'a>(&'a self, config: &'a FilterConfig, policy: StepPolicy) -> Option<&'a PolicyPlan> {
        match policy {
            StepPolicy::Own(i) => self.plans.get(i),
            StepPolicy::Flow(i) => config.plans.get(i),
        }
    }
}

fn holds(
    condition: Option<&Cond>,
    reply: &Reply,
    read: &mut dyn FnMut(&str, &mut String) -> bool,
    scratch: &mut Scratch,
) -> bool {
    let Some(Cond { condition, .. }) = condition else {
        return true;
    };
    let mut r = |name: &str, out: &mut String| reply.read(name, out) || read(name, out);
    condition.eval(
        &mut HandlerVars {
            read: &mut r,
            names: condition.variables(),
        },
        scratch,
    )
}

/// Runs `steps` on `reply`; true when one of them raised (RaiseFault).
fn run_steps(
    handling: &FaultHandling,
    config: &FilterConfig,
    steps: &[HandlerStep],
    reply: &mut Reply,
    read: &mut dyn FnMut(&str, &mut String) -> bool,
    scratch: &mut Scratch,
) -> bool {
    let mut raised = false;
    for step in steps {
        let Some(plan) = handling.plan(config, step.policy) else {
            continue;
        };
        if !plan.enabled || !holds(step.condition.as_ref(), reply, read, scratch) {
            continue;
        }
        // Later steps still run (docs/decisions.md); a RaiseFault makes
        // `fault.name` RaiseFault for them.
        if plan.action.handle(reply, read) {
            raised = true;
            reply.assign(FAULT_NAME, Fault::RaiseFault.name().to_string());
        }
    }
    raised
}

/// The reply for a fault that ends the request, when the configuration
/// handles faults or the fault is a RaiseFault's; `None`: Apigee's
/// default reply, as before.
pub(crate) fn reply(
    config: &FilterConfig,
    flow: &Flow,
    request: &RequestInfo,
    fault: Fault,
) -> Option<Reply> {
    let raiser = flow
        .reply_policy()
        .and_then(|i| config.plans.get(i))
        .filter(|p| p.action.raises().is_some());
    let handling = config.fault_handling.as_deref();
    if handling.is_none() && raiser.is_none() {
        return None;
    }
    let failing = flow.reply_policy().and_then(|i| config.plans.get(i));
    let faultstring = failing.map_or(fault.faultstring(), |p| p.faultstring(fault));
    let mut reply = Reply {
        status: fault.status(),
        reason: None,
        headers: vec![("content-type".to_string(), "application/json".to_string())],
        body: failing.map_or_else(
            || crate::policies::fault_body(fault.faultstring(), fault.errorcode()),
            |p| p.fault_body(fault).into_owned(),
        ),
        variables: Vec::new(),
    };
    if let Some(challenge) = fault.www_authenticate() {
        reply
            .headers
            .push(("www-authenticate".to_string(), challenge.to_string()));
    }
    // The variables a handler reads: error.* from the reply being built,
    // then the request's and the policies'.
    let mut base = |name: &str, out: &mut String| -> bool {
        if name == "error.message" {
            out.push_str(faultstring);
            return true;
        }
        match handling.and_then(|h| h.reads.iter().find(|(n, _)| n == name)) {
            Some((_, var)) => flow.read(config, var, request, out),
            None => false,
        }
    };
    let mut scratch = Scratch::default();
    // A RaiseFault of the flow builds its response first.
    if let Some(plan) = raiser {
        plan.action.handle(&mut reply, &mut base);
    }
    let Some(handling) = handling else {
        return Some(reply);
    };
    // Bottom up, the first that holds (docs/decisions.md).
    let mut ran = false;
    let mut raised = false;
    for rule in handling.rules.iter().rev() {
        if holds(rule.condition.as_ref(), &reply, &mut base, &mut scratch) {
            debug!(
                "oauthv2info: fault {}: FaultRule {:?} runs",
                fault.name(),
                rule.name
            );
            ran = true;
            raised = run_steps(
                handling,
                config,
                &rule.steps,
                &mut reply,
                &mut base,
                &mut scratch,
            );
            break;
        }
    }
    if let Some(default) = &handling.default_rule {
        if (!ran || default.always_enforce) && !raised {
            run_steps(
                handling,
                config,
                &default.steps,
                &mut reply,
                &mut base,
                &mut scratch,
            );
        }
    }
    Some(reply)
}

#[cfg(test)]
mod tests;
