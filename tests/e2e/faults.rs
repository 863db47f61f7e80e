//! Fault handling through Envoy (docs/faults.md#fault-rules): FaultRules
//! and DefaultFaultRule building the reply of VerifyAccessToken's 401 and
//! 403, a RaiseFault step under a condition, a RaiseFault inside a rule;
//! each reply's status, body, headers and `fault.name` checked exactly.

use serde_json::{json, Value};

use crate::support::*;

const VERIFY: &str =
    r#"<OAuthV2 name="V"><Operation>VerifyAccessToken</Operation><Scope>ADMIN</Scope></OAuthV2>"#;

const RF_BLOCK: &str = r#"<RaiseFault name="RF-Block"><FaultResponse><Set><Headers><Header name="X-Blocked">{request.header.x-block}</Header></Headers><Payload contentType="application/json">{"error":"blocked","fault":"{fault.name}"}</Payload><StatusCode>429</StatusCode></Set></FaultResponse></RaiseFault>"#;

fn handling(always_enforce: bool) -> Value {
    json!({
        "policies": [
            r#"<AssignMessage name="AM-Any"><Set><Payload contentType="text/plain">any</Payload></Set></AssignMessage>"#,
            r#"<AssignMessage name="AM-401"><Set><Payload contentType="application/json">{"code":"401.01","fault":"{fault.name}"}</Payload><StatusCode>401</StatusCode><Headers><Header name="WWW-Authenticate">Bearer realm="orders"</Header></Headers></Set></AssignMessage>"#,
            r#"<AssignMessage name="AM-403"><Set><Payload contentType="application/json">{"code":"403.01","cause":"{escapeJSON(oauthV2.V.fault.cause)}"}</Payload></Set><Remove><Headers><Header name="www-authenticate"/></Headers></Remove></AssignMessage>"#,
            r#"<RaiseFault name="RF-In-Rule"><FaultResponse><Set><StatusCode>400</StatusCode></Set></FaultResponse></RaiseFault>"#,
            r#"<AssignMessage name="AM-After"><Set><Payload contentType="text/plain">after {fault.name} {error.status.code}</Payload></Set></AssignMessage>"#,
            r#"<AssignMessage name="AM-Default"><Add><Headers><Header name="X-Default">{fault.name}</Header></Headers></Add></AssignMessage>"#,
        ],
        "fault_rules": r#"<FaultRules>
            <FaultRule name="any-token-fault"><Condition>fault.name Matches "*ccess*"</Condition><Step><Name>AM-Any</Name></Step></FaultRule>
            <FaultRule name="invalid"><Condition>fault.name = "InvalidAccessToken" or fault.name = "invalid_access_token"</Condition><Step><Name>AM-401</Name></Step></FaultRule>
            <FaultRule name="scope"><Condition>fault.name = "InsufficientScope"</Condition>
              <Step><Name>AM-403</Name></Step>
              <Step><Name>RF-In-Rule</Name><Condition>request.header.x-raise = "yes"</Condition></Step>
              <Step><Name>AM-After</Name><Condition>request.header.x-raise = "yes"</Condition></Step>
            </FaultRule>
          </FaultRules>"#,
        "default_fault_rule": format!(
            "<DefaultFaultRule name=\"d\"><AlwaysEnforce>{always_enforce}</AlwaysEnforce><Step><Name>AM-Default</Name></Step></DefaultFaultRule>"
        ),
    })
}

fn stack(always_enforce: bool) -> Stack {
    let stack = Stack::start_with(
        plugin(
            &[],
            json!({"policies": [
                {"policy": RF_BLOCK, "condition": "request.header.x-block != null"},
                VERIFY,
            ], "fault_handling": handling(always_enforce)}),
        ),
        |spec| {
            spec.concurrency = 1;
            spec.access_log = vec![("fault", "%FILTER_STATE(wasm.fault.name:PLAIN)%".into())];
        },
    );
    stack.service.create_app("c1", json!({}));
    stack
        .service
        .import_access_token("c1", "tok-faults", "approved", 3600, json!({}));
    stack
}

fn send(envoy: &Envoy, headers: &[(&str, &str)]) -> Response {
    let headers: Vec<(&str, &[u8])> = headers.iter().map(|(k, v)| (*k, v.as_bytes())).collect();
    envoy.request("GET", "/orders", &headers, b"")
}

/// The `fault` field of the `n`th access log line (1-based).
fn fault_logged(envoy: &Envoy, n: usize) -> String {
    envoy.access_log(n)[n - 1]["fault"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

#[test]
fn fault_rules_build_the_replies_with_always_enforce() {
    let stack = stack(true);
    let envoy = &stack.envoy;

    // No token: both "any-token-fault" and "invalid" match; the later one
    // runs; the DefaultFaultRule runs after it (AlwaysEnforce).
    let r = send(envoy, &[]);
    assert_eq!(r.status, 401, "{}", r.text());
    assert_eq!(
        r.text(),
        r#"{"code":"401.01","fault":"InvalidAccessToken"}"#
    );
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(
        r.header("www-authenticate"),
        Some(r#"Bearer realm="orders""#)
    );
    assert_eq!(r.header("x-default"), Some("InvalidAccessToken"));
    assert_eq!(fault_logged(envoy, 1), "InvalidAccessToken");

    // A valid token without the scope: the custom 403, its challenge removed.
    let r = send(envoy, &[("authorization", "Bearer tok-faults")]);
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(
        r.text(),
        r#"{"code":"403.01","cause":"Required scope(s): ADMIN"}"#
    );
    assert_eq!(r.header("www-authenticate"), None);
    assert_eq!(r.header("x-default"), Some("InsufficientScope"));
    assert_eq!(fault_logged(envoy, 2), "InsufficientScope");

    // A RaiseFault inside the rule: the steps after it run and see
    // fault.name RaiseFault; the DefaultFaultRule does not run.
    let r = send(
        envoy,
        &[("authorization", "Bearer tok-faults"), ("x-raise", "yes")],
    );
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.text(), "after RaiseFault 400");
    assert_eq!(r.header("content-type"), Some("text/plain"));
    assert_eq!(r.header("x-default"), None);
    assert_eq!(fault_logged(envoy, 3), "InsufficientScope");

    // A RaiseFault step under its condition: its reply; no rule matches
    // RaiseFault, so the DefaultFaultRule runs.
    let r = send(envoy, &[("x-block", "yes")]);
    assert_eq!(r.status, 429, "{}", r.text());
    assert_eq!(r.text(), r#"{"error":"blocked","fault":"RaiseFault"}"#);
    assert_eq!(r.header("x-blocked"), Some("yes"));
    assert_eq!(r.header("x-default"), Some("RaiseFault"));
    assert_eq!(fault_logged(envoy, 4), "RaiseFault");
}

#[test]
fn without_always_enforce_the_default_rule_runs_only_when_no_rule_did() {
    let stack = stack(false);
    let envoy = &stack.envoy;
    let r = send(envoy, &[]);
    assert_eq!(r.status, 401, "{}", r.text());
    assert_eq!(
        r.text(),
        r#"{"code":"401.01","fault":"InvalidAccessToken"}"#
    );
    assert_eq!(r.header("x-default"), None);
    assert_eq!(fault_logged(envoy, 1), "InvalidAccessToken");

    let r = send(envoy, &[("x-block", "1")]);
    assert_eq!(r.status, 429, "{}", r.text());
    assert_eq!(r.header("x-blocked"), Some("1"));
    assert_eq!(r.header("x-default"), Some("RaiseFault"));
    assert_eq!(fault_logged(envoy, 2), "RaiseFault");
}
