//! Starts the real echo-upstream binary and checks what it echoes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

#[test]
fn echoes_method_path_query_headers_and_body() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_echo-upstream"))
        .args(["--listen", "127.0.0.1:0"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let addr = loop {
        let line = lines.next().expect("echo-upstream exited").unwrap();
        if let Some(a) = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("addr="))
        {
            assert!(line.contains("echo upstream listening"), "{line}");
            break a.to_owned();
        }
    };
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut r = agent
        .post(format!("http://{addr}/some/path?a=1&b=%20x"))
        .header("X-Dup", "one")
        .header("X-Dup", "two")
        .header("X-Single", "v")
        .content_type("text/plain")
        .send("hello body")
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers().get("content-type").unwrap().to_str().unwrap(),
        "application/json"
    );
    let v: Value = serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap();
    assert_eq!(v["method"], "POST");
    assert_eq!(v["path"], "/some/path");
    assert_eq!(v["query"], "a=1&b=%20x");
    assert_eq!(v["body"], "hello body");
    assert_eq!(v["headers"]["x-dup"], "one, two");
    assert_eq!(v["headers"]["x-single"], "v");
    assert_eq!(v["headers"]["content-type"], "text/plain");
    assert_eq!(v["headers"]["host"], addr.as_str());

    let mut r = agent.get(format!("http://{addr}/")).call().unwrap();
    let v: Value = serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap();
    assert_eq!(
        (
            v["method"].clone(),
            v["path"].clone(),
            v["query"].clone(),
            v["body"].clone()
        ),
        (json!("GET"), json!("/"), json!(""), json!(""))
    );
    let mut r = agent.delete(format!("http://{addr}/x/y?z")).call().unwrap();
    let v: Value = serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap();
    assert_eq!(
        (v["method"].as_str(), v["path"].as_str()),
        (Some("DELETE"), Some("/x/y"))
    );
    child.kill().unwrap();
    child.wait().unwrap();
}
