//! One request's run through the policies: a state machine that the
//! [`crate::filter`] driver moves. It asks for lookups and updates, takes
//! their answers (from the cache or the token service), and ends with
//! either "continue to the upstream" or a fault reply. Pure: no host calls,
//! and the clock is an argument.
//!
//! A flow keeps what each policy found as the bytes it came in (a cache
//! entry as the host gave it, or the parsed answer), never as a list of
//! named strings: a variable is read from its policy's result when it is
//! needed ([`Flow::read`], [`Flow::visit_published`]). A flow is reused from
//! request to request, so its buffers do not allocate once warm.

use std::ops::Range;

use oauthv2info_names::{Fault, TokenKind};

use crate::condition::{Kind, Scratch, Vars};
use crate::config::FilterConfig;
use crate::plan::{PolicyPlan, StepCondition, ValueRef, Var, VarRef};
use crate::profile::{check_get, Layout, Lookup, NumberBuf, Profile, ProfileRef};
use crate::protocol::{parse_introspection, parse_set_response, Answer, ServiceFailure};
use crate::request::RequestInfo;

/// What the flow waits for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Pending {
    /// The profile of a value (a cache hit or an introspection answers it).
    Lookup {
        kind: TokenKind,
        token: Range<usize>,
    },
    /// An attribute merge on an access token.
    Update {
        token: Range<usize>,
        attributes: Vec<(String, String)>,
    },
}

/// What the flow needs next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FlowOutcome {
    /// A lookup or an update ([`Flow::pending`]).
    Wait,
    /// All policies ran: continue to the upstream.
    Continue,
    /// A policy failed without `continueOnError`: answer with this fault.
    Reply(Fault),
}

/// Something worth a metric or a log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Event {
    /// A policy ran (it succeeded or failed).
    Executed {
        policy: usize,
    },
    Fault {
        policy: usize,
        fault: Fault,
    },
    /// The token service could not be used; the reason holds no token.
    ServiceFailure {
        policy: usize,
        reason: String,
    },
}

/// A step condition's variables, read from the request and the results of
/// the policies before it. Every variable is text, as in Apigee, where the
/// flow variables these policies set are strings.
struct StepVars<'a> {
    flow: &'a Flow,
    config: &'a FilterConfig,
    request: &'a RequestInfo,
    step: &'a StepCondition,
}

impl Vars for StepVars<'_> {
    fn read(&mut self, index: usize, out: &mut String) -> Option<Kind> {
        let var = self.step.reads.get(index)?;
        self.flow
            .read(self.config, var, self.request, out)
            .then_some(Kind::Text)
    }
}

/// Where a successful policy's profile lies.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Data {
    /// A cache entry as the host gave it; the profile starts at `at`.
    Entry {
        bytes: Vec<u8>,
        at: usize,
        layout: Layout,
    },
    /// An answer parsed from the token service.
    Parsed(Profile),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    Success { data: Data, token: Range<usize> },
    Fault(Fault),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct PolicyResult {
    policy: usize,
    outcome: Outcome,
}

/// What the token service said of a lookup or update, for the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Learned {
    pub(crate) kind: TokenKind,
    pub(crate) token: String,
    pub(crate) answer: Answer,
    /// From an attribute update (SetOAuthV2Info), not an introspection.
    pub(crate) from_update: bool,
}

#[derive(Debug, Default)]
pub(crate) struct Flow {
    next: usize,
    pending: Option<Pending>,
    reply: Option<Fault>,
    last_fault: Option<Fault>,
    results: Vec<PolicyResult>,
    /// Resolved values (tokens, attribute values), by range.
    arena: String,
    scratch: String,
    /// The buffers step conditions compare in.
    condition_scratch: Scratch,
    /// When this request's clock was read (one read per host callback).
    pub(crate) now_ms: i64,
    pub(crate) events: Vec<Event>,
}

impl Flow {
    #[cfg(test)]
    pub fn new() -> Self {
        Flow::default()
    }

    /// Empties the flow for another request, keeping its allocations.
    pub(crate) fn reset(&mut self) {
        self.next = 0;
        self.pending = None;
        self.reply = None;
        self.last_fault = None;
        self.results.clear();
        self.arena.clear();
        self.scratch.clear();
        self.events.clear();
    }

    /// What the flow waits for, if anything.
    pub(crate) fn pending(&self) -> Option<&Pending> {
        self.pending.as_ref()
    }

    /// The bytes of a range of the flow's resolved values.
    pub(crate) fn text(&self, range: &Range<usize>) -> &str {
        self.arena.get(range.clone()).unwrap_or_default()
    }

    /// The policy whose fault ends the request, once the flow replies.
    pub(crate) fn reply_policy(&self) -> Option<usize> {
        self.reply?;
        self.results.last().map(|r| r.policy)
    }

    /// Runs policies until one waits for a lookup or update, or the flow
    /// ends.
    pub(crate) fn advance(&mut self, config: &FilterConfig, request: &RequestInfo) -> FlowOutcome {
        if self.pending.is_some() {
            return FlowOutcome::Wait;
        }
        loop {
            if let Some(fault) = self.reply {
                return FlowOutcome::Reply(fault);
            }
            let index = self.next;
            let Some(plan) = config.plans.get(index) else {
                return FlowOutcome::Continue;
            };
            if !plan.enabled || !self.holds(config, index, request) {
                // Disabled, or its step's condition is false: it does not
                // run and sets nothing.
                self.next += 1;
                continue;
            }
            let action = &plan.action;
            let token = match self.resolve(config, &plan.token, request) {
                // <IgnoreUnresolvedVariables>false: a ref that resolves to
                // nothing is its own fault (an empty value is resolved).
                None if action.unresolved_token_faults() => {
                    self.fail(config, index, Fault::UnresolvedVariable);
                    continue;
                }
                token => token.filter(|r| !r.is_empty()),
            };
            let token = token.and_then(|r| action.token_in(self.text(&r), r));
            let Some(token) = token else {
                self.fail(config, index, action.missing_fault(plan.kind));
                continue;
            };
            // A token an earlier policy of this request found is not
            // looked up again (VerifyAccessToken, then GetOAuthV2Info on
            // `access_token`).
            if !self.results.is_empty() && action.reuses_lookup() {
                let kind = plan.kind;
                if let Some(data) = self.found(config, kind, &token) {
                    match self.check(config, index, kind, Lookup::Known(data_view(&data))) {
                        Ok(()) => self.succeed(index, data, token),
                        Err(fault) => self.fail(config, index, fault),
                    }
                    continue;
                }
            }
            match action.pending(self, config, request, plan.kind, token) {
                Ok(pending) => self.pending = Some(pending),
                Err(fault) => {
                    self.fail(config, index, fault);
                    continue;
                }
            }
            return FlowOutcome::Wait;
        }
    }

    /// What an earlier policy of this request found for this value, if one
    /// looked it up (or updated it) successfully.
    fn found(&self, config: &FilterConfig, kind: TokenKind, token: &Range<usize>) -> Option<Data> {
        let text = self.text(token);
        // The latest: an update's answer replaces what a lookup found.
        self.results.iter().rev().find_map(|r| match &r.outcome {
            Outcome::Success { data, token: t }
                if self.text(t) == text
                    && config.plans.get(r.policy).is_some_and(|p| p.kind == kind) =>
            {
                Some(data.clone())
            }
            _ => None,
        })
    }

    /// True when policy `index` has no step condition or its condition
    /// holds now (docs/configuration.md#steps-and-conditions).
    fn holds(&mut self, config: &FilterConfig, index: usize, request: &RequestInfo) -> bool {
        let Some(Some(step)) = config.conditions.get(index) else {
            return true;
        };
        let mut scratch = std::mem::take(&mut self.condition_scratch);
        let holds = step.condition.eval(
            &mut StepVars {
                flow: self,
                config,
                request,
                step,
            },
            &mut scratch,
        );
        self.condition_scratch = scratch;
        holds
    }

    /// Resolves a value source into the arena (docs/variables.md#variables-a-ref-can-read):
    /// the ref's value when the variable is set (even to ""), else the
    /// literal text, else unresolved.
    pub(crate) fn resolve(
        &mut self,
        config: &FilterConfig,
        value: &ValueRef,
        request: &RequestInfo,
    ) -> Option<Range<usize>> {
        let start = self.arena.len();
        if let Some(reference) = &value.reference {
            let found = match reference {
                // Request variables do not read the arena: straight in.
                VarRef::Request(r) => request.resolve_into(r, &mut self.arena),
                _ => {
                    let mut scratch = std::mem::take(&mut self.scratch);
                    scratch.clear();
                    let found = self.read(config, reference, request, &mut scratch);
                    self.arena.push_str(&scratch);
                    self.scratch = scratch;
                    found
                }
            };
            if found {
                return Some(start..self.arena.len());
            }
            self.arena.truncate(start);
        }
        let literal = value.literal.as_deref()?;
        self.arena.push_str(literal);
        Some(start..self.arena.len())
    }

    fn result(&self, policy: usize) -> Option<&PolicyResult> {
        self.results.iter().find(|r| r.policy == policy)
    }

    /// Appends the value of a variable to `out`; false when it is unset.
    pub(crate) fn read(
        &self,
        config: &FilterConfig,
        var: &VarRef,
        request: &RequestInfo,
        out: &mut String,
    ) -> bool {
        let push = |out: &mut String, bytes: &[u8]| {
            out.push_str(&String::from_utf8_lossy(bytes));
            true
        };
        match var {
            VarRef::Request(r) => request.resolve_into(r, out),
            VarRef::Output {
                policy,
                output,
                or_attribute,
            } => {
                let (Some(result), Some(plan)) = (self.result(*policy), config.plans.get(*policy))
                else {
                    return false;
                };
                let Some((profile, token)) = self.success(result) else {
                    return false;
                };
                let Some(o) = plan.outputs.get(*output) else {
                    return false;
                };
                let mut buf = NumberBuf::default();
                match profile.value(
                    o.source,
                    (plan.kind.own_field(), token.as_bytes()),
                    self.now_ms,
                ) {
                    Some(v) => push(out, v.bytes(&mut buf)),
                    None => match or_attribute
                        .as_deref()
                        .and_then(|n| profile.attribute(n.as_bytes()))
                    {
                        Some(v) => push(out, v),
                        None => false,
                    },
                }
            }
            VarRef::Attribute { policy, name } => {
                let Some(result) = self.result(*policy) else {
                    return false;
                };
                match self
                    .success(result)
                    .and_then(|(p, _)| p.attribute(name.as_bytes()))
                {
                    Some(v) => push(out, v),
                    None => false,
                }
            }
            VarRef::Failed { policy } => match self.result(*policy) {
                Some(r) => push(
                    out,
                    if matches!(r.outcome, Outcome::Fault(_)) {
                        b"true"
                    } else {
                        b"false"
                    },
                ),
                None => false,
            },
            VarRef::FaultName { policy } => match self.result(*policy).map(|r| &r.outcome) {
                Some(Outcome::Fault(f)) => push(out, f.name().as_bytes()),
                _ => false,
            },
            VarRef::FaultCause { policy } => {
                match (
                    self.result(*policy).map(|r| &r.outcome),
                    config.plans.get(*policy),
                ) {
                    (Some(Outcome::Fault(f)), Some(plan)) => {
                        push(out, plan.faultstring(*f).as_bytes())
                    }
                    _ => false,
                }
            }
            VarRef::LastFault => match self.last_fault {
                Some(f) => push(out, f.name().as_bytes()),
                None => false,
            },
            VarRef::Unset => false,
        }
    }

    fn success<'a>(&'a self, result: &'a PolicyResult) -> Option<(ProfileRef<'a>, &'a str)> {
        match &result.outcome {
            Outcome::Success { data, token } => Some((data_view(data), self.text(token))),
            Outcome::Fault(_) => None,
        }
    }

    /// Answers the pending lookup from a cache entry (its bytes as the
    /// host gave them, whose lookup starts at `at`). False when the entry
    /// is corrupt (the flow still waits).
    #[inline]
    pub(crate) fn on_cached(&mut self, config: &FilterConfig, bytes: Vec<u8>, at: usize) -> bool {
        let Some(Pending::Lookup { kind, token }) = &self.pending else {
            return false;
        };
        let (kind, token) = (*kind, token.clone());
        let (lookup, layout) = match bytes.get(at..).and_then(|b| b.split_first()) {
            Some((0, [])) => (Lookup::Unknown, None),
            Some((1, profile)) => match ProfileRef::parse(profile) {
                Some(p) => (Lookup::Known(p), Some(p.layout())),
                None => return false,
            },
            _ => return false,
        };
        self.pending = None;
        let index = self.next;
        match self.check(config, index, kind, lookup) {
            Ok(()) => {
                let Some(layout) = layout else {
                    // check() accepts no unknown value.
                    self.fail(config, index, kind.invalid_fault());
                    return true;
                };
                let data = Data::Entry {
                    bytes,
                    at: at + 1,
                    layout,
                };
                self.succeed(index, data, token);
            }
            Err(fault) => self.fail(config, index, fault),
        }
        true
    }

    /// The status rules of the policy being run, for a lookup.
    #[inline]
    fn check(
        &self,
        config: &FilterConfig,
        index: usize,
        kind: TokenKind,
        lookup: Lookup<'_>,
    ) -> Result<(), Fault> {
        match config.plans.get(index) {
            Some(plan) => plan.action.check(kind, lookup, self.now_ms),
            // Not reached: the flow runs configured policies only.
            None => check_get(kind, false, lookup, self.now_ms).map(|_| ()),
        }
    }

    /// Takes the token service's HTTP answer to the pending lookup or
    /// update (status `None` when the call failed without one). Returns
    /// what the cache may keep.
    pub(crate) fn on_response(
        &mut self,
        config: &FilterConfig,
        status: Option<u16>,
        body: &[u8],
    ) -> Option<Learned> {
        let pending = self.pending.take()?;
        let index = self.next;
        match pending {
            Pending::Lookup { kind, token } => {
                let text = self.text(&token).to_string();
                match parse_introspection(status, body, kind, &text, self.now_ms) {
                    Ok(answer) => {
                        match self.check(config, index, kind, answer.lookup()) {
                            Ok(()) => {
                                if let Answer::Known(profile) = &answer {
                                    self.succeed(index, Data::Parsed(profile.clone()), token);
                                }
                            }
                            Err(fault) => self.fail(config, index, fault),
                        }
                        Some(Learned {
                            kind,
                            token: text,
                            answer,
                            from_update: false,
                        })
                    }
                    Err(failure) => {
                        self.service_failure(config, index, failure);
                        None
                    }
                }
            }
            Pending::Update { token, .. } => {
                let text = self.text(&token).to_string();
                match parse_set_response(status, body, &text, self.now_ms) {
                    Ok(Ok(profile)) => {
                        self.succeed(index, Data::Parsed(profile.clone()), token);
                        Some(Learned {
                            kind: TokenKind::AccessToken,
                            token: text,
                            answer: Answer::Known(profile),
                            from_update: true,
                        })
                    }
                    Ok(Err(fault)) => {
                        self.fail(config, index, fault);
                        None
                    }
                    Err(failure) => {
                        self.service_failure(config, index, failure);
                        None
                    }
                }
            }
        }
    }

    /// The lookup or update could not even be sent (no healthy host,
    /// unknown cluster...).
    pub(crate) fn on_dispatch_failure(&mut self, config: &FilterConfig, reason: String) {
        if self.pending.take().is_some() {
            let index = self.next;
            self.service_failure(config, index, ServiceFailure(reason));
        }
    }

    fn succeed(&mut self, index: usize, data: Data, token: Range<usize>) {
        self.results.push(PolicyResult {
            policy: index,
            outcome: Outcome::Success { data, token },
        });
        self.events.push(Event::Executed { policy: index });
        self.next = index + 1;
    }

    fn service_failure(&mut self, config: &FilterConfig, index: usize, failure: ServiceFailure) {
        self.events.push(Event::ServiceFailure {
            policy: index,
            reason: failure.0,
        });
        self.fail(config, index, Fault::TokenServiceUnavailable);
    }

    fn fail(&mut self, config: &FilterConfig, index: usize, fault: Fault) {
        let Some(plan) = config.plans.get(index) else {
            return;
        };
        self.results.push(PolicyResult {
            policy: index,
            outcome: Outcome::Fault(fault),
        });
        self.last_fault = Some(fault);
        self.events.push(Event::Executed { policy: index });
        self.events.push(Event::Fault {
            policy: index,
            fault,
        });
        if !plan.continue_on_error {
            self.reply = Some(fault);
        }
        self.next = index + 1;
    }

    /// Calls `each` for every published variable the policies set in this
    /// request, in the order they were set (and `fault.name`, with its
    /// last value, at the end). `name_buf` holds the names built at run
    /// time (custom attributes).
    pub(crate) fn visit_published(
        &self,
        config: &FilterConfig,
        name_buf: &mut Vec<u8>,
        each: impl FnMut(Published<'_>),
    ) {
        self.walk::<false>(config, name_buf, each);
    }

    /// The value of variable `name` set in this request: what a later
    /// policy's ref would read.
    #[cfg(test)]
    pub(crate) fn variable(&self, config: &FilterConfig, name: &str) -> Option<String> {
        let mut found = None;
        let mut buf = Vec::new();
        self.visit_all(config, &mut buf, |k, v| {
            if k == name.as_bytes() {
                found = Some(String::from_utf8_lossy(v).into_owned());
            }
        });
        found
    }

    /// Every variable set in this request, published or not.
    #[cfg(test)]
    pub(crate) fn visit_all(
        &self,
        config: &FilterConfig,
        name_buf: &mut Vec<u8>,
        mut each: impl FnMut(&[u8], &[u8]),
    ) {
        self.walk::<true>(config, name_buf, |p| each(p.name, p.value));
    }

    /// The one walk over the variables set in this request: every one
    /// (`ALL`), or those published.
    fn walk<const ALL: bool>(
        &self,
        config: &FilterConfig,
        name_buf: &mut Vec<u8>,
        mut each: impl FnMut(Published<'_>),
    ) {
        let shown = |var: &Var| ALL || var.published;
        let mut number = NumberBuf::default();
        for result in &self.results {
            let Some(plan) = config.plans.get(result.policy) else {
                continue;
            };
            match &result.outcome {
                Outcome::Success { data, token } => {
                    let profile = data_view(data);
                    let own = (plan.kind.own_field(), self.text(token).as_bytes());
                    for output in plan.outputs.iter().filter(|o| shown(&o.var)) {
                        if let Some(v) = profile.value(output.source, own, self.now_ms) {
                            each(Published::of(&output.var, v.bytes(&mut number)));
                        }
                    }
                    visit_attributes::<ALL>(
                        config,
                        plan,
                        profile,
                        own,
                        self.now_ms,
                        name_buf,
                        &mut each,
                    );
                    if shown(&plan.failed) {
                        each(Published::of(&plan.failed, b"false"));
                    }
                }
                Outcome::Fault(fault) => {
                    for (var, value) in [
                        (&plan.failed, "true"),
                        (&plan.fault_name, fault.name()),
                        (&plan.fault_cause, plan.faultstring(*fault)),
                    ] {
                        if shown(var) {
                            each(Published::of(var, value.as_bytes()));
                        }
                    }
                }
            }
        }
        if let (Some(fault), true) = (self.last_fault, shown(&config.fault_name)) {
            each(Published::of(&config.fault_name, fault.name().as_bytes()));
        }
    }
}

/// One published variable, as [`Flow::visit_published`] hands it over.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Published<'a> {
    pub(crate) name: &'a [u8],
    /// The name as a netstring, when it was built at load time.
    pub(crate) bridge_key: Option<&'a [u8]>,
    pub(crate) value: &'a [u8],
    /// Its internal metadata header (header_to_metadata mode).
    pub(crate) header: Option<u16>,
}

impl<'a> Published<'a> {
    #[inline]
    fn of(var: &'a Var, value: &'a [u8]) -> Published<'a> {
        Published {
            name: var.name.as_bytes(),
            bridge_key: Some(&var.bridge_key),
            value,
            header: var.header,
        }
    }
}

fn data_view(data: &Data) -> ProfileRef<'_> {
    match data {
        Data::Entry { bytes, at, layout } => {
            ProfileRef::rebuild(bytes.get(*at..).unwrap_or_default(), *layout)
        }
        Data::Parsed(p) => p.view(),
    }
}

/// The custom attributes a result sets: every attribute of the profile,
/// except one whose variable would be a standard variable that is set (the
/// standard one wins; possible only where attributes have no prefix
/// segment).
fn attributes_of<'a>(
    plan: &'a PolicyPlan,
    profile: ProfileRef<'a>,
    own: (oauthv2info_names::variables::Field, &'a [u8]),
    now_ms: i64,
) -> impl Iterator<Item = (&'a [u8], &'a [u8])> + 'a {
    profile.attributes().filter(move |(name, _)| {
        !plan.bare_attributes
            || !plan.outputs.iter().any(|o| {
                o.var.name.len() == plan.attribute_prefix.len() + name.len()
                    && o.var.name.as_bytes().ends_with(name)
                    && profile.value(o.source, own, now_ms).is_some()
            })
    })
}

/// The custom attributes of a result: every one (`ALL`), or those
/// published.
fn visit_attributes<const ALL: bool>(
    config: &FilterConfig,
    plan: &PolicyPlan,
    profile: ProfileRef<'_>,
    own: (oauthv2info_names::variables::Field, &[u8]),
    now_ms: i64,
    name_buf: &mut Vec<u8>,
    each: &mut impl FnMut(Published<'_>),
) {
    use crate::publish::Family;
    if !ALL && (plan.attributes_published == Family::None || profile.attribute_count() == 0) {
        return;
    }
    for (name, value) in attributes_of(plan, profile, own, now_ms) {
        name_buf.clear();
        name_buf.extend_from_slice(plan.attribute_prefix.as_bytes());
        name_buf.extend_from_slice(name);
        let known = plan
            .known_attributes
            .iter()
            .find(|(n, _)| n.as_bytes() == name)
            .map(|(_, v)| v);
        match known {
            Some(var) if ALL || var.published => each(Published::of(var, value)),
            Some(_) => {}
            None => {
                let published = ALL
                    || match plan.attributes_published {
                        Family::All => true,
                        Family::None => false,
                        Family::Some => {
                            std::str::from_utf8(name_buf).is_ok_and(|n| config.publish.matches(n))
                        }
                    };
                if published {
                    each(Published {
                        name: name_buf,
                        bridge_key: None,
                        value,
                        header: None,
                    });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_config;
    use crate::request::Headers;
    use serde_json::json;

    const NOW: i64 = 1_700_000_000_000;

    fn config(policies: &[&str]) -> FilterConfig {
        parse_config(json!({ "policies": policies }).to_string().as_bytes()).unwrap()
    }

    fn request(path: &str) -> RequestInfo {
        RequestInfo {
            method: b"GET".to_vec(),
            path: path.as_bytes().to_vec(),
            ..RequestInfo::default()
        }
    }

    fn with_headers(mut r: RequestInfo, headers: &[(&str, &str)]) -> RequestInfo {
        r.headers = Headers::All(
            headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
                .collect(),
        );
        r
    }

    fn profile(attributes: serde_json::Value) -> serde_json::Value {
        json!({"active": true, "profile": {
            "access_token": "good", "client_id": "app", "scope": "READ", "status": "approved",
            "expires_at": (NOW + 60_000).to_string(), "issued_at": NOW.to_string(),
            "refresh_token": "r1", "attributes": attributes}})
    }

    /// A callout as the tests see it.
    #[derive(Debug, Clone, PartialEq, Eq)]
    enum Call {
        Lookup(TokenKind, String),
        Update(String, Vec<(String, String)>),
    }

    /// Drives a flow to its end, answering with `service`.
    fn run(
        config: &FilterConfig,
        request: &RequestInfo,
        mut service: impl FnMut(&Call) -> (Option<u16>, String),
    ) -> (FlowOutcome, Flow, Vec<Call>) {
        let mut flow = Flow::new();
        flow.now_ms = NOW;
        let mut calls = Vec::new();
        loop {
            match flow.advance(config, request) {
                FlowOutcome::Wait => {
                    let call = match flow.pending().unwrap() {
                        Pending::Lookup { kind, token } => {
                            Call::Lookup(*kind, flow.text(token).to_string())
                        }
                        Pending::Update { token, attributes } => {
                            Call::Update(flow.text(token).to_string(), attributes.clone())
                        }
                    };
                    let (status, body) = service(&call);
                    calls.push(call);
                    flow.on_response(config, status, body.as_bytes());
                }
                end => return (end, flow, calls),
            }
        }
    }

    fn var(config: &FilterConfig, flow: &Flow, name: &str) -> Option<String> {
        flow.variable(config, name)
    }

    const GET: &str = r#"<GetOAuthV2Info name="G"><AccessToken ref="request.queryparam.access_token"/></GetOAuthV2Info>"#;

    #[test]
    fn success_sets_variables_and_failed_false() {
        let c = config(&[GET]);
        let (end, flow, calls) = run(&c, &request("/?access_token=good"), |_| {
            (Some(200), profile(json!({"dept": "7"})).to_string())
        });
        assert_eq!(end, FlowOutcome::Continue);
        assert_eq!(
            calls,
            vec![Call::Lookup(TokenKind::AccessToken, "good".into())]
        );
        assert_eq!(
            var(&c, &flow, "oauthv2accesstoken.G.scope").as_deref(),
            Some("READ")
        );
        assert_eq!(
            var(&c, &flow, "oauthv2accesstoken.G.accesstoken.dept").as_deref(),
            Some("7")
        );
        assert_eq!(
            var(&c, &flow, "oauthv2accesstoken.G.expires_in").as_deref(),
            Some("60")
        );
        assert_eq!(var(&c, &flow, "oauthV2.G.failed").as_deref(), Some("false"));
        assert_eq!(var(&c, &flow, "fault.name"), None);
    }

    #[test]
    fn fault_sets_fault_variables_and_replies() {
        let c = config(&[
            GET,
            r#"<GetOAuthV2Info name="Never"><ClientId>x</ClientId></GetOAuthV2Info>"#,
        ]);
        let (end, flow, calls) = run(&c, &request("/?access_token=bad"), |_| {
            (Some(200), r#"{"active":false}"#.into())
        });
        assert_eq!(end, FlowOutcome::Reply(Fault::InvalidAccessToken));
        assert_eq!(calls.len(), 1, "the second policy must not run");
        assert_eq!(
            var(&c, &flow, "fault.name").as_deref(),
            Some("invalid_access_token")
        );
        assert_eq!(var(&c, &flow, "oauthV2.G.failed").as_deref(), Some("true"));
        assert_eq!(
            var(&c, &flow, "oauthV2.G.fault.name").as_deref(),
            Some("invalid_access_token")
        );
        assert_eq!(
            var(&c, &flow, "oauthV2.G.fault.cause").as_deref(),
            Some("Invalid Access Token")
        );
        assert_eq!(var(&c, &flow, "oauthv2accesstoken.G.scope"), None);
    }

    #[test]
    fn unresolved_token_faults_without_a_callout() {
        let c = config(&[GET]);
        let (end, _, calls) = run(&c, &request("/"), |_| unreachable!());
        assert_eq!(end, FlowOutcome::Reply(Fault::InvalidAccessToken));
        assert!(calls.is_empty());
        // Set to "" counts as set, and an empty token is invalid.
        let (end, _, calls) = run(&c, &request("/?access_token="), |_| unreachable!());
        assert_eq!(end, FlowOutcome::Reply(Fault::InvalidAccessToken));
        assert!(calls.is_empty());
        for (xml, fault) in [
            (
                r#"<GetOAuthV2Info name="R"><RefreshToken ref="nothing"/></GetOAuthV2Info>"#,
                Fault::InvalidRefreshToken,
            ),
            (
                r#"<GetOAuthV2Info name="C"><AuthorizationCode ref="nothing"/></GetOAuthV2Info>"#,
                Fault::InvalidAuthorizationCode,
            ),
            (
                r#"<GetOAuthV2Info name="I"><ClientId ref="nothing"/></GetOAuthV2Info>"#,
                Fault::InvalidClientId,
            ),
        ] {
            let (end, _, _) = run(&config(&[xml]), &request("/"), |_| unreachable!());
            assert_eq!(end, FlowOutcome::Reply(fault));
        }
    }

    #[test]
    fn ref_wins_over_literal_and_literal_is_the_fallback() {
        let c = config(&[
            r#"<GetOAuthV2Info name="G"><AccessToken ref="request.header.x-token">fallback</AccessToken></GetOAuthV2Info>"#,
        ]);
        let with_header = with_headers(request("/"), &[("x-token", "from-header")]);
        let inactive = |_: &Call| (Some(200), r#"{"active":false}"#.to_string());
        let (_, _, calls) = run(&c, &with_header, inactive);
        assert_eq!(
            calls[0],
            Call::Lookup(TokenKind::AccessToken, "from-header".into())
        );
        let (_, _, calls) = run(&c, &request("/"), inactive);
        assert_eq!(
            calls[0],
            Call::Lookup(TokenKind::AccessToken, "fallback".into())
        );
        // Text is never a template.
        let c = config(&[
            r#"<GetOAuthV2Info name="G"><AccessToken>{request.header.x-token}</AccessToken></GetOAuthV2Info>"#,
        ]);
        let (_, _, calls) = run(&c, &with_header, inactive);
        assert_eq!(
            calls[0],
            Call::Lookup(TokenKind::AccessToken, "{request.header.x-token}".into())
        );
    }

    /// A step whose condition is false is skipped like a disabled policy;
    /// conditions read request variables, `proxy.pathsuffix` and what
    /// earlier policies set.
    #[test]
    fn step_conditions_decide_which_policies_run() {
        let c = parse_config(
            json!({
                "basepath": "/v1/orders",
                "policies": [
                    {"policy": GET, "condition": "request.header.x-skip != \"yes\""},
                    {"policy": r#"<SetOAuthV2Info name="S"><AccessToken ref="request.queryparam.access_token"/><Attributes><Attribute name="seen">1</Attribute></Attributes></SetOAuthV2Info>"#,
                     "condition": "(request.verb = \"POST\" or request.verb = \"PUT\") and proxy.pathsuffix MatchesPath \"/*/items\" and oauthv2accesstoken.G.scope = \"READ\""},
                ]
            })
            .to_string()
            .as_bytes(),
        )
        .unwrap();
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
        let answer = |call: &Call| match call {
            Call::Lookup(..) => (Some(200), profile(json!({})).to_string()),
            Call::Update(..) => (Some(200), profile(json!({"seen": "1"})).to_string()),
        };
        let at = |method: &str, path: &str, headers: &[(&str, &str)]| {
            let mut r = with_headers(request(path), headers);
            r.method = method.as_bytes().to_vec();
            r
        };
        let calls = |r: &RequestInfo| run(&c, r, answer).2;
        let update = Call::Update("good".into(), vec![("seen".into(), "1".into())]);
        let lookup = Call::Lookup(TokenKind::AccessToken, "good".into());
        assert_eq!(
            calls(&at("POST", "/v1/orders/7/items?access_token=good", &[])),
            vec![lookup.clone(), update.clone()]
        );
        assert_eq!(
            calls(&at("PUT", "/v1/orders/8/items?access_token=good", &[])),
            vec![lookup.clone(), update]
        );
        assert_eq!(
            calls(&at("GET", "/v1/orders/7/items?access_token=good", &[])),
            vec![lookup.clone()],
            "the verb is not POST or PUT"
        );
        assert_eq!(
            calls(&at("POST", "/v1/orders/7?access_token=good", &[])),
            vec![lookup],
            "the path suffix does not match"
        );
        // G skipped: its scope is unset, so S's condition is false too.
        let (end, flow, calls) = run(
            &c,
            &at(
                "POST",
                "/v1/orders/7/items?access_token=good",
                &[("x-skip", "yes")],
            ),
            answer,
        );
        assert_eq!((end, calls), (FlowOutcome::Continue, vec![]));
        assert_eq!(
            var(&c, &flow, "oauthV2.G.failed"),
            None,
            "a skipped policy sets nothing"
        );
        assert_eq!(var(&c, &flow, "oauthV2.S.failed"), None);
    }

    /// A condition that reads `fault.name` runs a policy only after an
    /// earlier one failed with `continueOnError`.
    #[test]
    fn a_condition_can_read_an_earlier_fault() {
        let c = parse_config(
            json!({"policies": [
                r#"<GetOAuthV2Info name="Soft" continueOnError="true"><AccessToken ref="request.queryparam.t"/></GetOAuthV2Info>"#,
                {"policy": r#"<GetOAuthV2Info name="Fallback"><AccessToken>good</AccessToken></GetOAuthV2Info>"#,
                 "condition": "oauthV2.Soft.failed = true and fault.name = \"invalid_access_token\""},
            ]})
            .to_string()
            .as_bytes(),
        )
        .unwrap();
        let answer = |call: &Call| match call {
            Call::Lookup(_, t) if t == "good" => (Some(200), profile(json!({})).to_string()),
            _ => (Some(200), r#"{"active":false}"#.into()),
        };
        let (_, _, calls) = run(&c, &request("/?t=bad"), answer);
        assert_eq!(
            calls,
            vec![
                Call::Lookup(TokenKind::AccessToken, "bad".into()),
                Call::Lookup(TokenKind::AccessToken, "good".into())
            ]
        );
        let (_, _, calls) = run(&c, &request("/?t=good"), answer);
        assert_eq!(
            calls,
            vec![Call::Lookup(TokenKind::AccessToken, "good".into())]
        );
    }

    const VERIFY: &str =
        r#"<OAuthV2 name="Verify"><Operation>VerifyAccessToken</Operation></OAuthV2>"#;

    fn bearer(authorization: &str) -> RequestInfo {
        with_headers(request("/"), &[("authorization", authorization)])
    }

    /// Tokens the tests' service knows: `good` (scope READ), `old`
    /// (expired), `gone` (revoked).
    fn verify_service(call: &Call) -> (Option<u16>, String) {
        match call {
            Call::Lookup(_, t) if t == "good" => {
                (Some(200), profile(json!({"tier": "gold"})).to_string())
            }
            Call::Lookup(_, t) if t == "old" => {
                let mut p = profile(json!({}));
                p["profile"]["expires_at"] = json!((NOW - 1).to_string());
                (Some(200), p.to_string())
            }
            Call::Lookup(_, t) if t == "gone" => {
                let mut p = profile(json!({}));
                p["profile"]["status"] = json!("revoked");
                (Some(200), p.to_string())
            }
            Call::Update(t, _) if t == "good" => (
                Some(200),
                profile(json!({"tier": "gold", "seen": "1"})).to_string(),
            ),
            _ => (Some(200), r#"{"active":false}"#.into()),
        }
    }

    /// VerifyAccessToken reads `Authorization: Bearer <token>` (the scheme
    /// in any case, then spaces) and sets its variables without a prefix.
    #[test]
    fn verify_access_token_reads_the_bearer_token() {
        let c = config(&[VERIFY]);
        for header in [
            "Bearer good",
            "bearer good",
            "BEARER   good ",
            "Bearer\tgood",
        ] {
            let (end, flow, calls) = run(&c, &bearer(header), verify_service);
            assert_eq!(end, FlowOutcome::Continue, "{header:?}");
            assert_eq!(
                calls,
                vec![Call::Lookup(TokenKind::AccessToken, "good".into())]
            );
            assert_eq!(var(&c, &flow, "client_id").as_deref(), Some("app"));
            assert_eq!(var(&c, &flow, "scope").as_deref(), Some("READ"));
            assert_eq!(var(&c, &flow, "status").as_deref(), Some("approved"));
            assert_eq!(var(&c, &flow, "expires_in").as_deref(), Some("60"));
            assert_eq!(var(&c, &flow, "accesstoken.tier").as_deref(), Some("gold"));
            assert_eq!(var(&c, &flow, "access_token").as_deref(), Some("good"));
            assert_eq!(
                var(&c, &flow, "oauthV2.Verify.failed").as_deref(),
                Some("false")
            );
        }
        // The token value is a secret: not published by default.
        let (_, flow, _) = run(&c, &bearer("Bearer good"), verify_service);
        let mut published = Vec::new();
        flow.visit_published(&c, &mut Vec::new(), |p| published.push(p.name.to_vec()));
        assert!(published.iter().any(|n| n == b"client_id"));
        assert!(published.iter().all(|n| n != b"access_token"));
    }

    #[test]
    fn verify_access_token_faults_have_their_statuses() {
        let c = config(&[VERIFY]);
        for (header, fault) in [
            (None, Fault::MissingAccessToken),
            (Some("good"), Fault::MissingAccessToken),
            (Some("Bearergood"), Fault::MissingAccessToken),
            (Some("Bearer"), Fault::MissingAccessToken),
            (Some("Bearer   "), Fault::MissingAccessToken),
            (Some("Basic dXNlcjpwYXNz"), Fault::MissingAccessToken),
            (Some("Bearer nope"), Fault::VerifyInvalidAccessToken),
            (Some("Bearer gone"), Fault::VerifyInvalidAccessToken),
            (Some("Bearer old"), Fault::VerifyAccessTokenExpired),
        ] {
            let r = match header {
                Some(h) => bearer(h),
                None => request("/"),
            };
            let (end, flow, calls) = run(&c, &r, verify_service);
            assert_eq!(end, FlowOutcome::Reply(fault), "{header:?}");
            assert_eq!(
                calls.is_empty(),
                fault == Fault::MissingAccessToken,
                "{header:?}"
            );
            assert_eq!(var(&c, &flow, "fault.name").as_deref(), Some(fault.name()));
            assert_eq!(
                var(&c, &flow, "oauthV2.Verify.failed").as_deref(),
                Some("true")
            );
            assert_eq!(var(&c, &flow, "client_id"), None);
            assert_eq!(flow.reply_policy(), Some(0));
        }
        assert_eq!(Fault::MissingAccessToken.status(), 401);
        assert_eq!(Fault::VerifyAccessTokenExpired.status(), 401);
    }

    #[test]
    fn verify_access_token_scopes_prefix_and_variable() {
        let scoped = |scope: &str| {
            config(&[&format!(
                r#"<OAuthV2 name="V"><Operation>VerifyAccessToken</Operation><Scope>{scope}</Scope></OAuthV2>"#
            )])
        };
        let c = scoped("WRITE  READ");
        assert_eq!(
            run(&c, &bearer("Bearer good"), verify_service).0,
            FlowOutcome::Continue
        );
        let c = scoped("WRITE ADMIN");
        let (end, flow, _) = run(&c, &bearer("Bearer good"), verify_service);
        assert_eq!(end, FlowOutcome::Reply(Fault::InsufficientScope));
        assert_eq!(
            var(&c, &flow, "oauthV2.V.fault.cause").as_deref(),
            Some("Required scope(s): WRITE ADMIN")
        );
        assert_eq!(
            c.plans[0].fault_body(Fault::InsufficientScope),
            r#"{"fault":{"faultstring":"Required scope(s): WRITE ADMIN","detail":{"errorcode":"steps.oauth.v2.InsufficientScope"}}}"#
        );
        assert_eq!(Fault::InsufficientScope.status(), 403);
        // Scopes compare exactly.
        let c = scoped("read");
        assert_eq!(
            run(&c, &bearer("Bearer good"), verify_service).0,
            FlowOutcome::Reply(Fault::InsufficientScope)
        );
        // A token from a variable, with and without a prefix.
        let c = config(&[
            r#"<OAuthV2 name="V"><Operation>VerifyAccessToken</Operation><AccessToken>request.header.x-token</AccessToken><AccessTokenPrefix/></OAuthV2>"#,
        ]);
        let r = with_headers(
            request("/"),
            &[("x-token", "good"), ("authorization", "Bearer nope")],
        );
        assert_eq!(run(&c, &r, verify_service).0, FlowOutcome::Continue);
        let c = config(&[
            r#"<OAuthV2 name="V"><Operation>VerifyAccessToken</Operation><AccessToken>request.queryparam.t</AccessToken><AccessTokenPrefix>Token</AccessTokenPrefix></OAuthV2>"#,
        ]);
        assert_eq!(
            run(&c, &request("/?t=Token%20good"), verify_service).0,
            FlowOutcome::Continue
        );
        assert_eq!(
            run(&c, &request("/?t=good"), verify_service).0,
            FlowOutcome::Reply(Fault::MissingAccessToken)
        );
    }

    /// `continueOnError` lets the request go on after a VerifyAccessToken
    /// fault, with the fault variables set; `enabled="false"` skips it.
    #[test]
    fn verify_access_token_continue_on_error_and_enabled() {
        let c = config(&[
            r#"<OAuthV2 name="Soft" continueOnError="true"><Operation>VerifyAccessToken</Operation></OAuthV2>"#,
            r#"<OAuthV2 name="Off" enabled="false"><Operation>VerifyAccessToken</Operation></OAuthV2>"#,
        ]);
        let (end, flow, calls) = run(&c, &request("/"), verify_service);
        assert_eq!((end, calls.len()), (FlowOutcome::Continue, 0));
        assert_eq!(
            var(&c, &flow, "oauthV2.Soft.failed").as_deref(),
            Some("true")
        );
        assert_eq!(
            var(&c, &flow, "fault.name").as_deref(),
            Some("InvalidAccessToken")
        );
        assert_eq!(
            var(&c, &flow, "oauthV2.Soft.fault.cause").as_deref(),
            Some("Invalid access token")
        );
        assert_eq!(var(&c, &flow, "oauthV2.Off.failed"), None);
        assert_eq!(flow.reply_policy(), None);
    }

    /// VerifyAccessToken, then GetOAuthV2Info and SetOAuthV2Info on
    /// `access_token`: one lookup serves both reads.
    #[test]
    fn verify_then_get_and_set_on_access_token() {
        let c = config(&[
            VERIFY,
            r#"<GetOAuthV2Info name="G"><AccessToken ref="access_token"/></GetOAuthV2Info>"#,
            r#"<SetOAuthV2Info name="S"><AccessToken ref="access_token"/><Attributes><Attribute name="seen">1</Attribute><Attribute name="app" ref="client_id"/></Attributes></SetOAuthV2Info>"#,
        ]);
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
        let (end, flow, calls) = run(&c, &bearer("Bearer good"), verify_service);
        assert_eq!(end, FlowOutcome::Continue);
        assert_eq!(
            calls,
            vec![
                Call::Lookup(TokenKind::AccessToken, "good".into()),
                Call::Update(
                    "good".into(),
                    vec![("seen".into(), "1".into()), ("app".into(), "app".into())]
                ),
            ]
        );
        assert_eq!(
            var(&c, &flow, "oauthv2accesstoken.G.accesstoken.tier").as_deref(),
            Some("gold")
        );
        // The lookup served to G is checked by G's own rules: a revoked
        // token fails Verify, and G never runs.
        let (end, _, calls) = run(&c, &bearer("Bearer gone"), verify_service);
        assert_eq!(
            (end, calls.len()),
            (FlowOutcome::Reply(Fault::VerifyInvalidAccessToken), 1)
        );
    }

    #[test]
    fn continue_on_error_and_enabled() {
        let c = config(&[
            r#"<GetOAuthV2Info name="Off" enabled="false"><AccessToken>x</AccessToken></GetOAuthV2Info>"#,
            r#"<GetOAuthV2Info name="Soft" continueOnError="true"><AccessToken>bad</AccessToken></GetOAuthV2Info>"#,
            r#"<GetOAuthV2Info name="Ok"><AccessToken>good</AccessToken></GetOAuthV2Info>"#,
        ]);
        let (end, flow, calls) = run(&c, &request("/"), |call| match call {
            Call::Lookup(_, t) if t == "good" => (Some(200), profile(json!({})).to_string()),
            _ => (Some(200), r#"{"active":false}"#.into()),
        });
        assert_eq!(end, FlowOutcome::Continue);
        assert_eq!(calls.len(), 2);
        let mut names = Vec::new();
        flow.visit_all(&c, &mut Vec::new(), |k, _| {
            names.push(String::from_utf8_lossy(k).into_owned())
        });
        assert!(
            names.iter().all(|n| !n.contains(".Off.")),
            "a disabled policy sets nothing"
        );
        assert_eq!(
            var(&c, &flow, "oauthV2.Soft.failed").as_deref(),
            Some("true")
        );
        assert_eq!(
            var(&c, &flow, "oauthV2.Ok.failed").as_deref(),
            Some("false")
        );
        // fault.name keeps its value after a later success.
        assert_eq!(
            var(&c, &flow, "fault.name").as_deref(),
            Some("invalid_access_token")
        );
    }

    #[test]
    fn service_failures_are_token_service_unavailable() {
        let c = config(&[GET]);
        for (status, body) in [
            (None, ""),
            (Some(503), ""),
            (Some(504), "upstream request timeout"),
            (Some(200), "garbage"),
            (Some(200), "{\"active\":tr"),
        ] {
            let (end, flow, _) = run(&c, &request("/?access_token=t"), |_| {
                (status, body.to_string())
            });
            assert_eq!(
                end,
                FlowOutcome::Reply(Fault::TokenServiceUnavailable),
                "{status:?} {body}"
            );
            assert_eq!(
                var(&c, &flow, "fault.name").as_deref(),
                Some("token_service_unavailable")
            );
        }
        let mut flow = Flow::new();
        let req = request("/?access_token=t");
        assert_eq!(flow.advance(&c, &req), FlowOutcome::Wait);
        flow.on_dispatch_failure(&c, "no healthy upstream".into());
        assert!(flow
            .events
            .iter()
            .any(|e| matches!(e, Event::ServiceFailure { .. })));
        assert_eq!(
            flow.advance(&c, &req),
            FlowOutcome::Reply(Fault::TokenServiceUnavailable)
        );
    }

    /// `<IgnoreUnresolvedVariables>`: absent or true, an attribute whose
    /// ref resolves to nothing is skipped; false, the policy faults with
    /// UnresolvedVariable before any call (an empty value is resolved).
    #[test]
    fn ignore_unresolved_variables_decides_what_an_unresolved_ref_does() {
        let set = |ignore: &str| {
            config(&[&format!(
                r#"<SetOAuthV2Info name="S"><AccessToken ref="request.queryparam.t"/><Attributes>
                     <Attribute name="dept" ref="request.queryparam.dept"/>
                     <Attribute name="fixed">7</Attribute>
                   </Attributes>{ignore}</SetOAuthV2Info>"#
            )])
        };
        let ok = |_: &Call| (Some(200), profile(json!({})).to_string());
        for ignore in [
            "",
            "<IgnoreUnresolvedVariables>true</IgnoreUnresolvedVariables>",
        ] {
            let c = set(ignore);
            let (end, _, calls) = run(&c, &request("/?t=tok"), ok);
            assert_eq!(end, FlowOutcome::Continue, "{ignore}");
            assert_eq!(
                calls,
                [Call::Update(
                    "tok".into(),
                    vec![("fixed".into(), "7".into())]
                )],
                "{ignore}: dept skipped"
            );
            // An unresolved token is no token, whatever the element says.
            let (end, _, calls) = run(&c, &request("/"), ok);
            assert_eq!(end, FlowOutcome::Reply(Fault::InvalidAccessToken));
            assert!(calls.is_empty());
        }
        let c = set("<IgnoreUnresolvedVariables>false</IgnoreUnresolvedVariables>");
        for path in ["/?t=tok", "/?dept=1"] {
            let (end, flow, calls) = run(&c, &request(path), ok);
            assert_eq!(end, FlowOutcome::Reply(Fault::UnresolvedVariable), "{path}");
            assert!(calls.is_empty(), "{path}: no call");
            assert_eq!(
                var(&c, &flow, "fault.name").as_deref(),
                Some("UnresolvedVariable")
            );
            assert_eq!(var(&c, &flow, "oauthV2.S.failed").as_deref(), Some("true"));
            assert_eq!(
                var(&c, &flow, "oauthV2.S.fault.cause").as_deref(),
                Some("Unable to resolve variable")
            );
        }
        // Set, even to "", is resolved; an empty token is still no token.
        let (end, _, calls) = run(&c, &request("/?t=tok&dept="), ok);
        assert_eq!(end, FlowOutcome::Continue);
        assert_eq!(
            calls,
            [Call::Update(
                "tok".into(),
                vec![("dept".into(), "".into()), ("fixed".into(), "7".into())]
            )]
        );
        let (end, _, _) = run(&c, &request("/?t=&dept=1"), ok);
        assert_eq!(end, FlowOutcome::Reply(Fault::InvalidAccessToken));
    }

    #[test]
    fn chained_get_set_get_in_one_request() {
        let c = config(&[
            r#"<GetOAuthV2Info name="Before"><AccessToken ref="request.header.authorization"/></GetOAuthV2Info>"#,
            r#"<SetOAuthV2Info name="Set"><AccessToken ref="oauthv2accesstoken.Before.access_token"/><Attributes>
                 <Attribute name="dept" ref="request.queryparam.dept"/>
                 <Attribute name="dept">overridden-by-the-last</Attribute>
                 <Attribute name="skipped" ref="request.queryparam.none"/>
                 <Attribute name="empty" ref="request.queryparam.empty"/>
               </Attributes></SetOAuthV2Info>"#,
            r#"<GetOAuthV2Info name="After"><AccessToken ref="oauthv2accesstoken.Before.access_token"/></GetOAuthV2Info>"#,
        ]);
        let req = with_headers(request("/?dept=7&empty="), &[("authorization", "good")]);
        let mut stored = json!({"old": "1"});
        let (end, flow, calls) = run(&c, &req, |call| match call {
            Call::Lookup(..) => (Some(200), profile(stored.clone()).to_string()),
            Call::Update(_, attributes) => {
                for (k, v) in attributes {
                    stored[k] = json!(v);
                }
                (Some(200), profile(stored.clone()).to_string())
            }
        });
        assert_eq!(end, FlowOutcome::Continue);
        assert_eq!(
            calls[1],
            Call::Update(
                "good".into(),
                vec![
                    ("dept".into(), "overridden-by-the-last".into()),
                    ("empty".into(), "".into())
                ]
            )
        );
        assert_eq!(
            var(&c, &flow, "oauthv2accesstoken.Before.accesstoken.dept"),
            None
        );
        assert_eq!(
            var(&c, &flow, "oauthv2accesstoken.Set.dept").as_deref(),
            Some("overridden-by-the-last")
        );
        assert_eq!(
            var(&c, &flow, "oauthv2accesstoken.Set.old").as_deref(),
            Some("1")
        );
        assert_eq!(
            var(&c, &flow, "oauthv2accesstoken.After.accesstoken.dept").as_deref(),
            Some("overridden-by-the-last")
        );
        assert_eq!(
            var(&c, &flow, "oauthV2.Set.failed").as_deref(),
            Some("false")
        );
    }

    #[test]
    fn a_ref_to_an_earlier_own_field_falls_back_to_the_looked_up_value() {
        // The profile omits access_token: the variable is the looked-up token.
        let c = config(&[
            GET,
            r#"<GetOAuthV2Info name="Again"><AccessToken ref="oauthv2accesstoken.G.access_token"/></GetOAuthV2Info>"#,
        ]);
        let answer = json!({"active": true, "profile": {"status": "approved", "expires_at": "-1"}})
            .to_string();
        let (end, flow, calls) = run(&c, &request("/?access_token=tok%2B1"), |_| {
            (Some(200), answer.clone())
        });
        assert_eq!(end, FlowOutcome::Continue);
        // The second policy's value is the looked-up token, which the
        // first one already found: no second lookup.
        assert_eq!(
            calls,
            [Call::Lookup(TokenKind::AccessToken, "tok+1".into())]
        );
        assert_eq!(
            var(&c, &flow, "oauthv2accesstoken.Again.access_token").as_deref(),
            Some("tok+1")
        );
    }

    #[test]
    fn set_faults_and_set_without_resolved_attributes() {
        let c = config(&[
            r#"<SetOAuthV2Info name="S"><AccessToken ref="request.queryparam.t"/><Attributes>
            <Attribute name="a" ref="request.queryparam.a"/></Attributes></SetOAuthV2Info>"#,
        ]);
        for (status, body, fault) in [
            (
                404,
                r#"{"error":"invalid_access_token"}"#,
                Fault::InvalidAccessToken,
            ),
            (
                409,
                r#"{"error":"invalid_access_token"}"#,
                Fault::InvalidAccessToken,
            ),
            (
                409,
                r#"{"error":"access_token_expired"}"#,
                Fault::AccessTokenExpired,
            ),
            (
                400,
                r#"{"error":"invalid_request"}"#,
                Fault::TokenServiceUnavailable,
            ),
            (500, "", Fault::TokenServiceUnavailable),
        ] {
            let (end, flow, _) = run(&c, &request("/?t=x&a=1"), |_| {
                (Some(status), body.to_string())
            });
            assert_eq!(end, FlowOutcome::Reply(fault), "{status} {body}");
            assert_eq!(
                var(&c, &flow, "oauthV2.S.fault.name").as_deref(),
                Some(fault.name())
            );
        }
        // No attribute resolved: the token is checked by introspection.
        let (end, flow, calls) = run(&c, &request("/?t=good"), |_| {
            (Some(200), profile(json!({"k": "v"})).to_string())
        });
        assert_eq!(end, FlowOutcome::Continue);
        assert!(matches!(calls[0], Call::Lookup(TokenKind::AccessToken, _)));
        assert_eq!(
            var(&c, &flow, "oauthv2accesstoken.S.k").as_deref(),
            Some("v")
        );
        let (end, _, _) = run(&c, &request("/?t=bad"), |_| {
            (Some(200), r#"{"active":false}"#.into())
        });
        assert_eq!(end, FlowOutcome::Reply(Fault::InvalidAccessToken));
    }

    #[test]
    fn callout_requests_are_well_formed() {
        let c = config(&[
            r#"<GetOAuthV2Info name="R"><RefreshToken>a b&amp;c=d</RefreshToken></GetOAuthV2Info>"#,
        ]);
        let mut flow = Flow::new();
        assert_eq!(flow.advance(&c, &request("/")), FlowOutcome::Wait);
        let (path, content_type, body) = crate::protocol::request(&flow, &c).unwrap();
        assert_eq!(path, "/oauth2/introspect");
        assert_eq!(content_type, "application/x-www-form-urlencoded");
        assert_eq!(body, b"token=a%20b%26c%3Dd&token_type_hint=refresh_token");
        let c = config(&[
            r#"<SetOAuthV2Info name="S"><AccessToken>t"</AccessToken><Attributes><Attribute name="n">v&#1;</Attribute></Attributes></SetOAuthV2Info>"#,
        ]);
        let mut flow = Flow::new();
        assert_eq!(flow.advance(&c, &request("/")), FlowOutcome::Wait);
        let (path, content_type, body) = crate::protocol::request(&flow, &c).unwrap();
        assert_eq!(path, "/v1/accesstokens/attributes");
        assert_eq!(content_type, "application/json");
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            v,
            json!({"token": "t\"", "attributes": [{"name": "n", "value": "v\u{1}"}]})
        );
    }

    #[test]
    fn learned_profiles_replay_from_a_cache_entry() {
        let c = config(&[GET]);
        let req = request("/?access_token=good");
        let mut flow = Flow::new();
        flow.now_ms = NOW;
        assert_eq!(flow.advance(&c, &req), FlowOutcome::Wait);
        let learned = flow
            .on_response(&c, Some(200), profile(json!({})).to_string().as_bytes())
            .unwrap();
        assert_eq!(learned.token, "good");
        let Answer::Known(p) = &learned.answer else {
            panic!("unknown")
        };
        let entry =
            crate::cache::encode(TokenKind::AccessToken, b"good", NOW + 60_000, NOW, Some(p));
        let at = crate::cache::EntryHead::parse(&entry).unwrap().body_at();
        let mut again = Flow::new();
        again.now_ms = NOW + 30_000;
        assert_eq!(again.advance(&c, &req), FlowOutcome::Wait);
        assert!(again.on_cached(&c, entry, at));
        assert_eq!(again.advance(&c, &req), FlowOutcome::Continue);
        assert_eq!(
            var(&c, &again, "oauthv2accesstoken.G.expires_in").as_deref(),
            Some("30")
        );
        // A corrupt entry is refused and the flow still waits.
        let mut third = Flow::new();
        assert_eq!(third.advance(&c, &req), FlowOutcome::Wait);
        assert!(!third.on_cached(&c, vec![1, 2, 3], 1));
        assert!(third.pending().is_some());
    }

    #[test]
    fn published_variables_follow_publish_and_secrets() {
        let c = parse_config(json!({"policies": [GET], "publish": ["oauthv2accesstoken.*.scope", "oauthv2accesstoken.*.access_token", "oauthv2accesstoken.G.accesstoken.a*", "oauthV2.**"]}).to_string().as_bytes());
        assert!(c.is_err(), "a* is not a whole segment");
        let c = parse_config(json!({"policies": [GET], "publish": ["oauthv2accesstoken.*.scope", "oauthv2accesstoken.*.access_token", "oauthv2accesstoken.G.accesstoken.a", "oauthV2.**"]}).to_string().as_bytes()).unwrap();
        let (_, flow, _) = run(&c, &request("/?access_token=good"), |_| {
            (Some(200), profile(json!({"a": "1", "b": "2"})).to_string())
        });
        let mut published = Vec::new();
        flow.visit_published(&c, &mut Vec::new(), |p| {
            published.push((
                String::from_utf8_lossy(p.name).into_owned(),
                String::from_utf8_lossy(p.value).into_owned(),
                p.header,
            ))
        });
        assert_eq!(
            published,
            [
                (
                    "oauthv2accesstoken.G.scope".to_string(),
                    "READ".to_string(),
                    None
                ),
                (
                    "oauthv2accesstoken.G.accesstoken.a".to_string(),
                    "1".to_string(),
                    None
                ),
                ("oauthV2.G.failed".to_string(), "false".to_string(), None),
            ]
        );
    }
}
