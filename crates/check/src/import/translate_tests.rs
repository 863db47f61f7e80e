//! Unit tests of the translation (translate.rs).

use super::*;
use crate::import::bundle::Bundle;
use crate::import::model;

const VERIFY: &str = "<OAuthV2 name=\"V\"><Operation>VerifyAccessToken</Operation></OAuthV2>";

fn proxy(flows: &str, policies: &[(&str, &str)]) -> Model {
    let mut files = BTreeMap::new();
    files.insert("p.xml".to_string(), "<APIProxy name=\"p\"/>".to_string());
    files.insert(
        "proxies/default.xml".to_string(),
        format!("<ProxyEndpoint name=\"default\">{flows}<HTTPProxyConnection><BasePath>/v1</BasePath></HTTPProxyConnection></ProxyEndpoint>"),
    );
    for (name, xml) in policies {
        files.insert(format!("policies/{name}.xml"), xml.to_string());
    }
    model::read(&Bundle {
        kind: Kind::Proxy,
        source: "p".into(),
        files,
    })
    .unwrap()
}

fn options() -> Options {
    Options {
        token_service: json!({"cluster": "token_service"}),
        targets: BTreeMap::new(),
        environment: None,
    }
}

fn steps_of(plan: &EndpointPlan) -> Vec<(String, Option<String>)> {
    plan.plugin.as_ref().unwrap()["policies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| match p {
            Value::String(x) => (x.clone(), None),
            o => (
                o["policy"].as_str().unwrap().to_string(),
                o["condition"].as_str().map(String::from),
            ),
        })
        .map(|(x, c)| (x.split('"').nth(1).unwrap().to_string(), c))
        .collect()
}

fn flow(name: &str, condition: Option<&str>, steps: &[&str]) -> String {
    let steps: String = steps
        .iter()
        .map(|s| format!("<Step><Name>{s}</Name></Step>"))
        .collect();
    let c = condition
        .map(|c| format!("<Condition>{c}</Condition>"))
        .unwrap_or_default();
    format!("<Flow name=\"{name}\"><Request>{steps}</Request>{c}</Flow>")
}

#[test]
fn guards_follow_the_first_match() {
    let flows = [
        Flow {
            name: "a".into(),
            condition: Some("x = 1".into()),
            ..Flow::default()
        },
        Flow {
            name: "b".into(),
            condition: Some("y = 2 or z = 3".into()),
            ..Flow::default()
        },
        Flow {
            name: "c".into(),
            condition: None,
            ..Flow::default()
        },
        Flow {
            name: "d".into(),
            condition: Some("w = 4".into()),
            ..Flow::default()
        },
    ];
    let g = flow_guards(&flows);
    assert_eq!(g[0], Ok(Some("x = 1".into())));
    assert_eq!(g[1], Ok(Some("(y = 2 or z = 3) and (not (x = 1))".into())));
    assert_eq!(
        g[2],
        Ok(Some("(not (x = 1)) and (not (y = 2 or z = 3))".into()))
    );
    assert_eq!(g[3], Err("c".into()));
}

#[test]
fn orders_merge_or_conflict() {
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    assert_eq!(
        merge_orders(&[s(&["A", "C"]), s(&["B", "C"]), s(&["A", "B"])]).unwrap(),
        s(&["A", "B", "C"])
    );
    assert!(merge_orders(&[s(&["A", "B"]), s(&["B", "A"])]).is_err());
}

#[test]
fn a_policy_in_several_flows_is_one_step_under_either_guard() {
    let get =
        "<GetOAuthV2Info name=\"G\"><AccessToken ref=\"request.queryparam.t\"/></GetOAuthV2Info>";
    let m = proxy(
        &format!(
            "<Flows>{}{}{}</Flows>",
            flow(
                "one",
                Some("proxy.pathsuffix MatchesPath \"/a/**\""),
                &["V", "G"]
            ),
            flow("two", Some("proxy.pathsuffix MatchesPath \"/a/b\""), &["V"]),
            flow("three", Some("request.verb = \"GET\""), &["G"]),
        ),
        &[("V", VERIFY), ("G", get)],
    );
    let mut report = Report::default();
    let plans = translate(&m, &BTreeMap::new(), &options(), &mut report).unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    let steps = steps_of(&plans[0]);
    assert_eq!(steps[0].0, "V");
    assert_eq!(
        steps[0].1.as_deref(),
        Some("(proxy.pathsuffix MatchesPath \"/a/**\") or ((proxy.pathsuffix MatchesPath \"/a/b\") and (not (proxy.pathsuffix MatchesPath \"/a/**\")))")
    );
    assert_eq!(steps[1].0, "G");
    assert!(steps[1].1.as_deref().unwrap().contains("(request.verb = \"GET\") and (not (proxy.pathsuffix MatchesPath \"/a/**\")) and (not (proxy.pathsuffix MatchesPath \"/a/b\"))"));
    assert_eq!(plans[0].plugin.as_ref().unwrap()["basepath"], "/v1");
    assert_eq!(report.translated.len(), 2);
}

#[test]
fn problems_and_guards_are_reported() {
    let get =
        "<GetOAuthV2Info name=\"G\"><AccessToken ref=\"request.queryparam.t\"/></GetOAuthV2Info>";
    let m = proxy(
        &format!(
            "<Flows>{}{}</Flows>",
            flow("one", Some("x = 1"), &["V", "G", "K"]),
            flow("two", Some("x = 2"), &["G", "V", "Missing"]),
        ),
        &[("V", VERIFY), ("G", get), ("K", "<Quota name=\"K\"/>")],
    );
    let mut report = Report::default();
    translate(&m, &BTreeMap::new(), &options(), &mut report).unwrap();
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.contains("different order")),
        "{:?}",
        report.problems
    );
    // The order is the problem; the two policies both Flows share do not
    // also "run twice" (only one Flow runs).
    assert!(
        !report.problems.iter().any(|p| p.contains("runs twice")),
        "{:?}",
        report.problems
    );
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.contains("\"Missing\"") && p.contains("no file")),
        "{:?}",
        report.problems
    );
    assert_eq!(report.guards.len(), 1);
    assert_eq!(report.guards[0].policy_type, "Quota");
    assert_eq!(report.guards[0].condition.as_deref(), Some("x = 1"));
}

#[test]
fn a_verify_variable_read_after_another_flows_verify_is_no_problem() {
    let get = "<GetOAuthV2Info name=\"G\"><AccessToken ref=\"access_token\"/></GetOAuthV2Info>";
    let w = "<OAuthV2 name=\"W\"><Operation>VerifyAccessToken</Operation></OAuthV2>";
    let m = proxy(
        &format!(
            "<Flows>{}{}</Flows>",
            flow("one", Some("x = 1"), &["V", "G"]),
            flow("two", Some("x = 2"), &["W", "G"]),
        ),
        &[("V", VERIFY), ("W", w), ("G", get)],
    );
    let mut report = Report::default();
    translate(&m, &BTreeMap::new(), &options(), &mut report).unwrap();
    // The filter reads the unprefixed variables of the VerifyAccessToken
    // that ran, as Apigee does (docs/decisions.md#verifyaccesstoken).
    assert!(report.problems.is_empty(), "{:?}", report.problems);
}

#[test]
fn a_token_or_key_check_on_the_response_is_an_access_check_not_translated() {
    let m = proxy(
        "<Flows><Flow name=\"r\"><Response><Step><Name>V</Name></Step><Step><Name>K</Name></Step></Response></Flow></Flows>",
        &[("V", VERIFY), ("K", KEY)],
    );
    let mut report = Report::default();
    let plans = translate(&m, &BTreeMap::new(), &options(), &mut report).unwrap();
    assert!(plans[0].plugin.is_none());
    assert_eq!(report.guards.len(), 2, "{:?}", report.guards);
    assert_eq!(report.guards[0].flow, "Flow \"r\" (response)");
    assert_eq!(report.guards[1].policy_type, "VerifyAPIKey");
    assert!(report.untranslated.is_empty(), "{:?}", report.untranslated);
}

#[test]
fn a_variable_only_an_untranslated_step_sets_is_named() {
    let ev = "<ExtractVariables name=\"EV\"><VariablePrefix>apigee</VariablePrefix><Header name=\"x-t\"><Pattern>{token}</Pattern></Header></ExtractVariables>";
    let get = "<GetOAuthV2Info name=\"G\"><AccessToken ref=\"apigee.token\"/></GetOAuthV2Info>";
    let m = proxy(
        "<PreFlow><Request><Step><Name>EV</Name></Step><Step><Name>G</Name></Step></Request></PreFlow>",
        &[("EV", ev), ("G", get)],
    );
    let mut report = Report::default();
    translate(&m, &BTreeMap::new(), &options(), &mut report).unwrap();
    assert!(
        report.warnings.iter().any(|w| w.contains("apigee.token")
            && w.contains("only the untranslated \"EV\" sets it: it will be unset")),
        "{:?}",
        report.warnings
    );
}

#[test]
fn publish_keeps_what_untranslated_steps_read() {
    let sets = vec![
        "client_id".to_string(),
        "scope".into(),
        "accesstoken.{name}".into(),
    ];
    let texts = vec![
        reads_of(&core::parse_xml("<AssignMessage><Set><Payload>the scope is {scope}</Payload></Set><AssignVariable><Ref>accesstoken.tier</Ref></AssignVariable></AssignMessage>").unwrap()),
        reads_of(&core::parse_xml("<AssignMessage><Set><Payload>client_id scope</Payload></Set></AssignMessage>").unwrap()),
    ];
    assert_eq!(narrow_publish(&sets, &texts), ["accesstoken.tier", "scope"]);
}

#[test]
fn a_flow_condition_reading_what_a_flow_step_sets_is_a_problem() {
    let m = proxy(
        &format!(
            "<Flows>{}{}</Flows>",
            flow("one", Some("scope = \"a\""), &["V"]),
            flow("two", Some("x = 2"), &["V"]),
        ),
        &[("V", VERIFY)],
    );
    let mut report = Report::default();
    translate(&m, &BTreeMap::new(), &options(), &mut report).unwrap();
    assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
    assert!(
        report.problems[0].contains("reads scope, which policy \"V\""),
        "{:?}",
        report.problems
    );
}

#[test]
fn raise_fault_steps_and_fault_rules_are_translated() {
    let rf = |name: &str| {
        format!("<RaiseFault name=\"{name}\"><FaultResponse><Set><StatusCode>400</StatusCode></Set></FaultResponse></RaiseFault>")
    };
    let am = "<AssignMessage name=\"AM-401\"><Set><Payload contentType=\"application/json\">{\"f\":\"{fault.name}\"}</Payload><StatusCode>401</StatusCode></Set><AssignTo createNew=\"false\" transport=\"http\" type=\"request\"/></AssignMessage>";
    let (rf_verb, rf_var) = (rf("RF-Verb"), rf("RF-Var"));
    let m = proxy(
        "<FaultRules><FaultRule name=\"token\"><Condition>fault.name = \"InvalidAccessToken\"</Condition><Step><Name>EV</Name></Step><Step><Name>AM-401</Name></Step></FaultRule></FaultRules>\
             <DefaultFaultRule name=\"d\"><AlwaysEnforce>true</AlwaysEnforce><Step><Name>RF-Verb</Name></Step></DefaultFaultRule>\
             <PreFlow><Request><Step><Name>RF-Verb</Name><Condition>request.verb = \"DELETE\"</Condition></Step><Step><Name>EV</Name></Step><Step><Name>RF-Var</Name><Condition>actionVar = null</Condition></Step><Step><Name>V</Name></Step></Request></PreFlow>",
        &[
            ("V", VERIFY),
            ("RF-Verb", &rf_verb),
            ("RF-Var", &rf_var),
            ("AM-401", am),
            ("EV", "<ExtractVariables name=\"EV\"><Source>request</Source></ExtractVariables>"),
        ],
    );
    let mut report = Report::default();
    let plans = translate(&m, &BTreeMap::new(), &options(), &mut report).unwrap();
    // A RaiseFault under a condition on the request: a step.
    assert_eq!(
        steps_of(&plans[0]),
        [
            (
                "RF-Verb".to_string(),
                Some("request.verb = \"DELETE\"".to_string())
            ),
            ("V".to_string(), None)
        ]
    );
    // One whose condition reads what an untranslated step sets: an access
    // check not translated.
    assert_eq!(report.guards.len(), 1, "{:?}", report.guards);
    assert_eq!(report.guards[0].policy, "RF-Var");
    // The rules: their AssignMessage and RaiseFault steps, the others left out.
    let handling = &plans[0].plugin.as_ref().unwrap()["fault_handling"];
    assert_eq!(
        handling["policies"].as_array().unwrap().len(),
        1,
        "{handling}"
    );
    assert_eq!(
        handling["fault_rules"],
        "<FaultRules><FaultRule name=\"token\"><Condition>fault.name = &quot;InvalidAccessToken&quot;</Condition><Step><Name>AM-401</Name></Step></FaultRule></FaultRules>"
    );
    assert_eq!(
        handling["default_fault_rule"],
        "<DefaultFaultRule name=\"d\"><AlwaysEnforce>true</AlwaysEnforce><Step><Name>RF-Verb</Name></Step></DefaultFaultRule>"
    );
    assert!(report
        .untranslated
        .iter()
        .any(|e| e.policy == "EV" && e.flow.contains("FaultRule \"token\"")));
    assert!(report.problems.is_empty(), "{:?}", report.problems);
}

const KEY: &str = "<VerifyAPIKey name=\"K\"><APIKey ref=\"request.header.apikey\"/></VerifyAPIKey>";

#[test]
fn verify_api_key_is_a_step_under_its_condition() {
    let rf = "<RaiseFault name=\"RF\"><FaultResponse><Set><StatusCode>403</StatusCode></Set></FaultResponse></RaiseFault>";
    let m = proxy(
        &format!(
            "<PreFlow><Request><Step><Name>K</Name><Condition>proxy.pathsuffix MatchesPath \"/keys/**\"</Condition></Step><Step><Name>RF</Name><Condition>verifyapikey.K.client_id = \"blocked\"</Condition></Step></Request></PreFlow><Flows>{}</Flows>",
            flow("tokens", Some("proxy.pathsuffix MatchesPath \"/tokens/**\""), &["V"]),
        ),
        &[("K", KEY), ("V", VERIFY), ("RF", rf)],
    );
    let mut report = Report::default();
    let plans = translate(&m, &BTreeMap::new(), &options(), &mut report).unwrap();
    assert_eq!(
        steps_of(&plans[0]),
        [
            (
                "K".to_string(),
                Some("proxy.pathsuffix MatchesPath \"/keys/**\"".to_string())
            ),
            // A RaiseFault reading VerifyAPIKey's variables reads what the
            // filter sets: a step.
            (
                "RF".to_string(),
                Some("verifyapikey.K.client_id = \"blocked\"".to_string())
            ),
            (
                "V".to_string(),
                Some("proxy.pathsuffix MatchesPath \"/tokens/**\"".to_string())
            ),
        ]
    );
    assert!(report.guards.is_empty(), "{:?}", report.guards);
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    let key = report.translated.iter().find(|e| e.policy == "K").unwrap();
    assert_eq!(key.policy_type, "VerifyAPIKey");
}

#[test]
fn the_plugin_names_the_proxy_and_the_environment_when_given() {
    let m = proxy(
        "<PreFlow><Request><Step><Name>K</Name></Step></Request></PreFlow>",
        &[("K", KEY)],
    );
    let mut report = Report::default();
    let plans = translate(&m, &BTreeMap::new(), &options(), &mut report).unwrap();
    let plugin = plans[0].plugin.as_ref().unwrap();
    // `<APIProxy name="p">` of the descriptor.
    assert_eq!(plugin["proxy_name"], "p");
    assert!(plugin.get("environment").is_none(), "{plugin}");
    assert!(report.notes.iter().all(|n| !n.contains("proxy_name")));
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);

    let with_env = Options {
        environment: Some("prod".into()),
        ..options()
    };
    let mut report = Report::default();
    let plans = translate(&m, &BTreeMap::new(), &with_env, &mut report).unwrap();
    let plugin = plans[0].plugin.as_ref().unwrap();
    assert_eq!(plugin["environment"], "prod");
    assert_eq!(plugin["proxy_name"], "p");
}

#[test]
fn without_a_descriptor_the_proxy_is_named_after_the_bundle_with_a_note() {
    let mut files = BTreeMap::new();
    files.insert(
        "proxies/default.xml".to_string(),
        "<ProxyEndpoint name=\"default\"><PreFlow><Request><Step><Name>K</Name></Step></Request></PreFlow><HTTPProxyConnection><BasePath>/v1</BasePath></HTTPProxyConnection></ProxyEndpoint>".to_string(),
    );
    files.insert("policies/K.xml".to_string(), KEY.to_string());
    let m = model::read(&Bundle {
        kind: Kind::Proxy,
        source: "exports/orders-v2/apiproxy".into(),
        files,
    })
    .unwrap();
    let mut report = Report::default();
    let plans = translate(&m, &BTreeMap::new(), &options(), &mut report).unwrap();
    assert_eq!(plans[0].plugin.as_ref().unwrap()["proxy_name"], "orders-v2");
    assert!(
        report
            .notes
            .iter()
            .any(|n| n.contains("proxy_name \"orders-v2\"") && n.contains("the bundle's name")),
        "{:?}",
        report.notes
    );
}

/// apiproduct-operations' DefaultFaultRule writes `{apiproxy.name}
/// r{apiproxy.revision}`: the name is the configuration's `proxy_name`;
/// the revision is not in the filter (warned, empty at run time).
#[test]
fn apiproxy_name_is_known_to_an_imported_proxy_and_its_revision_is_not() {
    let am = "<AssignMessage name=\"AM-Rev\"><Set><Headers><Header name=\"apiproxy\">{apiproxy.name} r{apiproxy.revision}</Header></Headers></Set></AssignMessage>";
    let m = proxy(
        "<DefaultFaultRule><AlwaysEnforce>true</AlwaysEnforce><Step><Name>AM-Rev</Name></Step></DefaultFaultRule><PreFlow><Request><Step><Name>V</Name></Step></Request></PreFlow>",
        &[("V", VERIFY), ("AM-Rev", am)],
    );
    let mut report = Report::default();
    let plans = translate(&m, &BTreeMap::new(), &options(), &mut report).unwrap();
    assert!(plans[0].plugin.as_ref().unwrap()["fault_handling"].is_object());
    assert!(
        report
            .warnings
            .iter()
            .all(|w| !w.contains("\"apiproxy.name\"")),
        "{:?}",
        report.warnings
    );
    assert_eq!(report.warnings.len(), 1, "{:?}", report.warnings);
    assert!(
        report.warnings[0].contains("\"apiproxy.revision\""),
        "{:?}",
        report.warnings
    );
}
