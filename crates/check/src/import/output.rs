//! The Envoy side of an import: a bootstrap the harness can run (a route
//! per ProxyEndpoint `<BasePath>`, the filters `envoy-filters` prints for
//! each plugin configuration, a cluster per target and the token service),
//! and the Istio form (a WasmPlugin and an EnvoyFilter per ProxyEndpoint).
//!
//! Several ProxyEndpoints: each one's filters are in the chain, renamed
//! after it; every route turns the other endpoints' filters off with a
//! `FilterConfig` `disabled: true` in `typed_per_filter_config`, so a
//! request runs the steps of the ProxyEndpoint whose base path it is
//! under, as on Apigee (docs/decisions.md#import).

use serde_json::{json, Map, Value};

use super::translate::{EndpointPlan, Target};
use crate::envoy;

const HCM: &str =
    "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager";
const ROUTER: &str = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router";
const FILTER_CONFIG: &str = "type.googleapis.com/envoy.config.route.v3.FilterConfig";
const TLS: &str =
    "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext";

pub struct EnvoyOptions {
    pub listen: (String, u16),
    pub admin: (String, u16),
    /// The token service's URL (`http://127.0.0.1:8090`).
    pub token_service: String,
    /// The filter's .wasm; `None`: the native module (`--native`).
    pub wasm: Option<String>,
    pub ca_file: String,
}

/// A URL split for a cluster: scheme is http or https.
#[derive(Debug, PartialEq, Eq)]
pub struct Url {
    pub tls: bool,
    pub host: String,
    pub port: u16,
    /// The path, without a trailing `/` (empty for none).
    pub path: String,
}

pub fn parse_url(url: &str) -> Result<Url, String> {
    let (tls, rest) = if let Some(r) = url.strip_prefix("https://") {
        (true, r)
    } else if let Some(r) = url.strip_prefix("http://") {
        (false, r)
    } else {
        return Err(format!("{url:?} is not an http:// or https:// URL"));
    };
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let path = path.split('?').next().unwrap_or("").trim_end_matches('/');
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => (
            h,
            p.parse::<u16>()
                .map_err(|_| format!("{url:?}: the port {p:?} is not a number"))?,
        ),
        _ => (authority, if tls { 443 } else { 80 }),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() || host.contains(['{', '}', '@', ' ']) {
        return Err(format!(
            "{url:?}: the host {host:?} is not a host name (a variable or a target server? give --target NAME=URL)"
        ));
    }
    Ok(Url {
        tls,
        host: host.to_string(),
        port,
        path: path.to_string(),
    })
}

/// A name made of letters, digits, `-` and `_`.
pub fn slug(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    if s.is_empty() {
        "default".into()
    } else {
        s
    }
}

/// RE2 for a base path: each `*` segment one path segment.
fn base_regex(base: &str) -> String {
    base.trim_end_matches('/')
        .split('/')
        .skip(1)
        .map(|seg| {
            if seg == "*" {
                "/[^/]+".to_string()
            } else {
                let mut out = String::from("/");
                for c in seg.chars() {
                    if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '~' {
                        out.push(c);
                    } else {
                        out.push('\\');
                        out.push(c);
                    }
                }
                out
            }
        })
        .collect()
}

/// The route of one endpoint: its match (the base path and what is under
/// it), and the rewrite to the target's path.
fn route(plan: &EndpointPlan, cluster: Option<(&str, &Url)>, per_filter: Option<Value>) -> Value {
    let base = plan.base_path.trim_end_matches('/');
    let re = base_regex(&plan.base_path);
    let matching = if base.is_empty() {
        json!({"prefix": "/"})
    } else if base.contains('*') {
        json!({"safe_regex": {"regex": format!("^{re}(/.*)?$")}})
    } else {
        json!({"path_separated_prefix": base})
    };
    let mut r = Map::new();
    r.insert("name".into(), json!(plan.name));
    r.insert("match".into(), matching);
    match cluster {
        Some((name, url)) => {
            let mut action = Map::new();
            action.insert("cluster".into(), json!(name));
            // Apigee sends the target URL's path followed by the path
            // suffix (what follows the base path).
            let rewrite = match (base.is_empty(), url.path.is_empty()) {
                (true, true) => None,
                (true, false) => Some(
                    json!({"pattern": {"regex": "^/"}, "substitution": format!("{}/", url.path)}),
                ),
                (false, true) => {
                    Some(json!({"pattern": {"regex": format!("^{re}/?")}, "substitution": "/"}))
                }
                (false, false) => {
                    Some(json!({"pattern": {"regex": format!("^{re}")}, "substitution": url.path}))
                }
            };
            if let Some(rw) = rewrite {
                action.insert("regex_rewrite".into(), rw);
            }
            if url.host.parse::<std::net::IpAddr>().is_err() {
                action.insert("auto_host_rewrite".into(), json!(true));
            }
            r.insert("route".into(), Value::Object(action));
        }
        None => {
            r.insert("direct_response".into(), json!({"status": 404}));
        }
    }
    if let Some(pf) = per_filter {
        r.insert("typed_per_filter_config".into(), pf);
    }
    Value::Object(r)
}

fn cluster(name: &str, url: &Url, ca_file: &str) -> Value {
    let ip = url.host.parse::<std::net::IpAddr>().is_ok();
    let mut c = json!({
        "name": name,
        "type": if ip { "STATIC" } else { "LOGICAL_DNS" },
        "connect_timeout": "5s",
        "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {
            "socket_address": {"address": url.host, "port_value": url.port}}}}]}]},
    });
    if !ip {
        c["dns_lookup_family"] = json!("V4_PREFERRED");
    }
    if url.tls {
        c["transport_socket"] = json!({"name": "envoy.transport_sockets.tls", "typed_config": {
            "@type": TLS, "sni": url.host, "common_tls_context": {"validation_context": {
                "trusted_ca": {"filename": ca_file},
                "match_typed_subject_alt_names": [{"san_type": "DNS", "matcher": {"exact": url.host}}]}}}});
    }
    c
}

/// The filters of one plugin configuration, as `envoy-filters` prints them.
pub fn chain_of(plugin: &Value, wasm: Option<&str>) -> Result<envoy::Chain, String> {
    let loaded = super::core::load(plugin)?;
    let text = plugin.to_string();
    Ok(match wasm {
        Some(filename) => envoy::chain(
            &loaded.config,
            &envoy::Wasm {
                filename,
                configuration: &text,
            },
        ),
        None => envoy::native_chain(&loaded.config, &text),
    })
}

fn rename(filter: &Value, suffix: &str) -> Value {
    let mut f = filter.clone();
    if let Some(name) = f.get("name").and_then(Value::as_str) {
        f["name"] = json!(format!("{name}.{suffix}"));
    }
    f
}

/// `typed_per_filter_config` turning off the filters of every endpoint but
/// `own` (a FilterConfig that enables a filter disabled in the chain is
/// refused for the Wasm filter, which has no per-route configuration).
fn disable_others(names: &[(String, Vec<String>)], own: Option<&str>) -> Option<Value> {
    let mut off = Map::new();
    for (endpoint, filters) in names {
        if Some(endpoint.as_str()) != own {
            for n in filters {
                off.insert(n.clone(), json!({"@type": FILTER_CONFIG, "disabled": true}));
            }
        }
    }
    (!off.is_empty()).then_some(Value::Object(off))
}

/// The bootstrap.
/// The bootstrap; a target whose URL is not one (a variable, a target
/// server) is a problem, its route answering 404.
pub fn bootstrap(
    plans: &[EndpointPlan],
    options: &EnvoyOptions,
    problems: &mut Vec<String>,
) -> Result<Value, String> {
    let with_filter = plans.iter().filter(|p| p.plugin.is_some()).count();
    let per_route = with_filter > 1;
    let mut filters = Vec::new();
    let mut routes = Vec::new();
    let mut clusters = Vec::new();
    let mut removals: Vec<String> = Vec::new();
    // The most specific base path first: more segments, then literal
    // before `*`.
    let mut order: Vec<&EndpointPlan> = plans.iter().collect();
    order.sort_by_key(|p| {
        let segs = p.base_path.trim_end_matches('/').split('/').count();
        (std::cmp::Reverse(segs), p.base_path.contains('*'))
    });
    // Each endpoint's filters, renamed after it when there are several.
    let mut names: Vec<(String, Vec<String>)> = Vec::new();
    for plan in &order {
        let Some(plugin) = &plan.plugin else { continue };
        let chain = chain_of(plugin, options.wasm.as_deref())?;
        for r in &chain.response_headers_to_remove {
            if !removals.contains(r) {
                removals.push(r.clone());
            }
        }
        let mut own = Vec::new();
        for f in chain.all() {
            let f = if per_route {
                rename(&f, &slug(&plan.name))
            } else {
                f
            };
            if let Some(n) = f.get("name").and_then(Value::as_str) {
                own.push(n.to_string());
            }
            filters.push(f);
        }
        names.push((plan.name.clone(), own));
    }
    for plan in order {
        // A route turns the other endpoints' filters off (a FilterConfig
        // that enables a filter disabled in the chain is refused for the
        // Wasm filter, which has no per-route configuration).
        let per_filter = disable_others(&names, Some(&plan.name));
        let target = match &plan.target {
            Target::Url { name, url } => match parse_url(url) {
                Ok(parsed) => {
                    let cluster_name = format!("target-{}", slug(name));
                    if !clusters
                        .iter()
                        .any(|c: &Value| c["name"] == json!(cluster_name))
                    {
                        clusters.push(cluster(&cluster_name, &parsed, &options.ca_file));
                    }
                    Some((cluster_name, parsed))
                }
                Err(e) => {
                    problems.push(format!(
                            "{}: TargetEndpoint {name:?}: {e}; its route answers 404 until --target {name}=URL gives one",
                            plan.name
                        ));
                    None
                }
            },
            Target::None => None,
        };
        routes.push(route(
            plan,
            target.as_ref().map(|(n, u)| (n.as_str(), u)),
            per_filter,
        ));
    }
    if !plans
        .iter()
        .any(|p| p.base_path.trim_end_matches('/').is_empty())
    {
        // No base path matches: Apigee answers 404 (no proxy for the path).
        let mut no_proxy = json!({"name": "no-proxy", "match": {"prefix": "/"}, "direct_response": {"status": 404}});
        if let Some(off) = disable_others(&names, None) {
            no_proxy["typed_per_filter_config"] = off;
        }
        routes.push(no_proxy);
    }
    let token = parse_url(&options.token_service).map_err(|e| format!("--token-service: {e}"))?;
    clusters.push(cluster("token_service", &token, &options.ca_file));
    filters.push(json!({"name": "envoy.filters.http.router", "typed_config": {"@type": ROUTER}}));
    let mut route_config = json!({"name": "proxy", "virtual_hosts": [{"name": "proxy", "domains": ["*"], "routes": routes}]});
    if !removals.is_empty() {
        route_config["response_headers_to_remove"] = json!(removals);
    }
    Ok(json!({
        "admin": {"address": {"socket_address": {"address": options.admin.0, "port_value": options.admin.1}}},
        "static_resources": {
            "listeners": [{"name": "proxy", "address": {"socket_address": {"address": options.listen.0, "port_value": options.listen.1}},
                "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": {
                    "@type": HCM, "stat_prefix": "proxy", "route_config": route_config, "http_filters": filters,
                    "access_log": [access_log()]}}]}]}],
            "clusters": clusters,
        },
    }))
}

/// One JSON line per request on standard output: the route (the
/// ProxyEndpoint), the status, and the variables published to dynamic
/// metadata (what the untranslated steps read).
fn access_log() -> Value {
    json!({"name": "envoy.access_loggers.stdout", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog",
        "log_format": {"json_format": {
            "method": "%REQ(:METHOD)%", "path": "%REQ(:PATH)%", "status": "%RESPONSE_CODE%",
            "route": "%ROUTE_NAME%", "variables": "%DYNAMIC_METADATA(apigee)%"}}}})
}

/// The Istio form of one endpoint: a WasmPlugin and the EnvoyFilter around
/// it, on the workloads with `labels` in `namespace`; for the native module
/// (`wasm` `None`), the EnvoyFilter that inserts the whole chain (Istio has
/// no API for dynamic modules).
pub fn istio(
    plan: &EndpointPlan,
    plugin: &Value,
    namespace: &str,
    labels: &Map<String, Value>,
    wasm: Option<&str>,
) -> Result<String, String> {
    let name = format!("oauthv2info-{}", slug(&plan.name));
    let chain = chain_of(plugin, wasm)?;
    if wasm.is_none() {
        return Ok(crate::yaml::to_yaml(
            &envoy::istio(&chain, namespace, &name, labels),
            0,
        ));
    }
    let wasm_plugin = json!({
        "apiVersion": "extensions.istio.io/v1alpha1", "kind": "WasmPlugin",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"selector": {"matchLabels": labels}, "match": [{"mode": "SERVER"}],
                 "url": "oci://registry.example.com/apigee/oauthv2info:0.1.0",
                 "imagePullPolicy": "IfNotPresent", "phase": "AUTHN", "failStrategy": "FAIL_CLOSE",
                 "pluginConfig": plugin}});
    let filter = envoy::istio(&chain, namespace, &name, labels);
    Ok(format!(
        "{}---\n{}",
        crate::yaml::to_yaml(&wasm_plugin, 0),
        crate::yaml::to_yaml(&filter, 0)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_for_clusters() {
        assert_eq!(
            parse_url("https://mocktarget.apigee.net/v1/").unwrap(),
            Url {
                tls: true,
                host: "mocktarget.apigee.net".into(),
                port: 443,
                path: "/v1".into()
            }
        );
        assert_eq!(
            parse_url("http://127.0.0.1:8080").unwrap(),
            Url {
                tls: false,
                host: "127.0.0.1".into(),
                port: 8080,
                path: String::new()
            }
        );
        assert!(parse_url("https://{target.host}/x").is_err());
        assert!(parse_url("ftp://x").is_err());
        assert!(parse_url("http://x:port").is_err());
    }

    #[test]
    fn base_paths_become_route_regexes() {
        assert_eq!(base_regex("/v1/a.b"), "/v1/a\\.b");
        assert_eq!(
            base_regex("/cds-au/v1/accounts/*/transactions"),
            "/cds-au/v1/accounts/[^/]+/transactions"
        );
        assert_eq!(base_regex("/"), "");
    }
}
