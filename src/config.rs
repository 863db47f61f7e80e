//! The filter configuration (SPEC 2): the JSON envelope or a bare policy
//! document, validated and compiled once when Envoy loads it.

use std::fmt;

use serde_json::{Map, Value};

use crate::policy::{parse_policy, Policy, PolicyKind};
use crate::publish::Publish;
use crate::vars::is_request_variable;

/// A configuration error: one line naming the policy (when there is one),
/// the element or field, and the problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub policy: Option<String>,
    pub element: String,
    pub problem: String,
}

impl ConfigError {
    pub fn policy(
        policy: impl Into<String>,
        element: impl Into<String>,
        problem: impl Into<String>,
    ) -> Self {
        ConfigError {
            policy: Some(policy.into()),
            element: element.into(),
            problem: problem.into(),
        }
    }

    pub fn field(field: impl Into<String>, problem: impl Into<String>) -> Self {
        ConfigError {
            policy: None,
            element: field.into(),
            problem: problem.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let problem = self.problem.replace(['\n', '\r'], " ");
        match &self.policy {
            Some(policy) => write!(f, "policy {policy:?}, element {}: {problem}", self.element),
            None => write!(f, "configuration field {:?}: {problem}", self.element),
        }
    }
}

impl std::error::Error for ConfigError {}

/// Where and how the filter calls the token service (SPEC 2, 6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenService {
    pub cluster: String,
    pub authority: String,
    /// Introspection path (`path` in the configuration).
    pub path: String,
    pub attributes_path: String,
    pub timeout_ms: u32,
    /// The `Authorization` header value sent with every call.
    pub credentials: Option<String>,
}

/// The profile cache (see docs/configuration.md).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheConfig {
    pub enabled: bool,
    pub ttl_ms: i64,
    pub negative_ttl_ms: i64,
    pub max_entries: usize,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            enabled: true,
            ttl_ms: 30_000,
            negative_ttl_ms: 2_000,
            max_entries: 10_000,
        }
    }
}

/// Which request headers a request must fetch from the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderReads {
    /// These (lower-cased) names, one host call each: the common case.
    Named(Vec<String>),
    /// Every header: a ref uses `.N` or `.values.*`, which see repeated
    /// headers as one list.
    All,
}

impl HeaderReads {
    fn from_refs<'a>(refs: impl Iterator<Item = &'a str>) -> HeaderReads {
        let mut names: Vec<String> = Vec::new();
        for reference in refs {
            let Some(rest) = reference.strip_prefix("request.header.") else {
                continue;
            };
            let indexed = rest.rsplit_once('.').is_some_and(|(_, last)| {
                !last.is_empty() && last.bytes().all(|b| b.is_ascii_digit())
            });
            if indexed || rest.ends_with(".values.string") || rest.ends_with(".values.count") {
                return HeaderReads::All;
            }
            let name = rest.to_ascii_lowercase();
            if !names.contains(&name) {
                names.push(name);
            }
        }
        HeaderReads::Named(names)
    }
}

/// The validated, compiled configuration.
#[derive(Debug, Clone)]
pub struct FilterConfig {
    pub token_service: TokenService,
    pub policies: Vec<Policy>,
    pub metadata_namespace: String,
    /// (header name, variable), header names lower-cased.
    pub request_headers: Vec<(String, String)>,
    pub publish: Publish,
    pub export_secrets: bool,
    pub cache: CacheConfig,
    /// The request headers the policies and mappings read.
    pub header_reads: HeaderReads,
    /// Some enabled policy reads `request.formparam.*`.
    pub needs_form_body: bool,
    /// Some enabled policy reads `client.ip`.
    pub needs_client_ip: bool,
    /// Load-time warnings (refs to variables nothing sets), logged once.
    pub warnings: Vec<String>,
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
        return compile(Map::new(), vec![trimmed.to_string()]);
    }
    let value: Value = serde_json::from_str(trimmed)
        .map_err(|e| ConfigError::field("configuration", format!("malformed JSON: {e}")))?;
    let Value::Object(mut object) = value else {
        return Err(ConfigError::field("configuration", "must be a JSON object"));
    };
    let policies = match object.remove("policies") {
        Some(Value::Array(items)) => {
            let mut policies = Vec::with_capacity(items.len());
            for (i, item) in items.into_iter().enumerate() {
                match item {
                    Value::String(s) => policies.push(s),
                    _ => {
                        return Err(ConfigError::field(
                            format!("policies[{i}]"),
                            "must be a string holding one policy's XML",
                        ))
                    }
                }
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
                "must be an array of policy XML strings",
            ))
        }
        None => return Err(ConfigError::field("policies", "is required")),
    };
    compile(object, policies)
}

fn compile(
    mut object: Map<String, Value>,
    documents: Vec<String>,
) -> Result<FilterConfig, ConfigError> {
    let token_service = token_service(object.remove("token_service"))?;
    let metadata_namespace = match object.remove("metadata_namespace") {
        None => "apigee".to_string(),
        Some(Value::String(s)) if !s.trim().is_empty() && !s.contains(char::is_whitespace) => s,
        Some(_) => {
            return Err(ConfigError::field(
                "metadata_namespace",
                "must be a non-empty string without spaces",
            ))
        }
    };
    let export_secrets = optional_bool(&mut object, "export_secrets")?.unwrap_or(false);
    let publish = match object.remove("publish") {
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
    };
    let cache = cache(object.remove("cache"))?;
    let raw_headers = object.remove("request_headers");
    if let Some(key) = object.keys().next() {
        return Err(ConfigError::field(
            key.clone(),
            "unknown field (known: token_service, policies, metadata_namespace, request_headers, publish, export_secrets, cache)",
        ));
    }

    let mut policies: Vec<Policy> = Vec::with_capacity(documents.len());
    let mut warnings = Vec::new();
    for (index, document) in documents.iter().enumerate() {
        let policy = parse_policy(document, index)?;
        if policies.iter().any(|p| p.name == policy.name) {
            return Err(ConfigError::policy(
                &policy.name,
                format!("<{}>", policy.type_name()),
                "two policies have this name: policy names must be unique",
            ));
        }
        for (element, reference) in policy.references() {
            if !is_request_variable(reference)
                && !policies.iter().any(|p| sets_variable(p, reference))
            {
                warnings.push(format!(
                    "policy {:?}, element {element}: ref {reference:?} is neither a request variable nor set by an earlier policy; it will be unset at run time",
                    policy.name
                ));
            }
        }
        policies.push(policy);
    }

    let request_headers = request_headers(raw_headers, &policies, &mut warnings)?;
    // Every ref an enabled policy or a header mapping reads.
    let refs: Vec<&str> = policies
        .iter()
        .filter(|p| p.enabled)
        .flat_map(|p| p.references().into_iter().map(|(_, r)| r))
        .chain(request_headers.iter().map(|(_, v)| v.as_str()))
        .collect();
    let needs_form_body = refs.iter().any(|r| r.starts_with("request.formparam."));
    let needs_client_ip = refs.contains(&"client.ip");
    let mut header_reads = HeaderReads::from_refs(refs.iter().copied());
    if let (true, HeaderReads::Named(names)) = (needs_form_body, &mut header_reads) {
        if !names.iter().any(|n| n == "content-type") {
            names.push("content-type".to_string());
        }
    }

    Ok(FilterConfig {
        token_service,
        policies,
        metadata_namespace,
        request_headers,
        publish,
        export_secrets,
        cache,
        header_reads,
        needs_form_body,
        needs_client_ip,
        warnings,
    })
}

/// True when `policy` can set the variable `name`.
pub fn sets_variable(policy: &Policy, name: &str) -> bool {
    if name == "fault.name" {
        return true;
    }
    let prefixes = match &policy.kind {
        PolicyKind::Get { kind, .. } => [kind.variable_prefix(), "oauthV2"],
        PolicyKind::Set { .. } => ["oauthv2accesstoken", "oauthV2"],
    };
    prefixes.iter().any(|prefix| {
        name.strip_prefix(prefix)
            .and_then(|r| r.strip_prefix('.'))
            .and_then(|r| r.strip_prefix(policy.name.as_str()))
            .and_then(|r| r.strip_prefix('.'))
            .is_some_and(|suffix| !suffix.is_empty())
    })
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
    if let Some(key) = object.keys().next() {
        return Err(ConfigError::field(
            format!("token_service.{key}"),
            "unknown field (known: cluster, authority, path, attributes_path, timeout_ms, credentials)",
        ));
    }
    Ok(TokenService {
        cluster,
        authority,
        path,
        attributes_path,
        timeout_ms,
        credentials,
    })
}

fn cache(value: Option<Value>) -> Result<CacheConfig, ConfigError> {
    let mut object = match value {
        None => return Ok(CacheConfig::default()),
        Some(Value::Object(o)) => o,
        Some(_) => return Err(ConfigError::field("cache", "must be a JSON object")),
    };
    let defaults = CacheConfig::default();
    let mut number = |key: &str, min: u64, max: u64| -> Result<Option<u64>, ConfigError> {
        match object.remove(key) {
            None => Ok(None),
            Some(v) => match v.as_u64() {
                Some(n) if (min..=max).contains(&n) => Ok(Some(n)),
                _ => Err(ConfigError::field(
                    format!("cache.{key}"),
                    format!("must be an integer from {min} to {max}"),
                )),
            },
        }
    };
    let ttl_ms = number("ttl_ms", 1, 86_400_000)?.map_or(defaults.ttl_ms, |n| n as i64);
    let negative_ttl_ms =
        number("negative_ttl_ms", 0, 3_600_000)?.map_or(defaults.negative_ttl_ms, |n| n as i64);
    let max_entries =
        number("max_entries", 1, 1_000_000)?.map_or(defaults.max_entries, |n| n as usize);
    let enabled = optional_bool(&mut object, "enabled")
        .map_err(|_| ConfigError::field("cache.enabled", "must be true or false"))?
        .unwrap_or(true);
    if let Some(key) = object.keys().next() {
        return Err(ConfigError::field(
            format!("cache.{key}"),
            "unknown field (known: enabled, ttl_ms, negative_ttl_ms, max_entries)",
        ));
    }
    Ok(CacheConfig {
        enabled,
        ttl_ms,
        negative_ttl_ms,
        max_entries,
    })
}

fn request_headers(
    value: Option<Value>,
    policies: &[Policy],
    warnings: &mut Vec<String>,
) -> Result<Vec<(String, String)>, ConfigError> {
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
    let mut out: Vec<(String, String)> = Vec::with_capacity(object.len());
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
        if out.iter().any(|(h, _)| *h == lower) {
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
        if !is_request_variable(&variable) && !policies.iter().any(|p| sets_variable(p, &variable))
        {
            warnings.push(format!(
                "configuration field \"{field}\": variable {variable:?} is set by no policy; the header will never be added"
            ));
        }
        out.push((lower, variable));
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
        assert_eq!(
            c.request_headers,
            vec![(
                "x-developer-email".to_string(),
                "oauthv2accesstoken.GetTokenAttributes.developer.email".to_string()
            )]
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
                serde_json::json!({"policies": [GET], "request_headers": {"x": "a", "X": "b"}}),
                "request_headers.x",
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
    fn sets_variable_matches_prefix_and_policy_name() {
        let c = config(serde_json::json!({"policies": [GET]})).unwrap();
        let p = &c.policies[0];
        assert!(sets_variable(
            p,
            "oauthv2accesstoken.GetTokenAttributes.scope"
        ));
        assert!(sets_variable(p, "oauthV2.GetTokenAttributes.failed"));
        assert!(sets_variable(p, "fault.name"));
        assert!(!sets_variable(p, "oauthv2accesstoken.Other.scope"));
        assert!(!sets_variable(
            p,
            "oauthv2refreshtoken.GetTokenAttributes.scope"
        ));
        assert!(!sets_variable(p, "oauthv2accesstoken.GetTokenAttributes."));
    }
}
