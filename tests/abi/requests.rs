//! Requests: a fault reply, a callout and its answer, a hit from the
//! shared cache, what the filter reads of the request.

use crate::emulator::{
    Action, Call, Emulator, Reply, CALL_RESPONSE_BODY, CALL_RESPONSE_HEADERS, REQUEST_HEADERS,
};
use crate::{get_config, profile, INVALID_ACCESS_TOKEN};
use serde_json::json;

/// The one introspection callout `emu` made; its token.
fn one_callout(emu: &Emulator) -> u32 {
    let calls = emu.http_calls();
    assert_eq!(calls.len(), 1, "{calls:?}");
    calls[0].token
}

#[test]
fn a_request_without_a_token_gets_the_fault_reply() {
    let mut emu = Emulator::start(&get_config());
    let (id, action) = emu.request("/orders", &[("x-developer-email", "forged")]);
    assert_eq!(action, Action::Pause);
    assert_eq!(
        emu.stream(id).reply,
        Some(Reply {
            status: 500,
            details: Vec::new(),
            headers: vec![("content-type".into(), b"application/json".to_vec())],
            body: INVALID_ACCESS_TOKEN.as_bytes().to_vec(),
            grpc_status: -1,
        })
    );
    assert_eq!(emu.count("proxy_http_call"), 0);
    assert_eq!(emu.count("proxy_continue_stream"), 0);
    let s = emu.stream(id);
    assert_eq!(s.state("oauthV2.G.failed").as_deref(), Some("true"));
    assert_eq!(
        s.state("fault.name").as_deref(),
        Some("invalid_access_token")
    );
}

#[test]
fn verify_access_token_answers_401_with_a_challenge() {
    let verify = r#"<OAuthV2 name="V"><Operation>VerifyAccessToken</Operation></OAuthV2>"#;
    let mut emu = Emulator::start(&json!({ "policies": [verify] }).to_string());
    let (id, action) = emu.request("/orders", &[]);
    assert_eq!(action, Action::Pause);
    let reply = emu.stream(id).reply.clone().expect("a local reply");
    assert_eq!(reply.status, 401);
    assert_eq!(
        reply.headers,
        vec![
            ("content-type".into(), b"application/json".to_vec()),
            // docs/faults.md#verifyaccesstoken
            ("www-authenticate".into(), br#"Bearer realm="null",error="invalid_token",error_description="oauth.v2.InvalidAccessToken: Invalid access token""#.to_vec()),
        ]
    );
    assert_eq!(
        String::from_utf8(reply.body).unwrap(),
        r#"{"fault":{"faultstring":"Invalid access token","detail":{"errorcode":"oauth.v2.InvalidAccessToken"}}}"#
    );
}

#[test]
fn a_miss_sends_one_callout_and_holds_the_request() {
    let mut emu = Emulator::start(&get_config());
    emu.clear_calls();
    let (id, action) = emu.request("/orders?access_token=tok-1", &[]);
    assert_eq!(action, Action::Pause);
    let calls = emu.http_calls();
    assert_eq!(calls.len(), 1);
    let c = &calls[0];
    assert_eq!(c.cluster, "token_service");
    let headers: Vec<(&str, &str)> = c
        .headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        headers,
        vec![
            (":method", "POST"),
            (":path", "/oauth2/introspect"),
            (":authority", "token_service"),
            ("content-type", "application/x-www-form-urlencoded"),
            ("accept", "application/json"),
        ]
    );
    assert_eq!(c.body, b"token=tok-1&token_type_hint=access_token");
    assert!(c.trailers.is_empty());
    assert_eq!(c.timeout_ms, 500);
    // Made from the request's own context.
    let record = emu
        .calls()
        .iter()
        .find(|r| r.call.name() == "proxy_http_call")
        .unwrap();
    assert_eq!(record.context, id);
    let s = emu.stream(id);
    assert!(s.paused && s.reply.is_none() && s.filter_state.is_empty());
    // The token is in no log line (docs/decisions.md: secrets stay secret).
    assert!(
        emu.logs().iter().all(|(_, m)| !m.contains("tok-1")),
        "{:?}",
        emu.logs()
    );
}

#[test]
fn the_answer_is_read_published_and_the_request_resumed() {
    let mut emu = Emulator::start(&get_config());
    let (id, _) = emu.request(
        "/orders?access_token=tok",
        &[("x-developer-email", "forged")],
    );
    let token = one_callout(&emu);
    emu.clear_calls();
    emu.advance_ms(7);
    let body = profile("tok");
    emu.respond(token, Some(200), &body);

    // The answer's status and whole body are read, once each.
    let reads: Vec<&Call> = emu
        .calls()
        .iter()
        .map(|r| &r.call)
        .filter(|c| {
            matches!(
                c,
                Call::GetHeader {
                    map: CALL_RESPONSE_HEADERS,
                    ..
                } | Call::GetBuffer { .. }
            )
        })
        .collect();
    assert_eq!(
        reads,
        vec![
            &Call::GetHeader {
                map: CALL_RESPONSE_HEADERS,
                key: ":status".into()
            },
            &Call::GetBuffer {
                buffer: CALL_RESPONSE_BODY,
                start: 0,
                max: body.len() as u32
            },
        ]
    );
    let s = emu.stream(id);
    assert_eq!(s.resumed, 1);
    assert!(s.reply.is_none());
    assert_eq!(
        s.state("oauthv2accesstoken.G.scope").as_deref(),
        Some("READ WRITE")
    );
    assert_eq!(
        s.state("oauthv2accesstoken.G.accesstoken.dept").as_deref(),
        Some("42")
    );
    assert_eq!(s.state("oauthV2.G.failed").as_deref(), Some("false"));
    assert_eq!(
        s.state("oauthv2accesstoken.G.access_token"),
        None,
        "a secret published"
    );
    // The client's copy is replaced by the profile's value.
    assert_eq!(
        s.header("x-developer-email").as_deref(),
        Some("dev@example.com")
    );
    assert_eq!(
        s.headers
            .iter()
            .filter(|(k, _)| k == "x-developer-email")
            .count(),
        1
    );
    // Resumed from the request's context, after the header was set.
    let resume = emu
        .calls()
        .iter()
        .position(|r| r.call == Call::ContinueStream { stream: 0 })
        .unwrap();
    assert_eq!(emu.calls()[resume].context, id);
    let set = emu
        .calls()
        .iter()
        .position(|r| matches!(&r.call, Call::ReplaceHeader { map: REQUEST_HEADERS, key, .. } if key == "x-developer-email"))
        .unwrap();
    assert!(set < resume);
    // The callout's latency went to the histogram at once.
    let latency = emu
        .host()
        .metrics
        .iter()
        .find(|m| m.name == "oauthv2info.callout_latency_ms")
        .unwrap();
    assert_eq!(latency.recorded, vec![7]);
}

#[test]
fn a_second_request_is_answered_from_the_shared_cache_without_a_callout() {
    let mut emu = Emulator::start(&get_config());
    let (first, _) = emu.request("/orders?access_token=tok", &[]);
    let token = one_callout(&emu);
    emu.clear_calls();
    emu.respond(token, Some(200), &profile("tok"));
    // The answer was stored in a slot found empty: written with no CAS.
    let stored: Vec<(String, u32)> = emu
        .calls()
        .iter()
        .filter_map(|r| match &r.call {
            Call::SetSharedData { key, cas, .. } if r.status == 0 => Some((key.clone(), *cas)),
            _ => None,
        })
        .collect();
    assert_eq!(stored.len(), 1, "{stored:?}");
    let (slot, cas) = stored[0].clone();
    assert_eq!(cas, 0);
    emu.end(first);

    emu.clear_calls();
    let (second, action) = emu.request("/orders?access_token=tok", &[]);
    assert_eq!(action, Action::Continue);
    assert_eq!(emu.count("proxy_http_call"), 0);
    assert_eq!(emu.count("proxy_set_shared_data"), 0);
    assert_eq!(emu.count("proxy_continue_stream"), 0);
    assert!(emu
        .calls()
        .iter()
        .any(|r| r.call == Call::GetSharedData { key: slot.clone() } && r.status == 0));
    let s = emu.stream(second);
    assert_eq!(
        s.state("oauthv2accesstoken.G.scope").as_deref(),
        Some("READ WRITE")
    );
    assert_eq!(
        s.header("x-developer-email").as_deref(),
        Some("dev@example.com")
    );
    // A request makes no metric host call; the tick hands the counts over.
    assert_eq!(emu.count("proxy_increment_metric"), 0);
    emu.tick();
    assert_eq!(emu.metric("oauthv2info.cache.hits"), Some(1));
    assert_eq!(emu.metric("oauthv2info.cache.misses"), Some(1));
    assert_eq!(emu.metric("oauthv2info.callouts"), Some(1));
    assert_eq!(emu.metric("oauthv2info.policy_executions"), Some(2));
    assert_eq!(emu.metric("oauthv2info.policy.G.executions"), Some(2));
    let increments = emu.count("proxy_increment_metric");
    emu.tick();
    assert_eq!(
        emu.count("proxy_increment_metric"),
        increments,
        "nothing new to hand over"
    );
}

#[test]
fn an_expired_entry_is_replaced_with_the_cas_it_was_read_with() {
    let mut emu = Emulator::start(&get_config());
    let (first, _) = emu.request("/orders?access_token=tok", &[]);
    emu.respond(one_callout(&emu), Some(200), &profile("tok"));
    emu.end(first);
    let (slot, stored_cas) = emu
        .calls()
        .iter()
        .find_map(|r| match &r.call {
            Call::SetSharedData { key, .. } if r.status == 0 => Some(key.clone()),
            _ => None,
        })
        .map(|key| {
            let cas = emu.shared_data(&key).unwrap().1;
            (key, cas)
        })
        .expect("the answer stored");
    // Past the cache's 30 s TTL: a miss, another callout.
    emu.advance_ms(30_001);
    let (_, action) = emu.request("/orders?access_token=tok", &[]);
    assert_eq!(action, Action::Pause);
    let token = emu.http_calls().last().unwrap().token;
    emu.clear_calls();
    emu.respond(token, Some(200), &profile("tok"));
    let slot_calls: Vec<(&Call, u32)> = emu
        .calls()
        .iter()
        .filter(|r| match &r.call {
            Call::GetSharedData { key } | Call::SetSharedData { key, .. } => *key == slot,
            _ => false,
        })
        .map(|r| (&r.call, r.status))
        .collect();
    // Read (with its CAS), then written with that CAS, accepted.
    assert!(
        matches!(slot_calls.first(), Some((Call::GetSharedData { .. }, 0))),
        "{slot_calls:?}"
    );
    assert!(
        matches!(slot_calls.last(), Some((Call::SetSharedData { cas, .. }, 0)) if *cas == stored_cas),
        "{slot_calls:?} (the slot's CAS was {stored_cas})"
    );
    assert_ne!(
        emu.shared_data(&slot).unwrap().1,
        stored_cas,
        "the write moved the CAS on"
    );
}

/// SetOAuthV2Info's callout: the attribute merge, a JSON body.
#[test]
fn set_oauthv2info_sends_the_attribute_merge() {
    let set = r#"<SetOAuthV2Info name="S"><AccessToken ref="request.queryparam.access_token"/><Attributes><Attribute name="dept" ref="request.header.x-dept"/></Attributes></SetOAuthV2Info>"#;
    let mut emu = Emulator::start(&json!({ "policies": [set] }).to_string());
    let (id, action) = emu.request("/orders?access_token=tok", &[("x-dept", "7")]);
    assert_eq!(action, Action::Pause);
    let calls = emu.http_calls();
    assert_eq!(calls.len(), 1);
    let c = &calls[0];
    assert_eq!(c.header(":method"), Some("POST"));
    assert_eq!(c.header(":path"), Some("/v1/accesstokens/attributes"));
    assert_eq!(c.header("content-type"), Some("application/json"));
    let body: serde_json::Value = serde_json::from_slice(&c.body).unwrap();
    assert_eq!(
        body,
        json!({"token": "tok", "attributes": [{"name": "dept", "value": "7"}]})
    );
    emu.respond(c.token, Some(200), &profile("tok"));
    assert_eq!(emu.stream(id).resumed, 1);
    assert!(emu.stream(id).reply.is_none());
}

/// Two requests for one token while its lookup is in flight: one callout;
/// its answer resumes both, each from its own context.
#[test]
fn two_requests_for_one_token_share_one_callout_and_both_resume() {
    let mut emu = Emulator::start(&get_config());
    let (a, _) = emu.request("/orders?access_token=tok", &[]);
    let (b, action) = emu.request("/orders?access_token=tok", &[]);
    assert_eq!(action, Action::Pause);
    let token = one_callout(&emu);
    emu.clear_calls();
    emu.respond(token, Some(200), &profile("tok"));
    let resumes: Vec<u32> = emu
        .calls()
        .iter()
        .filter(|r| r.call == Call::ContinueStream { stream: 0 })
        .map(|r| r.context)
        .collect();
    assert_eq!(resumes, vec![a, b]);
    for id in [a, b] {
        let s = emu.stream(id);
        assert_eq!(s.resumed, 1);
        assert_eq!(
            s.state("oauthv2accesstoken.G.scope").as_deref(),
            Some("READ WRITE")
        );
        assert_eq!(
            s.header("x-developer-email").as_deref(),
            Some("dev@example.com")
        );
    }
}

/// A request that ends (the client went away) before its answer: the
/// answer touches nothing of it, and the next request is served.
#[test]
fn a_request_that_ends_before_its_answer_is_forgotten() {
    let mut emu = Emulator::start(&get_config());
    let (gone, _) = emu.request("/orders?access_token=tok", &[]);
    let token = one_callout(&emu);
    emu.end(gone);
    emu.clear_calls();
    emu.respond(token, Some(200), &profile("tok"));
    assert_eq!(emu.count("proxy_continue_stream"), 0);
    assert!(emu.stream(gone).filter_state.is_empty());
    let (next, _) = emu.request("/orders?access_token=tok", &[]);
    assert!(emu.stream(next).reply.is_none());
}

/// What the metadata bridges need of the host: the Lua bridge one
/// filter-state entry of netstrings, header_to_metadata one request header
/// per variable (docs/configuration.md#metadata_bridge).
#[test]
fn the_metadata_bridges_write_through_the_host() {
    let mut emu = Emulator::start(&get_config());
    let (lua, _) = emu.request("/orders?access_token=tok", &[]);
    emu.respond(one_callout(&emu), Some(200), &profile("tok"));
    let blob = emu
        .stream(lua)
        .state("oauthv2info.metadata")
        .expect("the Lua bridge's entry");
    assert!(blob.starts_with("6:apigee,"), "{blob}");
    assert!(
        blob.contains("36:oauthv2accesstoken.G.developer.email,15:dev@example.com,"),
        "{blob}"
    );

    let config =
        json!({"policies": [crate::GET], "metadata_bridge": "header_to_metadata"}).to_string();
    let mut emu = Emulator::start(&config);
    let (id, _) = emu.request("/orders?access_token=tok", &[]);
    emu.respond(one_callout(&emu), Some(200), &profile("tok"));
    let added: Vec<(String, String)> = emu
        .calls()
        .iter()
        .filter_map(|r| match &r.call {
            Call::AddHeader {
                map: REQUEST_HEADERS,
                key,
                value,
            } if r.context == id => {
                Some((key.clone(), String::from_utf8_lossy(value).into_owned()))
            }
            _ => None,
        })
        .collect();
    assert!(!added.is_empty());
    assert!(
        added
            .iter()
            .all(|(k, _)| k.starts_with("x-oauthv2info-md-")),
        "{added:?}"
    );
    assert!(
        added.iter().any(|(_, v)| v == "dev@example.com"),
        "{added:?}"
    );
    let s = emu.stream(id);
    assert!(added
        .iter()
        .all(|(k, v)| s.header(k).as_deref() == Some(v.as_str())));
}

/// The whole header map (a variable counting a header's values) and a
/// property (the client's address) are read through the host.
#[test]
fn the_header_map_and_a_property_are_read_through_the_host() {
    let config = json!({"policies": [crate::GET], "request_headers": {
        "x-count": "request.header.x-a.values.count",
        "x-client": "client.ip"}})
    .to_string();
    let mut emu = Emulator::start(&config);
    let (id, _) = emu.request_with(
        "/orders?access_token=tok",
        &[("x-a", "1"), ("X-A", "2"), ("x-count", "forged")],
        &[("source\0address", b"10.0.0.7:5555")],
    );
    assert!(emu.calls().iter().any(|r| r.call
        == Call::GetHeaders {
            map: REQUEST_HEADERS
        }));
    assert!(emu.calls().iter().any(|r| r.call
        == Call::GetProperty {
            path: vec!["source".into(), "address".into()]
        }));
    emu.respond(one_callout(&emu), Some(200), &profile("tok"));
    let s = emu.stream(id);
    assert_eq!(s.header("x-count").as_deref(), Some("2"));
    assert_eq!(s.header("x-client").as_deref(), Some("10.0.0.7"));
}
