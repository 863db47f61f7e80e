//! Every numeric option of `oauthv2info` has a bound: past it, a usage
//! error (exit 2) that names the bound, and nothing written.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_oauthv2info");
const CONFIG: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../envoy/harness.json");

fn envoy_filters(indent: &str) -> std::process::Output {
    Command::new(BIN)
        .args([
            "envoy-filters",
            "--part",
            "http_filters",
            "--indent",
            indent,
            CONFIG,
        ])
        .output()
        .unwrap()
}

#[test]
fn indent_is_bounded() {
    for bad in [
        "257",
        "100000000",
        "4294967296",
        "18446744073709551616",
        "-1",
        "x",
    ] {
        let out = envoy_filters(bad);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "--indent {bad}: {err}");
        assert!(out.stdout.is_empty(), "--indent {bad} wrote output");
        assert!(
            err.contains("--indent needs a number from 0 to 256"),
            "--indent {bad}: {err}"
        );
    }
    let out = envoy_filters("256");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(!text.is_empty());
    for line in text.lines().filter(|l| !l.is_empty()) {
        assert!(line.starts_with(&" ".repeat(256)), "{line:?}");
    }
}
