//! Hostile requests never trap the VM; bad configurations are refused at
//! load time with one line naming the policy and element.

use serde_json::{json, Value};

use crate::support::*;

// ------------------------------------------------------ hostile requests

/// A flood of random tokens: past each worker's lookup budget the requests
/// get token_service_unavailable at once, without a call (counted in
/// `lookups_refused`); a valid token, cached or once seen, is served
/// throughout (docs/configuration.md#the-lookup-budget).
#[test]
fn a_flood_of_random_tokens_is_bounded_by_the_lookup_budget() {
    let mut p = plugin(
        &[
            r#"<GetOAuthV2Info name="G"><AccessToken ref="request.queryparam.access_token"/></GetOAuthV2Info>"#,
        ],
        json!({"metadata_bridge": "none", "cache": {"ttl_ms": 1_000}}),
    );
    p["token_service"]["lookup_budget"] = json!({"per_second": 1, "burst": 5});
    let stack = Stack::start(p);
    stack.service.create_app("flood-app", json!({}));
    stack
        .service
        .import_access_token("flood-app", "good", "approved", 3600, json!({}));
    let envoy = &stack.envoy;
    assert_eq!(envoy.get("/x?access_token=good").status, 200);

    const FLOOD: usize = 60;
    let start = std::time::Instant::now();
    let (mut invalid, mut refused) = (0, 0);
    for i in 0..FLOOD {
        let r = envoy.get(&format!("/x?access_token=random-{i}"));
        let text = r.text();
        if text.contains("invalid_access_token") {
            invalid += 1;
        } else if r.status == 503 && text.contains("token_service_unavailable") {
            refused += 1;
        } else {
            panic!("random-{i}: {} {text}", r.status);
        }
        // The valid token is served all along: a hit, or (its 1 s entry
        // expired) a lookup the budget does not charge.
        if i % 10 == 9 {
            assert_eq!(envoy.get("/x?access_token=good").status, 200, "after {i}");
        }
    }
    let secs = start.elapsed().as_secs() + 1;
    // Two workers, each with 5 to start and 1 a second: at most this many
    // random tokens were looked up (the valid token took one at first).
    let allowed = 2 * (5 + secs as usize);
    assert!(
        invalid <= allowed,
        "{invalid} random tokens looked up in {secs} s, budget {allowed}"
    );
    assert_eq!(invalid + refused, FLOOD);
    assert_eq!(
        envoy.stat("wasmcustom.oauthv2info.lookups_refused"),
        refused as u64
    );
    assert_eq!(
        envoy.stat("wasmcustom.oauthv2info.faults.token_service_unavailable"),
        refused as u64
    );
    assert!(
        envoy
            .log_text()
            .lines()
            .filter(|l| l.contains("[warning]") && l.contains("lookup budget"))
            .count()
            <= 2,
        "one warn line a minute per worker"
    );
}

#[test]
fn malformed_requests_never_panic_the_vm() {
    let stack = Stack::start(plugin(
        &[
            r#"<GetOAuthV2Info name="G" continueOnError="true"><AccessToken ref="request.header.x-token"/></GetOAuthV2Info>"#,
            r#"<SetOAuthV2Info name="S" continueOnError="true"><AccessToken ref="request.queryparam.t"/><Attributes>
                 <Attribute name="f" ref="request.formparam.f"/><Attribute name="h" ref="request.header.x-value.3"/></Attributes></SetOAuthV2Info>"#,
        ],
        json!({"request_headers": {"x-f": "oauthv2accesstoken.S.f", "x-fault": "fault.name"}}),
    ));
    stack.service.create_app("c1", json!({}));
    stack
        .service
        .import_access_token("c1", "good", "approved", 3600, json!({}));
    stack
        .service
        .import_access_token("c1", "fresh", "approved", 3600, json!({}));
    let long = "x".repeat(30_000);
    type Case = (&'static str, String, Vec<(&'static str, Vec<u8>)>, Vec<u8>);
    let cases: Vec<Case> = vec![
        (
            "GET",
            "/?t=%zz%4".into(),
            vec![("x-token", vec![0xff, 0xfe, b'a'])],
            vec![],
        ),
        (
            "GET",
            "/?t=good&t=%FF%00".into(),
            vec![("x-value", b",,,".to_vec())],
            vec![],
        ),
        (
            "GET",
            format!("/?t={long}"),
            vec![("x-token", long.clone().into_bytes())],
            vec![],
        ),
        (
            "POST",
            "/?t=good".into(),
            vec![(
                "content-type",
                b"application/x-www-form-urlencoded".to_vec(),
            )],
            vec![b'f'; 5000],
        ),
        (
            "POST",
            "/?t=good".into(),
            vec![(
                "content-type",
                b"application/x-www-form-urlencoded".to_vec(),
            )],
            b"f=%ZZ&&=&f".to_vec(),
        ),
        (
            "POST",
            "/?t=good".into(),
            vec![(
                "content-type",
                b"application/x-www-form-urlencoded".to_vec(),
            )],
            vec![0xff, b'=', 0xfe],
        ),
    ];
    for (method, path, headers, body) in &cases {
        let headers: Vec<(&str, &[u8])> = headers.iter().map(|(k, v)| (*k, v.as_slice())).collect();
        let r = stack.envoy.request(method, path, &headers, body);
        assert!(
            r.status == 200,
            "{method} {}: {} {}",
            &path[..path.len().min(40)],
            r.status,
            r.text()
        );
    }
    // An over-limit form body: form parameters are unset, the body passes.
    let big = format!("f=1&pad={}", "p".repeat(70_000));
    let r = stack.envoy.request(
        "POST",
        "/?t=fresh",
        &[("content-type", b"application/x-www-form-urlencoded")],
        big.as_bytes(),
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.upstream_header("x-f"), None, "the attribute was skipped");
    assert_eq!(
        stack.service.introspect("fresh", "access_token")["profile"]["attributes"],
        json!({})
    );
    assert_eq!(r.json()["body"].as_str().map(str::len), Some(big.len()));
    let r = stack.envoy.request(
        "POST",
        "/?t=fresh",
        &[("content-type", b"application/x-www-form-urlencoded")],
        b"f=ok",
    );
    assert_eq!(r.upstream_header("x-f").as_deref(), Some("ok"));
    let log = stack.envoy.log_text();
    assert!(!log.contains("panic"), "{log}");
    assert!(
        log.contains("form body not read (larger than 65536 bytes)"),
        "{log}"
    );
}

/// A control byte a client puts in a mapped value (Envoy refuses it in a
/// header and used to answer its own `503 invalid header value`): the
/// header is not set, the client's copy is still removed, the request goes
/// on with its other headers, the counter counts it, and the warning is
/// rate-limited (once a minute per worker, the rest at debug level).
#[test]
fn control_bytes_in_a_mapped_value_are_not_set_and_the_request_goes_on() {
    let stack = Stack::start(plugin(
        &[
            r#"<GetOAuthV2Info name="G"><AccessToken ref="request.queryparam.access_token"/></GetOAuthV2Info>"#,
        ],
        json!({"request_headers": {
            "x-out": "request.queryparam.v",
            "x-client": "oauthv2accesstoken.G.client_id",
        }}),
    ));
    stack.service.create_app("cb", json!({}));
    stack
        .service
        .import_access_token("cb", "tok-cb", "approved", 3600, json!({}));
    let controls: Vec<u8> = (0u8..0x20).filter(|&b| b != b'\t').chain([0x7f]).collect();
    for &b in &controls {
        let path = format!("/x?access_token=tok-cb&v=a%{b:02x}b");
        let r = stack
            .envoy
            .request("GET", &path, &[("x-out", b"forged".as_slice())], b"");
        assert_eq!(r.status, 200, "{b:#04x}: {}", r.text());
        assert_eq!(
            r.upstream_header("x-out"),
            None,
            "{b:#04x}: not set, copy removed"
        );
        assert_eq!(
            r.upstream_header("x-client").as_deref(),
            Some("cb"),
            "{b:#04x}"
        );
    }
    // A tab is a valid header byte: set as it is.
    let r = stack.envoy.get("/x?access_token=tok-cb&v=a%09b");
    assert_eq!(r.upstream_header("x-out").as_deref(), Some("a\tb"));
    assert_eq!(
        stack
            .envoy
            .stat("wasmcustom.oauthv2info.request_headers_refused"),
        controls.len() as u64
    );
    let log = stack.envoy.log_text();
    let warnings = log
        .lines()
        .filter(|l| l.contains("[warning]") && l.contains("not set: the value of"))
        .count();
    assert!((1..=2).contains(&warnings), "{warnings} warnings: {log}");
    assert!(!log.contains("tok-cb"), "the token in a log line");
}

/// A form POST with an empty body is an empty form, not a missing form
/// filter: no warning (a client could trigger one per request), and the
/// policy sees no form parameter.
#[test]
fn an_empty_form_body_is_an_empty_form() {
    let stack = Stack::start(plugin(
        &[
            r#"<GetOAuthV2Info name="G"><AccessToken ref="request.formparam.access_token"/></GetOAuthV2Info>"#,
        ],
        json!({}),
    ));
    stack.service.create_app("ef", json!({}));
    stack
        .service
        .import_access_token("ef", "tok-ef", "approved", 3600, json!({}));
    let form: &[(&str, &[u8])] = &[("content-type", b"application/x-www-form-urlencoded")];
    let r = stack
        .envoy
        .request("POST", "/", form, b"access_token=tok-ef");
    assert_eq!(r.status, 200, "{}", r.text());
    for _ in 0..3 {
        // `content-length: 0`: the headers end the stream.
        let r = stack.envoy.request("POST", "/", form, b"");
        assert_eq!(r.status, 500, "{}", r.text());
        assert_eq!(
            r.json()["fault"]["detail"]["errorcode"],
            "keymanagement.service.invalid_access_token"
        );
    }
    let log = stack.envoy.log_text();
    assert!(!log.contains("no form body was handed over"), "{log}");
}

// ------------------------------------------------------- load-time errors

#[test]
fn envoy_validate_refuses_bad_configuration_naming_policy_and_element() {
    let good =
        r#"<GetOAuthV2Info name="G"><AccessToken ref="request.queryparam.t"/></GetOAuthV2Info>"#;
    let (ok, out) = validate(plugin(&[good], json!({})));
    assert!(ok, "{out}");
    let cases: Vec<(Value, &str)> = vec![
        (
            json!("{not json"),
            "configuration refused: configuration field \"configuration\": malformed JSON",
        ),
        (
            json!("<GetOAuthV2Info name=\"G\"><AccessToken ref=\"x\"/>"),
            "configuration refused: policy \"#1\", element document: malformed XML",
        ),
        (
            plugin(
                &[r#"<GetOAuthV2Info name="G"><AccessToken ref="a"/><Scope/></GetOAuthV2Info>"#],
                json!({}),
            ),
            "policy \"G\", element <Scope>: unknown element",
        ),
        (
            plugin(
                &[r#"<GetOAuthV2Info name="G"></GetOAuthV2Info>"#],
                json!({}),
            ),
            "policy \"G\", element <GetOAuthV2Info>: needs exactly one of",
        ),
        (
            plugin(&[good, good], json!({})),
            "policy \"G\", element <GetOAuthV2Info>: two policies have this name",
        ),
        (
            plugin(
                &[
                    r#"<SetOAuthV2Info name="S"><AccessToken ref="t"/><Attributes><Attribute name="scope">x</Attribute></Attributes></SetOAuthV2Info>"#,
                ],
                json!({}),
            ),
            "policy \"S\", element <Attribute name=\"scope\">",
        ),
        (
            plugin(
                &[r#"<GetOAuthV2Info name="bad/name"><AccessToken ref="a"/></GetOAuthV2Info>"#],
                json!({}),
            ),
            "policy \"bad/name\", element <GetOAuthV2Info>: the name",
        ),
        (
            json!({"policies": [good], "token_service": {"clustr": "x"}}),
            "configuration field \"token_service.clustr\": unknown field",
        ),
        (
            json!({"policies": [good], "token_service": {"timeout_ms": 0}}),
            "configuration field \"token_service.timeout_ms\"",
        ),
    ];
    for (config, expected) in cases {
        let (ok, out) = validate(config.clone());
        assert!(!ok, "accepted {config}");
        let line = out
            .lines()
            .find(|l| l.contains("configuration refused"))
            .unwrap_or_else(|| panic!("no refusal line for {config}:\n{out}"));
        assert!(
            line.contains(expected),
            "{config}: expected {expected:?} in\n{line}"
        );
        assert_eq!(
            out.matches("configuration refused").count(),
            1,
            "one line, once:\n{out}"
        );
    }
}
