//! Host calls that fail: the emulator answers an error status, and the
//! filter goes on with what docs/faults.md documents; it never traps.

use crate::emulator::{
    Action, Emulator, BAD_ARGUMENT, CAS_MISMATCH, DEBUG, INTERNAL_FAILURE, WARN,
};
use crate::{get_config, profile, GET, UNAVAILABLE};
use serde_json::json;

/// The 503 `token_service_unavailable` reply of stream `id`.
fn assert_unavailable(emu: &Emulator, id: u32) {
    let reply = emu.stream(id).reply.clone().expect("a local reply");
    assert_eq!(reply.status, 503);
    assert_eq!(
        reply.headers,
        vec![("content-type".into(), b"application/json".to_vec())]
    );
    assert_eq!(String::from_utf8(reply.body).unwrap(), UNAVAILABLE);
    assert_eq!(emu.stream(id).resumed, 0);
}

#[test]
fn a_callout_to_an_unknown_cluster_gets_the_503_fault() {
    let config = json!({"policies": [GET], "token_service": {"cluster": "nowhere"}}).to_string();
    let mut emu = Emulator::start(&config);
    let (id, action) = emu.request("/orders?access_token=tok", &[]);
    assert_eq!(action, Action::Pause);
    let refused = emu
        .calls()
        .iter()
        .find(|r| r.call.name() == "proxy_http_call")
        .unwrap();
    assert_eq!(refused.status, BAD_ARGUMENT);
    assert_unavailable(&emu, id);
    let warnings = emu.logs_at(WARN);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains(
            "policy \"G\": token service unavailable: could not call cluster \"nowhere\""
        ),
        "{warnings:?}"
    );
}

#[test]
fn a_callout_the_host_cannot_send_gets_the_503_fault() {
    let mut emu = Emulator::start(&get_config());
    // Envoy's answer for a cluster with no healthy host.
    emu.fail("proxy_http_call", INTERNAL_FAILURE, Some(1));
    let (id, action) = emu.request("/orders?access_token=tok", &[]);
    assert_eq!(action, Action::Pause);
    assert_unavailable(&emu, id);
    // The next request is not affected.
    let (next, _) = emu.request("/orders?access_token=tok", &[]);
    assert!(emu.stream(next).reply.is_none());
    assert_eq!(emu.http_calls().len(), 2);
}

#[test]
fn an_answer_whose_status_cannot_be_read_is_sent_again_then_faults() {
    let mut emu = Emulator::start(&get_config());
    let (id, _) = emu.request("/orders?access_token=tok", &[]);
    // Every read of a header now fails: the answer has no status, as a
    // reset would; the filter sends the call again (at once, then after
    // pauses, on the root's tick) while its 500 ms timeout lasts, then
    // gives up.
    emu.fail("proxy_get_header_map_value", INTERNAL_FAILURE, None);
    let mut sent = 1;
    loop {
        let token = emu.http_calls().last().unwrap().token;
        emu.respond(token, Some(200), &profile("tok"));
        for _ in 0..1_000 {
            if emu.http_calls().len() > sent || emu.stream(id).reply.is_some() {
                break;
            }
            emu.advance_ms(1);
            emu.tick();
        }
        if emu.http_calls().len() == sent {
            break;
        }
        sent = emu.http_calls().len();
    }
    assert_eq!(sent, 8, "the first call and 7 more");
    assert_unavailable(&emu, id);
}

#[test]
fn an_answer_whose_body_cannot_be_read_gets_the_503_fault() {
    let mut emu = Emulator::start(&get_config());
    let (id, _) = emu.request("/orders?access_token=tok", &[]);
    let token = emu.http_calls()[0].token;
    emu.fail("proxy_get_buffer_bytes", INTERNAL_FAILURE, None);
    emu.respond(token, Some(200), &profile("tok"));
    assert_unavailable(&emu, id);
}

#[test]
fn shared_data_that_fails_is_a_miss_and_the_request_goes_on() {
    let mut emu = Emulator::start(&get_config());
    emu.fail("proxy_get_shared_data", INTERNAL_FAILURE, None);
    emu.fail("proxy_set_shared_data", INTERNAL_FAILURE, None);
    for round in 1..=2 {
        let (id, action) = emu.request("/orders?access_token=tok", &[]);
        assert_eq!(
            action,
            Action::Pause,
            "no hit from a cache that cannot be read"
        );
        emu.respond(
            emu.http_calls().last().unwrap().token,
            Some(200),
            &profile("tok"),
        );
        assert_eq!(emu.stream(id).resumed, 1);
        assert_eq!(emu.http_calls().len(), round);
        emu.end(id);
    }
    assert!(emu.logs_at(WARN).is_empty(), "{:?}", emu.logs_at(WARN));
}

#[test]
fn a_cache_write_that_loses_its_cas_race_is_not_an_error() {
    let mut emu = Emulator::start(&get_config());
    let (id, _) = emu.request("/orders?access_token=tok", &[]);
    // Another worker wrote the slot between the filter's read and write.
    emu.fail("proxy_set_shared_data", CAS_MISMATCH, Some(1));
    emu.respond(emu.http_calls()[0].token, Some(200), &profile("tok"));
    assert_eq!(emu.stream(id).resumed, 1);
    assert!(emu.logs_at(WARN).is_empty());
}

#[test]
fn filter_state_the_host_refuses_does_not_stop_the_request() {
    let mut emu = Emulator::start(&get_config());
    emu.fail("proxy_set_property", INTERNAL_FAILURE, None);
    let (id, _) = emu.request("/orders?access_token=tok", &[]);
    emu.respond(emu.http_calls()[0].token, Some(200), &profile("tok"));
    let s = emu.stream(id);
    assert_eq!(s.resumed, 1);
    assert!(s.filter_state.is_empty());
    assert_eq!(
        s.header("x-developer-email").as_deref(),
        Some("dev@example.com")
    );
    assert!(emu
        .logs_at(DEBUG)
        .iter()
        .any(|l| l.starts_with("oauthv2info: could not write filter state")));
}

#[test]
fn a_local_reply_the_host_refuses_is_logged() {
    let mut emu = Emulator::start(&get_config());
    emu.fail("proxy_send_local_response", INTERNAL_FAILURE, None);
    let (id, action) = emu.request("/orders", &[]);
    assert_eq!(action, Action::Pause);
    assert!(emu.stream(id).reply.is_none());
    assert_eq!(
        emu.logs_at(WARN),
        vec!["oauthv2info: could not send the local reply".to_string()]
    );
}

#[test]
fn metrics_the_host_refuses_to_define_are_never_touched() {
    let mut emu = Emulator::load();
    assert!(emu.vm_start());
    emu.fail("proxy_define_metric", INTERNAL_FAILURE, None);
    assert!(emu.configure(&get_config()));
    let (id, _) = emu.request("/orders?access_token=tok", &[]);
    emu.respond(emu.http_calls()[0].token, Some(200), &profile("tok"));
    assert_eq!(emu.stream(id).resumed, 1);
    emu.tick();
    assert_eq!(emu.count("proxy_increment_metric"), 0);
    assert_eq!(emu.count("proxy_record_metric"), 0);
}

/// Each host call the filter makes through `src/abi.rs`, failing every
/// time through a whole life (configuration, a miss, its answer, a hit, a
/// fault reply, a tick, the ends): no trap and no misuse of the host. (`proxy_log` and
/// `proxy_set_effective_context` are left out: the SDK's logger and
/// dispatcher unwrap them, and Envoy does not fail them.)
#[test]
fn every_host_call_failing_never_traps() {
    for name in [
        "proxy_get_current_time_nanoseconds",
        "random_get",
        "proxy_get_buffer_bytes",
        "proxy_get_header_map_value",
        "proxy_get_header_map_pairs",
        "proxy_replace_header_map_value",
        "proxy_add_header_map_value",
        "proxy_remove_header_map_value",
        "proxy_get_property",
        "proxy_set_property",
        "proxy_get_shared_data",
        "proxy_set_shared_data",
        "proxy_send_local_response",
        "proxy_continue_stream",
        "proxy_set_tick_period_milliseconds",
        "proxy_define_metric",
        "proxy_increment_metric",
        "proxy_record_metric",
        "proxy_http_call",
    ] {
        eprintln!("with {name} failing");
        let config = json!({"policies": [GET], "metadata_bridge": "header_to_metadata",
            "request_headers": {"x-email": "oauthv2accesstoken.G.developer.email",
                "x-count": "request.header.x-a.values.count", "x-ip": "client.ip",
                "x-unset": "request.header.x-none"},
            "cache": {"invalidation": {}}})
        .to_string();
        let mut emu = Emulator::load();
        assert!(emu.vm_start());
        emu.fail(name, INTERNAL_FAILURE, None);
        let configured = emu.configure(&config);
        assert_eq!(configured, name != "proxy_get_buffer_bytes", "{name}");
        emu.tick();
        let props: &[(&str, &[u8])] = &[("source\0address", b"10.0.0.7:1")];
        let (first, _) = emu.request_with("/orders?access_token=tok", &[("x-a", "1")], props);
        let lookups: Vec<u32> = emu
            .http_calls()
            .iter()
            .map(|c| c.token)
            .filter(|t| *t != 0)
            .collect();
        for token in lookups {
            emu.respond(token, Some(200), &profile("tok"));
        }
        let (second, _) = emu.request_with("/orders?access_token=tok", &[("x-a", "1")], props);
        let (faulted, _) = emu.request("/orders", &[]);
        emu.advance_ms(1000);
        emu.tick();
        for id in [first, second, faulted] {
            emu.end(id);
        }
        let violations = emu.take_violations();
        assert!(violations.is_empty(), "with {name} failing: {violations:?}");
        // A failure was actually answered.
        assert!(
            emu.calls()
                .iter()
                .any(|r| r.call.name() == name && r.status == INTERNAL_FAILURE),
            "{name} was never called"
        );
    }
}
