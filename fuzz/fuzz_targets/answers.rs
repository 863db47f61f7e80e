//! What the token service answers (RFC 7662 introspection, the attribute
//! merge): any status and body is a profile, "unknown", a fault or a
//! service failure; never a panic. A profile that parses survives the
//! cache: stored, read back, the same bytes. Input: a byte for the token
//! kind, a byte for the status, then the body.
#![no_main]

use libfuzzer_sys::fuzz_target;
use oauthv2info_core::{encode_cache_entry, EntryHead};
use oauthv2info_core::{parse_introspection, parse_set_response, Answer, Lookup, Profile};
use oauthv2info_names::TokenKind;

const NOW: i64 = 1_764_633_600_000;
const TOKEN: &str = "tok-fuzz";
const STATUSES: [Option<u16>; 8] = [
    Some(200),
    Some(200),
    Some(200),
    Some(400),
    Some(401),
    Some(404),
    Some(503),
    None,
];

fn survives_the_cache(kind: TokenKind, profile: &Profile) {
    assert!(
        profile.view().validate(),
        "a parsed profile's spans lie inside it"
    );
    let entry = encode_cache_entry(kind, TOKEN.as_bytes(), NOW + 1000, NOW, Some(profile));
    let head = EntryHead::parse(&entry).expect("an encoded entry parses");
    assert!(head.answers(kind, TOKEN.as_bytes(), NOW));
    match head.lookup() {
        Some(Lookup::Known(p)) => assert_eq!(p, profile.view()),
        other => panic!("cached profile read back as {other:?}"),
    }
}

fuzz_target!(|data: &[u8]| {
    let [k, s, body @ ..] = data else {
        return;
    };
    let kind = TokenKind::ALL[usize::from(*k) % TokenKind::ALL.len()];
    let status = STATUSES[usize::from(*s) % STATUSES.len()];
    if let Ok(Answer::Known(profile)) = parse_introspection(status, body, kind, TOKEN, NOW) {
        survives_the_cache(kind, &profile);
    }
    if let Ok(Ok(profile)) = parse_set_response(status, body, TOKEN, NOW) {
        survives_the_cache(TokenKind::AccessToken, &profile);
    }
});
