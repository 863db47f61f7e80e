//! The root context's tick: the change-feed poll (cache invalidation) and
//! the metrics handed over.

use crate::emulator::{Action, Call, Emulator, ROOT};
use crate::{profile, GET};
use oauthv2info_names::{token_hash_hex, TokenKind};
use serde_json::json;

fn invalidation_config() -> String {
    json!({"policies": [GET], "cache": {"invalidation": {}}}).to_string()
}

/// The last callout, which must be a poll of the feed after `cursor`.
fn poll(emu: &Emulator, cursor: i64) -> u32 {
    let c = emu.http_calls().last().cloned().expect("a poll");
    let headers: Vec<(&str, &str)> = c
        .headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let path = format!("/v1/changes?after={cursor}&limit=500");
    assert_eq!(
        headers,
        vec![
            (":method", "GET"),
            (":path", path.as_str()),
            (":authority", "token_service"),
            ("accept", "application/json"),
        ]
    );
    assert!(c.body.is_empty());
    assert_eq!((c.cluster.as_str(), c.timeout_ms), ("token_service", 500));
    c.token
}

#[test]
fn the_tick_polls_the_change_feed_and_drops_a_changed_entry() {
    let mut emu = Emulator::start(&invalidation_config());
    assert_eq!(emu.tick_ms(ROOT), 1000);
    // The feed's lag gauge exists only with invalidation.
    assert_eq!(emu.metric("oauthv2info.feed.lag_ms"), Some(0));

    // First tick: this root context takes the lease and polls from 0.
    emu.tick();
    let records: Vec<_> = emu
        .calls()
        .iter()
        .filter(|r| r.call.name() == "proxy_http_call")
        .collect();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].context, ROOT);
    let token = poll(&emu, 0);
    // A first answer: start at the feed's head.
    emu.respond(
        token,
        Some(200),
        r#"{"changes": [], "next": 0, "head": 41}"#,
    );

    // A token is looked up, cached, then served from the cache.
    let (first, _) = emu.request("/orders?access_token=tok", &[]);
    let lookup = emu.http_calls().last().unwrap().token;
    emu.respond(lookup, Some(200), &profile("tok"));
    emu.end(first);
    let (_, action) = emu.request("/orders?access_token=tok", &[]);
    assert_eq!(action, Action::Continue, "a hit while the feed is fresh");

    // A second later the next poll, after the head; it lists the token.
    emu.advance_ms(1000);
    let calls_before = emu.http_calls().len();
    emu.tick();
    assert_eq!(emu.http_calls().len(), calls_before + 1);
    let token = poll(&emu, 41);
    let hash = token_hash_hex(TokenKind::AccessToken, b"tok");
    emu.clear_calls();
    emu.respond(
        token,
        Some(200),
        &json!({"changes": [{"cursor": 42, "kind": "access_token", "hash": hash, "op": "revoke"}], "next": 42, "head": 42})
            .to_string(),
    );
    // The entry is overwritten (a tombstone: shared data cannot delete)
    // and the feed record moves on, both with successful writes.
    let writes: Vec<&Call> = emu
        .calls()
        .iter()
        .filter(|r| r.call.name() == "proxy_set_shared_data" && r.status == 0)
        .map(|r| &r.call)
        .collect();
    assert_eq!(writes.len(), 2, "{writes:?}");

    // The next request asks the token service again.
    emu.clear_calls();
    let (_, action) = emu.request("/orders?access_token=tok", &[]);
    assert_eq!(action, Action::Pause);
    assert_eq!(emu.count("proxy_http_call"), 1);

    emu.tick();
    assert_eq!(emu.metric("oauthv2info.feed.polls"), Some(2));
    assert_eq!(emu.metric("oauthv2info.feed.invalidations"), Some(1));
    assert_eq!(emu.metric("oauthv2info.feed.errors"), Some(0));
}

#[test]
fn a_failed_poll_is_counted_and_retried_on_a_later_tick() {
    let mut emu = Emulator::start(&invalidation_config());
    emu.tick();
    let token = poll(&emu, 0);
    emu.respond(token, Some(500), "oops");
    // Not again before the poll period is over.
    emu.advance_ms(500);
    emu.tick();
    assert_eq!(emu.http_calls().len(), 1);
    emu.advance_ms(500);
    emu.tick();
    assert_eq!(emu.http_calls().len(), 2);
    poll(&emu, 0);
    assert_eq!(emu.metric("oauthv2info.feed.errors"), Some(1));
}
