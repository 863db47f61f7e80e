//! The metadata bridge's encoding (netstrings: the namespace, then each
//! name and value), which the Lua filter decodes: any bytes decode or are
//! refused; whatever is encoded decodes to itself. Input for the round
//! trip: NUL-separated strings (namespace, name, value, ...).
#![no_main]

use libfuzzer_sys::fuzz_target;
use oauthv2info_core::{decode_bridge, encode_bridge};

fuzz_target!(|data: &[u8]| {
    let _ = decode_bridge(data);
    let text = String::from_utf8_lossy(data);
    let mut parts = text.split('\0');
    let namespace = parts.next().unwrap_or_default().to_string();
    let rest: Vec<&str> = parts.collect();
    let pairs: Vec<(String, String)> = rest
        .chunks_exact(2)
        .map(|c| (c[0].to_string(), c[1].to_string()))
        .collect();
    let encoded = encode_bridge(
        &namespace,
        pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())),
    );
    assert_eq!(decode_bridge(&encoded), Some((namespace, pairs)));
});
