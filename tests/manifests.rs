//! The shipped deployment manifests (envoy/k8s/, envoy/istio/, the compose
//! files) against the real Kubernetes, Istio, kustomize and compose schemas
//! in ../shared/schemas/, and the names across them (the Service the
//! WasmPlugin and the DestinationRule point at): tests/manifests.py, run
//! with the Python of `make setup` (.venv, with kubernetes-validate and
//! jsonschema from PyPI).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::Command;

#[test]
fn shipped_manifests_are_valid_and_agree_on_names() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let python = std::env::var_os("PYTHON")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| root.join(".venv/bin/python"));
    assert!(
        python.exists(),
        "{} is missing: run `make setup` (it installs kubernetes-validate and jsonschema into .venv)",
        python.display()
    );
    let out = Command::new(&python)
        .arg(root.join("tests/manifests.py"))
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    println!("{text}");
    assert!(out.status.success(), "tests/manifests.py failed:\n{text}");
    assert!(text.contains(", 0 problems"), "{text}");
    assert!(
        text.contains("names: Service token-service.apigee"),
        "{text}"
    );
}
