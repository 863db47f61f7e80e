//! One request's run through the policies: a state machine that the host
//! adapter drives. It asks for callouts, takes their answers, and ends with
//! either "continue to the upstream" or a fault reply. Pure: no host calls,
//! and the clock is an argument.

use crate::config::FilterConfig;
use crate::fault::Fault;
use crate::policy::{Policy, PolicyKind, TokenKind, ValueSource};
use crate::profile::{
    evaluate_get, parse_introspection, parse_set_response, set_vars, Lookup, ProfileVar,
    ServiceFailure,
};
use crate::vars::{percent_encode, FlowVars, RequestInfo};

/// A call the adapter must make to the token service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Callout {
    /// RFC 7662 introspection of `token` as `kind`.
    Introspect { kind: TokenKind, token: String },
    /// Attribute merge on an access token.
    SetAttributes {
        token: String,
        attributes: Vec<(String, String)>,
    },
}

impl Callout {
    /// The token the callout is about (for the cache key; never logged).
    pub fn token(&self) -> &str {
        match self {
            Callout::Introspect { token, .. } | Callout::SetAttributes { token, .. } => token,
        }
    }

    /// Request path, content type and body for the token service.
    pub fn http_request<'a>(&self, config: &'a FilterConfig) -> (&'a str, &'static str, Vec<u8>) {
        match self {
            Callout::Introspect { kind, token } => (
                config.token_service.path.as_str(),
                "application/x-www-form-urlencoded",
                format!(
                    "token={}&token_type_hint={}",
                    percent_encode(token),
                    kind.hint()
                )
                .into_bytes(),
            ),
            Callout::SetAttributes { token, attributes } => {
                let attributes: Vec<serde_json::Value> = attributes
                    .iter()
                    .map(|(name, value)| serde_json::json!({"name": name, "value": value}))
                    .collect();
                let body = serde_json::json!({"token": token, "attributes": attributes});
                (
                    config.token_service.attributes_path.as_str(),
                    "application/json",
                    body.to_string().into_bytes(),
                )
            }
        }
    }
}

/// What the flow needs next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Callout(Callout),
    /// All policies ran: continue to the upstream.
    Continue,
    /// A policy failed without `continueOnError`: answer with this fault.
    Reply(Fault),
}

/// Something worth a metric or a log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
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

/// A profile the adapter may cache: what the token service said of `token`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Learned {
    pub kind: TokenKind,
    pub token: String,
    pub lookup: Lookup,
    /// From an attribute update (SetOAuthV2Info), not an introspection.
    pub from_update: bool,
}

#[derive(Debug, Default)]
pub struct Flow {
    next: usize,
    pending: Option<Callout>,
    reply: Option<Fault>,
    pub vars: FlowVars,
    pub events: Vec<Event>,
}

impl Flow {
    pub fn new() -> Self {
        Flow::default()
    }

    /// The callout the flow waits for, if any.
    pub fn pending(&self) -> Option<&Callout> {
        self.pending.as_ref()
    }

    /// Runs policies until one needs a callout or the flow ends.
    pub fn advance(&mut self, config: &FilterConfig, request: &RequestInfo) -> Step {
        if let Some(pending) = &self.pending {
            return Step::Callout(pending.clone());
        }
        loop {
            if let Some(fault) = self.reply {
                return Step::Reply(fault);
            }
            let index = self.next;
            let Some(policy) = config.policies.get(index) else {
                return Step::Continue;
            };
            if !policy.enabled {
                self.next += 1;
                continue;
            }
            match self.callout_for(policy, request) {
                Ok(callout) => {
                    self.pending = Some(callout.clone());
                    return Step::Callout(callout);
                }
                Err(fault) => self.fail(config, index, fault),
            }
        }
    }

    fn callout_for(&self, policy: &Policy, request: &RequestInfo) -> Result<Callout, Fault> {
        match &policy.kind {
            PolicyKind::Get { kind, token, .. } => {
                let token = self
                    .resolve(token, request)
                    .filter(|t| !t.is_empty())
                    .ok_or(invalid_fault(*kind))?;
                Ok(Callout::Introspect { kind: *kind, token })
            }
            PolicyKind::Set { token, attributes } => {
                let token = self
                    .resolve(token, request)
                    .filter(|t| !t.is_empty())
                    .ok_or(Fault::InvalidAccessToken)?;
                let mut resolved: Vec<(String, String)> = Vec::with_capacity(attributes.len());
                for attribute in attributes {
                    let Some(value) = self.resolve(&attribute.value, request) else {
                        continue;
                    };
                    // Duplicate names: the last one wins.
                    resolved.retain(|(n, _)| *n != attribute.name);
                    resolved.push((attribute.name.clone(), value));
                }
                if resolved.is_empty() {
                    // Nothing to write: check the token and report it.
                    return Ok(Callout::Introspect {
                        kind: TokenKind::AccessToken,
                        token,
                    });
                }
                Ok(Callout::SetAttributes {
                    token,
                    attributes: resolved,
                })
            }
        }
    }

    /// SPEC 3.1: the ref's value when the variable is set (even to ""),
    /// else the literal text, else unresolved.
    fn resolve(&self, source: &ValueSource, request: &RequestInfo) -> Option<String> {
        if let Some(reference) = &source.reference {
            if let Some(v) = self.vars.get(reference) {
                return Some(v.to_string());
            }
            if let Some(v) = request.resolve(reference) {
                return Some(v);
            }
        }
        source.literal.clone()
    }

    /// Takes the token service's HTTP answer to the pending callout (status
    /// `None` when the call failed without one). Returns what the adapter
    /// may cache.
    pub fn on_response(
        &mut self,
        config: &FilterConfig,
        status: Option<u16>,
        body: &[u8],
        now_ms: i64,
    ) -> Option<Learned> {
        let pending = self.pending.take()?;
        match pending {
            Callout::Introspect { kind, token } => {
                match parse_introspection(status, body, kind, &token, now_ms) {
                    Ok(lookup) => {
                        self.apply_lookup(config, kind, &token, &lookup, now_ms);
                        Some(Learned {
                            kind,
                            token,
                            lookup,
                            from_update: false,
                        })
                    }
                    Err(failure) => {
                        let index = self.next;
                        self.service_failure(config, index, failure);
                        None
                    }
                }
            }
            Callout::SetAttributes { token, .. } => {
                let index = self.next;
                match parse_set_response(status, body, &token, now_ms) {
                    Ok(Ok(profile)) => {
                        let vars = set_vars(&profile, &token, now_ms);
                        self.succeed(config, index, "oauthv2accesstoken", vars);
                        Some(Learned {
                            kind: TokenKind::AccessToken,
                            token,
                            lookup: Lookup::Known(profile),
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

    /// Answers the pending introspection from a cached lookup.
    pub fn on_cached(&mut self, config: &FilterConfig, lookup: &Lookup, now_ms: i64) {
        if let Some(Callout::Introspect { kind, token }) = self.pending.take() {
            self.apply_lookup(config, kind, &token, lookup, now_ms);
        }
    }

    /// The callout could not even be sent (no healthy host, bad cluster...).
    pub fn on_dispatch_failure(&mut self, config: &FilterConfig, reason: String) {
        if self.pending.take().is_some() {
            let index = self.next;
            self.service_failure(config, index, ServiceFailure(reason));
        }
    }

    fn apply_lookup(
        &mut self,
        config: &FilterConfig,
        kind: TokenKind,
        token: &str,
        lookup: &Lookup,
        now_ms: i64,
    ) {
        let index = self.next;
        let Some(policy) = config.policies.get(index) else {
            return;
        };
        match &policy.kind {
            PolicyKind::Get {
                ignore_access_token_status,
                ..
            } => match evaluate_get(kind, *ignore_access_token_status, token, lookup, now_ms) {
                Ok(vars) => self.succeed(config, index, kind.variable_prefix(), vars),
                Err(fault) => self.fail(config, index, fault),
            },
            // A Set with no attribute to write: the token must be valid.
            PolicyKind::Set { .. } => match evaluate_get(kind, false, token, lookup, now_ms) {
                Ok(_) => {
                    let Lookup::Known(profile) = lookup else {
                        return self.fail(config, index, Fault::InvalidAccessToken);
                    };
                    let vars = set_vars(profile, token, now_ms);
                    self.succeed(config, index, "oauthv2accesstoken", vars)
                }
                Err(fault) => self.fail(config, index, fault),
            },
        }
    }

    fn succeed(
        &mut self,
        config: &FilterConfig,
        index: usize,
        prefix: &str,
        vars: Vec<ProfileVar>,
    ) {
        let Some(policy) = config.policies.get(index) else {
            return;
        };
        // A policy runs once per request: its variables are new names.
        let base_len = prefix.len() + policy.name.len() + 2;
        for var in vars {
            let mut name = String::with_capacity(base_len + var.suffix.len());
            name.push_str(prefix);
            name.push('.');
            name.push_str(&policy.name);
            name.push('.');
            name.push_str(&var.suffix);
            self.vars.push_new(name, var.value, var.secret);
        }
        self.vars.set(
            format!("oauthV2.{}.failed", policy.name),
            "false".into(),
            false,
        );
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
        let Some(policy) = config.policies.get(index) else {
            return;
        };
        let name = &policy.name;
        self.vars
            .set("fault.name".into(), fault.name().into(), false);
        self.vars
            .set(format!("oauthV2.{name}.failed"), "true".into(), false);
        self.vars.set(
            format!("oauthV2.{name}.fault.name"),
            fault.name().into(),
            false,
        );
        self.vars.set(
            format!("oauthV2.{name}.fault.cause"),
            fault.faultstring().into(),
            false,
        );
        self.events.push(Event::Executed { policy: index });
        self.events.push(Event::Fault {
            policy: index,
            fault,
        });
        if !policy.continue_on_error {
            self.reply = Some(fault);
        }
        self.next = index + 1;
    }
}

fn invalid_fault(kind: TokenKind) -> Fault {
    match kind {
        TokenKind::AccessToken => Fault::InvalidAccessToken,
        TokenKind::RefreshToken => Fault::InvalidRefreshToken,
        TokenKind::AuthorizationCode => Fault::InvalidAuthorizationCode,
        TokenKind::ClientId => Fault::InvalidClientId,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_config;
    use serde_json::json;

    const NOW: i64 = 1_700_000_000_000;

    fn config(policies: &[&str]) -> FilterConfig {
        parse_config(json!({ "policies": policies }).to_string().as_bytes()).unwrap()
    }

    fn request(path: &str) -> RequestInfo {
        RequestInfo {
            method: "GET".into(),
            path: path.into(),
            ..RequestInfo::default()
        }
    }

    fn profile(attributes: serde_json::Value) -> serde_json::Value {
        json!({"active": true, "profile": {
            "access_token": "good", "client_id": "app", "scope": "READ", "status": "approved",
            "expires_at": (NOW + 60_000).to_string(), "issued_at": NOW.to_string(),
            "refresh_token": "r1", "attributes": attributes}})
    }

    /// Drives a flow to its end, answering callouts with `service`.
    fn run(
        config: &FilterConfig,
        request: &RequestInfo,
        mut service: impl FnMut(&Callout) -> (Option<u16>, String),
    ) -> (Step, Flow, Vec<Callout>) {
        let mut flow = Flow::new();
        let mut calls = Vec::new();
        loop {
            match flow.advance(config, request) {
                Step::Callout(c) => {
                    let (status, body) = service(&c);
                    calls.push(c);
                    flow.on_response(config, status, body.as_bytes(), NOW);
                }
                end => return (end, flow, calls),
            }
        }
    }

    const GET: &str = r#"<GetOAuthV2Info name="G"><AccessToken ref="request.queryparam.access_token"/></GetOAuthV2Info>"#;

    #[test]
    fn success_sets_variables_and_failed_false() {
        let c = config(&[GET]);
        let (end, flow, calls) = run(&c, &request("/?access_token=good"), |_| {
            (Some(200), profile(json!({"dept": "7"})).to_string())
        });
        assert_eq!(end, Step::Continue);
        assert_eq!(
            calls,
            vec![Callout::Introspect {
                kind: TokenKind::AccessToken,
                token: "good".into()
            }]
        );
        assert_eq!(flow.vars.get("oauthv2accesstoken.G.scope"), Some("READ"));
        assert_eq!(
            flow.vars.get("oauthv2accesstoken.G.accesstoken.dept"),
            Some("7")
        );
        assert_eq!(flow.vars.get("oauthv2accesstoken.G.expires_in"), Some("60"));
        assert_eq!(flow.vars.get("oauthV2.G.failed"), Some("false"));
        assert_eq!(flow.vars.get("fault.name"), None);
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
        assert_eq!(end, Step::Reply(Fault::InvalidAccessToken));
        assert_eq!(calls.len(), 1, "the second policy must not run");
        assert_eq!(flow.vars.get("fault.name"), Some("invalid_access_token"));
        assert_eq!(flow.vars.get("oauthV2.G.failed"), Some("true"));
        assert_eq!(
            flow.vars.get("oauthV2.G.fault.name"),
            Some("invalid_access_token")
        );
        assert_eq!(
            flow.vars.get("oauthV2.G.fault.cause"),
            Some("Invalid Access Token")
        );
        assert_eq!(flow.vars.get("oauthv2accesstoken.G.scope"), None);
    }

    #[test]
    fn unresolved_token_faults_without_a_callout() {
        let c = config(&[GET]);
        let (end, _, calls) = run(&c, &request("/"), |_| unreachable!());
        assert_eq!(end, Step::Reply(Fault::InvalidAccessToken));
        assert!(calls.is_empty());
        // Set to "" counts as set, and an empty token is invalid.
        let (end, _, calls) = run(&c, &request("/?access_token="), |_| unreachable!());
        assert_eq!(end, Step::Reply(Fault::InvalidAccessToken));
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
            assert_eq!(end, Step::Reply(fault));
        }
    }

    #[test]
    fn ref_wins_over_literal_and_literal_is_the_fallback() {
        let c = config(&[
            r#"<GetOAuthV2Info name="G"><AccessToken ref="request.header.x-token">fallback</AccessToken></GetOAuthV2Info>"#,
        ]);
        let mut with_header = request("/");
        with_header.headers = vec![("x-token".into(), "from-header".into())];
        let (_, _, calls) = run(&c, &with_header, |_| {
            (Some(200), r#"{"active":false}"#.into())
        });
        assert_eq!(calls[0].token(), "from-header");
        let (_, _, calls) = run(&c, &request("/"), |_| {
            (Some(200), r#"{"active":false}"#.into())
        });
        assert_eq!(calls[0].token(), "fallback");
        // Text is never a template.
        let c = config(&[
            r#"<GetOAuthV2Info name="G"><AccessToken>{request.header.x-token}</AccessToken></GetOAuthV2Info>"#,
        ]);
        let (_, _, calls) = run(&c, &with_header, |_| {
            (Some(200), r#"{"active":false}"#.into())
        });
        assert_eq!(calls[0].token(), "{request.header.x-token}");
    }

    #[test]
    fn continue_on_error_and_enabled() {
        let c = config(&[
            r#"<GetOAuthV2Info name="Off" enabled="false"><AccessToken>x</AccessToken></GetOAuthV2Info>"#,
            r#"<GetOAuthV2Info name="Soft" continueOnError="true"><AccessToken>bad</AccessToken></GetOAuthV2Info>"#,
            r#"<GetOAuthV2Info name="Ok"><AccessToken>good</AccessToken></GetOAuthV2Info>"#,
        ]);
        let (end, flow, calls) = run(&c, &request("/"), |call| {
            if call.token() == "good" {
                (Some(200), profile(json!({})).to_string())
            } else {
                (Some(200), r#"{"active":false}"#.into())
            }
        });
        assert_eq!(end, Step::Continue);
        assert_eq!(calls.len(), 2);
        assert!(
            flow.vars.iter().all(|v| !v.name.contains(".Off.")),
            "a disabled policy sets nothing"
        );
        assert_eq!(flow.vars.get("oauthV2.Soft.failed"), Some("true"));
        assert_eq!(flow.vars.get("oauthV2.Ok.failed"), Some("false"));
        // fault.name keeps its value after a later success.
        assert_eq!(flow.vars.get("fault.name"), Some("invalid_access_token"));
        let faults: Vec<&Event> = flow
            .events
            .iter()
            .filter(|e| matches!(e, Event::Fault { .. }))
            .collect();
        assert_eq!(
            faults,
            vec![&Event::Fault {
                policy: 1,
                fault: Fault::InvalidAccessToken
            }]
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
                Step::Reply(Fault::TokenServiceUnavailable),
                "{status:?} {body}"
            );
            assert_eq!(
                flow.vars.get("fault.name"),
                Some("token_service_unavailable")
            );
            assert!(flow
                .events
                .iter()
                .any(|e| matches!(e, Event::ServiceFailure { .. })));
        }
        let mut flow = Flow::new();
        let req = request("/?access_token=t");
        assert!(matches!(flow.advance(&c, &req), Step::Callout(_)));
        flow.on_dispatch_failure(&c, "no healthy upstream".into());
        assert_eq!(
            flow.advance(&c, &req),
            Step::Reply(Fault::TokenServiceUnavailable)
        );
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
        let mut req = request("/?dept=7&empty=");
        req.headers = vec![("authorization".into(), "good".into())];
        let mut stored = json!({"old": "1"});
        let (end, flow, calls) = run(&c, &req, |call| match call {
            Callout::Introspect { .. } => (Some(200), profile(stored.clone()).to_string()),
            Callout::SetAttributes { attributes, .. } => {
                for (k, v) in attributes {
                    stored[k] = json!(v);
                }
                (Some(200), profile(stored.clone()).to_string())
            }
        });
        assert_eq!(end, Step::Continue);
        assert_eq!(
            calls[1],
            Callout::SetAttributes {
                token: "good".into(),
                attributes: vec![
                    ("dept".into(), "overridden-by-the-last".into()),
                    ("empty".into(), "".into())
                ]
            }
        );
        assert_eq!(
            flow.vars.get("oauthv2accesstoken.Before.accesstoken.dept"),
            None
        );
        assert_eq!(
            flow.vars.get("oauthv2accesstoken.Set.dept"),
            Some("overridden-by-the-last")
        );
        assert_eq!(flow.vars.get("oauthv2accesstoken.Set.old"), Some("1"));
        assert_eq!(
            flow.vars.get("oauthv2accesstoken.After.accesstoken.dept"),
            Some("overridden-by-the-last")
        );
        assert_eq!(flow.vars.get("oauthV2.Set.failed"), Some("false"));
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
            assert_eq!(end, Step::Reply(fault), "{status} {body}");
            assert_eq!(flow.vars.get("oauthV2.S.fault.name"), Some(fault.name()));
        }
        // No attribute resolved: the token is checked by introspection.
        let (end, flow, calls) = run(&c, &request("/?t=good"), |_| {
            (Some(200), profile(json!({"k": "v"})).to_string())
        });
        assert_eq!(end, Step::Continue);
        assert!(matches!(
            calls[0],
            Callout::Introspect {
                kind: TokenKind::AccessToken,
                ..
            }
        ));
        assert_eq!(flow.vars.get("oauthv2accesstoken.S.k"), Some("v"));
        let (end, _, _) = run(&c, &request("/?t=bad"), |_| {
            (Some(200), r#"{"active":false}"#.into())
        });
        assert_eq!(end, Step::Reply(Fault::InvalidAccessToken));
    }

    #[test]
    fn callout_requests_are_well_formed() {
        let c = config(&[GET]);
        let (path, content_type, body) = Callout::Introspect {
            kind: TokenKind::RefreshToken,
            token: "a b&c=d".into(),
        }
        .http_request(&c);
        assert_eq!(path, "/oauth2/introspect");
        assert_eq!(content_type, "application/x-www-form-urlencoded");
        assert_eq!(body, b"token=a%20b%26c%3Dd&token_type_hint=refresh_token");
        let (path, content_type, body) = Callout::SetAttributes {
            token: "t\"".into(),
            attributes: vec![("n".into(), "v\u{1}".into())],
        }
        .http_request(&c);
        assert_eq!(path, "/v1/accesstokens/attributes");
        assert_eq!(content_type, "application/json");
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            v,
            json!({"token": "t\"", "attributes": [{"name": "n", "value": "v\u{1}"}]})
        );
    }

    #[test]
    fn learned_profiles_replay_from_cache() {
        let c = config(&[GET]);
        let req = request("/?access_token=good");
        let mut flow = Flow::new();
        assert!(matches!(flow.advance(&c, &req), Step::Callout(_)));
        let learned = flow
            .on_response(
                &c,
                Some(200),
                profile(json!({})).to_string().as_bytes(),
                NOW,
            )
            .unwrap();
        assert_eq!(learned.token, "good");
        let mut again = Flow::new();
        assert!(matches!(again.advance(&c, &req), Step::Callout(_)));
        again.on_cached(&c, &learned.lookup, NOW + 30_000);
        assert_eq!(again.advance(&c, &req), Step::Continue);
        assert_eq!(
            again.vars.get("oauthv2accesstoken.G.expires_in"),
            Some("30")
        );
    }
}
