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

use oauthv2info_names::variables::{ProductPart, Source};
use oauthv2info_names::{Fault, TokenKind};

use crate::condition::{Kind, Scratch, Vars};
use crate::config::FilterConfig;
use crate::plan::{Output, PolicyPlan, StepCondition, ValueRef, Var, VarRef};
use crate::profile::products::{CallBytes, Decisions, MatchRef, ProductAt, ProductCheck, Strs};
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
    Success {
        data: Data,
        token: Range<usize>,
        /// The API product that allowed the call, when one was checked.
        product: Option<ProductAt>,
    },
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
            // A policy that resolves no token (RaiseFault) raises at once.
            if let Some(fault) = action.raises() {
                self.fail(config, index, fault);
                continue;
            }
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
            // A policy that checks products reuses one only when the
            // request's path and (when its products list verbs) verb
            // were read (filter/driver.rs, `read_call`).
            if !self.results.is_empty() && action.reuses_lookup() {
                let kind = plan.kind;
                let found = self.found(config, kind, &token).filter(|data| {
                    !action.checks_products()
                        || (request.path_read
                            && (request.method_read || !data_view(data).checks_verbs()))
                });
                if let Some(data) = found {
                    let lookup = Lookup::Known(data_view(&data));
                    match self.check(config, request, index, kind, lookup, None) {
                        Ok(product) => self.succeed(index, data, token, product),
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
            Outcome::Success { data, token: t, .. }
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

    /// The result a ref to policy `policy`'s variables reads. For a
    /// VerifyAccessToken, whose variables have no prefix (`access_token`,
    /// `client_id`...), that is the last VerifyAccessToken that succeeded in
    /// this request, whichever it is: the one that ran, as on Apigee, not
    /// the one the ref was bound to at load time (docs/decisions.md#verifyaccesstoken).
    /// Every VerifyAccessToken has the same outputs, so the ref's output
    /// index holds. No allocation; a scan of this request's few results.
    #[inline]
    fn bound<'a>(
        &'a self,
        config: &'a FilterConfig,
        policy: usize,
    ) -> Option<(&'a PolicyResult, &'a PolicyPlan)> {
        let plan = config.plans.get(policy)?;
        if plan.action.variable_prefix().is_some() {
            return self.result(policy).map(|r| (r, plan));
        }
        self.results.iter().rev().find_map(|r| {
            let p = config.plans.get(r.policy)?;
            (p.action.variable_prefix().is_none() && matches!(r.outcome, Outcome::Success { .. }))
                .then_some((r, p))
        })
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
            crate::request::push_text(out, bytes);
            true
        };
        match var {
            VarRef::Request(r) => request.resolve_into(r, out),
            VarRef::Output {
                policy,
                output,
                or_attribute,
            } => {
                let Some((result, plan)) = self.bound(config, *policy) else {
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
                    None => match o.source {
                        Source::Product(part) => {
                            read_product(profile, product_of(result), part, out)
                        }
                        _ => match or_attribute
                            .as_deref()
                            .and_then(|n| profile.attribute(n.as_bytes()))
                        {
                            Some(v) => push(out, v),
                            None => false,
                        },
                    },
                }
            }
            VarRef::Attribute { policy, name } => {
                let Some((result, _)) = self.bound(config, *policy) else {
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
            VarRef::ProductAttribute {
                policy,
                name,
                operation,
            } => {
                let Some((result, _)) = self.bound(config, *policy) else {
                    return false;
                };
                let Some((profile, _)) = self.success(result) else {
                    return false;
                };
                let found = product_of(result)
                    .and_then(|at| at.resolve(profile.products()))
                    .and_then(|m| {
                        let mut attributes = if *operation {
                            m.operation?.0.attributes
                        } else {
                            m.product.attributes
                        };
                        attributes
                            .find(|(k, _)| *k == name.as_bytes())
                            .map(|(_, v)| v)
                    });
                match found {
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
            Outcome::Success { data, token, .. } => Some((data_view(data), self.text(token))),
            Outcome::Fault(_) => None,
        }
    }

    /// Answers the pending lookup from a cache entry (its bytes as the
    /// host gave them, whose lookup starts at `at`). False when the entry
    /// is corrupt (the flow still waits). `memo`: the worker's memo of
    /// API-product decisions, when the request runs under the
    /// configuration it serves.
    #[inline]
    pub(crate) fn on_cached(
        &mut self,
        config: &FilterConfig,
        request: &RequestInfo,
        bytes: Vec<u8>,
        at: usize,
        memo: Option<&mut Decisions>,
    ) -> bool {
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
        match self.check(config, request, index, kind, lookup, memo) {
            Ok(product) => {
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
                self.succeed(index, data, token, product);
            }
            Err(fault) => self.fail(config, index, fault),
        }
        true
    }

    /// The status rules of the policy being run, for a lookup, and its
    /// API-product check of the request's path suffix and verb (decided
    /// through `memo` when given).
    #[inline]
    fn check(
        &mut self,
        config: &FilterConfig,
        request: &RequestInfo,
        index: usize,
        kind: TokenKind,
        lookup: Lookup<'_>,
        memo: Option<&mut Decisions>,
    ) -> Result<Option<ProductAt>, Fault> {
        let Some(plan) = config.plans.get(index) else {
            // Not reached: the flow runs configured policies only.
            return check_get(kind, false, lookup, self.now_ms).map(|_| None);
        };
        if !plan.action.checks_products() {
            return plan.action.check(kind, lookup, self.now_ms).map(|()| None);
        }
        verify(config, request, plan, kind, lookup, self.now_ms, memo)
    }

    /// Takes the token service's HTTP answer to the pending lookup or
    /// update (status `None` when the call failed without one). Returns
    /// what the cache may keep.
    pub(crate) fn on_response(
        &mut self,
        config: &FilterConfig,
        request: &RequestInfo,
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
                        match self.check(config, request, index, kind, answer.lookup(), None) {
                            Ok(product) => {
                                if let Answer::Known(profile) = &answer {
                                    self.succeed(
                                        index,
                                        Data::Parsed(profile.clone()),
                                        token,
                                        product,
                                    );
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
                        self.succeed(index, Data::Parsed(profile.clone()), token, None);
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

    fn succeed(
        &mut self,
        index: usize,
        data: Data,
        token: Range<usize>,
        product: Option<ProductAt>,
    ) {
        self.results.push(PolicyResult {
            policy: index,
            outcome: Outcome::Success {
                data,
                token,
                product,
            },
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
                found = Some(crate::request::lossy(v));
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
                Outcome::Success {
                    data,
                    token,
                    product,
                } => {
                    let profile = data_view(data);
                    let own = (plan.kind.own_field(), self.text(token).as_bytes());
                    // The product's variables end the list: skipped
                    // without a product.
                    let plain = plan.outputs.len().saturating_sub(plan.product_outputs);
                    let (outputs, products) = plan.outputs.split_at(plain);
                    for output in outputs.iter().filter(|o| shown(&o.var)) {
                        if let Some(v) = profile.value(output.source, own, self.now_ms) {
                            each(Published::of(&output.var, v.bytes(&mut number)));
                        }
                    }
                    // The match is read once from the profile's bytes.
                    if let Some(m) = product.and_then(|at| at.resolve(profile.products())) {
                        // The quota's variables end the list: skipped
                        // when the quota that applies has no setting.
                        let products = match m.quota.is_empty() {
                            true => products
                                .get(..products.len().saturating_sub(plan.quota_outputs))
                                .unwrap_or_default(),
                            false => products,
                        };
                        visit_product::<ALL>(&m, products, name_buf, &mut each);
                        visit_product_attributes::<ALL>(config, plan, &m, name_buf, &mut each);
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

/// [`Flow::check`] for a policy that checks API products: the path
/// suffix and verb are taken from the request only when the lookup
/// carries products.
fn verify(
    config: &FilterConfig,
    request: &RequestInfo,
    plan: &PolicyPlan,
    kind: TokenKind,
    lookup: Lookup<'_>,
    now_ms: i64,
    memo: Option<&mut Decisions>,
) -> Result<Option<ProductAt>, Fault> {
    let checks = matches!(&lookup, Lookup::Known(profile) if profile.has_products());
    let (suffix, verb) = if checks {
        request.call_bytes(&config.basepath)
    } else {
        (&[][..], &[][..])
    };
    let mut check = ProductCheck {
        call: CallBytes {
            proxy: config.proxy_name.as_deref().unwrap_or_default(),
            environment: config.environment.as_deref(),
            suffix,
            verb,
        },
        memo,
    };
    plan.action.verify(kind, lookup, now_ms, &mut check)
}

/// The matching product's place in a successful result, if one was
/// checked.
fn product_of(result: &PolicyResult) -> Option<ProductAt> {
    match &result.outcome {
        Outcome::Success { product, .. } => *product,
        Outcome::Fault(_) => None,
    }
}

/// A product variable's value: text of the profile, or the operation's
/// verbs (shown comma-separated).
enum ProductValue<'a> {
    Text(&'a [u8]),
    Methods(Strs<'a>),
}

/// The value of `apiproduct.name`, `apiproduct.operation*` for the
/// matching product (docs/variables.md#api-products); unset without a
/// match, and the operation's without operation groups.
fn product_value<'a>(m: &MatchRef<'a>, part: ProductPart) -> Option<ProductValue<'a>> {
    Some(match part {
        ProductPart::Name => ProductValue::Text(m.product.name),
        ProductPart::Operation | ProductPart::OperationResource => {
            ProductValue::Text(m.operation?.1.resource)
        }
        ProductPart::OperationMethods => ProductValue::Methods(m.operation?.1.methods),
        ProductPart::QuotaLimit | ProductPart::QuotaInterval | ProductPart::QuotaTimeUnit => {
            ProductValue::Text(m.quota.setting(part)?)
        }
    })
}

/// Appends a product variable's value to `out`; false when unset.
#[inline(never)]
fn read_product(
    profile: ProfileRef<'_>,
    at: Option<ProductAt>,
    part: ProductPart,
    out: &mut String,
) -> bool {
    let Some(m) = at.and_then(|at| at.resolve(profile.products())) else {
        return false;
    };
    match product_value(&m, part) {
        Some(ProductValue::Text(t)) => crate::request::push_text(out, t),
        Some(ProductValue::Methods(methods)) => {
            for (i, m) in methods.enumerate() {
                if i > 0 {
                    out.push(',');
                }
                crate::request::push_text(out, m);
            }
        }
        None => return false,
    }
    true
}

/// Hands the product variables of `outputs` to `each` (every one with
/// `ALL`, or those published), when set (the verbs joined in `buf`).
#[cold]
#[inline(never)]
fn visit_product<const ALL: bool>(
    m: &MatchRef<'_>,
    outputs: &[Output],
    buf: &mut Vec<u8>,
    each: &mut impl FnMut(Published<'_>),
) {
    for output in outputs.iter().filter(|o| ALL || o.var.published) {
        let Source::Product(part) = output.source else {
            continue;
        };
        let var = &output.var;
        match product_value(m, part) {
            Some(ProductValue::Text(t)) => each(Published::of(var, t)),
            Some(ProductValue::Methods(methods)) => {
                buf.clear();
                for (i, m) in methods.enumerate() {
                    if i > 0 {
                        buf.push(b',');
                    }
                    buf.extend_from_slice(m);
                }
                each(Published::of(var, buf));
            }
            None => {}
        }
    }
}

/// The matching product's custom attributes (`apiproduct.{name}`) and its
/// operation configuration's (`apiproduct.operation.attributes.{name}`):
/// every one (`ALL`), or those published. A product attribute named as a
/// standard product variable (`name`, `operation`, `developer.quota.limit`...)
/// is not set: the standard one wins.
fn visit_product_attributes<const ALL: bool>(
    config: &FilterConfig,
    plan: &PolicyPlan,
    m: &MatchRef<'_>,
    name_buf: &mut Vec<u8>,
    each: &mut impl FnMut(Published<'_>),
) {
    use crate::publish::Family;
    use oauthv2info_names::variables::OPERATION_ATTRIBUTE_SEGMENT;
    let operation = m.operation.map(|(c, _)| c.attributes);
    let lists = [
        (
            Some(m.product.attributes),
            plan.product_attributes_published,
            false,
        ),
        (operation, plan.operation_attributes_published, true),
    ];
    for (list, family, is_operation) in lists {
        let Some(list) = list else { continue };
        if !ALL && family == Family::None {
            continue;
        }
        for (name, value) in list {
            if !is_operation && oauthv2info_names::variables::is_standard_product_suffix(name) {
                continue;
            }
            name_buf.clear();
            name_buf.extend_from_slice(plan.product_prefix.as_bytes());
            if is_operation {
                name_buf.extend_from_slice(
                    OPERATION_ATTRIBUTE_SEGMENT
                        .strip_prefix("apiproduct.")
                        .unwrap_or_default()
                        .as_bytes(),
                );
            }
            name_buf.extend_from_slice(name);
            let published = ALL
                || family == Family::All
                || std::str::from_utf8(name_buf).is_ok_and(|n| config.publish.matches(n));
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
mod products_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod verify_tests;
