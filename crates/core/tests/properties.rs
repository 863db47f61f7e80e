//! Round trips and invariants over generated inputs (proptest): the
//! encodings the filter writes and reads back (the metadata bridge, percent
//! escapes, profiles, cache entries, the feed record), and the `publish`
//! patterns against their definition. The fuzz targets (fuzz/) throw
//! arbitrary bytes at the decoders; these hold what must come back.

use std::collections::{BTreeMap, HashMap};

use oauthv2info_core::{decode_bridge, encode_bridge, Family, Publish};
use oauthv2info_core::{encode_cache_entry, EntryHead};
use oauthv2info_core::{percent_decode, percent_encode};
use oauthv2info_core::{FeedState, Recent};
use oauthv2info_core::{Lookup, ProfileBuilder};
use oauthv2info_names::variables::Field;
use oauthv2info_names::TokenKind;
use proptest::prelude::*;

fn kind() -> impl Strategy<Value = TokenKind> {
    (0..TokenKind::ALL.len()).prop_map(|i| TokenKind::ALL[i])
}

/// Dot-separated names over a small alphabet, so that patterns and names
/// meet often.
fn name() -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec(prop::sample::select(vec!["a", "b", "c"]), 1..5)
        .prop_map(|v| v.into_iter().map(String::from).collect())
}

fn pattern() -> impl Strategy<Value = Vec<String>> {
    (
        prop::collection::vec(prop::sample::select(vec!["a", "b", "*"]), 0..4),
        any::<bool>(),
    )
        .prop_filter("not empty", |(v, rest)| !v.is_empty() || *rest)
        .prop_map(|(v, rest)| {
            let mut v: Vec<String> = v.into_iter().map(String::from).collect();
            if rest {
                v.push("**".into());
            }
            v
        })
}

/// The definition: `*` is exactly one segment, `**` (last) one or more.
fn defined_match(pattern: &[String], name: &[String]) -> bool {
    match (pattern.split_first(), name.split_first()) {
        (None, None) => true,
        (Some((p, _)), _) if p == "**" => !name.is_empty(),
        (Some((p, ps)), Some((n, ns))) => (p == "*" || p == n) && defined_match(ps, ns),
        _ => false,
    }
}

proptest! {
    #[test]
    fn the_bridge_encoding_round_trips(
        namespace in ".*",
        pairs in prop::collection::vec((".*", ".*"), 0..8),
    ) {
        let encoded = encode_bridge(&namespace, pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        prop_assert_eq!(decode_bridge(&encoded), Some((namespace, pairs)));
    }

    #[test]
    fn percent_escapes_round_trip(text in ".*") {
        let encoded = percent_encode(&text);
        prop_assert!(encoded.bytes().all(|b| b.is_ascii_graphic()), "{}", encoded);
        prop_assert_eq!(percent_decode(&encoded), text);
    }

    /// A profile keeps the last value of each field and attribute, its
    /// attributes in name order, and comes back from a cache entry as it
    /// went in.
    #[test]
    fn profiles_keep_their_values_and_survive_the_cache(
        fields in prop::collection::vec((0..Field::ALL.len(), ".{0,40}"), 0..12),
        attributes in prop::collection::vec(("[a-z][a-z.]{0,11}", ".{0,40}"), 0..12),
        active in any::<bool>(),
        kind in kind(),
        token in "[A-Za-z0-9]{1,40}",
    ) {
        let mut b = ProfileBuilder::new(active, false);
        for (i, v) in &fields {
            b.field(Field::ALL[*i], v);
        }
        for (k, v) in &attributes {
            b.attribute(k, v);
        }
        let profile = b.finish();
        let view = profile.view();
        prop_assert!(view.validate());
        prop_assert_eq!(view.active(), active);
        let last: HashMap<usize, &String> = fields.iter().map(|(i, v)| (*i, v)).collect();
        for (i, v) in &last {
            prop_assert_eq!(view.field(Field::ALL[*i]), Some(v.as_bytes()));
        }
        let want: BTreeMap<&[u8], &[u8]> =
            attributes.iter().map(|(k, v)| (k.as_bytes(), v.as_bytes())).collect();
        let got: Vec<(&[u8], &[u8])> = view.attributes().collect();
        prop_assert_eq!(got, want.into_iter().collect::<Vec<_>>());

        let entry = encode_cache_entry(kind, token.as_bytes(), 2_000, 1_000, Some(&profile));
        let head = EntryHead::parse(&entry).expect("an encoded entry parses");
        prop_assert!(head.answers(kind, token.as_bytes(), 1_999));
        prop_assert!(!head.answers(kind, token.as_bytes(), 2_000), "expired at its deadline");
        prop_assert_eq!(head.lookup(), Some(Lookup::Known(view)));
    }

    #[test]
    fn the_feed_record_round_trips(
        owner in any::<u64>(),
        times in prop::array::uniform6(any::<i64>()),
        recent in prop::collection::vec((any::<u64>(), kind(), any::<i64>()), 0..20),
        synced in any::<bool>(),
    ) {
        let state = FeedState {
            owner,
            lease_until_ms: times[0],
            cursor: times[1],
            fresh_ms: times[2],
            flush_before_ms: times[3],
            horizon_ms: times[4],
            recent: recent
                .into_iter()
                .map(|(fingerprint, kind, at_ms)| Recent { fingerprint, kind, at_ms })
                .collect(),
            synced,
        };
        prop_assert_eq!(FeedState::decode(&state.encode()), Some(state));
    }

    /// `publish` patterns match as their definition says, and what they
    /// say of a whole family of names (a prefix and any custom attribute
    /// under it) agrees with matching each name.
    #[test]
    fn publish_patterns_match_their_definition(
        patterns in prop::collection::vec(pattern(), 1..4),
        names in prop::collection::vec(name(), 1..8),
        prefix in name(),
    ) {
        let texts: Vec<String> = patterns.iter().map(|p| p.join(".")).collect();
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let publish = Publish::new(&refs).expect("generated patterns are valid");
        for n in &names {
            let want = patterns.iter().any(|p| defined_match(p, n));
            prop_assert_eq!(publish.matches(&n.join(".")), want, "{:?} {:?}", texts, n);
        }
        let family = publish.family(&format!("{}.", prefix.join(".")));
        for n in &names {
            let full: Vec<String> = prefix.iter().chain(n.iter()).cloned().collect();
            let m = publish.matches(&full.join("."));
            match family {
                Family::All => prop_assert!(m, "{:?}: All, but {:?} is not published", texts, full),
                Family::None => prop_assert!(!m, "{:?}: None, but {:?} is published", texts, full),
                Family::Some => {}
            }
        }
    }
}
