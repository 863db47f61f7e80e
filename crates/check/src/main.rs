//! The `oauthv2info` command:
//!
//! - `oauthv2info check FILE...`: the policy checker;
//! - `oauthv2info envoy-filters CONFIG`: the Envoy filters a plugin
//!   configuration needs ([`envoy`]).
//!
//! `check` runs the filter's own configuration code (`oauthv2info_core::config::parse_config`,
//! the code `on_configure` runs in Envoy) over policy XML files (each one a
//! bare-XML configuration) or JSON plugin configurations, and prints for each
//! policy its type and the flow variables it will set, and the load-time
//! warnings. A refused configuration prints the line Envoy would log.
//!
//! Exit status: 0 when every file is accepted, 1 when one is refused, 2 on a
//! usage error (unknown command or option, no file, a file that cannot be
//! read).

mod envoy;
mod yaml;

use std::io::{Read, Write};
use std::process::ExitCode;

use oauthv2info_core::catalog::{self, CatalogVar, When};
use oauthv2info_core::config::{parse_config, FilterConfig};
use oauthv2info_core::policy::{Policy, PolicyKind, ValueSource};

const HELP: &str = "\
oauthv2info: checks Apigee GetOAuthV2Info / SetOAuthV2Info policies with the
filter's own configuration code, as Envoy would load them.

Usage:
  oauthv2info check [--quiet] FILE...
  oauthv2info envoy-filters [--wasm FILE] [--part PART] [--indent N] CONFIG
  oauthv2info envoy-filters --istio NAMESPACE/NAME --label KEY=VALUE... CONFIG
  oauthv2info --help | --version

envoy-filters prints what Envoy needs to run the JSON plugin configuration
CONFIG (docs/configuration.md, section \"Dynamic metadata\"), as YAML:
  http_filters                 the HTTP filters, in order, to put before the
                               router: the Wasm filter (its code from --wasm
                               FILE, default dist/oauthv2info.wasm, CONFIG as
                               its configuration) and the filters that finish
                               publishing its variables to dynamic metadata
  response_headers_to_remove   for the route configuration: internal headers
                               an upstream must not send back (only with
                               metadata_bridge \"header_to_metadata\")
--part http_filters or --part response_headers_to_remove prints one of them
alone (a bare list); --indent N indents every line by N spaces. With
--istio, it prints instead an Istio EnvoyFilter that inserts those filters
(but the Wasm filter) around the Wasm filter of the WasmPlugin
NAMESPACE/NAME, and the route configuration's removals, on the workloads
with the given labels.

Each FILE is one policy as XML (a bare-XML filter configuration) or a JSON
plugin configuration ({\"policies\": [...], ...}); `-` reads standard input.
For each accepted file it prints every policy, the flow variables it sets
(on success, always, on failure) and whether each is published to filter
state and dynamic metadata, then the request-header mappings and the
load-time warnings. --quiet prints only warnings and refusals.

A refused file prints, on standard error, the line Envoy logs when it
refuses the configuration:
  oauthv2info: configuration refused: policy \"P\", element <E>: problem

Exit status: 0 every file accepted, 1 some file refused, 2 usage error
(unknown command or option, no FILE, a FILE that cannot be read).
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut out = std::io::stdout().lock();
    let mut err = std::io::stderr().lock();
    let code = run(&args, &mut out, &mut err);
    let _ = out.flush();
    let _ = err.flush();
    ExitCode::from(code)
}

fn usage_error(err: &mut dyn Write, problem: &str) -> u8 {
    let _ = writeln!(err, "oauthv2info: {problem}");
    let _ = writeln!(
        err,
        "usage: oauthv2info check [--quiet] FILE... | envoy-filters [OPTIONS] CONFIG   (oauthv2info --help for more)"
    );
    2
}

fn run(args: &[String], out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    if args.iter().any(|a| a == "--help" || a == "-h") || args.first().is_some_and(|a| a == "help")
    {
        let _ = out.write_all(HELP.as_bytes());
        return 0;
    }
    if args.first().is_some_and(|a| a == "--version" || a == "-V") {
        let _ = writeln!(out, "oauthv2info {}", env!("CARGO_PKG_VERSION"));
        return 0;
    }
    match args.first().map(String::as_str) {
        Some("check") => {}
        Some("envoy-filters") => return envoy_filters(&args[1..], out, err),
        Some(other) => return usage_error(err, &format!("unknown command {other:?}")),
        None => return usage_error(err, "no command given"),
    }
    let mut quiet = false;
    let mut files: Vec<&str> = Vec::new();
    let mut options_done = false;
    for arg in &args[1..] {
        match arg.as_str() {
            "--" if !options_done => options_done = true,
            "--quiet" | "-q" if !options_done => quiet = true,
            a if !options_done && a.starts_with('-') && a != "-" => {
                return usage_error(err, &format!("unknown option {a:?}"))
            }
            a => files.push(a),
        }
    }
    if files.is_empty() {
        return usage_error(err, "check needs at least one FILE");
    }

    // Read every file first: an unreadable one is a usage error.
    let mut inputs = Vec::with_capacity(files.len());
    for file in files {
        match read(file) {
            Ok(bytes) => inputs.push((file, bytes)),
            Err(e) => return usage_error(err, &format!("cannot read {file}: {e}")),
        }
    }
    let mut refused = false;
    for (file, bytes) in inputs {
        match parse_config(&bytes) {
            Ok(config) => {
                if !quiet {
                    report(out, file, &config);
                }
                for warning in &config.warnings {
                    let _ = writeln!(err, "{file}: warning: {warning}");
                }
            }
            Err(e) => {
                refused = true;
                if !quiet {
                    let _ = writeln!(out, "{file}: refused");
                }
                let _ = writeln!(err, "oauthv2info: configuration refused: {e}");
            }
        }
    }
    u8::from(refused)
}

fn envoy_filters(args: &[String], out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    let mut wasm = "dist/oauthv2info.wasm".to_string();
    let mut indent = 0usize;
    let mut part: Option<String> = None;
    let mut istio: Option<(String, String)> = None;
    let mut labels = serde_json::Map::new();
    let mut file: Option<&str> = None;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = |what: &str| {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{arg} needs {what}"))
        };
        let parsed: Result<(), String> = match arg.as_str() {
            "--wasm" => value("a file").map(|v| wasm = v),
            "--part" => value("a part").and_then(|v| match v.as_str() {
                "http_filters" | "response_headers_to_remove" => {
                    part = Some(v);
                    Ok(())
                }
                _ => Err(format!(
                    "--part is http_filters or response_headers_to_remove, not {v:?}"
                )),
            }),
            "--indent" => value("a number").and_then(|v| {
                v.parse()
                    .map(|n| indent = n)
                    .map_err(|_| format!("--indent needs a number, not {v:?}"))
            }),
            "--istio" => value("NAMESPACE/NAME").and_then(|v| match v.split_once('/') {
                Some((ns, name)) if !ns.is_empty() && !name.is_empty() => {
                    istio = Some((ns.to_string(), name.to_string()));
                    Ok(())
                }
                _ => Err(format!("--istio needs NAMESPACE/NAME, not {v:?}")),
            }),
            "--label" => value("KEY=VALUE").and_then(|v| match v.split_once('=') {
                Some((k, val)) if !k.is_empty() => {
                    labels.insert(k.to_string(), serde_json::Value::String(val.to_string()));
                    Ok(())
                }
                _ => Err(format!("--label needs KEY=VALUE, not {v:?}")),
            }),
            a if a.starts_with('-') && a != "-" => Err(format!("unknown option {a:?}")),
            a if file.is_none() => {
                file = Some(a);
                Ok(())
            }
            _ => Err("envoy-filters takes one CONFIG".to_string()),
        };
        if let Err(problem) = parsed {
            return usage_error(err, &problem);
        }
    }
    let Some(file) = file else {
        return usage_error(err, "envoy-filters needs a CONFIG file");
    };
    if istio.is_some() && labels.is_empty() {
        return usage_error(
            err,
            "--istio needs at least one --label KEY=VALUE (the workload selector)",
        );
    }
    let bytes = match read(file) {
        Ok(b) => b,
        Err(e) => return usage_error(err, &format!("cannot read {file}: {e}")),
    };
    let config = match parse_config(&bytes) {
        Ok(c) => c,
        Err(e) => {
            let _ = writeln!(err, "oauthv2info: configuration refused: {e}");
            return 1;
        }
    };
    for warning in &config.warnings {
        let _ = writeln!(err, "{file}: warning: {warning}");
    }
    let text = String::from_utf8_lossy(&bytes);
    let chain = envoy::chain(
        &config,
        &envoy::Wasm {
            filename: &wasm,
            configuration: text.trim(),
        },
    );
    let filters = serde_json::Value::Array(chain.all());
    let removals = serde_json::json!(chain.response_headers_to_remove);
    let value = match (istio, part.as_deref()) {
        (Some((namespace, name)), _) => envoy::istio(&chain, &namespace, &name, &labels),
        (None, Some("http_filters")) => filters,
        (None, Some(_)) => removals,
        (None, None) => {
            let mut both = serde_json::Map::new();
            both.insert("http_filters".into(), filters);
            if !chain.response_headers_to_remove.is_empty() {
                both.insert("response_headers_to_remove".into(), removals);
            }
            serde_json::Value::Object(both)
        }
    };
    let yaml = yaml::to_yaml(&value, indent);
    let _ = out.write_all(yaml.as_bytes());
    0
}

fn read(file: &str) -> std::io::Result<Vec<u8>> {
    if file == "-" {
        let mut bytes = Vec::new();
        std::io::stdin().read_to_end(&mut bytes)?;
        return Ok(bytes);
    }
    std::fs::read(file)
}

fn report(out: &mut dyn Write, file: &str, config: &FilterConfig) {
    let count = config.policies.len();
    let _ = writeln!(
        out,
        "{file}: accepted: {count} polic{}, token service cluster {:?}, metadata namespace {:?}",
        if count == 1 { "y" } else { "ies" },
        config.token_service.cluster,
        config.metadata_namespace,
    );
    for policy in &config.policies {
        let _ = writeln!(
            out,
            "  {} {:?}: {}",
            policy.type_name(),
            policy.name,
            what(policy)
        );
        if !policy.enabled {
            continue;
        }
        let vars = catalog::variables(policy);
        for (when, title) in [
            (When::Success, "on success"),
            (When::Always, "always"),
            (When::Failure, "on failure"),
        ] {
            let _ = writeln!(out, "    {title}:");
            for var in vars.iter().filter(|v| v.when == when) {
                let _ = writeln!(out, "      {}{}", var.name, notes(var, config));
            }
        }
    }
    if !config.request_headers.is_empty() {
        let _ = writeln!(out, "  request headers (client copies removed):");
        for mapping in &config.request_headers {
            let _ = writeln!(out, "    {}: {}", mapping.header, mapping.variable);
        }
    }
}

/// What a policy does, in one line.
fn what(policy: &Policy) -> String {
    let mut text = match &policy.kind {
        PolicyKind::Get {
            kind,
            token,
            ignore_access_token_status,
        } => {
            let mut s = format!("looks up {} from {}", kind.noun(), source(token, true));
            if *ignore_access_token_status {
                s.push_str("; IgnoreAccessTokenStatus: revoked and expired tokens are returned");
            }
            s
        }
        PolicyKind::Set { token, attributes } => {
            let names: Vec<String> = attributes
                .iter()
                .map(|a| format!("{} ({})", a.name, source(&a.value, false)))
                .collect();
            format!(
                "sets {} on the access token from {}",
                names.join(", "),
                source(token, true)
            )
        }
    };
    if !policy.enabled {
        text.push_str(" [enabled=\"false\": skipped, sets nothing]");
    } else if policy.continue_on_error {
        text.push_str(" [continueOnError: a fault does not end the request]");
    }
    text
}

/// Where a value comes from. Literal tokens are secrets: only their length
/// is shown.
fn source(value: &ValueSource, secret: bool) -> String {
    let literal = value.literal.as_deref().map(|l| {
        if secret {
            format!("a literal of {} characters", l.chars().count())
        } else {
            format!("literal {l:?}")
        }
    });
    match (&value.reference, literal) {
        (Some(r), Some(l)) => format!("ref {r}, else {l}"),
        (Some(r), None) => format!("ref {r}"),
        (None, Some(l)) => l,
        (None, None) => "nothing".to_string(),
    }
}

fn notes(var: &CatalogVar, config: &FilterConfig) -> String {
    let mut notes = Vec::new();
    if var.family {
        notes.push("one per custom attribute");
    }
    if var.secret {
        notes.push("secret");
    }
    if !catalog::is_published(var, &config.publish, config.export_secrets) {
        notes.push("not published");
    }
    if notes.is_empty() {
        String::new()
    } else {
        format!("  ({})", notes.join(", "))
    }
}
