//! Fault rules through the worker, over the fake host: which rule runs,
//! what the reply holds (docs/faults.md#fault-rules).

use serde_json::{json, Value};

use crate::filter::{Action, Worker};
use crate::host::fake::{FakeHost, FakeRequest};

const ROOT: u32 = 1;
const VERIFY: &str = r#"<OAuthV2 name="V"><Operation>VerifyAccessToken</Operation></OAuthV2>"#;

fn worker(plugin: Value) -> (Worker, FakeHost) {
    let mut host = FakeHost {
        now: 1_700_000_000_000,
        active: ROOT,
        ..FakeHost::default()
    };
    let mut worker = Worker::new(ROOT);
    assert!(worker.configure(&mut host, plugin.to_string().as_bytes()));
    (worker, host)
}

/// A local reply: status, headers, body.
type Sent = (u32, Vec<(String, String)>, String);

/// One request with `headers`; answers the action and the local reply
/// (status, headers, body) if one was sent.
fn request(
    w: &mut Worker,
    host: &mut FakeHost,
    id: u32,
    headers: &[(&str, &str)],
) -> (Action, Option<Sent>) {
    let mut all: Vec<(String, Vec<u8>)> = vec![
        (":method".into(), b"GET".to_vec()),
        (":path".into(), b"/orders?x=1".to_vec()),
        (":authority".into(), b"example.com".to_vec()),
    ];
    all.extend(
        headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec())),
    );
    host.requests.insert(
        id,
        FakeRequest {
            headers: all,
            ..FakeRequest::default()
        },
    );
    host.active = id;
    let action = w.on_request_headers(host, id, true);
    let reply = host
        .requests
        .get(&id)
        .and_then(|r| r.reply.clone())
        .map(|(s, h, b)| {
            (
                s,
                h.into_iter()
                    .map(|(k, v)| (k, String::from_utf8_lossy(&v).into_owned()))
                    .collect(),
                String::from_utf8_lossy(&b).into_owned(),
            )
        });
    (action, reply)
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

const AM_401: &str = r#"<AssignMessage name="AM-401">
  <Set>
    <Payload contentType="application/json">{"error":"unauthorized","fault":"{fault.name}","path":"{request.path}"}</Payload>
    <StatusCode>401</StatusCode>
    <Headers><Header name="X-Fault">{fault.name}</Header></Headers>
  </Set>
  <Remove><Headers><Header name="www-authenticate"/></Headers></Remove>
</AssignMessage>"#;

const AM_OTHER: &str = r#"<AssignMessage name="AM-Other"><Set><Payload contentType="text/plain">other {error.status.code}</Payload><StatusCode>418</StatusCode></Set></AssignMessage>"#;

const AM_DEFAULT: &str = r#"<AssignMessage name="AM-Default"><Add><Headers><Header name="X-Default">ran</Header></Headers></Add></AssignMessage>"#;

fn plugin(rules: &str, default: Option<&str>) -> Value {
    let mut handling = json!({
        "policies": [AM_401, AM_OTHER, AM_DEFAULT, r#"<RaiseFault name="RF-In-Rule"><FaultResponse><Set><Payload contentType="application/json">{"raised":true}</Payload><StatusCode>400</StatusCode></Set></FaultResponse></RaiseFault>"#],
        "fault_rules": rules,
    });
    if let Some(d) = default {
        handling["default_fault_rule"] = json!(d);
    }
    json!({"policies": [VERIFY], "fault_handling": handling})
}

#[test]
fn the_last_matching_fault_rule_runs_and_builds_the_reply() {
    // Both match InvalidAccessToken: the later one in the file runs.
    let rules = r#"<FaultRules>
      <FaultRule name="other"><Step><Name>AM-Other</Name></Step><Condition>fault.name = "InvalidAccessToken"</Condition></FaultRule>
      <FaultRule name="token"><Step><Name>AM-401</Name></Step><Condition>fault.name Matches "*AccessToken*"</Condition></FaultRule>
    </FaultRules>"#;
    let (mut w, mut host) = worker(plugin(rules, None));
    let (action, reply) = request(&mut w, &mut host, 10, &[]);
    assert_eq!(action, Action::Pause);
    let (status, headers, body) = reply.expect("a reply");
    assert_eq!(status, 401);
    assert_eq!(
        body,
        r#"{"error":"unauthorized","fault":"InvalidAccessToken","path":"/orders"}"#
    );
    assert_eq!(header(&headers, "x-fault"), Some("InvalidAccessToken"));
    assert_eq!(header(&headers, "content-type"), Some("application/json"));
    assert_eq!(header(&headers, "www-authenticate"), None, "removed");
    assert_eq!(
        host.requests
            .get(&10)
            .unwrap()
            .state("fault.name")
            .as_deref(),
        Some("InvalidAccessToken")
    );

    // Swapped: the other one runs; error.status.code is the reply's so far.
    let rules = r#"<FaultRules>
      <FaultRule name="token"><Step><Name>AM-401</Name></Step><Condition>fault.name Matches "*AccessToken*"</Condition></FaultRule>
      <FaultRule name="other"><Step><Name>AM-Other</Name></Step><Condition>fault.name = "InvalidAccessToken"</Condition></FaultRule>
    </FaultRules>"#;
    let (mut w, mut host) = worker(plugin(rules, None));
    let (_, reply) = request(&mut w, &mut host, 11, &[]);
    let (status, headers, body) = reply.unwrap();
    assert_eq!((status, body.as_str()), (418, "other 401"));
    assert_eq!(header(&headers, "content-type"), Some("text/plain"));
}

#[test]
fn no_matching_rule_keeps_apigees_reply_and_runs_the_default_rule() {
    let rules = r#"<FaultRules><FaultRule name="scope"><Step><Name>AM-Other</Name></Step><Condition>fault.name = "InsufficientScope"</Condition></FaultRule></FaultRules>"#;
    let default =
        r#"<DefaultFaultRule name="d"><Step><Name>AM-Default</Name></Step></DefaultFaultRule>"#;
    let (mut w, mut host) = worker(plugin(rules, Some(default)));
    let (_, reply) = request(&mut w, &mut host, 10, &[]);
    let (status, headers, body) = reply.unwrap();
    assert_eq!(status, 401);
    assert_eq!(
        body,
        r#"{"fault":{"faultstring":"Invalid access token","detail":{"errorcode":"oauth.v2.InvalidAccessToken"}}}"#
    );
    assert_eq!(header(&headers, "x-default"), Some("ran"));
    assert!(header(&headers, "www-authenticate").is_some());
}

#[test]
fn the_default_rule_runs_after_a_rule_only_with_always_enforce() {
    let rules = r#"<FaultRules><FaultRule name="token"><Step><Name>AM-401</Name></Step><Condition>fault.name = "InvalidAccessToken"</Condition></FaultRule></FaultRules>"#;
    for (always, expected) in [(false, None), (true, Some("ran"))] {
        let default = format!(
            r#"<DefaultFaultRule><AlwaysEnforce>{always}</AlwaysEnforce><Step><Name>AM-Default</Name></Step></DefaultFaultRule>"#
        );
        let (mut w, mut host) = worker(plugin(rules, Some(&default)));
        let (_, reply) = request(&mut w, &mut host, 10, &[]);
        let (status, headers, _) = reply.unwrap();
        assert_eq!(status, 401);
        assert_eq!(
            header(&headers, "x-default"),
            expected,
            "AlwaysEnforce {always}"
        );
    }
}

#[test]
fn a_raise_fault_in_a_rule_lets_its_later_steps_run_and_skips_the_default_rule() {
    let rules = r#"<FaultRules><FaultRule name="token">
        <Condition>fault.name = "InvalidAccessToken"</Condition>
        <Step><Name>RF-In-Rule</Name></Step>
        <Step><Name>AM-Other</Name><Condition>fault.name = "RaiseFault"</Condition></Step>
      </FaultRule></FaultRules>"#;
    let default = r#"<DefaultFaultRule><AlwaysEnforce>true</AlwaysEnforce><Step><Name>AM-Default</Name></Step></DefaultFaultRule>"#;
    let (mut w, mut host) = worker(plugin(rules, Some(default)));
    let (_, reply) = request(&mut w, &mut host, 10, &[]);
    let (status, headers, body) = reply.unwrap();
    // The later step saw fault.name RaiseFault and the RaiseFault's status.
    assert_eq!((status, body.as_str()), (418, "other 400"));
    assert_eq!(header(&headers, "x-default"), None);

    // Without the later step: the RaiseFault's reply.
    let rules = r#"<FaultRules><FaultRule name="token"><Condition>fault.name = "InvalidAccessToken"</Condition><Step><Name>RF-In-Rule</Name></Step></FaultRule></FaultRules>"#;
    let (mut w, mut host) = worker(plugin(rules, Some(default)));
    let (_, reply) = request(&mut w, &mut host, 11, &[]);
    let (status, headers, body) = reply.unwrap();
    assert_eq!((status, body.as_str()), (400, r#"{"raised":true}"#));
    assert_eq!(header(&headers, "x-default"), None);
}

const RF_BLOCK: &str = r#"<RaiseFault name="RF-Block">
  <FaultResponse>
    <Set>
      <Headers><Header name="X-Blocked">{request.header.x-block}</Header></Headers>
      <Payload contentType="application/xml">&lt;Error&gt;&lt;Who&gt;{escapeXML(request.header.x-who)}&lt;/Who&gt;&lt;Missing&gt;{nothing.here}&lt;/Missing&gt;&lt;/Error&gt;</Payload>
      <StatusCode>403</StatusCode>
      <ReasonPhrase>Forbidden</ReasonPhrase>
    </Set>
    <AssignVariable><Name>flow.blocked</Name><Value>yes</Value></AssignVariable>
  </FaultResponse>
  <IgnoreUnresolvedVariables>true</IgnoreUnresolvedVariables>
</RaiseFault>"#;

#[test]
fn a_raise_fault_step_under_a_condition() {
    let plugin = json!({"policies": [
        {"policy": RF_BLOCK, "condition": "request.header.x-block = \"yes\""},
    ]});
    let (mut w, mut host) = worker(plugin);
    let (action, reply) = request(&mut w, &mut host, 10, &[]);
    assert_eq!((action, reply.is_none()), (Action::Continue, true));

    let (action, reply) = request(
        &mut w,
        &mut host,
        11,
        &[("x-block", "yes"), ("x-who", "<a&b>")],
    );
    assert_eq!(action, Action::Pause);
    let (status, headers, body) = reply.unwrap();
    assert_eq!(status, 403);
    assert_eq!(
        body,
        "<Error><Who>&lt;a&amp;b&gt;</Who><Missing></Missing></Error>"
    );
    assert_eq!(header(&headers, "content-type"), Some("application/xml"));
    assert_eq!(header(&headers, "x-blocked"), Some("yes"));
    let r = host.requests.get(&11).unwrap();
    assert_eq!(r.state("fault.name").as_deref(), Some("RaiseFault"));
    assert_eq!(
        r.state("raisefault.RF-Block.failed").as_deref(),
        Some("true")
    );
}

#[test]
fn a_raise_fault_without_a_response_answers_apigees_default() {
    let plugin = json!({"policies": [r#"<RaiseFault name="RF"/>"#]});
    let (mut w, mut host) = worker(plugin);
    let (_, reply) = request(&mut w, &mut host, 10, &[]);
    let (status, headers, body) = reply.unwrap();
    assert_eq!(status, 500);
    assert_eq!(
        body,
        r#"{"fault":{"faultstring":"Raising fault. Fault name : RF","detail":{"errorcode":"steps.raisefault.RaiseFault"}}}"#
    );
    assert_eq!(header(&headers, "content-type"), Some("application/json"));
}

#[test]
fn configuration_errors_are_one_line_naming_what_is_wrong() {
    let err = |plugin: Value| {
        crate::config::parse_config(plugin.to_string().as_bytes())
            .unwrap_err()
            .to_string()
    };
    let e = err(json!({"policies": [AM_401]}));
    assert!(e.contains("AM-401") && e.contains("out of scope"), "{e}");
    let e = err(
        json!({"policies": [VERIFY], "fault_handling": {"fault_rules": "<FaultRules><FaultRule name=\"a\"><Step><Name>Nope</Name></Step></FaultRule></FaultRules>"}}),
    );
    assert!(
        e.contains("fault_handling.fault_rules") && e.contains("\"Nope\""),
        "{e}"
    );
    let e = err(
        json!({"policies": [VERIFY], "fault_handling": {"policies": [VERIFY.replace("\"V\"", "\"W\"")]}}),
    );
    assert!(e.contains("RaiseFault or AssignMessage"), "{e}");
    let e = err(
        json!({"policies": [r#"<RaiseFault name="R"><FaultResponse><Set><StatusCode>99</StatusCode></Set></FaultResponse></RaiseFault>"#]}),
    );
    assert!(
        e.contains("<Set><StatusCode>") && e.contains("200 to 599"),
        "{e}"
    );
    let e = err(
        json!({"policies": [r#"<RaiseFault name="R"><FaultResponse><Set><Payload>{toUpperCase(a)}</Payload></Set></FaultResponse></RaiseFault>"#]}),
    );
    assert!(e.contains("toUpperCase() is not supported"), "{e}");
    let e = err(
        json!({"policies": [VERIFY], "fault_handling": {"default_fault_rule": "<DefaultFaultRule><AlwaysEnforce>yes</AlwaysEnforce></DefaultFaultRule>"}}),
    );
    assert!(e.contains("<AlwaysEnforce> must be true or false"), "{e}");
    assert!(!e.contains('\n'));
}

#[test]
fn a_template_variable_nothing_sets_is_a_warning() {
    let config = crate::config::parse_config(
        json!({"policies": [r#"<RaiseFault name="R"><FaultResponse><Set><Payload contentType="application/json">{"f":"{fault.name}","s":"{error.status.code}","x":"{nope.var}"}</Payload></Set></FaultResponse></RaiseFault>"#],
               "fault_handling": {"policies": [r#"<AssignMessage name="A"><AssignVariable><Name>my.v</Name><Value>1</Value></AssignVariable><Set><Payload>{my.v} {other.var} {error.content}</Payload></Set></AssignMessage>"#],
                                  "default_fault_rule": "<DefaultFaultRule><Step><Name>A</Name></Step></DefaultFaultRule>"}})
        .to_string()
        .as_bytes(),
    )
    .unwrap();
    assert_eq!(config.warnings.len(), 2, "{:?}", config.warnings);
    assert!(
        config.warnings[0].contains("policy \"R\"") && config.warnings[0].contains("\"nope.var\"")
    );
    assert!(
        config.warnings[1].contains("policy \"A\"") && config.warnings[1].contains("\"other.var\"")
    );
}

/// Real fault handlers write `{apiproxy.name}` into headers: it is the
/// configuration's `proxy_name` (docs/configuration.md#proxy_name-and-environment).
#[test]
fn a_fault_rule_template_reads_apiproxy_name() {
    let am = r#"<AssignMessage name="AM-Proxy"><Set><Headers><Header name="X-Proxy">{apiproxy.name}/{environment.name}</Header></Headers><StatusCode>401</StatusCode></Set></AssignMessage>"#;
    let mut p = json!({"policies": [VERIFY], "proxy_name": "orders-v1", "environment": "prod",
        "fault_handling": {"policies": [am],
            "fault_rules": r#"<FaultRules><FaultRule name="any"><Step><Name>AM-Proxy</Name></Step></FaultRule></FaultRules>"#}});
    let (mut w, mut host) = worker(p.clone());
    let (_, reply) = request(&mut w, &mut host, 10, &[]);
    let (status, headers, _) = reply.expect("a reply");
    assert_eq!(status, 401);
    assert_eq!(header(&headers, "x-proxy"), Some("orders-v1/prod"));
    // Without them, the variables are unset: Apigee's template writes "".
    p.as_object_mut().unwrap().remove("proxy_name");
    p.as_object_mut().unwrap().remove("environment");
    let (mut w, mut host) = worker(p);
    let (_, reply) = request(&mut w, &mut host, 11, &[]);
    let (_, headers, _) = reply.expect("a reply");
    assert_eq!(header(&headers, "x-proxy"), Some("/"));
}
