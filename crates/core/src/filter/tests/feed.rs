//! Cache invalidation: the change-feed poller and what its pages do to
//! the cache (docs/decisions.md#cache-invalidation).

use super::*;
const FEED_POLL_MS: u32 = 200;

fn invalidating() -> Value {
    json!({"policies": [GET],
           "token_service": {"cluster": "ts", "credentials": "Bearer k", "timeout_ms": 500},
           "cache": {"ttl_ms": 300_000,
                     "invalidation": {"poll_ms": FEED_POLL_MS, "max_stale_ms": 1_000}}})
}

fn feed_page(changes: &[(&str, &str)], next: i64) -> String {
    let list: Vec<Value> = changes
        .iter()
        .enumerate()
        .map(|(i, (kind, token))| {
            let kind = oauthv2info_names::TokenKind::from_hint(kind).unwrap();
            json!({"cursor": next - (changes.len() - 1 - i) as i64, "kind": kind.hint(),
                   "hash": oauthv2info_names::token_hash_hex(kind, token.as_bytes()), "op": "revoke"})
        })
        .collect();
    json!({"changes": list, "next": next, "oldest": 1}).to_string()
}

impl Harness {
    /// The last callout's `:path`.
    fn last_path(&self) -> String {
        self.last_callout()
            .headers
            .iter()
            .find(|(k, _)| k == ":path")
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    }

    /// A tick whose poll (the harness's poller holds the lease) gets `body`.
    fn poll_answered(&mut self, status: u16, body: &str) {
        let before = self.host.callouts.len();
        self.tick();
        assert_eq!(self.host.callouts.len(), before + 1, "the tick polls");
        assert!(
            self.last_path().starts_with("/v1/changes?after="),
            "{}",
            self.last_path()
        );
        let token = self.last_callout().token;
        self.respond(token, Some(status), body);
    }

    /// A request for `token` that is answered by the fake token service
    /// (when it calls out): true when it was a hit.
    fn lookup(&mut self, id: u32, token: &str) -> bool {
        let before = self.host.callouts.len();
        let action = self.request(id, &format!("/x?access_token={token}"), &[]);
        if action == Action::Continue && self.host.callouts.len() == before {
            return true;
        }
        let t = self.last_callout().token;
        self.respond(t, Some(200), &profile(token, json!({})));
        false
    }
}

#[test]
fn one_poller_per_envoy_reads_the_feed_from_its_cursor() {
    let mut h = Harness::new(invalidating());
    assert_eq!(
        h.host.tick_ms, FEED_POLL_MS,
        "the tick runs at the poll period"
    );
    h.poll_answered(200, &feed_page(&[], 0));
    let callout = h.host.callouts.last().unwrap().clone();
    let header = |n: &str| {
        callout
            .headers
            .iter()
            .find(|(k, _)| k == n)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(header(":method").as_deref(), Some("GET"));
    assert_eq!(
        header(":path").as_deref(),
        Some("/v1/changes?after=0&limit=500")
    );
    assert_eq!(header("authorization").as_deref(), Some("Bearer k"));

    // A second VM (another worker) on the same Envoy: the lease is taken,
    // it does not poll; it learns the feed's state from the record.
    let mut other = Worker::new(ROOT);
    assert!(other.configure(&mut h.host, invalidating().to_string().as_bytes()));
    let before = h.host.callouts.len();
    other.on_tick(&mut h.host);
    assert_eq!(h.host.callouts.len(), before, "one poller per Envoy");
    assert_ne!(other.feed.me, h.worker.feed.me);
    assert_eq!(
        other.feed.view.fresh_ms, NOW,
        "up to date as of the first poll"
    );

    // Every poll_ms, from the cursor the feed gave.
    h.host.now += i64::from(FEED_POLL_MS);
    h.poll_answered(200, &feed_page(&[("access_token", "x")], 41));
    assert!(h.last_path().ends_with("after=0&limit=500"));
    let polls = h.host.callouts.len();
    h.tick();
    assert_eq!(h.host.callouts.len(), polls, "poll_ms not yet passed");
    h.host.now += i64::from(FEED_POLL_MS);
    h.poll_answered(200, &feed_page(&[], 41));
    assert_eq!(h.last_path(), "/v1/changes?after=41&limit=500");

    // The poller stops (its VM is gone): once its lease lapses, the other
    // takes over, from the same cursor.
    h.host.now += 10_000;
    other.on_tick(&mut h.host);
    assert_eq!(h.last_path(), "/v1/changes?after=41&limit=500");
    assert_eq!(h.last_callout().context, ROOT);
}

/// Polls keep to `poll_ms` from one send to the next, whatever the delay
/// of the answer (150 ms here), and a tick that fires a little early still polls (a 1 s
/// poll on a 1 s tick ran every other tick when the period counted from
/// the answer: revocations took up to 2 s instead of poll_ms + a call).
#[test]
fn polls_keep_their_period_from_send_to_send() {
    let mut h = Harness::new(invalidating());
    h.poll_answered(200, &feed_page(&[], 0));
    let mut sent = h.host.now;
    for _ in 0..3 {
        h.host.now = sent + i64::from(FEED_POLL_MS) - 3;
        let before = h.host.callouts.len();
        h.tick();
        assert_eq!(h.host.callouts.len(), before + 1, "the tick polls");
        sent = h.host.now;
        let token = h.last_callout().token;
        h.host.now = sent + 150;
        h.respond(token, Some(200), &feed_page(&[], 0));
    }
    // Not long before it is due.
    h.host.now = sent + i64::from(FEED_POLL_MS) / 4;
    let before = h.host.callouts.len();
    h.tick();
    assert_eq!(h.host.callouts.len(), before, "poll_ms has not passed");
}

#[test]
fn a_changed_token_is_looked_up_again_and_others_stay_cached() {
    let mut h = Harness::new(invalidating());
    h.poll_answered(200, &feed_page(&[], 0));
    assert!(!h.lookup(10, "tok-a"));
    assert!(!h.lookup(11, "tok-b"));
    assert!(h.lookup(12, "tok-a"), "cached");
    h.host.now += i64::from(FEED_POLL_MS);
    h.poll_answered(200, &feed_page(&[("access_token", "tok-a")], 5));
    h.tick();
    assert_eq!(h.host.metric("feed.invalidations"), 1);
    // (A callout sent in the millisecond a change was applied may have
    // been sent before it: its answer is not cached. The clock moves on.)
    h.host.now += 1;
    assert!(!h.lookup(13, "tok-a"), "dropped: a callout");
    assert!(h.lookup(14, "tok-a"), "cached again");
    assert!(h.lookup(15, "tok-b"), "another token stays");
    // A change to a token this Envoy never cached writes nothing.
    let writes = h.host.count("set_shared_data");
    h.host.now += i64::from(FEED_POLL_MS);
    h.poll_answered(200, &feed_page(&[("access_token", "never-seen")], 6));
    assert_eq!(
        h.host.count("set_shared_data") - writes,
        2,
        "the lease and the record, no tombstone"
    );
}

#[test]
fn no_hit_is_served_once_the_feed_is_stale_and_hits_resume_with_it() {
    let mut h = Harness::new(invalidating());
    assert!(!h.lookup(10, "tok"), "the feed never read: no hit");
    assert!(!h.lookup(11, "tok"), "still no hit before the first poll");
    h.poll_answered(200, &feed_page(&[], 0));
    assert!(h.lookup(12, "tok"));
    // The token service stops answering the feed.
    for _ in 0..5 {
        h.host.now += i64::from(FEED_POLL_MS);
        h.poll_answered(503, r#"{"error":"store_unavailable"}"#);
    }
    assert_eq!(h.host.now, NOW + 1_000);
    h.tick();
    assert!(h.host.metric("feed.errors") >= 5);
    assert!(!h.lookup(13, "tok"), "max_stale_ms passed: a callout");
    h.tick();
    assert!(h.host.metric("cache.stale") >= 1);
    // The feed answers again: hits resume.
    h.host.now += i64::from(FEED_POLL_MS);
    h.poll_answered(200, &feed_page(&[], 0));
    assert!(h.lookup(14, "tok"));
}

#[test]
fn a_full_page_is_followed_at_once_and_hits_wait_until_the_end() {
    let mut plugin = invalidating();
    plugin["cache"]["invalidation"]["limit"] = json!(2);
    let mut h = Harness::new(plugin);
    h.poll_answered(
        200,
        &feed_page(&[("access_token", "a"), ("access_token", "b")], 2),
    );
    // A full page: the next one is asked for at once, not on the tick.
    assert_eq!(h.last_path(), "/v1/changes?after=2&limit=2");
    assert_eq!(h.worker.feed.view.fresh_ms, i64::MIN, "not up to date yet");
    let token = h.last_callout().token;
    h.respond(token, Some(200), &feed_page(&[("access_token", "c")], 3));
    assert_eq!(h.worker.feed.view.fresh_ms, NOW);
}

#[test]
fn a_410_drops_the_whole_cache_and_reads_the_feed_again() {
    let mut h = Harness::new(invalidating());
    h.poll_answered(200, &feed_page(&[], 7));
    assert!(!h.lookup(10, "tok"));
    assert!(h.lookup(11, "tok"));
    h.host.now += i64::from(FEED_POLL_MS);
    h.poll_answered(410, r#"{"error":"cursor_expired","oldest":100}"#);
    assert_eq!(h.host.metric("feed.resets"), 0, "counted on the tick");
    assert_eq!(
        h.last_path(),
        "/v1/changes?after=0&limit=500",
        "from the start, at once"
    );
    let token = h.last_callout().token;
    h.respond(token, Some(200), &feed_page(&[], 120));
    h.tick();
    assert_eq!(h.host.metric("feed.resets"), 1);
    assert!(!h.lookup(12, "tok"), "older than the 410: not served");
    assert!(h.lookup(13, "tok"), "cached again after it");
}

#[test]
fn an_answer_sent_before_a_change_was_applied_is_not_cached() {
    let mut h = Harness::new(invalidating());
    h.poll_answered(200, &feed_page(&[], 0));
    // A lookup goes out; the token is revoked; the poller applies the
    // change (the slot is empty: nothing to drop); then the old answer
    // arrives: it answers its request but is not cached.
    assert_eq!(h.request(10, "/x?access_token=tok", &[]), Action::Pause);
    let lookup = h.last_callout().token;
    h.host.now += i64::from(FEED_POLL_MS);
    h.poll_answered(200, &feed_page(&[("access_token", "tok")], 1));
    h.host.now += 5;
    h.respond(lookup, Some(200), &profile("tok", json!({})));
    assert_eq!(h.req(10).resumed, 1, "the request goes on");
    assert!(!h.lookup(11, "tok"), "but the next one asks again");
    assert!(h.lookup(12, "tok"));
}

#[test]
fn feed_configuration_errors_name_the_field() {
    for (invalidation, field) in [
        (json!({"poll_ms": 50}), "cache.invalidation.poll_ms"),
        (
            json!({"poll_ms": 1000, "max_stale_ms": 1500}),
            "cache.invalidation.max_stale_ms",
        ),
        (json!({"path": "v1/changes"}), "cache.invalidation.path"),
        (
            json!({"path": "/v1/changes?x=1"}),
            "cache.invalidation.path",
        ),
        (json!({"limit": 0}), "cache.invalidation.limit"),
        (json!({"every": 1}), "cache.invalidation.every"),
        (json!(true), "cache.invalidation"),
    ] {
        let e = parse_config(
            json!({"policies": [GET], "cache": {"invalidation": invalidation}})
                .to_string()
                .as_bytes(),
        )
        .unwrap_err();
        assert_eq!(e.element, field, "{e}");
    }
    let e = parse_config(
        json!({"policies": [GET], "cache": {"enabled": false, "invalidation": {}}})
            .to_string()
            .as_bytes(),
    )
    .unwrap_err();
    assert_eq!(e.element, "cache.invalidation");
    let c = parse_config(
        json!({"policies": [GET], "cache": {"invalidation": {}}})
            .to_string()
            .as_bytes(),
    )
    .unwrap();
    let inv = c.cache.invalidation.unwrap();
    assert_eq!(
        (inv.path.as_str(), inv.poll_ms, inv.max_stale_ms, inv.limit),
        ("/v1/changes", 1000, 5000, 500)
    );
}

#[test]
fn a_call_no_token_service_answered_is_sent_again_within_its_timeout() {
    let mut h = Harness::get(&[GET]);
    assert_eq!(h.request(10, "/x?access_token=tok", &[]), Action::Pause);
    let first = h.last_callout().clone();
    // Envoy's own 503 (the connection to that host failed): sent again at
    // once, from the request's context.
    h.respond(
        first.token,
        Some(503),
        "upstream connect error or disconnect/reset before headers. reset reason: connection failure",
    );
    assert_eq!(h.host.callouts.len(), 2, "sent again");
    let second = h.last_callout().clone();
    assert_eq!(second.body, first.body);
    assert_eq!(second.context, 10);
    // A reset after the call was sent (the replica died holding it): sent
    // again after a pause, by the root's tick.
    h.respond(
        second.token,
        Some(503),
        "upstream connect error or disconnect/reset before headers. reset reason: connection termination",
    );
    assert_eq!(h.host.callouts.len(), 2, "not at once");
    h.tick();
    assert_eq!(h.host.callouts.len(), 2, "not before the pause");
    h.host.now += 5;
    h.tick();
    assert_eq!(h.host.callouts.len(), 3, "after it");
    assert_eq!(h.last_callout().body, first.body);
    h.respond(
        h.last_callout().token,
        Some(200),
        &profile("tok", json!({})),
    );
    assert_eq!(h.req(10).resumed, 1);
    assert_eq!(
        h.req(10).state("oauthv2accesstoken.G.scope").as_deref(),
        Some("READ WRITE")
    );

    // A replica that refuses every call: sent again while the timeout (500
    // ms by default, from the first send) lasts, at most 8 times; then the
    // request fails. A reset (no status) counts too.
    let start = h.host.now;
    assert_eq!(h.request(11, "/x?access_token=other", &[]), Action::Pause);
    let n = h.host.callouts.len();
    let mut again = 0;
    while h.fail_once(11, None, "") {
        again += 1;
    }
    // Pauses 0+5+10+20+40+80+160 ms; the next (320) would pass 500 ms.
    assert_eq!(again, 7);
    assert_eq!(h.host.callouts.len(), n + 7);
    assert!(h.host.now - start < 500);
    assert_eq!(
        h.req(11).reply_json()["fault"]["detail"]["errorcode"],
        "keymanagement.service.token_service_unavailable"
    );
    // A request that ends while its call waits to be sent again: never sent.
    assert_eq!(h.request(12, "/x?access_token=third", &[]), Action::Pause);
    h.respond(h.last_callout().token, None, "");
    h.respond(h.last_callout().token, None, "");
    let n = h.host.callouts.len();
    h.end(12);
    h.host.now += 1_000;
    h.tick();
    assert_eq!(h.host.callouts.len(), n);
    assert_eq!(h.worker.paused(), 0);

    // The token service's own 503, a timeout, and the cluster's circuit
    // breaker refusing the call (another would be refused too) are not
    // sent again.
    for (status, body) in [
        (Some(503), r#"{"error":"store_unavailable"}"#),
        (Some(504), "upstream request timeout"),
        (
            Some(503),
            "upstream connect error or disconnect/reset before headers. reset reason: overflow",
        ),
    ] {
        let n = h.host.callouts.len();
        let id = 20 + n as u32;
        assert_eq!(
            h.request(id, &format!("/x?access_token=t{n}"), &[]),
            Action::Pause
        );
        assert!(!h.fail_once(id, status, body), "{status:?}: not sent again");
        assert_eq!(h.host.callouts.len(), n + 1);
        assert!(h.req(id).reply.is_some());
    }
}

#[test]
fn a_first_start_begins_at_the_feeds_head() {
    let mut h = Harness::new(invalidating());
    // A lookup before the first poll: cached, but not served (and older
    // than the poll's answer, so dropped with everything before the head).
    assert!(!h.lookup(10, "tok"));
    h.host.now += 5;
    let body = json!({"changes": [
            {"cursor": 1, "kind": "access_token", "hash": oauthv2info_names::token_hash_hex(TokenKind::AccessToken, b"tok"), "op": "import"}],
        "next": 1, "oldest": 1, "head": 9_000}).to_string();
    h.poll_answered(200, &body);
    assert_eq!(
        h.host.metric("feed.invalidations"),
        0,
        "the backlog is not read"
    );
    h.host.now += i64::from(FEED_POLL_MS);
    h.poll_answered(200, &feed_page(&[], 9_000));
    assert_eq!(
        h.last_path(),
        "/v1/changes?after=9000&limit=500",
        "from the head on"
    );
    h.host.now += 1;
    assert!(
        !h.lookup(11, "tok"),
        "the entry from before the start is not served"
    );
    h.host.now += 1;
    assert!(h.lookup(12, "tok"));
}
