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

const KNOWN_FIELDS: &str = "token_service, policies, basepath, metadata_namespace, metadata_bridge, request_headers, publish, export_secrets, cache, fault_handling";

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

/// `basepath`: a path starting with `/`, without a query; `/` unless given.
fn basepath(value: Option<Value>) -> Result<String, ConfigError> {
    Ok(match value {
        None => "/".to_string(),
        Some(Value::String(s))
            if s.starts_with('/')
                && !s.contains(['?', '#'])
                && !s.contains(|c: char| c.is_whitespace() || c.is_control()) =>
        {
            if let Some(problem) = crate::request::basepath_problem(&s) {
                return Err(ConfigError::field("basepath", problem));
            }
            s
        }
        Some(_) => {
            return Err(ConfigError::field(
                "basepath",
                "must be a path starting with \"/\", without a query (\"/v1/orders\")",
            ))
        }
    })
}

/// `metadata_namespace`: `apigee` unless given.
fn metadata_namespace(value: Option<Value>) -> Result<String, ConfigError> {
    Ok(match value {
        None => "apigee".to_string(),
        Some(Value::String(s)) if !s.trim().is_empty() && !s.contains(char::is_whitespace) => s,
        Some(_) => {
            return Err(ConfigError::field(
                "metadata_namespace",
                "must be a non-empty string without spaces",
            ))
        }
    })
}

/// `metadata_bridge`; `None`: `auto`.
fn metadata_bridge(value: Option<Value>) -> Result<Option<MetadataBridge>, ConfigError> {
    Ok(match value {
        None => Some(MetadataBridge::Lua),
        Some(Value::String(s)) => match s.as_str() {
            "lua" => Some(MetadataBridge::Lua),
            "header_to_metadata" => Some(MetadataBridge::HeaderToMetadata),
            "none" => Some(MetadataBridge::None),
            "auto" => None,
            _ => {
                return Err(ConfigError::field(
                    "metadata_bridge",
                    format!(
                        "must be \"auto\", \"lua\", \"header_to_metadata\" or \"none\", not {s:?}"
                    ),
                ))
            }
        },
        Some(_) => {
            return Err(ConfigError::field(
                "metadata_bridge",
                "must be \"auto\", \"lua\", \"header_to_metadata\" or \"none\"",
            ))
        }
    })
}

/// `publish`: every variable unless given.
fn publish(value: Option<Value>) -> Result<Publish, ConfigError> {
    Ok(match value {
        None => Publish::everything(),
        Some(Value::Array(items)) => {
            let mut patterns = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                let Value::String(s) = item else {
                    return Err(ConfigError::field(
                        format!("publish[{i}]"),
                        "must be a string",
                    ));
                };
                patterns.push(s.as_str());
            }
            Publish::new(&patterns)
                .map_err(|(i, p)| ConfigError::field(format!("publish[{i}]"), p))?
        }
        Some(_) => {
            return Err(ConfigError::field(
                "publish",
                "must be an array of variable names or patterns",
            ))
        }
    })
}

/// Every `ValueRef` an enabled policy or a mapping reads, mutably.
fn for_each_read(config: &mut FilterConfig, mut each: impl FnMut(&mut VarRef)) {
    for (plan, condition) in config.plans.iter().zip(config.conditions.iter_mut()) {
        if let (true, Some(condition)) = (plan.enabled, condition) {
            condition.reads.iter_mut().for_each(&mut each);
        }
    }
    for plan in config.plans.iter_mut().filter(|p| p.enabled) {
        if let Some(r) = plan.token.reference.as_mut() {
            each(r);
        }
        plan.action.values_mut(&mut each);
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
    for_each_read(config, |r| {
        if let VarRef::Request(
            RequestVar::BasePath { basepath } | RequestVar::PathSuffix { basepath },
        ) = r
        {
            basepath.clone_from(&configured);
        }
    });
    let mut names: Vec<String> = Vec::new();
    let mut all = false;
    let (mut method, mut path, mut form, mut ip) = (false, false, false, false);
    for_each_read(config, |r| match r.request() {
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
        Some(RequestVar::BasePath { .. }) | None => {}
    });
    if form && !names.iter().any(|n| n == "content-type") {
        names.push("content-type".to_string());
    }
    for_each_read(config, |r| {
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
    config.needs_method = method;
    config.needs_path = path;
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
    if enabled().any(|p| p.attributes_published != crate::publish::Family::None) {
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

    plan.needs_lua = enabled
        .iter()
        .any(|&i| plans[i].attributes_published != crate::publish::Family::None);
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

fn token_service(value: Option<Value>) -> Result<TokenService, ConfigError> {
    let mut object = match value {
        None => Map::new(),
        Some(Value::Object(o)) => o,
        Some(_) => return Err(ConfigError::field("token_service", "must be a JSON object")),
    };
    let cluster = optional_string(&mut object, "token_service.cluster", "cluster")?
        .unwrap_or_else(|| "token_service".to_string());
    let authority = optional_string(&mut object, "token_service.authority", "authority")?
        .unwrap_or_else(|| cluster.clone());
    let path =
        optional_path(&mut object, "path")?.unwrap_or_else(|| "/oauth2/introspect".to_string());
    let attributes_path = optional_path(&mut object, "attributes_path")?
        .unwrap_or_else(|| "/v1/accesstokens/attributes".to_string());
    let timeout_ms = match object.remove("timeout_ms") {
        None => 500,
        Some(v) => match v.as_u64() {
            Some(n) if (1..=60_000).contains(&n) => n as u32,
            _ => {
                return Err(ConfigError::field(
                    "token_service.timeout_ms",
                    "must be an integer from 1 to 60000 (milliseconds)",
                ))
            }
        },
    };
    let credentials = optional_string(&mut object, "token_service.credentials", "credentials")?;
    let lookup_budget = lookup_budget(object.remove("lookup_budget"))?;
    if let Some(key) = object.keys().next() {
        return Err(ConfigError::field(
            format!("token_service.{key}"),
            "unknown field (known: cluster, authority, path, attributes_path, timeout_ms, credentials, lookup_budget)",
        ));
    }
    Ok(TokenService {
        cluster,
        authority,
        path,
        attributes_path,
        timeout_ms,
        credentials,
        lookup_budget,
    })
}

/// `token_service.lookup_budget` (docs/configuration.md#the-lookup-budget).
fn lookup_budget(value: Option<Value>) -> Result<LookupBudget, ConfigError> {
    const FIELD: &str = "token_service.lookup_budget";
    let mut object = match value {
        None => return Ok(LookupBudget::default()),
        Some(Value::Object(o)) => o,
        Some(_) => {
            return Err(ConfigError::field(
                FIELD,
                "must be a JSON object {\"per_second\": N, \"burst\": M} (\"per_second\": 0 turns it off)",
            ))
        }
    };
    let per_second = bounded_integer(&mut object, FIELD, "per_second", 0, 1_000_000)?
        .map_or(LookupBudget::DEFAULT_PER_SECOND, |n| n as u32);
    let burst = bounded_integer(&mut object, FIELD, "burst", 1, 1_000_000)?;
    if let Some(key) = object.keys().next() {
        return Err(ConfigError::field(
            format!("{FIELD}.{key}"),
            "unknown field (known: per_second, burst)",
        ));
    }
    // Without a burst: the default, or one second's worth when the rate
    // is set above it.
    let burst = burst.map_or(LookupBudget::DEFAULT_BURST.max(per_second), |n| n as u32);
    Ok(LookupBudget { per_second, burst })
}

fn cache(value: Option<Value>) -> Result<CacheConfig, ConfigError> {
    let mut object = match value {
        None => return Ok(CacheConfig::default()),
        Some(Value::Object(o)) => o,
        Some(_) => return Err(ConfigError::field("cache", "must be a JSON object")),
    };
    let defaults = CacheConfig::default();
    let mut number =
        |key: &str, min: u64, max: u64| bounded_integer(&mut object, "cache", key, min, max);
    let ttl_ms = number("ttl_ms", 1, 86_400_000)?.map_or(defaults.ttl_ms, |n| n as i64);
    let negative_ttl_ms =
        number("negative_ttl_ms", 0, 3_600_000)?.map_or(defaults.negative_ttl_ms, |n| n as i64);
    let max_entries =
        number("max_entries", 1, 1_000_000)?.map_or(defaults.max_entries, |n| n as usize);
    let enabled = optional_bool(&mut object, "enabled")
        .map_err(|_| ConfigError::field("cache.enabled", "must be true or false"))?
        .unwrap_or(true);
    let invalidation = match object.remove("invalidation") {
        None | Some(Value::Null) => None,
        Some(v) => Some(invalidation(v)?),
    };
    if let Some(key) = object.keys().next() {
        return Err(ConfigError::field(
            format!("cache.{key}"),
            "unknown field (known: enabled, ttl_ms, negative_ttl_ms, max_entries, invalidation)",
        ));
    }
    if invalidation.is_some() && !enabled {
        return Err(ConfigError::field(
            "cache.invalidation",
            "needs the cache (\"enabled\": false turns it off)",
        ));
    }
    Ok(CacheConfig {
        enabled,
        ttl_ms,
        negative_ttl_ms,
        max_entries,
        invalidation,
    })
}

/// `cache.invalidation` (docs/configuration.md#cache-invalidation).
fn invalidation(value: Value) -> Result<Invalidation, ConfigError> {
    let mut object = match value {
        Value::Object(o) => o,
        _ => {
            return Err(ConfigError::field(
                "cache.invalidation",
                "must be a JSON object (or absent: no invalidation)",
            ))
        }
    };
    let mut number = |key: &str, min: u64, max: u64| {
        bounded_integer(&mut object, "cache.invalidation", key, min, max)
    };
    let poll_ms =
        number("poll_ms", 100, 60_000)?.map_or(Invalidation::DEFAULT_POLL_MS, |n| n as u32);
    let max_stale_ms = number("max_stale_ms", 300, 3_600_000)?
        .map_or(Invalidation::DEFAULT_MAX_STALE_MS, |n| n as i64);
    let limit = number("limit", 1, 5_000)?.map_or(Invalidation::DEFAULT_LIMIT, |n| n as u32);
    let path = match object.remove("path") {
        None => Invalidation::DEFAULT_PATH.to_string(),
        Some(Value::String(p))
            if p.starts_with('/')
                && !p.contains(['?', '#'])
                && p.bytes().all(|b| b.is_ascii_graphic()) =>
        {
            p
        }
        Some(_) => {
            return Err(ConfigError::field(
                "cache.invalidation.path",
                "must be a path starting with / (no query, no spaces)",
            ))
        }
    };
    if let Some(key) = object.keys().next() {
        return Err(ConfigError::field(
            format!("cache.invalidation.{key}"),
            "unknown field (known: path, poll_ms, max_stale_ms, limit)",
        ));
    }
    if max_stale_ms < 2 * i64::from(poll_ms) {
        return Err(ConfigError::field(
            "cache.invalidation.max_stale_ms",
            format!("must be at least twice poll_ms ({poll_ms}), else hits stop between two polls"),
        ));
    }
    Ok(Invalidation {
        path,
        poll_ms,
        max_stale_ms,
        limit,
    })
}

fn request_headers(
    value: Option<Value>,
    plans: &[PolicyPlan],
    warnings: &mut Vec<String>,
) -> Result<Vec<HeaderMapping>, ConfigError> {
    let object = match value {
        None => return Ok(Vec::new()),
        Some(Value::Object(o)) => o,
        Some(_) => {
            return Err(ConfigError::field(
                "request_headers",
                "must be an object mapping header names to variable names",
            ))
        }
    };
    let mut out: Vec<HeaderMapping> = Vec::with_capacity(object.len());
    for (header, variable) in object {
        let field = format!("request_headers.{header}");
        let lower = header.to_ascii_lowercase();
        if lower.is_empty() || !lower.bytes().all(is_token_byte) {
            return Err(ConfigError::field(field, "is not a valid HTTP header name"));
        }
        if RESERVED_HEADERS.contains(&lower.as_str()) {
            return Err(ConfigError::field(
                field,
                "this header frames or routes the request and may not be set from a variable",
            ));
        }
        if lower.starts_with(METADATA_HEADER_PREFIX) {
            return Err(ConfigError::field(
                field,
                format!("headers named {METADATA_HEADER_PREFIX}* are the filter's own"),
            ));
        }
        if out.iter().any(|m| m.header == lower) {
            return Err(ConfigError::field(
                field,
                "is mapped twice (header names are case-insensitive)",
            ));
        }
        let Value::String(variable) = variable else {
            return Err(ConfigError::field(
                field,
                "must be a variable name (a string)",
            ));
        };
        if variable.trim().is_empty() {
            return Err(ConfigError::field(field, "must name a variable"));
        }
        let source = VarRef::resolve(&variable, plans);
        if source == VarRef::Unset {
            warnings.push(format!(
                "configuration field \"{field}\": variable {variable:?} is set by no policy; the header will never be added"
            ));
        }
        out.push(HeaderMapping {
            header: lower,
            variable,
            source,
        });
    }
    Ok(out)
}

fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn optional_string(
    object: &mut Map<String, Value>,
    field: &str,
    key: &str,
) -> Result<Option<String>, ConfigError> {
    match object.remove(key) {
        None => Ok(None),
        Some(Value::String(s)) if !s.trim().is_empty() && !s.contains(['\r', '\n', '\0']) => {
            Ok(Some(s))
        }
        Some(_) => Err(ConfigError::field(
            field,
            "must be a non-empty string on one line",
        )),
    }
}

fn optional_path(
    object: &mut Map<String, Value>,
    key: &str,
) -> Result<Option<String>, ConfigError> {
    let field = format!("token_service.{key}");
    let path = optional_string(object, &field, key)?;
    if let Some(p) = &path {
        if !p.starts_with('/') || p.contains(char::is_whitespace) {
            return Err(ConfigError::field(
                field,
                "must be a path starting with '/'",
            ));
        }
    }
    Ok(path)
}

/// Takes `key` out of `object`: absent, or an integer in `min..=max`
/// (the error names the field as `<prefix>.<key>`).
fn bounded_integer(
    object: &mut Map<String, Value>,
    prefix: &str,
    key: &str,
    min: u64,
    max: u64,
) -> Result<Option<u64>, ConfigError> {
    match object.remove(key) {
        None => Ok(None),
        Some(v) => match v.as_u64() {
            Some(n) if (min..=max).contains(&n) => Ok(Some(n)),
            _ => Err(ConfigError::field(
                format!("{prefix}.{key}"),
                format!("must be an integer from {min} to {max}"),
            )),
        },
    }
}

fn optional_bool(object: &mut Map<String, Value>, key: &str) -> Result<Option<bool>, ConfigError> {
    match object.remove(key) {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(b)),
        Some(_) => Err(ConfigError::field(key, "must be true or false")),
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    const GET: &str = r#"<GetOAuthV2Info name="GetTokenAttributes"><AccessToken ref="request.queryparam.access_token"/></GetOAuthV2Info>"#;

    fn config(json: serde_json::Value) -> Result<FilterConfig, ConfigError> {
        parse_config(json.to_string().as_bytes())
    }

    /// A step condition is checked when the configuration loads: a
    /// malformed one is refused with the policy and the position, a
    /// response variable is refused, an unknown variable is a warning.
    #[test]
    fn step_conditions_are_checked_at_load_time() {
        let with = |condition: &str| {
            config(serde_json::json!({"policies": [{"policy": GET, "condition": condition}]}))
        };
        let e = with("request.verb = \"GET").unwrap_err();
        assert_eq!(e.policy.as_deref(), Some("GetTokenAttributes"));
        assert_eq!(e.element, "<Condition>");
        assert!(e.problem.starts_with("at character 16: "), "{e}");
        let line = e.to_string();
        assert!(
            line.starts_with(
                "policy \"GetTokenAttributes\", element <Condition>: at character 16: "
            ),
            "{line}"
        );
        let e = with("request.verb = = \"GET\"").unwrap_err();
        assert!(e.problem.starts_with("at character 16"), "{e}");
        let e = with("response.status.code = 200").unwrap_err();
        assert!(e.problem.contains("\"response.status.code\""), "{e}");
        let c = with("request.verb = \"GET\" and nobody.sets = 1 or x.y").unwrap();
        assert_eq!(c.warnings.len(), 3, "{:?}", c.warnings);
        assert!(c
            .warnings
            .iter()
            .any(|w| w.contains("\"nobody.sets\" is neither")));
        assert!(
            c.warnings.iter().any(|w| w.contains("parentheses")),
            "{:?}",
            c.warnings
        );
        // A condition's reads are the request's reads.
        let c = with("request.header.X-Mode = \"a\" and proxy.pathsuffix = \"/\"").unwrap();
        assert!(c.needs_path);
        assert!(
            matches!(&c.header_reads, HeaderReads::Named(n) if n.contains(&"x-mode".to_string())),
            "{:?}",
            c.header_reads
        );
        let reads = &c.conditions[0].as_ref().unwrap().reads;
        assert_eq!(
            reads[1],
            VarRef::Request(RequestVar::PathSuffix {
                basepath: "/".into()
            })
        );
    }

    #[test]
    fn defaults() {
        let c = config(serde_json::json!({ "policies": [GET] })).unwrap();
        assert_eq!(c.token_service.cluster, "token_service");
        assert_eq!(c.token_service.authority, "token_service");
        assert_eq!(c.token_service.path, "/oauth2/introspect");
        assert_eq!(
            c.token_service.attributes_path,
            "/v1/accesstokens/attributes"
        );
        assert_eq!(c.token_service.timeout_ms, 500);
        assert_eq!(c.token_service.credentials, None);
        assert_eq!(c.metadata_namespace, "apigee");
        assert!(!c.export_secrets);
        assert!(c.publish.matches("anything.at.all"));
        assert!(c.request_headers.is_empty());
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
        assert!(c.cache.enabled);
        assert!(!c.needs_form_body);
        assert_eq!(c.header_reads, HeaderReads::Named(vec![]));
        assert_eq!(c.metadata.bridge, MetadataBridge::Lua);
    }

    #[test]
    fn full_envelope() {
        let c = config(serde_json::json!({
            "token_service": {"cluster": "ts", "authority": "token-service", "path": "/i", "attributes_path": "/a",
                              "timeout_ms": 250, "credentials": "Bearer k"},
            "policies": [GET, "<SetOAuthV2Info name='S'><AccessToken ref='request.formparam.t'/><Attributes><Attribute name='a'>b</Attribute></Attributes></SetOAuthV2Info>"],
            "metadata_namespace": "ns",
            "request_headers": {"X-Developer-Email": "oauthv2accesstoken.GetTokenAttributes.developer.email"},
            "publish": ["oauthv2accesstoken.*.scope", "fault.name"],
            "export_secrets": true,
            "cache": {"enabled": false, "ttl_ms": 1000, "negative_ttl_ms": 0, "max_entries": 5}
        }))
        .unwrap();
        assert_eq!(c.token_service.authority, "token-service");
        assert_eq!(c.token_service.timeout_ms, 250);
        assert_eq!(c.token_service.credentials.as_deref(), Some("Bearer k"));
        assert_eq!(c.policies.len(), 2);
        assert_eq!(c.request_headers.len(), 1);
        assert_eq!(c.request_headers[0].header, "x-developer-email");
        assert_eq!(
            c.request_headers[0].variable,
            "oauthv2accesstoken.GetTokenAttributes.developer.email"
        );
        assert_eq!(
            c.request_headers[0].source,
            VarRef::Output {
                policy: 0,
                output: 10,
                or_attribute: None
            }
        );
        assert!(c.publish.matches("oauthv2accesstoken.P.scope"));
        assert!(!c.publish.matches("oauthv2accesstoken.P.client_id"));
        assert!(c.export_secrets);
        assert!(c.needs_form_body);
        assert_eq!(
            c.header_reads,
            HeaderReads::Named(vec!["content-type".into()])
        );
        assert!(!c.cache.enabled);
        assert_eq!(c.cache.max_entries, 5);
    }

    #[test]
    fn the_lookup_budget_has_a_default_and_can_be_set_or_turned_off() {
        let budget = |v: serde_json::Value| {
            config(serde_json::json!({"policies": [GET], "token_service": {"lookup_budget": v}}))
                .unwrap()
                .token_service
                .lookup_budget
        };
        let default = config(serde_json::json!({"policies": [GET]}))
            .unwrap()
            .token_service
            .lookup_budget;
        assert_eq!((default.per_second, default.burst), (500, 1000));
        let b = budget(serde_json::json!({"per_second": 20, "burst": 5}));
        assert_eq!((b.per_second, b.burst), (20, 5));
        let b = budget(serde_json::json!({"per_second": 5000}));
        assert_eq!((b.per_second, b.burst), (5000, 5000), "a second's worth");
        let b = budget(serde_json::json!({"per_second": 0}));
        assert_eq!(b.per_second, 0, "off");
        // With the cache off: none unless it is set.
        let off = |ts: serde_json::Value| {
            config(serde_json::json!({"policies": [GET], "cache": {"enabled": false}, "token_service": ts}))
                .unwrap()
                .token_service
                .lookup_budget
                .per_second
        };
        assert_eq!(off(serde_json::json!({})), 0);
        assert_eq!(
            off(serde_json::json!({"lookup_budget": {"per_second": 7}})),
            7
        );
    }

    #[test]
    fn bare_xml_is_one_policy_with_defaults() {
        let c = parse_config(format!("\n  {GET}\n").as_bytes()).unwrap();
        assert_eq!(c.policies.len(), 1);
        assert_eq!(c.policies[0].name, "GetTokenAttributes");
    }

    #[test]
    fn envelope_errors_name_the_field() {
        let cases: Vec<(serde_json::Value, &str, &str)> = vec![
            (serde_json::json!({}), "policies", "is required"),
            (serde_json::json!({"policies": []}), "policies", "is empty"),
            (
                serde_json::json!({"policies": "x"}),
                "policies",
                "must be an array",
            ),
            (
                serde_json::json!({"policies": [1]}),
                "policies[0]",
                "must be a string",
            ),
            (
                serde_json::json!({"policies": [GET], "bogus": 1}),
                "bogus",
                "unknown field",
            ),
            (
                serde_json::json!({"policies": [GET], "token_service": {"clustr": "x"}}),
                "token_service.clustr",
                "unknown field",
            ),
            (
                serde_json::json!({"policies": [GET], "token_service": {"cluster": ""}}),
                "token_service.cluster",
                "non-empty",
            ),
            (
                serde_json::json!({"policies": [GET], "token_service": {"timeout_ms": 0}}),
                "token_service.timeout_ms",
                "from 1 to 60000",
            ),
            (
                serde_json::json!({"policies": [GET], "token_service": {"timeout_ms": "5"}}),
                "token_service.timeout_ms",
                "from 1 to 60000",
            ),
            (
                serde_json::json!({"policies": [GET], "token_service": {"path": "oauth"}}),
                "token_service.path",
                "starting with '/'",
            ),
            (
                serde_json::json!({"policies": [GET], "token_service": {"credentials": "a\nb"}}),
                "token_service.credentials",
                "one line",
            ),
            (
                serde_json::json!({"policies": [GET], "token_service": {"lookup_budget": 100}}),
                "token_service.lookup_budget",
                "must be a JSON object",
            ),
            (
                serde_json::json!({"policies": [GET], "token_service": {"lookup_budget": {"per_second": -1}}}),
                "token_service.lookup_budget.per_second",
                "must be an integer from 0 to 1000000",
            ),
            (
                serde_json::json!({"policies": [GET], "token_service": {"lookup_budget": {"burst": 0}}}),
                "token_service.lookup_budget.burst",
                "must be an integer from 1 to 1000000",
            ),
            (
                serde_json::json!({"policies": [GET], "token_service": {"lookup_budget": {"rate": 5}}}),
                "token_service.lookup_budget.rate",
                "unknown field (known: per_second, burst)",
            ),
            (
                serde_json::json!({"policies": [GET], "token_service": []}),
                "token_service",
                "JSON object",
            ),
            (
                serde_json::json!({"policies": [GET], "metadata_namespace": ""}),
                "metadata_namespace",
                "non-empty",
            ),
            (
                serde_json::json!({"policies": [GET], "export_secrets": "yes"}),
                "export_secrets",
                "true or false",
            ),
            (
                serde_json::json!({"policies": [GET], "publish": "**"}),
                "publish",
                "must be an array",
            ),
            (
                serde_json::json!({"policies": [GET], "publish": ["a.**.b"]}),
                "publish[0]",
                "last",
            ),
            (
                serde_json::json!({"policies": [GET], "publish": ["a..b"]}),
                "publish[0]",
                "empty segment",
            ),
            (
                serde_json::json!({"policies": [GET], "request_headers": {"bad header": "x"}}),
                "request_headers.bad header",
                "not a valid HTTP header name",
            ),
            (
                serde_json::json!({"policies": [GET], "request_headers": {"Host": "x"}}),
                "request_headers.Host",
                "may not be set",
            ),
            (
                serde_json::json!({"policies": [GET], "request_headers": {"x": 1}}),
                "request_headers.x",
                "variable name",
            ),
            (
                // The later one, as written, is the one mapped twice.
                serde_json::json!({"policies": [GET], "request_headers": {"x": "a", "X": "b"}}),
                "request_headers.X",
                "mapped twice",
            ),
            (
                serde_json::json!({"policies": [GET], "cache": {"ttl": 1}}),
                "cache.ttl",
                "unknown field",
            ),
            (
                serde_json::json!({"policies": [GET], "cache": {"max_entries": 0}}),
                "cache.max_entries",
                "from 1",
            ),
            (serde_json::json!([GET]), "configuration", "JSON object"),
            (
                serde_json::json!({"policies": [{"condition": "a = 1"}]}),
                "policies[0].policy",
                "is required",
            ),
            (
                serde_json::json!({"policies": [{"policy": GET, "conditon": "a = 1"}]}),
                "policies[0].conditon",
                "unknown field (known: policy, condition)",
            ),
            (
                serde_json::json!({"policies": [{"policy": GET, "condition": true}]}),
                "policies[0].condition",
                "must be a string",
            ),
            (
                serde_json::json!({"policies": [{"policy": 1}]}),
                "policies[0].policy",
                "must be a string",
            ),
            (
                serde_json::json!({"policies": [GET], "basepath": "v1"}),
                "basepath",
                "starting with",
            ),
            (
                serde_json::json!({"policies": [GET], "basepath": "/v1?x"}),
                "basepath",
                "without a query",
            ),
        ];
        for (json, field, problem) in cases {
            let e = config(json.clone()).unwrap_err();
            assert_eq!(e.policy, None, "{json}: {e}");
            assert_eq!(e.element, field, "{json}: {e}");
            assert!(e.problem.contains(problem), "{json}: {e}");
        }
        let e = parse_config(b"{not json").unwrap_err();
        assert!(e.problem.contains("malformed JSON"), "{e}");
        let e = parse_config(b"  ").unwrap_err();
        assert!(e.problem.contains("is empty"), "{e}");
        let e = parse_config(&[0xff, 0xfe]).unwrap_err();
        assert!(e.problem.contains("UTF-8"), "{e}");
    }

    #[test]
    fn header_reads_follow_the_refs() {
        let get = |r: &str| {
            format!(
                "<GetOAuthV2Info name='G{}'><AccessToken ref='{r}'/></GetOAuthV2Info>",
                r.len()
            )
        };
        let reads = |refs: &[&str], mapped: serde_json::Value| {
            let policies: Vec<String> = refs.iter().map(|r| get(r)).collect();
            config(serde_json::json!({"policies": policies, "request_headers": mapped}))
                .unwrap()
                .header_reads
        };
        assert_eq!(
            reads(
                &["request.header.Authorization", "request.header.x-a"],
                serde_json::json!({"x-b": "request.header.x-b"})
            ),
            HeaderReads::Named(vec!["authorization".into(), "x-a".into(), "x-b".into()])
        );
        assert_eq!(
            reads(&["request.header.x.2"], serde_json::json!({})),
            HeaderReads::All
        );
        assert_eq!(
            reads(&["request.header.x.values.string"], serde_json::json!({})),
            HeaderReads::All
        );
        assert_eq!(
            reads(
                &["request.queryparam.t"],
                serde_json::json!({"x-c": "request.header.y.values.count"})
            ),
            HeaderReads::All
        );
        let disabled = "<GetOAuthV2Info name='Off' enabled='false'><AccessToken ref='request.header.z'/></GetOAuthV2Info>";
        let c = config(serde_json::json!({"policies": [disabled]})).unwrap();
        assert_eq!(c.header_reads, HeaderReads::Named(vec![]));
    }

    #[test]
    fn duplicate_policy_names_are_refused() {
        let e = config(serde_json::json!({"policies": [GET, GET]})).unwrap_err();
        assert_eq!(e.policy.as_deref(), Some("GetTokenAttributes"));
        assert!(e.problem.contains("unique"));
        assert_eq!(
            e.to_string(),
            "policy \"GetTokenAttributes\", element <GetOAuthV2Info>: two policies have this name: policy names must be unique"
        );
    }

    #[test]
    fn policy_errors_carry_through_with_their_position() {
        let e = config(serde_json::json!({"policies": [GET, "<GetOAuthV2Info name='B'>"]}))
            .unwrap_err();
        assert_eq!(e.policy.as_deref(), Some("#2"));
        assert!(
            e.to_string()
                .starts_with("policy \"#2\", element document: malformed XML"),
            "{e}"
        );
    }

    #[test]
    fn warns_about_refs_nothing_sets() {
        let later = "<GetOAuthV2Info name='B'><RefreshToken ref='oauthv2accesstoken.A.refresh_token'/></GetOAuthV2Info>";
        let first =
            "<GetOAuthV2Info name='A'><AccessToken ref='request.header.x'/></GetOAuthV2Info>";
        let c = config(serde_json::json!({"policies": [first, later]})).unwrap();
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
        // The same ref before the policy that sets it: a warning.
        let c = config(serde_json::json!({"policies": [later, first]})).unwrap();
        assert_eq!(c.warnings.len(), 1);
        assert!(c.warnings[0].contains("policy \"B\""), "{:?}", c.warnings);
        let c = config(serde_json::json!({"policies": [first], "request_headers": {"x-a": "nothing.sets.this"}})).unwrap();
        assert_eq!(c.warnings.len(), 1);
    }

    #[test]
    fn refs_resolve_to_what_sets_them() {
        let c = config(serde_json::json!({"policies": [GET, "<GetOAuthV2Info name='Code.x'><AuthorizationCode>c</AuthorizationCode></GetOAuthV2Info>"]})).unwrap();
        let r = |name: &str| VarRef::resolve(name, &c.plans);
        assert!(matches!(
            r("oauthv2accesstoken.GetTokenAttributes.scope"),
            VarRef::Output {
                policy: 0,
                output: 2,
                or_attribute: None
            }
        ));
        assert_eq!(
            r("oauthV2.GetTokenAttributes.failed"),
            VarRef::Failed { policy: 0 }
        );
        assert_eq!(
            r("oauthV2.GetTokenAttributes.fault.cause"),
            VarRef::FaultCause { policy: 0 }
        );
        assert_eq!(r("fault.name"), VarRef::LastFault);
        assert_eq!(r("oauthv2accesstoken.Other.scope"), VarRef::Unset);
        assert_eq!(
            r("oauthv2refreshtoken.GetTokenAttributes.scope"),
            VarRef::Unset
        );
        assert_eq!(r("oauthv2accesstoken.GetTokenAttributes."), VarRef::Unset);
        assert_eq!(
            r("oauthv2accesstoken.GetTokenAttributes.accesstoken.dept.id"),
            VarRef::Attribute {
                policy: 0,
                name: "dept.id".into()
            }
        );
        // No prefix segment: a standard name can also be an attribute's.
        assert!(
            matches!(r("oauthv2authcode.Code.x.code"), VarRef::Output { policy: 1, output: 0, or_attribute: Some(ref n) } if n == "code")
        );
        assert_eq!(
            r("oauthv2authcode.Code.x.state"),
            VarRef::Attribute {
                policy: 1,
                name: "state".into()
            }
        );
        assert!(matches!(r("request.header.X"), VarRef::Request(_)));
    }

    #[test]
    fn auto_picks_the_cheaper_bridge() {
        let bridge = |publish: serde_json::Value| {
            config(serde_json::json!({"policies": [GET], "metadata_bridge": "auto", "publish": publish}))
                .unwrap()
                .metadata
                .bridge
        };
        // Everything: custom attributes under a wildcard need the Lua filter anyway.
        assert_eq!(bridge(serde_json::json!(["**"])), MetadataBridge::Lua);
        let few = serde_json::json!([
            "oauthv2accesstoken.*.scope",
            "oauthv2accesstoken.*.client_id",
            "oauthV2.*.failed"
        ]);
        assert_eq!(bridge(few), MetadataBridge::HeaderToMetadata);
        let nine = serde_json::json!([
            "oauthv2accesstoken.*.scope",
            "oauthv2accesstoken.*.client_id",
            "oauthv2accesstoken.*.status",
            "oauthv2accesstoken.*.expires_in",
            "oauthv2accesstoken.*.issued_at",
            "oauthv2accesstoken.*.token_type",
            "oauthv2accesstoken.*.developer.email",
            "oauthv2accesstoken.*.developer.id",
            "oauthV2.*.failed"
        ]);
        assert_eq!(bridge(nine), MetadataBridge::Lua);
    }

    #[test]
    fn metadata_headers_are_assigned_in_header_to_metadata_mode() {
        let c = config(
            serde_json::json!({"policies": [GET], "metadata_bridge": "header_to_metadata",
            "publish": ["oauthv2accesstoken.*.scope", "oauthV2.**", "fault.name"]}),
        )
        .unwrap();
        let keys: Vec<(&str, &str, bool, bool)> = c
            .metadata
            .headers
            .iter()
            .map(|h| (h.header.as_str(), h.key.as_str(), h.on_request, h.on_reply))
            .collect();
        // (header, key, on a request that goes on, on a fault reply): a lone
        // policy's success variables never reach a fault reply, its fault
        // variables never go upstream.
        assert_eq!(
            keys,
            [
                (
                    "x-oauthv2info-md-0",
                    "oauthv2accesstoken.GetTokenAttributes.scope",
                    true,
                    false
                ),
                (
                    "x-oauthv2info-md-1",
                    "oauthV2.GetTokenAttributes.failed",
                    true,
                    true
                ),
                (
                    "x-oauthv2info-md-2",
                    "oauthV2.GetTokenAttributes.fault.name",
                    false,
                    true
                ),
                (
                    "x-oauthv2info-md-3",
                    "oauthV2.GetTokenAttributes.fault.cause",
                    false,
                    true
                ),
                ("x-oauthv2info-md-4", "fault.name", false, true),
            ]
        );
        // A policy before another one that can fault: its success variables
        // can be on a fault reply too.
        let two = config(serde_json::json!({"policies": [GET, "<GetOAuthV2Info name='Later'><ClientId>c</ClientId></GetOAuthV2Info>"],
            "metadata_bridge": "header_to_metadata", "publish": ["oauthv2accesstoken.*.scope"]}))
        .unwrap();
        assert!(two.metadata.headers[0].on_reply && two.metadata.headers[0].on_request);
        assert_eq!(c.fault_name.header, Some(4));
        assert!(!c.metadata.needs_lua);
        let all =
            config(serde_json::json!({"policies": [GET], "metadata_bridge": "header_to_metadata"}))
                .unwrap();
        // Secrets are not published, so they have no header.
        assert!(all
            .metadata
            .headers
            .iter()
            .all(|h| !h.key.ends_with(".access_token") && !h.key.ends_with(".refresh_token")));
        assert!(
            all.metadata.needs_lua,
            "custom attributes under ** need the Lua bridge"
        );
        assert!(
            !all.metadata.empty_companions,
            "empty values go through the Lua bridge, which is there anyway"
        );
        assert!(c.metadata.empty_companions, "no Lua bridge: companions");
        let e = config(serde_json::json!({"policies": [GET], "metadata_bridge": "sidecar"}))
            .unwrap_err();
        assert_eq!(e.element, "metadata_bridge");
        let e = config(serde_json::json!({"policies": [GET], "request_headers": {"x-oauthv2info-md-0": "request.verb"}})).unwrap_err();
        assert!(e.problem.contains("the filter's own"), "{e}");
    }
}
