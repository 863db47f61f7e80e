//! `fault_handling` as a bundle's ProxyEndpoint writes it: the input is a
//! `<FaultRules>` document, then (after a NUL byte) a handler policy's XML
//! and (after another) a `<DefaultFaultRule>`; the configuration is loaded
//! or refused with one line; never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use oauthv2info_core::parse_config;
use serde_json::json;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.splitn(3, '\0');
    let rules = parts.next().unwrap_or_default();
    let policy = parts.next().unwrap_or(
        r#"<AssignMessage name="AM"><Set><Payload contentType="application/json">{"f":"{fault.name}"}</Payload></Set></AssignMessage>"#,
    );
    let mut handling = json!({"policies": [policy], "fault_rules": rules});
    if let Some(default) = parts.next() {
        handling["default_fault_rule"] = json!(default);
    }
    let config = json!({
        "policies": [
            r#"<OAuthV2 name="V"><Operation>VerifyAccessToken</Operation></OAuthV2>"#,
            {"policy": r#"<RaiseFault name="RF"><FaultResponse><Set><StatusCode>403</StatusCode></Set></FaultResponse></RaiseFault>"#, "condition": "request.header.x-block = \"yes\""},
        ],
        "fault_handling": handling,
    });
    match parse_config(config.to_string().as_bytes()) {
        Ok(c) => assert!(c.fault_handling.is_some()),
        Err(e) => {
            let line = e.to_string();
            assert!(!line.contains(['\n', '\r']), "one line: {line:?}");
        }
    }
});
