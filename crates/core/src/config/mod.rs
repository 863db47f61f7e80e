//! The filter configuration (docs/configuration.md): the JSON envelope or a
//! bare policy document, validated and compiled once when Envoy loads it.

use serde_json::{Map, Value};

use oauthv2info_names::variables::FAULT_NAME;

use crate::condition::Condition;
pub(crate) use crate::error::ConfigError;
use crate::plan::{self, PolicyPlan, StepCondition, Var, VarRef};
use crate::policies::{parse_policy, Policy};
use crate::publish::Publish;
use crate::request::RequestVar;

mod fields;
use fields::*;

/// Where and how the filter calls the token service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenService {
    pub cluster: String,
    pub(crate) authority: String,
    /// Introspection path (`path` in the configuration).
    pub path: String,
    pub attributes_path: String,
    pub timeout_ms: u32,
    /// The `Authorization` header value sent with every call.
    pub(crate) credentials: Option<String>,
    /// The budget of lookups of tokens this Envoy has not seen
    /// (docs/configuration.md#the-lookup-budget).
    pub lookup_budget: LookupBudget,
}

/// `token_service.lookup_budget`: a token bucket per worker of lookups for
/// tokens the Envoy has not seen valid (docs/configuration.md#the-lookup-budget).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LookupBudget {
    /// Lookups a second the bucket refills with; 0: no budget.
    pub per_second: u32,
    /// Lookups the bucket holds (sent at once after a quiet time).
    pub burst: u32,
}

impl LookupBudget {
    pub const DEFAULT_PER_SECOND: u32 = 500;
    pub const DEFAULT_BURST: u32 = 1000;
}

impl Default for LookupBudget {
    fn default() -> LookupBudget {
        LookupBudget {
            per_second: LookupBudget::DEFAULT_PER_SECOND,
            burst: LookupBudget::DEFAULT_BURST,
        }
    }
}

pub(crate) use crate::cache::{CacheConfig, Invalidation};

/// Which request headers a request must fetch from the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HeaderReads {
    /// These (lower-cased) names, one host call each: the common case.
    Named(Vec<String>),
    /// Every header: a ref uses `.N` or `.values.*`, which see repeated
    /// headers as one list.
    All,
}

/// How published variables reach Envoy's dynamic metadata
/// (docs/configuration.md#dynamic-metadata).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetadataBridge {
    /// One filter-state entry that the `oauthv2info-after` Lua filter turns
    /// into metadata (on the request path, and for fault replies on the
    /// response path).
    Lua,
    /// Internal headers that `header_to_metadata` filters turn into
    /// metadata and remove; the Lua bridge only for custom attributes whose
    /// names are not known at load time.
    HeaderToMetadata,
    /// No dynamic metadata (filter state only).
    None,
}

impl MetadataBridge {
    pub fn name(self) -> &'static str {
        match self {
            MetadataBridge::Lua => "lua",
            MetadataBridge::HeaderToMetadata => "header_to_metadata",
            MetadataBridge::None => "none",
        }
    }
}

/// One internal metadata header: `header_to_metadata` turns `header` (the
/// value as it is) into metadata key `key` (a variable name), and
/// `empty_header` (set when the value is empty) into the empty string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetadataHeader {
    pub header: String,
    pub empty_header: String,
    pub key: String,
    /// Can be set on a request that goes on to the upstream (a request
    /// rule of header_to_metadata).
    pub on_request: bool,
    /// Can be set on a fault reply (a response rule).
    pub on_reply: bool,
}

/// The prefix of internal metadata headers (`x-oauthv2info-md-<n>`, and
/// `x-oauthv2info-md-<n>-e` for empty values).
pub(crate) const METADATA_HEADER_PREFIX: &str = "x-oauthv2info-md-";

/// The dynamic-metadata plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetadataPlan {
    pub bridge: MetadataBridge,
    pub headers: Vec<MetadataHeader>,
    /// Some published custom attribute may have a name not known at load
    /// time: it needs the Lua bridge (in header_to_metadata mode, that
    /// filter then carries empty values too).
    pub needs_lua: bool,
    /// header_to_metadata mode without the Lua bridge: an empty value goes
    /// through its header's companion (`empty_header`).
    pub(crate) empty_companions: bool,
    /// The Lua bridge must also copy on fault replies (its response hook):
    /// always with the Lua bridge; in header_to_metadata mode when a policy
    /// whose values it carries can be followed by one that ends the request.
    pub needs_lua_on_fault: bool,
}

/// One `request_headers` mapping, compiled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderMapping {
    /// Lower-cased header name.
    pub header: String,
    /// The variable's name, as configured.
    pub variable: String,
    pub(crate) source: VarRef,
}

/// The validated, compiled configuration.
#[derive(Debug, Clone)]
pub struct FilterConfig {
    pub token_service: TokenService,
    pub policies: Vec<Policy>,
    /// The policies compiled, in order (the same indices as `policies`).
    pub plans: Vec<PolicyPlan>,
    /// Each policy's step condition, if it has one (the same indices).
    pub conditions: Vec<Option<StepCondition>>,
    /// `basepath`: the proxy's base path, for `proxy.pathsuffix`.
    pub(crate) basepath: String,
    /// `proxy_name`: the Apigee proxy's name, for the API-product check
    /// and `apiproxy.name`; `None`: products' proxies are not checked.
    pub proxy_name: Option<String>,
    /// `environment`: for the API-product check and `environment.name`;
    /// `None`: products' environments are not checked.
    pub environment: Option<String>,
    pub metadata_namespace: String,
    pub request_headers: Vec<HeaderMapping>,
    pub publish: Publish,
    pub export_secrets: bool,
    pub cache: CacheConfig,
    /// The shared-data key prefix of cache slots and the seed of their
    /// hashes (both from the token-service cluster).
    pub(crate) cache_prefix: String,
    pub(crate) cache_seed: u64,
    /// `fault.name`, the one variable every policy's fault sets.
    pub(crate) fault_name: Var,
    pub metadata: MetadataPlan,
    /// The request headers the policies and mappings read.
    pub(crate) header_reads: HeaderReads,
    /// For each named read: the header is mapped by `request_headers`, so
    /// the client's copy is never read.
    pub(crate) header_reads_mapped: Vec<bool>,
    /// Some enabled policy or mapping reads `request.verb`.
    pub(crate) needs_method: bool,
    /// ... the path or query.
    pub(crate) needs_path: bool,
    /// ... `request.formparam.*`.
    pub needs_form_body: bool,
    /// ... `client.ip`.
    pub(crate) needs_client_ip: bool,
    /// Some enabled policy checks API products (reads `:path` and
    /// `:method` when a lookup carries products).
    pub(crate) checks_products: bool,
    /// Load-time warnings (refs to variables nothing sets), logged once.
    pub warnings: Vec<String>,
    /// `fault_handling`: the FaultRules and DefaultFaultRule
    /// (crates/core/src/faults.rs); read on the fault path only.
    pub fault_handling: Option<Box<crate::faults::FaultHandling>>,
}

/// Headers a mapping may not set: pseudo-headers and those that frame or
/// route the request.
const RESERVED_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "te",
    "upgrade",
    "proxy-connection",
];

/// Parses the plugin configuration: a JSON object, or a bare XML document
/// holding one policy.
pub fn parse_config(bytes: &[u8]) -> Result<FilterConfig, ConfigError> {
    let text = std::str::from_utf8(bytes)
        .map_err(|_| ConfigError::field("configuration", "is not valid UTF-8"))?;
    let trimmed = text.trim_start_matches('\u{feff}').trim();
    if trimmed.is_empty() {
        return Err(ConfigError::field(
            "configuration",
            "is empty: give a JSON object with \"policies\", or one policy as XML",
        ));
    }
    if trimmed.starts_with('<') {
        let entry = Entry {
            document: trimmed.to_string(),
            condition: None,
        };
        return compile(Map::new(), vec![entry]);
    }
    // From bytes, as every other JSON the filter reads: one reader in the
    // `.wasm`, not two (docs/performance.md#module-size).
    let value: Value = serde_json::from_slice(trimmed.as_bytes())
        .map_err(|e| ConfigError::field("configuration", format!("malformed JSON: {e}")))?;
    let Value::Object(mut object) = value else {
        return Err(ConfigError::field("configuration", "must be a JSON object"));
    };
    let policies = match object.remove("policies") {
        Some(Value::Array(items)) => {
            let mut policies = Vec::with_capacity(items.len());
            for (i, item) in items.into_iter().enumerate() {
                policies.push(entry(i, item)?);
            }
            if policies.is_empty() {
                return Err(ConfigError::field(
                    "policies",
                    "is empty: give at least one policy",
                ));
            }
            policies
        }
        Some(_) => {
            return Err(ConfigError::field(
                "policies",
                "must be an array of policy XML strings or {\"policy\", \"condition\"} objects",
            ))
        }
        None => return Err(ConfigError::field("policies", "is required")),
    };
    compile(object, policies)
}

/// One entry of `policies`: a policy's XML, and the condition of its step
/// (docs/configuration.md#steps-and-conditions).
struct Entry {
    document: String,
    condition: Option<String>,
}

fn entry(i: usize, item: Value) -> Result<Entry, ConfigError> {
    let field = |key: &str| format!("policies[{i}].{key}");
    match item {
        Value::String(document) => Ok(Entry {
            document,
            condition: None,
        }),
        Value::Object(mut object) => {
            let document = match object.remove("policy") {
                Some(Value::String(s)) => s,
                Some(_) => {
                    return Err(ConfigError::field(
                        field("policy"),
                        "must be a string holding one policy's XML",
                    ))
                }
                None => return Err(ConfigError::field(field("policy"), "is required")),
            };
            let condition = match object.remove("condition") {
                None => None,
                Some(Value::String(s)) => Some(s),
                Some(_) => {
                    return Err(ConfigError::field(
                        field("condition"),
                        "must be a string holding an Apigee condition",
                    ))
                }
            };
            if let Some(key) = object.keys().next() {
                return Err(ConfigError::field(
                    field(key),
                    "unknown field (known: policy, condition)",
                ));
            }
            Ok(Entry {
                document,
                condition,
            })
        }
        _ => Err(ConfigError::field(
            format!("policies[{i}]"),
            "must be a string holding one policy's XML, or an object {\"policy\": \"<xml>\", \"condition\": \"...\"}",
        )),
    }
}

const KNOWN_FIELDS: &str = "token_service, policies, basepath, proxy_name, environment, metadata_namespace, metadata_bridge, request_headers, publish, export_secrets, cache, fault_handling";

fn compile(
    mut object: Map<String, Value>,
    entries: Vec<Entry>,
) -> Result<FilterConfig, ConfigError> {
    // Set or not: with the cache off, no default lookup budget.
    let explicit_budget = object
        .get("token_service")
        .is_some_and(|t| t.get("lookup_budget").is_some());
    let mut token_service = token_service(object.remove("token_service"))?;
    let basepath = basepath(object.remove("basepath"))?;
    let proxy_name = optional_name(object.remove("proxy_name"), "proxy_name")?;
    let environment = optional_name(object.remove("environment"), "environment")?;
    let metadata_namespace = metadata_namespace(object.remove("metadata_namespace"))?;
    // `None` here: "auto", decided once the policies are known.
    let bridge = metadata_bridge(object.remove("metadata_bridge"))?;
    let export_secrets = optional_bool(&mut object, "export_secrets")?.unwrap_or(false);
    let publish = publish(object.remove("publish"))?;
    let cache = cache(object.remove("cache"))?;
    if !cache.enabled && !explicit_budget {
        // No cache, nothing seen: the default would charge every lookup
        // (docs/configuration.md#the-lookup-budget).
        token_service.lookup_budget.per_second = 0;
    }
    let raw_headers = object.remove("request_headers");
    let raw_fault_handling = object.remove("fault_handling");
    if let Some(key) = object.keys().next() {
        return Err(ConfigError::field(
            key.clone(),
            format!("unknown field (known: {KNOWN_FIELDS})"),
        ));
    }

    let PolicySet {
        policies,
        mut plans,
        conditions,
        mut warnings,
    } = compile_policies(&entries, &publish, export_secrets)?;
    let request_headers = request_headers(raw_headers, &plans, &mut warnings)?;
    let fault_handling = crate::faults::configure(
        raw_fault_handling,
        &policies,
        &plans,
        &publish,
        &mut warnings,
    )?;
    know_attributes(&mut plans, &request_headers, &publish);
    let bridge = bridge.unwrap_or_else(|| auto_bridge(&plans));
    let metadata = metadata_plan(bridge, &mut plans, &publish);
    let fault_name = {
        let mut var = Var::new(FAULT_NAME.to_string(), false, &publish, export_secrets);
        if bridge == MetadataBridge::HeaderToMetadata && var.published {
            var.header = metadata
                .headers
                .iter()
                .position(|h| h.key == FAULT_NAME)
                .and_then(|i| u16::try_from(i).ok());
        }
        var
    };
    let mut config = FilterConfig {
        cache_prefix: format!("oauthv2info.cache.{}.", token_service.cluster),
        cache_seed: crate::cache::scope_seed(&token_service.cluster),
        token_service,
        policies,
        plans,
        conditions,
        basepath,
        proxy_name,
        environment,
        metadata_namespace,
        request_headers,
        publish,
        export_secrets,
        cache,
        fault_name,
        metadata,
        header_reads: HeaderReads::Named(Vec::new()),
        header_reads_mapped: Vec::new(),
        needs_method: false,
        needs_path: false,
        needs_form_body: false,
        needs_client_ip: false,
        checks_products: false,
        warnings,
        fault_handling,
    };
    plan_reads(&mut config);
    Ok(config)
}

/// The policies and their step conditions, parsed and compiled in order
/// (each ref resolved against the policies before it), with the load-time
/// warnings.
fn compile_policies(
    entries: &[Entry],
    publish: &Publish,
    export_secrets: bool,
) -> Result<PolicySet, ConfigError> {
    let mut policies: Vec<Policy> = Vec::with_capacity(entries.len());
    let mut plans: Vec<PolicyPlan> = Vec::with_capacity(entries.len());
    let mut conditions: Vec<Option<StepCondition>> = Vec::with_capacity(entries.len());
    let mut warnings = Vec::new();
    for (index, entry) in entries.iter().enumerate() {
        let policy = parse_policy(&entry.document, index)?;
        if policies.iter().any(|p| p.name == policy.name) {
            return Err(ConfigError::policy(
                &policy.name,
                format!("<{}>", policy.type_name()),
                "two policies have this name: policy names must be unique",
            ));
        }
        if policy.type_name() == "AssignMessage" {
            return Err(ConfigError::policy(
                &policy.name,
                "<AssignMessage>",
                "in a request flow AssignMessage is out of scope here: it runs only as a step of a fault rule (fault_handling, docs/faults.md#fault-rules)",
            ));
        }
        for (element, what) in &policy.ignored {
            warnings.push(format!(
                "policy {:?}, element {element}: accepted and ignored: {what}",
                policy.name
            ));
        }
        // A RaiseFault's templates also read what its own fault sets.
        let raised = |r: &str| {
            policy.type_name() == "RaiseFault" && (r == FAULT_NAME || r.starts_with("error."))
        };
        for (element, reference) in policy.references() {
            if VarRef::resolve(reference, &plans) == VarRef::Unset && !raised(reference) {
                warnings.push(format!(
                    "policy {:?}, element {element}: ref {reference:?} is neither a request variable nor set by an earlier policy; it will be unset at run time",
                    policy.name
                ));
            }
        }
        let condition = match &entry.condition {
            Some(text) => Some(step_condition(&policy.name, text, &plans, &mut warnings)?),
            None => None,
        };
        plans.push(plan::compile(&policy, &plans, publish, export_secrets));
        policies.push(policy);
        conditions.push(condition);
    }
    Ok(PolicySet {
        policies,
        plans,
        conditions,
        warnings,
    })
}

/// What [`compile_policies`] answers.
struct PolicySet {
    policies: Vec<Policy>,
    plans: Vec<PolicyPlan>,
    conditions: Vec<Option<StepCondition>>,
    warnings: Vec<String>,
}

/// Every `ValueRef` an enabled policy or a mapping reads, mutably.
/// (A `dyn` closure: one copy of the walk in the `.wasm`, not one per
/// caller; docs/performance.md#module-size.)
fn for_each_read(config: &mut FilterConfig, each: &mut dyn FnMut(&mut VarRef)) {
    for (plan, condition) in config.plans.iter().zip(config.conditions.iter_mut()) {
        if let (true, Some(condition)) = (plan.enabled, condition) {
            condition.reads.iter_mut().for_each(&mut *each);
        }
    }
    for plan in config.plans.iter_mut().filter(|p| p.enabled) {
        if let Some(r) = plan.token.reference.as_mut() {
            each(r);
        }
        plan.action.values_mut(each);
    }
    for mapping in &mut config.request_headers {
        each(&mut mapping.source);
    }
    if let Some(handling) = config.fault_handling.as_mut() {
        handling.reads.iter_mut().for_each(|(_, r)| each(r));
    }
}

/// Decides what a request must read from the host, and gives each named
/// header read its index.
fn plan_reads(config: &mut FilterConfig) {
    let configured = config.basepath.clone();
    let (proxy, environment) = (config.proxy_name.clone(), config.environment.clone());
    for_each_read(config, &mut |r| match r {
        VarRef::Request(
            RequestVar::BasePath { basepath } | RequestVar::PathSuffix { basepath },
        ) => basepath.clone_from(&configured),
        VarRef::Request(RequestVar::ProxyName { name }) => name.clone_from(&proxy),
        VarRef::Request(RequestVar::Environment { name }) => name.clone_from(&environment),
        _ => {}
    });
    let mut names: Vec<String> = Vec::new();
    let mut all = false;
    let (mut method, mut path, mut form, mut ip) = (false, false, false, false);
    for_each_read(config, &mut |r| match r.request() {
        Some(RequestVar::Header { name, .. }) if !names.contains(name) => names.push(name.clone()),
        Some(RequestVar::Header { .. }) => {}
        Some(RequestVar::HeaderIndexed { .. }) => all = true,
        Some(RequestVar::Verb) => method = true,
        Some(
            RequestVar::Path
            | RequestVar::Uri
            | RequestVar::QueryString
            | RequestVar::QueryParam(_)
            | RequestVar::PathSuffix { .. },
        ) => path = true,
        Some(RequestVar::FormParam(_)) => form = true,
        Some(RequestVar::ClientIp) => ip = true,
        Some(
            RequestVar::BasePath { .. }
            | RequestVar::ProxyName { .. }
            | RequestVar::Environment { .. },
        )
        | None => {}
    });
    if form && !names.iter().any(|n| n == "content-type") {
        names.push("content-type".to_string());
    }
    for_each_read(config, &mut |r| {
        if let VarRef::Request(RequestVar::Header {
            name, named_index, ..
        }) = r
        {
            *named_index = if all {
                None
            } else {
                names.iter().position(|n| n == name)
            };
        }
    });
    config.header_reads_mapped = names
        .iter()
        .map(|n| config.request_headers.iter().any(|m| m.header == *n))
        .collect();
    config.header_reads = if all {
        HeaderReads::All
    } else {
        HeaderReads::Named(names)
    };
    // The API-product check reads the path suffix and the verb: only when
    // a lookup carries products (filter/driver.rs, `read_call`), so that a
    // token service without products costs nothing.
    let products = config
        .plans
        .iter()
        .any(|p| p.enabled && p.action.checks_products());
    config.needs_method = method;
    config.needs_path = path;
    config.checks_products = products;
    config.needs_form_body = form;
    config.needs_client_ip = ip;
}

/// Parses a step's condition and resolves the variables it reads against
/// the request and the policies before it (docs/configuration.md#steps-and-conditions).
fn step_condition(
    policy: &str,
    text: &str,
    earlier: &[PolicyPlan],
    warnings: &mut Vec<String>,
) -> Result<StepCondition, ConfigError> {
    let condition = Condition::parse(text)
        .map_err(|e| ConfigError::policy(policy, "<Condition>", e.to_string()))?;
    for warning in &condition.warnings {
        warnings.push(format!("policy {policy:?}, element <Condition>: {warning}"));
    }
    let mut reads = Vec::with_capacity(condition.variables().len());
    for name in condition.variables() {
        if name.starts_with("response.") {
            return Err(ConfigError::policy(
                policy,
                "<Condition>",
                format!("variable {name:?}: the filter runs in the request flow, before any response; use request variables and those of earlier policies"),
            ));
        }
        let read = VarRef::resolve(name, earlier);
        if read == VarRef::Unset {
            warnings.push(format!(
                "policy {policy:?}, element <Condition>: variable {name:?} is neither a request variable nor set by an earlier policy; it will be unset (null) at run time"
            ));
        }
        reads.push(read);
    }
    Ok(StepCondition {
        text: text.to_string(),
        condition,
        reads,
    })
}

impl FilterConfig {
    /// For a host adapter that schedules the change-feed poll itself (the
    /// native module, docs/native.md): the shared key of the feed record
    /// and the poll period in milliseconds; `None` without invalidation.
    pub fn feed_poll(&self) -> Option<(String, u32)> {
        self.cache.invalidation.as_ref().map(|inv| {
            let key = crate::feed::feed_key(&self.token_service.cluster, self.cache.max_entries);
            (key, inv.poll_ms)
        })
    }

    /// The named-read index of `content-type` (read when forms are used).
    pub(crate) fn content_type_index(&self) -> Option<usize> {
        match &self.header_reads {
            HeaderReads::Named(names) => names.iter().position(|n| n == "content-type"),
            HeaderReads::All => None,
        }
    }
}

/// Custom attribute names known at load time: those mapped to headers,
/// read by later policies, or named exactly by a `publish` pattern.
fn know_attributes(plans: &mut [PolicyPlan], mappings: &[HeaderMapping], publish: &Publish) {
    let mut named: Vec<(usize, String)> = Vec::new();
    let mut note = |r: &VarRef| match r {
        VarRef::Attribute { policy, name } => named.push((*policy, name.clone())),
        VarRef::Output {
            policy,
            or_attribute: Some(name),
            ..
        } => named.push((*policy, name.clone())),
        _ => {}
    };
    for mapping in mappings {
        note(&mapping.source);
    }
    for plan in plans.iter() {
        if let Some(r) = &plan.token.reference {
            note(r);
        }
        plan.action.values(&mut note);
    }
    for (policy, name) in named {
        // A VerifyAccessToken's attribute is read from whichever
        // VerifyAccessToken ran (flow/mod.rs, `bound`): known to them all.
        let verify = plans
            .get(policy)
            .is_some_and(|p| p.action.variable_prefix().is_none());
        for (i, plan) in plans.iter_mut().enumerate() {
            if i == policy || (verify && plan.action.variable_prefix().is_none()) {
                plan.know_attribute(&name, publish);
            }
        }
    }
    for plan in plans.iter_mut() {
        for pattern in publish.exact_names() {
            if let Some(name) = plan.attribute_named(&pattern) {
                let name = name.to_string();
                plan.know_attribute(&name, publish);
            }
        }
    }
}

/// At most this many variables to header_to_metadata in a request that goes
/// on: each costs a header the filter adds and a rule that reads it, more
/// than a key the Lua bridge sets from its one entry; the Lua filter costs
/// more per request, fixed. The crossover is measured (docs/performance.md#dynamic-metadata).
pub(crate) const AUTO_HEADER_TO_METADATA_MAX: usize = 8;

/// `metadata_bridge: "auto"`: header_to_metadata when few variables with
/// names known at load time are published and no custom attribute family
/// is (that would need the Lua filter anyway), else the Lua bridge.
fn auto_bridge(plans: &[PolicyPlan]) -> MetadataBridge {
    let enabled = || plans.iter().filter(|p| p.enabled);
    if enabled().any(|p| p.publishes_a_family()) {
        return MetadataBridge::Lua;
    }
    let any_soft = enabled().any(|p| p.continue_on_error);
    let keys: usize = enabled()
        .map(|p| {
            p.outputs.iter().filter(|o| o.var.published).count()
                + p.known_attributes
                    .iter()
                    .filter(|(_, v)| v.published)
                    .count()
                + usize::from(p.failed.published)
                + if p.continue_on_error {
                    usize::from(p.fault_name.published) + usize::from(p.fault_cause.published)
                } else {
                    0
                }
        })
        .sum::<usize>()
        + usize::from(any_soft);
    if keys <= AUTO_HEADER_TO_METADATA_MAX {
        MetadataBridge::HeaderToMetadata
    } else {
        MetadataBridge::Lua
    }
}

/// Assigns internal metadata headers (header_to_metadata mode) and decides
/// where the Lua bridge is still needed.
fn metadata_plan(
    bridge: MetadataBridge,
    plans: &mut [PolicyPlan],
    publish: &Publish,
) -> MetadataPlan {
    let mut plan = MetadataPlan {
        bridge,
        headers: Vec::new(),
        needs_lua: false,
        empty_companions: false,
        needs_lua_on_fault: false,
    };
    let enabled: Vec<usize> = (0..plans.len()).filter(|&i| plans[i].enabled).collect();
    // Whether a policy after the n-th enabled one can end the request with
    // a fault reply (it has no continueOnError).
    let soft_at: Vec<bool> = enabled
        .iter()
        .map(|&i| plans[i].continue_on_error)
        .collect();
    let later_hard = |n: usize| soft_at[n + 1..].iter().any(|soft| !soft);

    plan.needs_lua = enabled.iter().any(|&i| plans[i].publishes_a_family());
    if bridge != MetadataBridge::HeaderToMetadata {
        plan.needs_lua = bridge == MetadataBridge::Lua;
        plan.needs_lua_on_fault = plan.needs_lua;
        plan.empty_companions = false;
        return plan;
    }
    plan.empty_companions = !plan.needs_lua;
    // The Lua bridge carries unknown attribute names and empty values: on a
    // fault reply only when a policy with values can be followed by one that
    // ends the request.
    plan.needs_lua_on_fault = plan.needs_lua && (0..enabled.len()).any(later_hard);
    let assign =
        |var: &mut Var, on_request: bool, on_reply: bool, headers: &mut Vec<MetadataHeader>| {
            if !var.published || !(on_request || on_reply) {
                return;
            }
            if let Some(i) = headers.iter().position(|h| h.key == var.name) {
                headers[i].on_request |= on_request;
                headers[i].on_reply |= on_reply;
                var.header = u16::try_from(i).ok();
                return;
            }
            let i = headers.len();
            headers.push(MetadataHeader {
                header: format!("{METADATA_HEADER_PREFIX}{i}"),
                empty_header: format!("{METADATA_HEADER_PREFIX}{i}-e"),
                key: var.name.clone(),
                on_request,
                on_reply,
            });
            var.header = u16::try_from(i).ok();
        };
    let any_soft = soft_at.iter().any(|soft| *soft);
    let any_hard = soft_at.iter().any(|soft| !soft);
    for (n, &i) in enabled.iter().enumerate() {
        let later = later_hard(n);
        let p = &mut plans[i];
        let (soft, hard) = (p.continue_on_error, !p.continue_on_error);
        // Success variables: on every request that goes on; on a fault reply
        // only when a later policy can end the request.
        for output in &mut p.outputs {
            assign(&mut output.var, true, later, &mut plan.headers);
        }
        for (_, var) in &mut p.known_attributes {
            assign(var, true, later, &mut plan.headers);
        }
        assign(&mut p.failed, true, hard || later, &mut plan.headers);
        // Fault variables go upstream only with continueOnError.
        assign(&mut p.fault_name, soft, hard || later, &mut plan.headers);
        assign(&mut p.fault_cause, soft, hard || later, &mut plan.headers);
    }
    if publish.matches(FAULT_NAME) && !enabled.is_empty() {
        let mut var = Var::new(FAULT_NAME.to_string(), false, publish, false);
        assign(&mut var, any_soft, any_hard, &mut plan.headers);
    }
    plan
}

#[cfg(test)]
mod tests;
