//! The translation: a proxy's request flows into one plugin configuration
//! per ProxyEndpoint (docs/decisions.md#import).
//!
//! Apigee runs, on the request, the ProxyEndpoint's PreFlow, then the
//! **first** conditional Flow whose condition is true, then its PostFlow,
//! then the same three of the TargetEndpoint the RouteRules chose. The
//! filter runs a list of steps, each under its condition, each policy at
//! most once. So a Flow's steps get the guard
//! `(its condition) and not (earlier Flow 1) and not (earlier Flow 2)...`,
//! combined with the step's own condition; a policy used in several Flows
//! is one step under `(guard 1 and ...) or (guard 2 and ...)`, placed where
//! every Flow's order allows (a problem when two Flows order it
//! differently); a FlowCallout becomes the steps of its shared flow, under
//! the callout's condition.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Value};

use super::bundle::Kind;
use super::core;
use super::model::{Endpoint, Flow, Model, PolicyFile, Step};
use super::policies::{self, Class};
use super::reads::{narrow_publish, reads_of, unset_hint};
use super::report::{Entry, Report};

/// How deep FlowCallouts may nest (a shared flow calling a shared flow...).
const MAX_CALLOUT_DEPTH: usize = 8;

/// Where an endpoint's requests go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// The TargetEndpoint's (or RouteRule's) URL.
    Url { name: String, url: String },
    /// No target (a RouteRule without one, or none): Apigee answers with
    /// what the flows built.
    None,
}

/// One ProxyEndpoint, translated.
#[derive(Debug, Clone)]
pub struct EndpointPlan {
    pub name: String,
    pub base_path: String,
    /// The plugin configuration; `None` when no step is the filter's.
    pub plugin: Option<Value>,
    pub target: Target,
}

pub struct Options {
    /// The plugin configurations' `token_service` object.
    pub token_service: Value,
    /// `--target NAME=URL`: a TargetEndpoint's URL replaced.
    pub targets: BTreeMap<String, String>,
    /// `--environment NAME`: the plugin configurations' `environment`
    /// (a bundle does not name one).
    pub environment: Option<String>,
}

/// A step after FlowCallouts are inlined.
#[derive(Debug, Clone)]
struct Expanded {
    policy: PolicyFile,
    /// The step's own condition, and the callouts' above it.
    conditions: Vec<String>,
    via: Vec<String>,
}

/// A part of the request path: steps in sequence (a PreFlow, a PostFlow)
/// or alternatives (the conditional Flows, one at most runs).
struct Segment {
    label: String,
    guard: Option<String>,
    steps: Vec<Step>,
}

enum Block {
    Seq(Segment),
    Alt(Vec<Segment>),
}

/// `(a) and (b)`; one part alone stays as written.
pub fn and_all(parts: &[String]) -> Option<String> {
    match parts {
        [] => None,
        [one] => Some(one.trim().to_string()),
        many => Some(
            many.iter()
                .map(|p| format!("({})", p.trim()))
                .collect::<Vec<_>>()
                .join(" and "),
        ),
    }
}

/// The guards of conditional Flows in Apigee's first-match order:
/// `(Ci) and not (C1) and not (C2)...`; `Err` for a Flow no request reaches
/// (an earlier Flow has no condition).
pub fn flow_guards(flows: &[Flow]) -> Vec<Result<Option<String>, String>> {
    let mut earlier: Vec<&str> = Vec::new();
    let mut catch_all: Option<&str> = None;
    flows
        .iter()
        .map(|flow| {
            if let Some(all) = catch_all {
                return Err(all.to_string());
            }
            let mut parts: Vec<String> = flow.condition.iter().cloned().collect();
            parts.extend(earlier.iter().map(|c| format!("not ({})", c.trim())));
            match &flow.condition {
                Some(c) => earlier.push(c),
                None => catch_all = Some(&flow.name),
            }
            Ok(and_all(&parts))
        })
        .collect()
}

pub(super) struct Translator<'a> {
    pub(super) model: &'a Model,
    shared: &'a BTreeMap<String, Model>,
    pub(super) report: &'a mut Report,
    pub(super) endpoint: String,
    /// The untranslated steps' policies (name, XML) and conditions: what
    /// the proxy still reads once the filter has run.
    unread: Vec<(String, String)>,
    /// The untranslated policies and the variables they set.
    setters: Vec<(String, Vec<String>)>,
}

impl Translator<'_> {
    pub(super) fn entry(
        &self,
        policy: &PolicyFile,
        flow: &str,
        via: &[String],
        condition: Option<String>,
        advice: &str,
    ) -> Entry {
        let mut flow = flow.to_string();
        for v in via {
            flow.push_str(&format!(", via {v}"));
        }
        Entry {
            policy: policy.name.clone(),
            policy_type: policies::type_label(policy),
            endpoint: self.endpoint.clone(),
            flow,
            condition,
            advice: advice.to_string(),
        }
    }

    /// The steps of `steps` with FlowCallouts replaced by their shared
    /// flows' steps; untranslated ones go to the report.
    fn expand(
        &mut self,
        steps: &[Step],
        policies: &BTreeMap<String, PolicyFile>,
        segment: &Segment,
        outer: &Expanded,
        depth: usize,
        out: &mut Vec<Expanded>,
    ) -> Result<(), String> {
        for step in steps {
            let Some(policy) = policies.get(&step.name) else {
                // Apigee refuses to deploy such a bundle; the import goes on
                // so that the report names everything else.
                self.report.problems.push(format!(
                    "{}: the step {:?} ({}) names a policy that has no file in policies/",
                    self.endpoint, step.name, segment.label
                ));
                continue;
            };
            let mut here = outer.clone();
            here.policy = policy.clone();
            here.conditions.extend(step.condition.iter().cloned());
            let full = |here: &Expanded| {
                let mut parts: Vec<String> = segment.guard.iter().cloned().collect();
                parts.extend(here.conditions.iter().cloned());
                and_all(&parts)
            };
            let mut class = policies::classify(policy);
            if policy.type_name == "RaiseFault" && !condition_is_the_filters(full(&here).as_deref())
            {
                class = Class::Untranslated {
                    guard: true,
                    advice: "its condition reads a variable the filter does not have (a step it does not run sets it): translated, it would refuse requests Apigee lets through; keep this check where that variable is",
                };
            }
            match class {
                Class::Translated => out.push(here),
                Class::FlowCallout { shared_flow } => {
                    let found = self.shared.get(&shared_flow).and_then(|m| {
                        m.shared_flows
                            .get("default")
                            .or(m.shared_flows.values().next())
                            .map(|f| (m, f))
                    });
                    match found {
                        Some(_) if depth >= MAX_CALLOUT_DEPTH => {
                            self.report.problems.push(format!(
                                "{}: FlowCallout {:?}: shared flows nest more than {MAX_CALLOUT_DEPTH} deep (a cycle?)",
                                self.endpoint, policy.name
                            ));
                        }
                        Some((bundle, flow)) if policy.enabled => {
                            here.via.push(format!(
                                "FlowCallout {:?} (shared flow {shared_flow:?})",
                                policy.name
                            ));
                            let flow = flow.clone();
                            self.expand(&flow, &bundle.policies, segment, &here, depth + 1, out)?;
                        }
                        Some(_) => {}
                        None => {
                            let e = self.entry(
                                policy,
                                &segment.label,
                                &here.via,
                                full(&here),
                                &format!("give the shared flow bundle {shared_flow:?} with --shared-flow DIR: its steps are unknown"),
                            );
                            if policy.enabled {
                                self.report.guards.push(e);
                            } else {
                                self.report.untranslated.push(e);
                            }
                        }
                    }
                }
                Class::Untranslated { guard, advice } => {
                    let advice = if policy.enabled {
                        advice
                    } else {
                        "enabled=\"false\": never runs"
                    };
                    let e = self.entry(policy, &segment.label, &here.via, full(&here), advice);
                    self.unread
                        .push((policy.name.clone(), reads_of(&policy.root)));
                    self.unread
                        .extend(e.condition.clone().map(|c| (String::new(), c)));
                    if policy.enabled {
                        self.setters
                            .push((policy.name.clone(), policies::sets_of(policy)));
                    }
                    if guard && policy.enabled {
                        self.report.guards.push(e);
                    } else {
                        self.report.untranslated.push(e);
                    }
                }
            }
        }
        Ok(())
    }

    /// The response side, PostClientFlow and FaultRules: reported.
    fn report_response_side(&mut self, endpoint: &Endpoint, prefix: &str) {
        let flows = std::iter::once(&endpoint.pre)
            .chain(endpoint.flows.iter())
            .chain(std::iter::once(&endpoint.post));
        let mut listed: Vec<(String, Step)> = Vec::new();
        for flow in flows {
            for step in &flow.response {
                listed.push((
                    format!("{prefix}{} (response)", flow_label(flow)),
                    step.clone(),
                ));
            }
        }
        for step in &endpoint.post_client {
            listed.push((format!("{prefix}PostClientFlow"), step.clone()));
        }
        for (label, step) in listed {
            let policy = self.model.policies.get(&step.name);
            let policy_type = policy
                .map(policies::type_label)
                .unwrap_or_else(|| "?".to_string());
            if let Some(p) = policy {
                self.unread.push((p.name.clone(), reads_of(&p.root)));
            }
            self.unread
                .extend(step.condition.clone().map(|c| (String::new(), c)));
            // A token or key check on the response still refuses the reply
            // on Apigee: leaving it out lets it through (fail closed).
            let verify = policy.is_some_and(|p| {
                p.enabled
                    && (policies::operation(p).as_deref() == Some("VerifyAccessToken")
                        || p.type_name == "VerifyAPIKey")
            });
            let entry = Entry {
                policy: step.name.clone(),
                policy_type,
                endpoint: self.endpoint.clone(),
                flow: label,
                condition: step.condition.clone(),
                advice: if verify {
                    "runs on the response, after the target: the filter runs on the request; move it to the request flow in the bundle (the import does not reorder)".into()
                } else {
                    "runs on the response: the filter runs on the request (Envoy's response header rules, or the service)".into()
                },
            };
            if verify {
                self.report.guards.push(entry);
            } else {
                self.report.untranslated.push(entry);
            }
        }
        // The ProxyEndpoint's rules become the plugin's `fault_handling`
        // (faults.rs); a TargetEndpoint's handle the target's faults,
        // which never reach the filter: reported.
        if !prefix.is_empty() {
            self.report_target_fault_rules(endpoint, prefix);
        }
    }
}

/// A RaiseFault's condition reads only what the filter has: request
/// variables, `fault.name` and the OAuth and VerifyAPIKey policies'
/// variables. Anything else
/// (`actionVar` from an ExtractVariables) would be unset in the filter,
/// and the step raise where Apigee's does not.
fn condition_is_the_filters(condition: Option<&str>) -> bool {
    let Some(condition) = condition else {
        return true;
    };
    let Ok(names) = core::condition_variables(condition) else {
        return false;
    };
    let verify = core::verify_variables();
    names.iter().all(|n| {
        oauthv2info_core::RequestVar::parse(n).is_some()
            || n == "fault.name"
            || n.starts_with("oauthV2.")
            || n.starts_with("oauthv2")
            || n.starts_with("accesstoken.")
            || n.starts_with("verifyapikey.")
            || verify.contains(n)
    })
}

fn flow_label(flow: &Flow) -> String {
    match flow.name.as_str() {
        "PreFlow" | "PostFlow" => flow.name.clone(),
        name => format!("Flow {name:?}"),
    }
}

/// The blocks of an endpoint's request path (PreFlow, the Flows, PostFlow).
fn blocks_of(
    endpoint: &Endpoint,
    prefix: &str,
    report: &mut Report,
    endpoint_name: &str,
) -> Vec<Block> {
    let mut blocks = vec![Block::Seq(Segment {
        label: format!("{prefix}PreFlow"),
        guard: None,
        steps: endpoint.pre.request.clone(),
    })];
    let mut alternatives = Vec::new();
    for (flow, guard) in endpoint.flows.iter().zip(flow_guards(&endpoint.flows)) {
        if let Some(c) = &flow.condition {
            if let Err(problem) = core::condition_variables(c) {
                report.problems.push(format!(
                    "{endpoint_name}: {prefix}{}: its condition does not parse: {problem}",
                    flow_label(flow)
                ));
            }
        }
        match guard {
            Ok(guard) => alternatives.push(Segment {
                label: format!("{prefix}{}", flow_label(flow)),
                guard,
                steps: flow.request.clone(),
            }),
            Err(catch_all) => report.notes.push(format!(
                "{endpoint_name}: {prefix}{} is never reached: the earlier Flow {catch_all:?} has no condition (Apigee runs the first match)",
                flow_label(flow)
            )),
        }
    }
    blocks.push(Block::Alt(alternatives));
    blocks.push(Block::Seq(Segment {
        label: format!("{prefix}PostFlow"),
        guard: None,
        steps: endpoint.post.request.clone(),
    }));
    blocks
}

/// One translated step of the plugin configuration.
pub(super) struct PluginStep {
    pub(super) name: String,
    xml: String,
    condition: Option<String>,
    entry: Entry,
}

/// The steps of several sequences (the Flows of one block) in one order that
/// keeps each sequence's order; `Err` names two policies two sequences order
/// differently.
fn merge_orders(sequences: &[Vec<String>]) -> Result<Vec<String>, (String, String)> {
    let mut nodes: Vec<String> = Vec::new();
    for s in sequences {
        for n in s {
            if !nodes.contains(n) {
                nodes.push(n.clone());
            }
        }
    }
    let mut edges: BTreeSet<(usize, usize)> = BTreeSet::new();
    let index = |n: &String, nodes: &[String]| nodes.iter().position(|x| x == n).unwrap_or(0);
    for s in sequences {
        for pair in s.windows(2) {
            edges.insert((index(&pair[0], &nodes), index(&pair[1], &nodes)));
        }
    }
    // Kahn's algorithm, taking the earliest-seen ready node first.
    let mut placed = vec![false; nodes.len()];
    let mut order = Vec::new();
    while order.len() < nodes.len() {
        let ready = (0..nodes.len())
            .find(|&n| !placed[n] && !edges.iter().any(|&(a, b)| b == n && !placed[a]));
        match ready {
            Some(n) => {
                placed[n] = true;
                order.push(nodes[n].clone());
            }
            None => {
                let (a, b) = edges
                    .iter()
                    .find(|&&(a, b)| !placed[a] && !placed[b])
                    .map(|&(a, b)| (nodes[a].clone(), nodes[b].clone()))
                    .unwrap_or_default();
                return Err((a, b));
            }
        }
    }
    Ok(order)
}

/// Translates a proxy (or a shared flow imported alone).
pub fn translate(
    model: &Model,
    shared: &BTreeMap<String, Model>,
    options: &Options,
    report: &mut Report,
) -> Result<Vec<EndpointPlan>, String> {
    let mut plans = Vec::new();
    if let (Kind::Proxy, Some(from)) = (model.kind, &model.name_from) {
        report.notes.push(format!(
            "proxy_name {:?} is {from}, not an <APIProxy name>: it must be the name the API products list (proxies, an operation's apiSource)",
            model.name
        ));
    }
    let endpoints: Vec<Endpoint> = match model.kind {
        Kind::Proxy => model.proxies.clone(),
        Kind::SharedFlow => {
            let steps = model
                .shared_flows
                .get("default")
                .or(model.shared_flows.values().next())
                .cloned()
                .unwrap_or_default();
            vec![Endpoint {
                name: model.name.clone(),
                base_path: "/".into(),
                pre: Flow {
                    name: "PreFlow".into(),
                    request: steps,
                    ..Flow::default()
                },
                ..Endpoint::default()
            }]
        }
    };
    for endpoint in &endpoints {
        let mut tr = Translator {
            model,
            shared,
            report: &mut *report,
            endpoint: endpoint.name.clone(),
            unread: Vec::new(),
            setters: Vec::new(),
        };
        let mut blocks = blocks_of(endpoint, "", tr.report, &endpoint.name);
        let target = match model.kind {
            Kind::SharedFlow => {
                let url = options
                    .targets
                    .get("default")
                    .cloned()
                    .unwrap_or_else(|| "http://127.0.0.1:8080".into());
                tr.report.notes.push(format!(
                    "a shared flow alone: its steps run on every request of the route; the route goes to {url} (--target default=URL); no proxy_name (no product's proxies are compared): set it to the calling proxy's name"
                ));
                Target::Url {
                    name: "default".into(),
                    url,
                }
            }
            Kind::Proxy => {
                let (target, target_endpoint) = choose_target(model, endpoint, options, tr.report);
                if let Some(t) = target_endpoint {
                    let prefix = format!("TargetEndpoint {:?} ", t.name);
                    blocks.extend(blocks_of(t, &prefix, tr.report, &endpoint.name));
                    tr.report_response_side(t, &prefix);
                }
                target
            }
        };
        tr.report_response_side(endpoint, "");
        let mut steps: Vec<PluginStep> = Vec::new();
        for block in &blocks {
            let segments: Vec<&Segment> = match block {
                Block::Seq(s) => vec![s],
                Block::Alt(list) => list.iter().collect(),
            };
            let mut per_segment: Vec<(&Segment, Vec<Expanded>)> = Vec::new();
            for segment in segments {
                let mut out = Vec::new();
                let root = Expanded {
                    policy: PolicyFile {
                        type_name: String::new(),
                        name: String::new(),
                        enabled: true,
                        xml: String::new(),
                        root: core::Element::default(),
                        origin: String::new(),
                    },
                    conditions: Vec::new(),
                    via: Vec::new(),
                };
                tr.expand(&segment.steps, &model.policies, segment, &root, 0, &mut out)?;
                per_segment.push((segment, out));
            }
            if matches!(block, Block::Alt(_)) {
                check_guards_read_no_step(&per_segment, tr.report, &endpoint.name);
            }
            add_block(&mut tr, &per_segment, &mut steps);
        }
        let handling = tr.fault_handling(endpoint, &steps);
        let plugin = build_plugin(endpoint, &steps, handling, options, &mut tr);
        plans.push(EndpointPlan {
            name: endpoint.name.clone(),
            base_path: endpoint.base_path.clone(),
            plugin,
            target,
        });
    }
    Ok(plans)
}

/// Apigee evaluates a Flow's condition once, before its steps; the filter
/// evaluates each step's guard before that step. They agree unless a guard
/// reads a variable a step of the Flows sets: named as a problem.
fn check_guards_read_no_step(
    per_segment: &[(&Segment, Vec<Expanded>)],
    report: &mut Report,
    endpoint: &str,
) {
    let mut sets: Vec<(String, String)> = Vec::new();
    for (_, expanded) in per_segment {
        for e in expanded {
            let one = json!({"policies": [e.policy.xml]});
            if let Ok(loaded) = core::load(&one) {
                sets.extend(loaded.sets.into_iter().map(|v| (e.policy.name.clone(), v)));
            }
        }
    }
    let mut named = BTreeSet::new();
    for (segment, _) in per_segment {
        let Some(guard) = &segment.guard else {
            continue;
        };
        let Ok(reads) = core::condition_variables(guard) else {
            continue;
        };
        for var in reads {
            let setter = sets.iter().find(|(_, set)| match set.split_once("{name}") {
                Some((prefix, _)) => var.starts_with(prefix) && var.len() > prefix.len(),
                None => *set == var,
            });
            if let Some((policy, _)) = setter {
                if named.insert(var.clone()) {
                    report.problems.push(format!(
                        "{endpoint}: a Flow condition reads {var}, which policy {policy:?} of the Flows sets: Apigee reads it once before the Flow, the filter before each step"
                    ));
                }
            }
        }
    }
}

/// Adds one block's translated steps, merged, to `steps`.
fn add_block(
    tr: &mut Translator<'_>,
    per_segment: &[(&Segment, Vec<Expanded>)],
    steps: &mut Vec<PluginStep>,
) {
    let mut sequences = Vec::new();
    for (segment, expanded) in per_segment {
        let mut names: Vec<String> = Vec::new();
        for e in expanded {
            if names.contains(&e.policy.name) {
                tr.report.problems.push(format!(
                    "{}: policy {:?} runs twice in {}: the filter runs a policy at most once per request",
                    tr.endpoint, e.policy.name, segment.label
                ));
                continue;
            }
            names.push(e.policy.name.clone());
        }
        sequences.push(names);
    }
    let order = match merge_orders(&sequences) {
        Ok(order) => order,
        Err((a, b)) => {
            tr.report.problems.push(format!(
                "{}: policies {a:?} and {b:?} run in a different order in two Flows: one list of steps cannot keep both",
                tr.endpoint
            ));
            // Each policy once, where it is first seen: the problem above
            // is the one to report, not a "runs twice" for every policy
            // the Flows share.
            let mut order: Vec<String> = Vec::new();
            for name in sequences.concat() {
                if !order.contains(&name) {
                    order.push(name);
                }
            }
            order
        }
    };
    for name in order {
        if steps.iter().any(|s| s.name == name) {
            tr.report.problems.push(format!(
                "{}: policy {name:?} runs twice on one request (in two of PreFlow, the Flows, PostFlow): the filter runs a policy at most once per request",
                tr.endpoint
            ));
            continue;
        }
        let mut conditions: Vec<Option<String>> = Vec::new();
        let mut first: Option<(&Segment, &Expanded)> = None;
        let mut labels = Vec::new();
        for (segment, expanded) in per_segment {
            if let Some(e) = expanded.iter().find(|e| e.policy.name == name) {
                if let Some((_, f)) = first {
                    if f.policy.xml != e.policy.xml {
                        tr.report.problems.push(format!(
                            "{}: two different policies are named {name:?} (from {} and {}): policy names must be unique",
                            tr.endpoint, f.policy.origin, e.policy.origin
                        ));
                    }
                }
                first.get_or_insert((segment, e));
                let mut parts: Vec<String> = segment.guard.iter().cloned().collect();
                parts.extend(e.conditions.iter().cloned());
                conditions.push(and_all(&parts));
                let mut label = segment.label.clone();
                for v in &e.via {
                    label.push_str(&format!(", via {v}"));
                }
                labels.push(label);
            }
        }
        let Some((_, e)) = first else { continue };
        // Unconditional in one Flow: unconditional wherever it runs.
        let condition = if conditions.iter().any(Option::is_none) {
            None
        } else {
            let parts: Vec<String> = conditions.into_iter().flatten().collect();
            match parts.as_slice() {
                [one] => Some(one.clone()),
                many => Some(
                    many.iter()
                        .map(|p| format!("({p})"))
                        .collect::<Vec<_>>()
                        .join(" or "),
                ),
            }
        };
        let entry = Entry {
            policy: name.clone(),
            policy_type: policies::type_label(&e.policy),
            endpoint: tr.endpoint.clone(),
            flow: labels.join("; "),
            condition: condition.clone(),
            advice: String::new(),
        };
        steps.push(PluginStep {
            name,
            xml: e.policy.xml.clone(),
            condition,
            entry,
        });
    }
}

/// The RouteRule Apigee picks for requests no earlier rule's condition
/// catches: the first without a condition. Conditional rules before it are
/// reported.
fn choose_target<'m>(
    model: &'m Model,
    endpoint: &Endpoint,
    options: &Options,
    report: &mut Report,
) -> (Target, Option<&'m Endpoint>) {
    let mut chosen = None;
    for rule in &endpoint.route_rules {
        match &rule.condition {
            Some(c) if chosen.is_none() => report.untranslated.push(Entry {
                policy: rule.name.clone(),
                policy_type: "RouteRule".into(),
                endpoint: endpoint.name.clone(),
                flow: "RouteRules".into(),
                condition: Some(c.clone()),
                advice: "a conditional RouteRule: add an Envoy route (path, header or method match) before the one generated".into(),
            }),
            None if chosen.is_none() => chosen = Some(rule),
            _ => {}
        }
    }
    let Some(rule) = chosen else {
        report.notes.push(format!(
            "{}: no RouteRule without a condition: the generated route answers 404 where Apigee would send no request to a target",
            endpoint.name
        ));
        return (Target::None, None);
    };
    if let Some(url) = &rule.url {
        let url = options.targets.get(&rule.name).unwrap_or(url).clone();
        return (
            Target::Url {
                name: rule.name.clone(),
                url,
            },
            None,
        );
    }
    let Some(name) = &rule.target else {
        report.notes.push(format!(
            "{}: RouteRule {:?} has no target: Apigee answers with what the flows built, the generated route with 404 (direct_response)",
            endpoint.name, rule.name
        ));
        return (Target::None, None);
    };
    let Some(target) = model.targets.get(name) else {
        report.problems.push(format!(
            "{}: RouteRule {:?} names TargetEndpoint {name:?}, which has no file in targets/",
            endpoint.name, rule.name
        ));
        return (Target::None, None);
    };
    let url = options.targets.get(name).or(target.url.as_ref()).cloned();
    match url {
        Some(url) => (
            Target::Url {
                name: name.clone(),
                url,
            },
            Some(target),
        ),
        None => {
            report.problems.push(format!(
                "{}: TargetEndpoint {name:?} has no URL ({}): give one with --target {name}=URL",
                endpoint.name,
                target
                    .connection
                    .as_deref()
                    .unwrap_or("no HTTPTargetConnection")
            ));
            (Target::None, Some(target))
        }
    }
}

/// The plugin configuration of one endpoint, loaded by the filter's own
/// code; `publish` narrowed to what the untranslated steps read.
fn build_plugin(
    endpoint: &Endpoint,
    steps: &[PluginStep],
    handling: Option<Value>,
    options: &Options,
    tr: &mut Translator<'_>,
) -> Option<Value> {
    let unread = std::mem::take(&mut tr.unread);
    let setters = std::mem::take(&mut tr.setters);
    let report = &mut *tr.report;
    if steps.is_empty() {
        report.notes.push(format!(
            "{}: no step for the filter: its requests go to the target without it",
            endpoint.name
        ));
        return None;
    }
    let policies: Vec<Value> = steps
        .iter()
        .map(|s| match &s.condition {
            Some(c) => json!({"policy": s.xml, "condition": c}),
            None => json!(s.xml),
        })
        .collect();
    let mut plugin = json!({"token_service": options.token_service});
    // The proxy's name for the API-product check and `apiproxy.name`
    // (docs/decisions.md#import); a shared flow imported alone has none.
    if tr.model.kind == Kind::Proxy {
        plugin["proxy_name"] = json!(tr.model.name);
    }
    if let Some(environment) = &options.environment {
        plugin["environment"] = json!(environment);
    }
    plugin["policies"] = json!(policies);
    if endpoint.base_path != "/" {
        plugin["basepath"] = json!(endpoint.base_path);
    }
    plugin["metadata_bridge"] = json!("auto");
    plugin["publish"] = json!([]);
    if let Some(handling) = handling {
        plugin["fault_handling"] = handling;
        // A fault handler the filter refuses must not cost the token
        // checks: the configuration goes without it, and the report says
        // why.
        if let Err(line) = core::load(&plugin) {
            if let Some(map) = plugin.as_object_mut() {
                map.remove("fault_handling");
            }
            if core::load(&plugin).is_ok() {
                report.problems.push(format!(
                    "{}: the filter refuses the fault rules ({line}): the configuration is written without them, and its faults answer with Apigee's default bodies",
                    endpoint.name
                ));
            }
        }
    }
    let first = match core::load(&plugin) {
        Ok(loaded) => loaded,
        Err(line) => {
            report.problems.push(format!(
                "{}: the filter refuses the configuration: {line}",
                endpoint.name
            ));
            return None;
        }
    };
    let texts: Vec<String> = unread.iter().map(|(_, t)| t.clone()).collect();
    plugin["publish"] = json!(narrow_publish(&first.sets, &texts));
    match core::load(&plugin) {
        Ok(loaded) => {
            for w in loaded.warnings {
                let hint = unset_hint(&w, &setters);
                report
                    .warnings
                    .push(format!("{}: {w}{hint}", endpoint.name));
            }
        }
        Err(line) => {
            report.problems.push(format!(
                "{}: the filter refuses the configuration: {line}",
                endpoint.name
            ));
            return None;
        }
    }
    report
        .translated
        .extend(steps.iter().map(|s| s.entry.clone()));
    Some(plugin)
}

#[cfg(test)]
#[path = "translate_tests.rs"]
mod tests;
