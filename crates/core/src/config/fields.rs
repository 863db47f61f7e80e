//! The readers of the configuration's JSON fields (docs/configuration.md#the-json-configuration):
//! each takes a field's value as written and gives what the compiled
//! configuration keeps, or refuses it with one line naming the field.

use serde_json::{Map, Value};

use super::*;

/// `basepath`: a path starting with `/`, without a query; `/` unless given.
pub(super) fn basepath(value: Option<Value>) -> Result<String, ConfigError> {
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
pub(super) fn metadata_namespace(value: Option<Value>) -> Result<String, ConfigError> {
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
pub(super) fn metadata_bridge(value: Option<Value>) -> Result<Option<MetadataBridge>, ConfigError> {
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
pub(super) fn publish(value: Option<Value>) -> Result<Publish, ConfigError> {
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

pub(super) fn token_service(value: Option<Value>) -> Result<TokenService, ConfigError> {
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
pub(super) fn lookup_budget(value: Option<Value>) -> Result<LookupBudget, ConfigError> {
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

pub(super) fn cache(value: Option<Value>) -> Result<CacheConfig, ConfigError> {
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
pub(super) fn invalidation(value: Value) -> Result<Invalidation, ConfigError> {
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

pub(super) fn request_headers(
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

pub(super) fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

pub(super) fn optional_string(
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

pub(super) fn optional_path(
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
pub(super) fn bounded_integer(
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

pub(super) fn optional_bool(
    object: &mut Map<String, Value>,
    key: &str,
) -> Result<Option<bool>, ConfigError> {
    match object.remove(key) {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(b)),
        Some(_) => Err(ConfigError::field(key, "must be true or false")),
    }
}

/// `proxy_name` and `environment`: a name (non-empty, no white space or
/// control characters, at most 255 bytes); `None` when not given
/// (docs/configuration.md#proxy_name-and-environment).
pub(super) fn optional_name(
    value: Option<Value>,
    key: &str,
) -> Result<Option<String>, ConfigError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s))
            if !s.is_empty()
                && s.len() <= 255
                && !s.contains(|c: char| c.is_whitespace() || c.is_control()) =>
        {
            Ok(Some(s))
        }
        Some(_) => Err(ConfigError::field(
            key,
            "must be a non-empty name without spaces (at most 255 bytes)",
        )),
    }
}
