//! The fault rules: a ProxyEndpoint's FaultRules and DefaultFaultRule
//! become the plugin's `fault_handling` (docs/configuration.md#fault_handling,
//! docs/decisions.md#import); a TargetEndpoint's are reported, since they
//! handle the target's faults, which the filter never raises.

use serde_json::{json, Value};

use super::core;
use super::model::{Endpoint, FaultRule};
use super::report::Entry;
use super::translate::{PluginStep, Translator};

impl Translator<'_> {
    /// A TargetEndpoint's FaultRules (`prefix` names it): reported, not
    /// translated.
    pub(super) fn report_target_fault_rules(&mut self, endpoint: &Endpoint, prefix: &str) {
        for rule in &endpoint.fault_rules {
            self.report.untranslated.push(Entry {
                policy: rule.clone(),
                policy_type: "FaultRules".into(),
                endpoint: self.endpoint.clone(),
                flow: format!("{prefix}FaultRules"),
                condition: None,
                advice: "a TargetEndpoint's fault rules handle the target's faults, which the filter never raises: Envoy's local replies and the service".into(),
            });
        }
    }

    /// The ProxyEndpoint's FaultRules and DefaultFaultRule as the plugin's
    /// `fault_handling` (docs/configuration.md#fault_handling): their
    /// RaiseFault and AssignMessage steps; other steps are reported and
    /// left out. `flow_steps` are the plugin's `policies` (a RaiseFault of
    /// theirs is named, not repeated).
    pub(super) fn fault_handling(
        &mut self,
        endpoint: &Endpoint,
        flow_steps: &[PluginStep],
    ) -> Option<Value> {
        if endpoint.rules.is_empty() && endpoint.default_rule.is_none() {
            return None;
        }
        let mut policies: Vec<String> = Vec::new();
        let mut named: Vec<String> = Vec::new();
        let mut rule_xml = |rule: &FaultRule, tag: &str, tr: &mut Translator<'_>| -> String {
            let label = match tag {
                "FaultRule" => format!("FaultRule {:?}", rule.name),
                _ => "DefaultFaultRule".to_string(),
            };
            let mut xml = format!("<{tag} name=\"{}\">", xml_escape(&rule.name));
            if let Some(c) = &rule.condition {
                if let Err(problem) = core::condition_variables(c) {
                    tr.report.problems.push(format!(
                        "{}: {label}: its condition does not parse ({problem}): the rule is left out",
                        tr.endpoint
                    ));
                    return String::new();
                }
                xml.push_str(&format!("<Condition>{}</Condition>", xml_escape(c)));
            }
            if tag == "DefaultFaultRule" {
                xml.push_str(&format!(
                    "<AlwaysEnforce>{}</AlwaysEnforce>",
                    rule.always_enforce
                ));
            }
            for step in &rule.steps {
                let Some(policy) = tr.model.policies.get(&step.name) else {
                    tr.report.problems.push(format!(
                        "{}: {label}: the step {:?} names a policy that has no file in policies/",
                        tr.endpoint, step.name
                    ));
                    continue;
                };
                let entry = tr.entry(
                    policy,
                    &format!("FaultRules, {label}"),
                    &[],
                    step.condition.clone(),
                    "",
                );
                match policy.type_name.as_str() {
                    "RaiseFault" | "AssignMessage" => {
                        if let Some(c) = &step.condition {
                            if let Err(problem) = core::condition_variables(c) {
                                tr.report.problems.push(format!(
                                    "{}: {label}: the condition of step {:?} does not parse ({problem}): the step is left out",
                                    tr.endpoint, step.name
                                ));
                                continue;
                            }
                        }
                        let in_flow = flow_steps.iter().any(|s| s.name == policy.name);
                        if !in_flow && !named.contains(&policy.name) {
                            named.push(policy.name.clone());
                            policies.push(policy.xml.clone());
                        }
                        xml.push_str(&format!("<Step><Name>{}</Name>", xml_escape(&step.name)));
                        if let Some(c) = &step.condition {
                            xml.push_str(&format!("<Condition>{}</Condition>", xml_escape(c)));
                        }
                        xml.push_str("</Step>");
                        tr.report.translated.push(entry);
                    }
                    _ => tr.report.untranslated.push(Entry {
                        advice: "a fault rule's step the filter's fault handlers do not run (they run RaiseFault and AssignMessage): left out of the rule".into(),
                        ..entry
                    }),
                }
            }
            xml.push_str(&format!("</{tag}>"));
            xml
        };
        let mut rules = String::from("<FaultRules>");
        for rule in &endpoint.rules {
            rules.push_str(&rule_xml(rule, "FaultRule", self));
        }
        rules.push_str("</FaultRules>");
        let default = endpoint
            .default_rule
            .as_ref()
            .map(|d| rule_xml(d, "DefaultFaultRule", self))
            .filter(|x| !x.is_empty());
        let mut handling = json!({"policies": policies, "fault_rules": rules});
        if let Some(d) = default {
            handling["default_fault_rule"] = json!(d);
        }
        Some(handling)
    }
}

/// Text and attribute values, escaped for the XML the plugin carries.
fn xml_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
    out
}
