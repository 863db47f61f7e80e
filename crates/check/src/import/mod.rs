//! `oauthv2info import`: an Apigee proxy bundle (an `apiproxy/` directory or
//! the revision zip Apigee exports), with the shared flows it calls, into
//! what Envoy and Istio need (docs/migrating-from-apigee.md).
//!
//! One file per job: [`bundle`] reads the files, [`model`] the endpoints,
//! flows and policies, [`policies`] says what becomes of each policy type,
//! [`reads`] what the untranslated steps read and set,
//! [`translate`] builds the plugin configurations ([`faults`] their fault
//! rules), [`output`] the Envoy
//! bootstrap and the Istio form, [`report`] the migration report; [`core`]
//! holds the calls into the filter's core.

mod bundle;
mod core;
mod faults;
mod model;
mod output;
mod policies;
mod reads;
mod report;
mod translate;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::{json, Map, Value};

use report::Report;

pub const USAGE: &str =
    "  oauthv2info import --out DIR [--force] [--shared-flow BUNDLE]... [--json]
                     [--allow-untranslated] [--target NAME=URL]...
                     [--environment NAME]
                     [--token-service URL] [--service-key-file FILE]
                     [--listen HOST:PORT] [--admin HOST:PORT]
                     [--wasm FILE | --native]
                     [--namespace NS] [--label KEY=VALUE]... BUNDLE";

pub const HELP: &str = "\
import translates an Apigee proxy BUNDLE (an apiproxy/ directory, the
directory holding it, or the revision zip Apigee exports) into DIR, which it
creates (it refuses to write into a non-empty DIR without --force, and
writes nowhere else):
  envoy.yaml          an Envoy bootstrap: a route per ProxyEndpoint BasePath
                      to a cluster per TargetEndpoint URL, the filters
                      `envoy-filters` prints for each plugin configuration,
                      the token_service cluster
  plugins/EP.json     each ProxyEndpoint's plugin configuration: PreFlow,
                      the conditional Flows in Apigee's first-match order
                      (each step under its Flow's condition and not the
                      earlier Flows'), PostFlow and the TargetEndpoint's
                      request steps; FlowCallouts inlined; publish narrowed
                      to what untranslated steps read; proxy_name the
                      proxy's name (<APIProxy name> of apiproxy/NAME.xml,
                      else that file's name, else the bundle's) for the
                      API-product check of VerifyAccessToken and VerifyAPIKey
  istio/EP.yaml       the Istio form: a WasmPlugin and its EnvoyFilter
  report.txt, report.json
                      the migration report: every step not translated, with
                      its type, Flow, condition and what to use instead
A sharedflowbundle/ alone imports as one plugin configuration.
  --shared-flow BUNDLE    a shared flow bundle a FlowCallout names (repeat)
  --target NAME=URL       the URL of TargetEndpoint NAME (default: its own)
  --environment NAME      the Apigee environment the proxy was deployed in:
                          the plugin configurations' environment (API
                          products' environments, environment.name);
                          without it the field is left out
  --token-service URL     the token service (default http://127.0.0.1:8090)
  --service-key-file FILE the token service key: credentials \"Bearer <key>\"
  --listen, --admin       Envoy's listener (127.0.0.1:10000), admin (127.0.0.1:9901)
  --wasm FILE             the filter's .wasm (default dist/oauthv2info.wasm)
  --native                the native module (liboauthv2info.so, found in
                          ENVOY_DYNAMIC_MODULES_SEARCH_PATH) instead of the
                          .wasm; istio/EP.yaml is then one EnvoyFilter
  --namespace, --label    the Istio namespace (default) and workload labels
                          (default app=<proxy name>)
  --json                  print the report as JSON instead of text
Exit status: 0 translated; 1 a problem (one line each on standard error), or
an access check (JWT, Basic, Quota, SpikeArrest, a FlowCallout to a
shared flow not given...) left untranslated without
--allow-untranslated; 2 a usage error or bad input (not a bundle, a broken
zip, XML that does not parse, a policy file missing).
";

struct Args {
    bundle: PathBuf,
    out: PathBuf,
    force: bool,
    shared: Vec<PathBuf>,
    json: bool,
    allow_untranslated: bool,
    targets: BTreeMap<String, String>,
    environment: Option<String>,
    token_service: String,
    service_key_file: Option<PathBuf>,
    listen: (String, u16),
    admin: (String, u16),
    wasm: String,
    native: bool,
    namespace: String,
    labels: Map<String, Value>,
}

fn host_port(v: &str) -> Result<(String, u16), String> {
    match v.rsplit_once(':') {
        Some((h, p)) if !h.is_empty() => p
            .parse()
            .map(|p| (h.to_string(), p))
            .map_err(|_| format!("{v:?}: the port is not a number")),
        _ => Err(format!("{v:?} is not HOST:PORT")),
    }
}

fn parse_args(args: &[String]) -> Result<Args, String> {
    let mut a = Args {
        bundle: PathBuf::new(),
        out: PathBuf::new(),
        force: false,
        shared: Vec::new(),
        json: false,
        allow_untranslated: false,
        targets: BTreeMap::new(),
        environment: None,
        token_service: "http://127.0.0.1:8090".into(),
        service_key_file: None,
        listen: ("127.0.0.1".into(), 10000),
        admin: ("127.0.0.1".into(), 9901),
        wasm: "dist/oauthv2info.wasm".into(),
        native: false,
        namespace: "default".into(),
        labels: Map::new(),
    };
    let mut bundle = None;
    let mut out = None;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = || {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{arg} needs a value"))
        };
        match arg.as_str() {
            "--out" => out = Some(PathBuf::from(value()?)),
            "--force" => a.force = true,
            "--json" => a.json = true,
            "--allow-untranslated" => a.allow_untranslated = true,
            "--shared-flow" => a.shared.push(PathBuf::from(value()?)),
            "--target" => {
                let v = value()?;
                let (k, u) = v
                    .split_once('=')
                    .filter(|(k, _)| !k.is_empty())
                    .ok_or_else(|| format!("--target needs NAME=URL, not {v:?}"))?;
                output::parse_url(u).map_err(|e| format!("--target {k}: {e}"))?;
                a.targets.insert(k.to_string(), u.to_string());
            }
            "--environment" => {
                let v = value()?;
                if v.is_empty() || v.contains(char::is_whitespace) {
                    return Err(format!(
                        "--environment needs a name without white space, not {v:?}"
                    ));
                }
                a.environment = Some(v);
            }
            "--token-service" => {
                let v = value()?;
                output::parse_url(&v).map_err(|e| format!("--token-service: {e}"))?;
                a.token_service = v;
            }
            "--service-key-file" => a.service_key_file = Some(PathBuf::from(value()?)),
            "--listen" => a.listen = host_port(&value()?)?,
            "--admin" => a.admin = host_port(&value()?)?,
            "--wasm" => a.wasm = value()?,
            "--native" => a.native = true,
            "--namespace" => a.namespace = value()?,
            "--label" => {
                let v = value()?;
                let (k, val) = v
                    .split_once('=')
                    .filter(|(k, _)| !k.is_empty())
                    .ok_or_else(|| format!("--label needs KEY=VALUE, not {v:?}"))?;
                a.labels.insert(k.to_string(), json!(val));
            }
            s if s.starts_with('-') => return Err(format!("unknown option {s:?}")),
            s if bundle.is_none() => bundle = Some(PathBuf::from(s)),
            _ => return Err("import takes one BUNDLE".into()),
        }
    }
    if a.native && args.iter().any(|x| x == "--wasm") {
        return Err("--wasm and --native exclude each other".into());
    }
    a.bundle = bundle.ok_or("import needs a BUNDLE")?;
    a.out = out.ok_or("import needs --out DIR")?;
    Ok(a)
}

/// Runs `oauthv2info import ARGS`; the exit status.
pub fn run(args: &[String], out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    let fail = |err: &mut dyn Write, line: &str, code: u8| {
        let _ = writeln!(err, "oauthv2info import: {line}");
        code
    };
    let a = match parse_args(args) {
        Ok(a) => a,
        Err(problem) => return crate::usage_error(err, &problem),
    };
    let (report, files) = match import(&a) {
        Ok(r) => r,
        Err(line) => return fail(err, &line, 2),
    };
    if let Err(line) = write_out(&a, &files) {
        return fail(err, &line, 2);
    }
    let text = if a.json {
        format!("{:#}\n", report.to_json())
    } else {
        report.to_text(a.allow_untranslated)
    };
    let _ = out.write_all(text.as_bytes());
    let mut code = 0;
    for p in &report.problems {
        code = fail(err, p, 1);
    }
    if !a.allow_untranslated {
        for g in &report.guards {
            code = fail(
                err,
                &format!(
                    "access check not translated: {} {:?} ({}, {}){} (--allow-untranslated to accept)",
                    g.policy_type,
                    g.policy,
                    g.endpoint,
                    g.flow,
                    g.condition
                        .as_ref()
                        .map(|c| format!(" when {c}"))
                        .unwrap_or_default()
                ),
                1,
            );
        }
    }
    code
}

/// Reads and translates; the report and the files to write (relative
/// path, content). `Err`: bad input, one line.
fn import(a: &Args) -> Result<(Report, Vec<(String, String)>), String> {
    let bundle = bundle::read(&a.bundle)?;
    let model = model::read(&bundle)?;
    let mut shared = BTreeMap::new();
    for path in &a.shared {
        let b = bundle::read(path)?;
        if b.kind != bundle::Kind::SharedFlow {
            return Err(format!(
                "--shared-flow {}: not a shared flow bundle (no sharedflowbundle/)",
                path.display()
            ));
        }
        let m = model::read(&b)?;
        shared.insert(m.name.clone(), m);
    }
    let credentials = match &a.service_key_file {
        Some(file) => {
            let key = std::fs::read_to_string(file)
                .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
            format!("Bearer {}", key.trim())
        }
        None => "Bearer replace-with-the-service-key".to_string(),
    };
    let authority = output::parse_url(&a.token_service)
        .map(|u| u.host)
        .unwrap_or_default();
    let options = translate::Options {
        token_service: json!({"cluster": "token_service", "authority": authority, "timeout_ms": 500, "credentials": credentials}),
        targets: a.targets.clone(),
        environment: a.environment.clone(),
    };
    let mut report = Report {
        bundle: format!("{} ({})", model.name, a.bundle.display()),
        ..Report::default()
    };
    if a.service_key_file.is_none() {
        report.notes.push(
            "the plugin configurations' credentials are a placeholder: give --service-key-file FILE, or edit token_service.credentials".into(),
        );
    }
    let plans = translate::translate(&model, &shared, &options, &mut report)?;
    let mut files = Vec::new();
    let envoy_options = output::EnvoyOptions {
        listen: a.listen.clone(),
        admin: a.admin.clone(),
        token_service: a.token_service.clone(),
        wasm: (!a.native).then(|| a.wasm.clone()),
        ca_file: "/etc/ssl/certs/ca-certificates.crt".into(),
    };
    match output::bootstrap(&plans, &envoy_options, &mut report.problems) {
        Ok(b) => files.push((
            "envoy.yaml".to_string(),
            format!(
                "# generated by `oauthv2info import` from {}; {}\n{}",
                model.name,
                if a.native {
                    "Envoy runs it with ENVOY_DYNAMIC_MODULES_SEARCH_PATH the directory of liboauthv2info.so"
                } else {
                    "Envoy runs it from the directory --wasm is relative to"
                },
                crate::yaml::to_yaml(&b, 0)
            ),
        )),
        Err(problem) => report.problems.push(problem),
    }
    let mut labels = a.labels.clone();
    if labels.is_empty() {
        labels.insert("app".into(), json!(output::slug(&model.name)));
    }
    let with_plugin = plans.iter().filter(|p| p.plugin.is_some()).count();
    if with_plugin > 1 {
        report.notes.push(format!(
            "Istio: {with_plugin} WasmPlugins on the same workloads each run on every request (a WasmPlugin cannot select routes): each one's steps also need the path under its base path and under no more specific base path of the bundle"
        ));
    }
    for plan in &plans {
        let Some(plugin) = &plan.plugin else { continue };
        let slug = output::slug(&plan.name);
        files.push((format!("plugins/{slug}.json"), format!("{plugin:#}\n")));
        let mut istio_plugin = plugin.clone();
        istio_plugin["token_service"]["cluster"] =
            json!("outbound|8090||token-service.apigee.svc.cluster.local");
        istio_plugin["token_service"]["authority"] =
            json!("token-service.apigee.svc.cluster.local");
        if with_plugin > 1 {
            let bases: Vec<&str> = plans.iter().map(|p| p.base_path.as_str()).collect();
            base_path_guard(&mut istio_plugin, &plan.base_path, &bases);
        }
        let wasm = (!a.native).then_some(a.wasm.as_str());
        match output::istio(plan, &istio_plugin, &a.namespace, &labels, wasm) {
            Ok(text) => files.push((format!("istio/{slug}.yaml"), text)),
            Err(problem) => report.problems.push(problem),
        }
    }
    files.push(("report.txt".into(), report.to_text(a.allow_untranslated)));
    files.push(("report.json".into(), format!("{:#}\n", report.to_json())));
    Ok((report, files))
}

/// In Istio every WasmPlugin of a workload runs on every request: each
/// step of one ProxyEndpoint's configuration also needs the path under its
/// base path (`proxy.pathsuffix` set) and under no more specific base path
/// of the bundle, which Apigee would pick instead.
fn base_path_guard(plugin: &mut Value, base: &str, bases: &[&str]) {
    let own = base.trim_end_matches('/');
    let mut parts = vec!["proxy.pathsuffix != null".to_string()];
    for other in bases {
        let other = other.trim_end_matches('/');
        if other != own && other.starts_with(&format!("{own}/")) {
            parts.push(format!(
                "not (request.path MatchesPath \"{other}\" or request.path MatchesPath \"{other}/**\")"
            ));
        }
    }
    let Some(policies) = plugin["policies"].as_array_mut() else {
        return;
    };
    for step in policies.iter_mut() {
        let (xml, condition) = match &*step {
            Value::String(xml) => (xml.clone(), None),
            other => (
                other["policy"].as_str().unwrap_or_default().to_string(),
                other["condition"].as_str().map(str::to_string),
            ),
        };
        let mut all = parts.clone();
        all.extend(condition);
        *step = json!({"policy": xml, "condition": translate::and_all(&all)});
    }
}

/// Writes the files under `--out`, which is created; a non-empty one only
/// with `--force`.
fn write_out(a: &Args, files: &[(String, String)]) -> Result<(), String> {
    let dir = &a.out;
    let non_empty = std::fs::read_dir(dir).is_ok_and(|mut d| d.next().is_some());
    if non_empty && !a.force {
        return Err(format!(
            "{} is not empty: give --force to overwrite what import writes there",
            dir.display()
        ));
    }
    for (relative, text) in files {
        let path: PathBuf = dir.join(relative);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
        }
        // The configurations hold the token service key when one is given:
        // readable by their owner only.
        let secret = a.service_key_file.is_some() && !relative.starts_with("report.");
        write_file(&path, text, secret)?;
    }
    Ok(())
}

fn write_file(path: &Path, text: &str, secret: bool) -> Result<(), String> {
    let cannot = |e: std::io::Error| format!("cannot write {}: {e}", path.display());
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = secret;
    let mut file = options.open(path).map_err(cannot)?;
    file.write_all(text.as_bytes()).map_err(cannot)?;
    #[cfg(unix)]
    if secret {
        // An existing file (--force) keeps its mode on open: set it.
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(cannot)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
    }

    /// The revision zip Apigee exports: `apiproxy/...` at its root.
    fn zip_dir(dir: &Path, prefix: &str, w: &mut zip::ZipWriter<std::fs::File>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let name = format!("{prefix}{}", path.file_name().unwrap().to_str().unwrap());
            if path.is_dir() {
                zip_dir(&path, &format!("{name}/"), w);
            } else {
                let options = zip::write::SimpleFileOptions::default()
                    .compression_method(zip::CompressionMethod::Deflated);
                w.start_file(name, options).unwrap();
                w.write_all(&std::fs::read(&path).unwrap()).unwrap();
            }
        }
    }

    #[test]
    fn the_environment_option_is_a_name() {
        let args = |env: &str| -> Vec<String> {
            ["--out", "o", "--environment", env, "b"]
                .iter()
                .map(|s| s.to_string())
                .collect()
        };
        assert_eq!(
            parse_args(&args("prod")).unwrap().environment.as_deref(),
            Some("prod")
        );
        for bad in ["", "my env"] {
            let e = parse_args(&args(bad)).err().unwrap();
            assert!(e.contains("--environment needs a name"), "{e}");
        }
        let without: Vec<String> = ["--out", "o", "b"].iter().map(|s| s.to_string()).collect();
        assert_eq!(parse_args(&without).unwrap().environment, None);
    }

    #[test]
    fn native_puts_the_module_where_the_wasm_filter_was() {
        let tmp = std::env::temp_dir().join(format!("oauthv2info-native-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        let bundle = repo().join("tests/bundles/banking");
        let args: Vec<String> = [
            "--out",
            tmp.to_str().unwrap(),
            "--native",
            bundle.to_str().unwrap(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let (mut out, mut err) = (Vec::new(), Vec::new());
        assert_eq!(
            run(&args, &mut out, &mut err),
            0,
            "{}",
            String::from_utf8_lossy(&err)
        );
        let envoy = std::fs::read_to_string(tmp.join("envoy.yaml")).unwrap();
        assert!(
            envoy.contains("envoy.extensions.filters.http.dynamic_modules.v3.DynamicModuleFilter"),
            "{envoy}"
        );
        assert!(!envoy.contains("wasm"), "{envoy}");
        let istio = std::fs::read_to_string(tmp.join("istio/default.yaml")).unwrap();
        assert!(!istio.contains("WasmPlugin"), "{istio}");
        assert!(
            istio.contains("name: oauthv2info-default-native"),
            "{istio}"
        );
        let _ = std::fs::remove_dir_all(&tmp);

        let both: Vec<String> = ["--out", "o", "--native", "--wasm", "x.wasm", "b"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let e = parse_args(&both).err().unwrap();
        assert!(e.contains("exclude each other"), "{e}");
    }

    #[test]
    fn in_istio_each_endpoint_keeps_to_its_base_path() {
        let mut plugin = json!({"policies": ["<A/>", {"policy": "<B/>", "condition": "x = 1"}]});
        base_path_guard(&mut plugin, "/v1", &["/v1", "/v1/partners", "/v2"]);
        let guard = "(proxy.pathsuffix != null) and (not (request.path MatchesPath \"/v1/partners\" or request.path MatchesPath \"/v1/partners/**\"))";
        assert_eq!(
            plugin["policies"][0],
            json!({"policy": "<A/>", "condition": guard})
        );
        assert_eq!(
            plugin["policies"][1]["condition"],
            "(proxy.pathsuffix != null) and (not (request.path MatchesPath \"/v1/partners\" or request.path MatchesPath \"/v1/partners/**\")) and (x = 1)"
        );
        let mut plugin = json!({"policies": ["<A/>"]});
        base_path_guard(&mut plugin, "/v1/partners", &["/v1", "/v1/partners"]);
        assert_eq!(
            plugin["policies"][0]["condition"],
            "proxy.pathsuffix != null"
        );
    }

    #[test]
    fn imports_a_revision_zip_and_a_shared_flow_alone() {
        let tmp = std::env::temp_dir().join(format!("oauthv2info-import-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp).unwrap();
        let zip_path = tmp.join("banking-rev1.zip");
        let mut w = zip::ZipWriter::new(std::fs::File::create(&zip_path).unwrap());
        zip_dir(&repo().join("tests/bundles/banking"), "", &mut w);
        w.finish().unwrap();

        let out_dir = tmp.join("out");
        let args: Vec<String> = [
            "--out",
            out_dir.to_str().unwrap(),
            "--json",
            zip_path.to_str().unwrap(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let (mut out, mut err) = (Vec::new(), Vec::new());
        assert_eq!(
            run(&args, &mut out, &mut err),
            0,
            "{}",
            String::from_utf8_lossy(&err)
        );
        let report: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(report["translated"].as_array().unwrap().len(), 2);
        let plugin: Value = serde_json::from_str(
            &std::fs::read_to_string(out_dir.join("plugins/default.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(
            plugin["basepath"],
            "/cds-au/v1/banking/accounts/*/transactions"
        );
        assert_eq!(plugin["publish"], json!([]));
        // <APIProxy name="banking">, not the zip's name.
        assert_eq!(plugin["proxy_name"], "banking");
        let envoy = std::fs::read_to_string(out_dir.join("envoy.yaml")).unwrap();
        assert!(
            envoy.contains("^/cds-au/v1/banking/accounts/[^/]+/transactions(/.*)?$"),
            "{envoy}"
        );

        // A shared flow bundle alone: one plugin configuration, every route.
        let shared_out = tmp.join("shared");
        let shared = repo().join("tests/bundles/audit");
        let args: Vec<String> = [
            "--out",
            shared_out.to_str().unwrap(),
            shared.to_str().unwrap(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let (mut out, mut err) = (Vec::new(), Vec::new());
        assert_eq!(
            run(&args, &mut out, &mut err),
            0,
            "{}",
            String::from_utf8_lossy(&err)
        );
        let plugin = std::fs::read_to_string(shared_out.join("plugins/audit.json")).unwrap();
        assert!(plugin.contains("Set-Audited"), "{plugin}");
        // A shared flow alone names no proxy.
        assert!(!plugin.contains("proxy_name"), "{plugin}");
        let _ = std::fs::remove_dir_all(&tmp);
    }
}
