//! The native module (dist/liboauthv2info.so, `make native`) against the
//! Envoy the tests run: it needs no newer glibc than Envoy does, and Envoy
//! loads it with the ABI version it was built for (docs/native.md). The
//! end-to-end tests run on it with `OAUTHV2INFO_BUILD=native`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn module() -> PathBuf {
    let path = repo_root().join("dist/liboauthv2info.so");
    assert!(
        path.exists(),
        "{} is missing: run `make native`",
        path.display()
    );
    path
}

fn envoy() -> PathBuf {
    let path = std::env::var_os("ENVOY")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".venv/bin/envoy"));
    assert!(path.exists(), "Envoy not found at {}", path.display());
    path
}

/// The Envoy executable itself: the PyPI package's `bin/envoy` is a Python
/// launcher for `site-packages/envoy/_bin/envoy`.
fn envoy_executable() -> PathBuf {
    let path = envoy();
    let head = std::fs::read(&path).unwrap();
    if !head.starts_with(b"#!") {
        return path;
    }
    let venv = path.parent().and_then(Path::parent).unwrap();
    let lib = venv.join("lib");
    for entry in std::fs::read_dir(&lib).unwrap() {
        let candidate = entry.unwrap().path().join("site-packages/envoy/_bin/envoy");
        if candidate.exists() {
            return candidate;
        }
    }
    panic!("no envoy/_bin/envoy under {}", lib.display());
}

/// The newest `GLIBC_x.y` version an ELF file needs (`objdump -T`).
fn newest_glibc(file: &Path) -> (u32, u32) {
    let out = Command::new("objdump")
        .arg("-T")
        .arg(file)
        .output()
        .expect("objdump (binutils) runs");
    assert!(out.status.success(), "objdump -T {}", file.display());
    let text = String::from_utf8_lossy(&out.stdout);
    let mut newest = (0, 0);
    for version in text.split("GLIBC_").skip(1) {
        let digits: String = version
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == '.')
            .collect();
        let mut parts = digits.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
        let v = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
        newest = newest.max(v);
    }
    assert!(newest > (2, 0), "no GLIBC version in {}", file.display());
    newest
}

#[test]
fn the_module_needs_no_newer_glibc_than_envoy() {
    let module = newest_glibc(&module());
    let envoy = newest_glibc(&envoy_executable());
    assert!(
        module <= envoy,
        "dist/liboauthv2info.so needs GLIBC_{}.{}, Envoy only GLIBC_{}.{}: a symbol the module binds to is newer than the proxies it runs in (docs/native.md#glibc)",
        module.0,
        module.1,
        envoy.0,
        envoy.1
    );
}

/// `envoy --mode validate` on a configuration with the module; its output.
fn validate(plugin: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("envoy.yaml");
    std::fs::write(
        &config,
        format!(
            r#"static_resources:
  listeners:
  - name: main
    address: {{socket_address: {{address: 127.0.0.1, port_value: 1}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: ingress
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {{prefix: "/"}}
                direct_response: {{status: 200}}
          http_filters:
          - name: oauthv2info
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.dynamic_modules.v3.DynamicModuleFilter
              dynamic_module_config: {{name: oauthv2info, do_not_close: true}}
              filter_name: oauthv2info
              filter_config:
                "@type": type.googleapis.com/google.protobuf.StringValue
                value: {plugin}
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
  - name: token_service
    connect_timeout: 0.5s
    load_assignment: {{cluster_name: token_service, endpoints: []}}
"#,
            plugin = serde_json::to_string(plugin).unwrap()
        ),
    )
    .unwrap();
    let module_dir = module().parent().unwrap().to_path_buf();
    let out = Command::new(envoy())
        .args([
            "--mode",
            "validate",
            "--disable-hot-restart",
            "-l",
            "info",
            "-c",
        ])
        .arg(&config)
        .env("ENVOY_DYNAMIC_MODULES_SEARCH_PATH", module_dir)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

const PLUGIN: &str = r#"{"token_service": {"cluster": "token_service"}, "policies": ["<GetOAuthV2Info name=\"G\"><AccessToken ref=\"request.header.token\"/></GetOAuthV2Info>"]}"#;

#[test]
fn envoy_loads_the_module_with_the_abi_version_it_was_built_for() {
    let (ok, log) = validate(PLUGIN);
    assert!(ok, "{log}");
    assert!(
        log.contains("Dynamic module ABI version v0.2.0 matched."),
        "Envoy did not announce the ABI version the module was built for (v0.2.0):\n{log}"
    );
    assert!(
        log.contains(r#"configured 1 policy (GetOAuthV2Info "G")"#),
        "{log}"
    );
}

#[test]
fn envoy_refuses_a_bad_native_option_with_one_line() {
    let plugin = PLUGIN.replacen('{', r#"{"filter_state": "yes", "#, 1);
    let (ok, log) = validate(&plugin);
    assert!(!ok, "{log}");
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("configuration refused"))
        .collect();
    assert_eq!(lines.len(), 1, "{log}");
    assert!(
        lines[0].contains(r#"configuration field "filter_state": must be true or false"#),
        "{log}"
    );
}
