//! The request variables a `ref` reads: header bytes, the query string, a
//! form body, percent-decoding. Input, one part per line: the variable
//! names (space-separated), the method, the `:path`, then `name: value`
//! header lines up to an empty line, then the form body.
#![no_main]

use libfuzzer_sys::fuzz_target;
use oauthv2info_core::{
    is_valid_header_value, percent_decode, percent_encode, Headers, RequestInfo, RequestVar,
};

/// Variables every input is read with, beside its own.
const ALWAYS: &[&str] = &[
    "request.verb",
    "request.path",
    "request.uri",
    "request.querystring",
    "client.ip",
    "request.header.authorization",
    "request.header.x-a.2",
    "request.header.x-a.values.count",
    "request.header.x-a.values.string",
    "request.queryparam.access_token",
    "request.queryparam.a.2",
    "request.formparam.access_token",
    "request.formparam.a.1",
];

fuzz_target!(|data: &[u8]| {
    let mut lines = data.splitn(4, |&b| b == b'\n');
    let names = String::from_utf8_lossy(lines.next().unwrap_or_default()).into_owned();
    let method = lines.next().unwrap_or_default().to_vec();
    let path = lines.next().unwrap_or_default().to_vec();
    let rest = lines.next().unwrap_or_default();
    let (head, body) = match rest.windows(2).position(|w| w == b"\n\n") {
        Some(at) => (&rest[..at], Some(rest[at + 2..].to_vec())),
        None => (rest, None),
    };
    let headers: Vec<(String, Vec<u8>)> = head
        .split(|&b| b == b'\n')
        .filter_map(|line| {
            let colon = line.iter().position(|&b| b == b':')?;
            let name = String::from_utf8_lossy(&line[..colon]).to_ascii_lowercase();
            let value = line[colon + 1..]
                .strip_prefix(b" ")
                .unwrap_or(&line[colon + 1..]);
            Some((name, value.to_vec()))
        })
        .collect();
    let request = RequestInfo {
        method,
        path,
        headers: Headers::All(headers),
        client_ip: Some("127.0.0.1".into()),
        form_body: body,
        path_read: false,
        method_read: false,
    };
    let mut out = String::new();
    for name in names.split(' ').chain(ALWAYS.iter().copied()) {
        let Some(var) = RequestVar::parse(name) else {
            continue;
        };
        out.clear();
        if request.resolve_into(&var, &mut out) {
            // What a ref resolves to survives an encode/decode round trip,
            // and the header check agrees with Envoy's rule.
            assert_eq!(percent_decode(&percent_encode(&out)), out);
            let refused = out.bytes().any(|b| (b < 0x20 && b != b'\t') || b == 0x7f);
            assert_eq!(is_valid_header_value(out.as_bytes()), !refused, "{out:?}");
        }
    }
});
