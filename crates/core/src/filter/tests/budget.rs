//! The lookup budget for tokens not seen before
//! (docs/decisions.md#floods-and-overload).

use super::*;
/// A budget of 2 lookups, refilled at 10 a second.
fn budgeted() -> Harness {
    Harness::new(json!({"policies": [GET],
        "token_service": {"lookup_budget": {"per_second": 10, "burst": 2}}}))
}

fn refused(h: &Harness, id: u32) -> bool {
    h.req(id).reply.as_ref().is_some_and(|r| r.0 == 503)
        && h.req(id).state("fault.name").as_deref() == Some("token_service_unavailable")
}

#[test]
fn unseen_tokens_past_the_budget_fail_at_once_without_a_call() {
    let mut h = budgeted();
    assert_eq!(h.request(10, "/x?access_token=a", &[]), Action::Pause);
    assert_eq!(h.request(11, "/x?access_token=b", &[]), Action::Pause);
    assert_eq!(h.host.callouts.len(), 2);
    // The third unseen token: the budget is spent.
    assert_eq!(h.request(12, "/x?access_token=c", &[]), Action::Pause);
    assert_eq!(h.host.callouts.len(), 2, "no call");
    assert!(refused(&h, 12));
    assert_eq!(h.worker.paused(), 2);
    h.tick();
    assert_eq!(h.host.metric("lookups_refused"), 1);
    assert_eq!(h.host.metric("callout_failures"), 0);
    assert_eq!(h.host.metric("faults.token_service_unavailable"), 1);
    // A tenth of a second later, one more.
    h.host.now += 100;
    assert_eq!(h.request(13, "/x?access_token=d", &[]), Action::Pause);
    assert_eq!(h.host.callouts.len(), 3);
    assert_eq!(h.request(14, "/x?access_token=e", &[]), Action::Pause);
    assert!(refused(&h, 14));
}

#[test]
fn a_cached_or_once_seen_valid_token_is_never_refused() {
    let mut h = budgeted();
    h.request(10, "/x?access_token=good", &[]);
    h.respond(
        h.last_callout().token,
        Some(200),
        &profile("good", json!({})),
    );
    assert_eq!(h.req(10).resumed, 1);
    h.request(11, "/x?access_token=x1", &[]);
    h.request(12, "/x?access_token=x2", &[]);
    assert!(refused(&h, 12), "spent");
    // Cached: a hit.
    assert_eq!(h.request(13, "/x?access_token=good", &[]), Action::Continue);
    // Its entry expired (the TTL, 30 s by default), the budget spent:
    // looked up all the same, since this Envoy saw it valid.
    h.host.now += 30_001;
    for (id, token) in [(14, "y1"), (15, "y2")] {
        h.request(id, &format!("/x?access_token={token}"), &[]);
    }
    h.request(16, "/x?access_token=y3", &[]);
    assert!(refused(&h, 16), "spent again");
    let n = h.host.callouts.len();
    assert_eq!(h.request(17, "/x?access_token=good", &[]), Action::Pause);
    assert_eq!(h.host.callouts.len(), n + 1, "a lookup, not refused");
    // An unknown token's negative entry does not count as seen.
    h.request(18, "/x?access_token=nope", &[]);
    assert!(refused(&h, 18));
}

#[test]
fn coalesced_lookups_of_one_token_count_once() {
    let mut h = budgeted();
    for id in 10..15 {
        assert_eq!(h.request(id, "/x?access_token=same", &[]), Action::Pause);
    }
    assert_eq!(h.host.callouts.len(), 1, "one lookup");
    assert_eq!(h.request(15, "/x?access_token=other", &[]), Action::Pause);
    assert_eq!(h.host.callouts.len(), 2, "the budget's second");
    h.respond(h.host.callouts[0].token, Some(200), UNKNOWN);
    for id in 10..15 {
        assert!(!refused(&h, id), "{id}: the token's own answer");
        assert_eq!(
            h.req(id).state("fault.name").as_deref(),
            Some("invalid_access_token")
        );
    }
    // A call sent again after no answer is still the one lookup.
    h.respond(h.host.callouts[1].token, None, "");
    assert_eq!(h.host.callouts.len(), 3, "sent again, not refused");
}

#[test]
fn per_second_0_turns_the_budget_off() {
    let mut h = Harness::new(json!({"policies": [GET],
        "token_service": {"lookup_budget": {"per_second": 0}}}));
    for id in 10..2_010 {
        h.request(id, &format!("/x?access_token=t{id}"), &[]);
    }
    assert_eq!(h.host.callouts.len(), 2_000);
}
