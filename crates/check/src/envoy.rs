//! The Envoy HTTP filters a plugin configuration needs
//! (docs/configuration.md#dynamic-metadata): the Wasm filter itself and what
//! completes it, in order, as Envoy configuration. `oauthv2info
//! envoy-filters` prints them; the shipped configurations are held to this
//! output by tests.
//!
//! With `metadata_bridge: "header_to_metadata"` (what `auto` picks for a
//! few known variables):
//!
//! 1. `oauthv2info-strip` (header_mutation): removes every client copy of
//!    the internal metadata headers, before anything reads them;
//! 2. `oauthv2info-form` (Lua), when a policy reads `request.formparam.*`;
//! 3. the Wasm filter;
//! 4. `oauthv2info-metadata` (header_to_metadata): request rules for the
//!    headers the filter adds to a request that goes upstream, response
//!    rules for those of its fault replies (a local reply passes the
//!    encoders of every filter, those after the one that sent it included),
//!    each header removed once read;
//! 5. `oauthv2info-after` (Lua), when custom attributes whose names are not
//!    known at load time can be published: it copies them (and, in this
//!    mode, empty values, which header_to_metadata cannot set) on the
//!    request path, and on fault replies on the response path;
//!
//! and, in the route configuration, `response_headers_to_remove` with every
//! internal header name: the router drops an upstream's copies before any
//! filter sees the response (a fault reply never passes the router).
//!
//! With `lua`: the form filter (when needed), the Wasm filter,
//! `oauthv2info-after`. With `none`: the form filter (when needed) and the
//! Wasm filter.

use oauthv2info_core::{FilterConfig, MetadataBridge, MetadataHeader};
use serde_json::{json, Map, Value};

const FORM: &str = include_str!("lua/form.lua");
const BRIDGE: &str = include_str!("lua/bridge.lua");
const AFTER: &str = include_str!("lua/after.lua");
const AFTER_FAULT: &str = include_str!("lua/after-fault.lua");

const HEADER_MUTATION: &str =
    "type.googleapis.com/envoy.extensions.filters.http.header_mutation.v3.HeaderMutation";
const HEADER_TO_METADATA: &str =
    "type.googleapis.com/envoy.extensions.filters.http.header_to_metadata.v3.Config";
const LUA: &str = "type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua";
const WASM: &str = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm";
const DYNAMIC_MODULE: &str =
    "type.googleapis.com/envoy.extensions.filters.http.dynamic_modules.v3.DynamicModuleFilter";

/// The Lua scripts, as the filters carry them (one source each: the pieces
/// in crates/check/src/lua/). The bridge's response hook (for fault replies)
/// only where it is needed: an idle hook still costs every response.
pub fn lua_after(response_hook: bool) -> String {
    if response_hook {
        format!("{BRIDGE}\n{AFTER}\n{AFTER_FAULT}")
    } else {
        format!("{BRIDGE}\n{AFTER}")
    }
}

pub fn lua_form() -> String {
    FORM.to_string()
}

/// Where the filters go: before and after the Wasm filter; and the
/// response headers the route configuration must remove.
pub struct Chain {
    pub before: Vec<Value>,
    pub wasm: Value,
    pub after: Vec<Value>,
    pub response_headers_to_remove: Vec<String>,
}

impl Chain {
    /// Every filter, in order.
    pub fn all(&self) -> Vec<Value> {
        let mut out = self.before.clone();
        out.push(self.wasm.clone());
        out.extend(self.after.iter().cloned());
        out
    }
}

/// Options of the Wasm filter block.
pub struct Wasm<'a> {
    /// The `.wasm` file (`vm_config.code.local.filename`).
    pub filename: &'a str,
    /// The plugin configuration text, as it is given.
    pub configuration: &'a str,
}

pub fn chain(config: &FilterConfig, wasm: &Wasm<'_>) -> Chain {
    let metadata = &config.metadata;
    let mut before = Vec::new();
    let mut after = Vec::new();
    let mut response_headers_to_remove = Vec::new();
    let lua = |name: &str, code: String| json!({"name": name, "typed_config": {"@type": LUA, "default_source_code": {"inline_string": code}}});
    match metadata.bridge {
        MetadataBridge::HeaderToMetadata => {
            let names = |pick: fn(&MetadataHeader) -> bool| -> Vec<String> {
                metadata
                    .headers
                    .iter()
                    .filter(|h| pick(h))
                    .flat_map(|h| [h.header.clone(), h.empty_header.clone()])
                    .collect()
            };
            // A client can send the request-rule headers; an upstream the
            // response-rule ones.
            let removals: Vec<Value> = names(|h| h.on_request)
                .into_iter()
                .map(|n| json!({"remove": n}))
                .collect();
            if !removals.is_empty() {
                before.push(json!({"name": "oauthv2info-strip", "typed_config": {
                    "@type": HEADER_MUTATION, "mutations": {"request_mutations": removals}}}));
            }
            if config.needs_form_body {
                before.push(lua("oauthv2info-form", lua_form()));
            }
            let rule_list = |pick: fn(&MetadataHeader) -> bool| -> Vec<Value> {
                metadata
                    .headers
                    .iter()
                    .filter(|h| pick(h))
                    .flat_map(|h| rules(h, &config.metadata_namespace))
                    .collect()
            };
            let mut h2m = Map::new();
            h2m.insert("@type".into(), json!(HEADER_TO_METADATA));
            let request_rules = rule_list(|h| h.on_request);
            if !request_rules.is_empty() {
                h2m.insert("request_rules".into(), Value::Array(request_rules));
            }
            let response_rules = rule_list(|h| h.on_reply);
            if !response_rules.is_empty() {
                h2m.insert("response_rules".into(), Value::Array(response_rules));
            }
            if h2m.len() > 1 {
                after.push(json!({"name": "oauthv2info-metadata", "typed_config": h2m}));
            }
            if metadata.needs_lua {
                after.push(lua(
                    "oauthv2info-after",
                    lua_after(metadata.needs_lua_on_fault),
                ));
            }
            response_headers_to_remove = names(|h| h.on_reply);
        }
        MetadataBridge::Lua => {
            if config.needs_form_body {
                before.push(lua("oauthv2info-form", lua_form()));
            }
            after.push(lua("oauthv2info-after", lua_after(true)));
        }
        MetadataBridge::None => {
            if config.needs_form_body {
                before.push(lua("oauthv2info-form", lua_form()));
            }
        }
    }
    let wasm = json!({"name": "oauthv2info", "typed_config": {"@type": WASM, "config": {
        "name": "oauthv2info", "root_id": "oauthv2info", "failure_policy": "FAIL_CLOSED",
        "vm_config": {"vm_id": "oauthv2info", "runtime": "envoy.wasm.runtime.v8",
                      "code": {"local": {"filename": wasm.filename}}},
        "configuration": {"@type": "type.googleapis.com/google.protobuf.StringValue", "value": wasm.configuration}}}});
    Chain {
        before,
        wasm,
        after,
        response_headers_to_remove,
    }
}

/// The chain of the native module (docs/native.md): the form filter when a
/// policy reads `request.formparam.*`, and the module, which writes dynamic
/// metadata itself (no bridge filter, nothing for the route configuration).
/// The module's filter sits where the Wasm filter does in [`Chain`].
pub fn native_chain(config: &FilterConfig, configuration: &str) -> Chain {
    let mut before = Vec::new();
    if config.needs_form_body {
        before.push(
            json!({"name": "oauthv2info-form", "typed_config": {"@type": LUA,
            "default_source_code": {"inline_string": lua_form()}}}),
        );
    }
    let module = json!({"name": "oauthv2info", "typed_config": {"@type": DYNAMIC_MODULE,
        "dynamic_module_config": {"name": "oauthv2info", "do_not_close": true},
        "filter_name": "oauthv2info",
        "filter_config": {"@type": "type.googleapis.com/google.protobuf.StringValue", "value": configuration}}});
    Chain {
        before,
        wasm: module,
        after: Vec::new(),
        response_headers_to_remove: Vec::new(),
    }
}

/// The two `header_to_metadata` rules of one internal header: the value as
/// it is, and the empty value through its companion.
fn rules(h: &MetadataHeader, namespace: &str) -> [Value; 2] {
    [
        json!({"header": h.header, "on_header_present": {
            "metadata_namespace": namespace, "key": h.key, "type": "STRING"}, "remove": true}),
        json!({"header": h.empty_header, "on_header_present": {
            "metadata_namespace": namespace, "key": h.key, "type": "PROTOBUF_VALUE", "encode": "BASE64"}, "remove": true}),
    ]
}

/// How Istio names the WasmPlugin's HTTP filter, by release (istiod applies
/// the patches whose subFilter exists in the chain).
fn istio_filter_names(namespace: &str, name: &str) -> [String; 3] {
    [
        format!("extenstions.istio.io/wasmplugin/{namespace}.{name}"),
        format!("extensions.istio.io/wasmplugin/{namespace}.{name}"),
        format!(
            "extensions.istio.io/trafficextension/{namespace}.{name}~istio-translated-wasmplugin"
        ),
    ]
}

/// An Istio EnvoyFilter that puts the chain's other filters around the
/// Wasm filter a WasmPlugin (`namespace`/`name`) inserts on workloads with
/// these labels.
///
/// For the native module's chain ([`native_chain`]) there is no WasmPlugin
/// (Istio has no API for dynamic modules): the EnvoyFilter inserts every
/// filter of the chain, the module included, before the router, in order.
pub fn istio(chain: &Chain, namespace: &str, name: &str, labels: &Map<String, Value>) -> Value {
    if chain.wasm["typed_config"]["@type"] == DYNAMIC_MODULE {
        let matching = json!({"context": "SIDECAR_INBOUND", "listener": {"filterChain": {"filter": {
            "name": "envoy.filters.network.http_connection_manager",
            "subFilter": {"name": "envoy.filters.http.router"}}}}});
        let patches: Vec<Value> = chain
            .all()
            .into_iter()
            .map(|f| {
                json!({"applyTo": "HTTP_FILTER", "match": matching,
                       "patch": {"operation": "INSERT_BEFORE", "value": f}})
            })
            .collect();
        return json!({"apiVersion": "networking.istio.io/v1alpha3", "kind": "EnvoyFilter",
               "metadata": {"name": format!("{name}-native"), "namespace": namespace},
               "spec": {"workloadSelector": {"labels": labels}, "configPatches": patches}});
    }
    let mut patches = Vec::new();
    for sub in istio_filter_names(namespace, name) {
        let matching = json!({"context": "SIDECAR_INBOUND", "listener": {"filterChain": {"filter": {
            "name": "envoy.filters.network.http_connection_manager", "subFilter": {"name": sub}}}}});
        // INSERT_BEFORE keeps the order; INSERT_AFTER inserts right after the
        // Wasm filter, so the after-filters go in reverse.
        for f in &chain.before {
            patches.push(json!({"applyTo": "HTTP_FILTER", "match": matching,
                                "patch": {"operation": "INSERT_BEFORE", "value": f}}));
        }
        for f in chain.after.iter().rev() {
            patches.push(json!({"applyTo": "HTTP_FILTER", "match": matching,
                                "patch": {"operation": "INSERT_AFTER", "value": f}}));
        }
    }
    if !chain.response_headers_to_remove.is_empty() {
        patches.push(
            json!({"applyTo": "ROUTE_CONFIGURATION", "match": {"context": "SIDECAR_INBOUND"},
            "patch": {"operation": "MERGE", "value": {
                "response_headers_to_remove": chain.response_headers_to_remove}}}),
        );
    }
    json!({"apiVersion": "networking.istio.io/v1alpha3", "kind": "EnvoyFilter",
           "metadata": {"name": format!("{name}-filters"), "namespace": namespace},
           "spec": {"workloadSelector": {"labels": labels}, "configPatches": patches}})
}
