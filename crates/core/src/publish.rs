//! What a request publishes (docs/configuration.md#publishing): the
//! `publish` patterns, and the encodings that carry published variables to
//! Envoy's dynamic metadata (docs/configuration.md#dynamic-metadata): the
//! Lua bridge's one filter-state entry, and the values of the internal
//! headers that `header_to_metadata` reads.

/// Filter-state key (without Envoy's `wasm.` prefix) of the entry the Lua
/// bridge (envoy/oauthv2info-after.lua; envoy/oauthv2info-before.lua for
/// requests the filter ends with a fault) turns into dynamic metadata.
pub const METADATA_BRIDGE_KEY: &str = "oauthv2info.metadata";

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Exact(String),
    /// `*`: exactly one segment.
    One,
    /// `**`: one or more segments (last only).
    Rest,
}

/// The `publish` patterns: exact names, `*` for one dot-separated segment,
/// `**` for the rest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publish {
    patterns: Vec<Vec<Segment>>,
    everything: bool,
}

/// Which names under a prefix the patterns publish (for custom attribute
/// families, whose names are not known at load time).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// No name under the prefix.
    None,
    /// Every name under the prefix.
    All,
    /// Some: match each name at run time.
    Some,
}

impl Publish {
    pub fn everything() -> Self {
        Publish {
            patterns: vec![vec![Segment::Rest]],
            everything: true,
        }
    }

    /// Compiles patterns; on error, the index of the bad one and the problem.
    pub fn new(patterns: &[&str]) -> Result<Self, (usize, String)> {
        let mut compiled = Vec::with_capacity(patterns.len());
        for (i, pattern) in patterns.iter().enumerate() {
            if pattern.trim().is_empty() {
                return Err((i, "is empty".to_string()));
            }
            let parts: Vec<&str> = pattern.split('.').collect();
            let mut segments = Vec::with_capacity(parts.len());
            for (j, part) in parts.iter().enumerate() {
                segments.push(match *part {
                    "" => return Err((i, format!("{pattern:?} has an empty segment"))),
                    "*" => Segment::One,
                    "**" if j + 1 == parts.len() => Segment::Rest,
                    "**" => {
                        return Err((i, format!("{pattern:?}: ** may only be the last segment")))
                    }
                    p if p.contains('*') => {
                        return Err((i, format!("{pattern:?}: * must be a whole segment")))
                    }
                    p => Segment::Exact(p.to_string()),
                });
            }
            compiled.push(segments);
        }
        let everything = compiled.iter().any(|p| p.as_slice() == [Segment::Rest]);
        Ok(Publish {
            patterns: compiled,
            everything,
        })
    }

    pub fn matches(&self, name: &str) -> bool {
        self.everything || self.patterns.iter().any(|p| matches(p, name))
    }

    /// The patterns that name one variable exactly (no wildcard).
    pub fn exact_names(&self) -> impl Iterator<Item = String> + '_ {
        self.patterns
            .iter()
            .filter(|p| p.iter().all(|s| matches!(s, Segment::Exact(_))))
            .map(|p| {
                p.iter()
                    .filter_map(|s| match s {
                        Segment::Exact(s) => Some(s.as_str()),
                        _ => None,
                    })
                    .collect::<Vec<_>>()
                    .join(".")
            })
    }

    /// Which names `prefix` + (one or more segments) the patterns publish;
    /// `prefix` ends with a period.
    pub fn family(&self, prefix: &str) -> Family {
        if self.everything {
            return Family::All;
        }
        let fixed: Vec<&str> = prefix.trim_end_matches('.').split('.').collect();
        let mut some = false;
        for pattern in &self.patterns {
            match family_of(pattern, &fixed) {
                Family::All => return Family::All,
                Family::Some => some = true,
                Family::None => {}
            }
        }
        if some {
            Family::Some
        } else {
            Family::None
        }
    }
}

/// What one pattern publishes of the names `fixed` + (segments...).
fn family_of(pattern: &[Segment], fixed: &[&str]) -> Family {
    for (i, part) in fixed.iter().enumerate() {
        match pattern.get(i) {
            None => return Family::None,
            Some(Segment::Rest) => return Family::All,
            Some(Segment::One) => {}
            Some(Segment::Exact(s)) if s == part => {}
            Some(Segment::Exact(_)) => return Family::None,
        }
    }
    match &pattern[fixed.len().min(pattern.len())..] {
        [] => Family::None,
        [Segment::Rest] => Family::All,
        _ => Family::Some,
    }
}

fn matches(pattern: &[Segment], name: &str) -> bool {
    let mut parts = name.split('.');
    for (i, segment) in pattern.iter().enumerate() {
        match segment {
            Segment::Rest => return parts.next().is_some() || i == 0 && name.is_empty(),
            Segment::One => {
                if parts.next().is_none() {
                    return false;
                }
            }
            Segment::Exact(s) => {
                if parts.next() != Some(s.as_str()) {
                    return false;
                }
            }
        }
    }
    parts.next().is_none()
}

/// Appends one netstring (`<len>:<bytes>,`) to the Lua bridge's entry. The
/// entry is the namespace, then each key and value (lengths in bytes).
pub fn push_netstring(out: &mut Vec<u8>, s: &[u8]) {
    push_decimal(out, s.len());
    out.push(b':');
    out.extend_from_slice(s);
    out.push(b',');
}

fn push_decimal(out: &mut Vec<u8>, mut n: usize) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// Encodes a whole bridge entry (tests and the checker).
pub fn encode_bridge<'a>(
    namespace: &str,
    vars: impl Iterator<Item = (&'a str, &'a str)>,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    push_netstring(&mut out, namespace.as_bytes());
    for (k, v) in vars {
        push_netstring(&mut out, k.as_bytes());
        push_netstring(&mut out, v.as_bytes());
    }
    out
}

/// Decodes a bridge entry (tests and the checker).
pub fn decode_bridge(mut data: &[u8]) -> Option<(String, Vec<(String, String)>)> {
    let mut items = Vec::new();
    while !data.is_empty() {
        let colon = data.iter().position(|&b| b == b':')?;
        let len: usize = std::str::from_utf8(&data[..colon]).ok()?.parse().ok()?;
        let start = colon + 1;
        let end = start.checked_add(len)?;
        if data.get(end) != Some(&b',') {
            return None;
        }
        items.push(String::from_utf8(data[start..end].to_vec()).ok()?);
        data = &data[end + 1..];
    }
    let mut it = items.into_iter();
    let namespace = it.next()?;
    let rest: Vec<String> = it.collect();
    if rest.len() % 2 != 0 {
        return None;
    }
    let pairs = rest
        .chunks(2)
        .map(|c| (c[0].clone(), c[1].clone()))
        .collect();
    Some((namespace, pairs))
}

const BASE64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Writes a metadata header's value into `out`: a `google.protobuf.Value`
/// holding `value` as its `string_value`, serialized, then base64 without
/// padding (what `header_to_metadata` decodes with `type: PROTOBUF_VALUE`,
/// `encode: BASE64`). Any value survives: empty strings, control
/// characters and spaces that a header could not carry as they are.
pub fn encode_metadata_value(value: &[u8], out: &mut Vec<u8>) {
    out.clear();
    // Field 3 (string_value), wire type 2: tag 0x1a, varint length, bytes.
    let mut head = [0u8; 11];
    head[0] = 0x1a;
    let mut n = value.len();
    let mut i = 1;
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            head[i] = byte;
            i += 1;
            break;
        }
        head[i] = byte | 0x80;
        i += 1;
    }
    let total = i + value.len();
    out.reserve(total.div_ceil(3) * 4);
    let byte_at = |k: usize| if k < i { head[k] } else { value[k - i] };
    let mut k = 0;
    while k + 3 <= total {
        let n = (u32::from(byte_at(k)) << 16)
            | (u32::from(byte_at(k + 1)) << 8)
            | u32::from(byte_at(k + 2));
        out.extend_from_slice(&[
            BASE64[(n >> 18) as usize & 63],
            BASE64[(n >> 12) as usize & 63],
            BASE64[(n >> 6) as usize & 63],
            BASE64[n as usize & 63],
        ]);
        k += 3;
    }
    match total - k {
        1 => {
            let n = u32::from(byte_at(k)) << 16;
            out.extend_from_slice(&[
                BASE64[(n >> 18) as usize & 63],
                BASE64[(n >> 12) as usize & 63],
            ]);
        }
        2 => {
            let n = (u32::from(byte_at(k)) << 16) | (u32::from(byte_at(k + 1)) << 8);
            out.extend_from_slice(&[
                BASE64[(n >> 18) as usize & 63],
                BASE64[(n >> 12) as usize & 63],
                BASE64[(n >> 6) as usize & 63],
            ]);
        }
        _ => {}
    }
}

/// Decodes [`encode_metadata_value`] (tests).
pub fn decode_metadata_value(encoded: &[u8]) -> Option<Vec<u8>> {
    let mut bits = 0u32;
    let mut count = 0;
    let mut bytes = Vec::new();
    for &c in encoded {
        let v = BASE64.iter().position(|&b| b == c)? as u32;
        bits = (bits << 6) | v;
        count += 6;
        if count >= 8 {
            count -= 8;
            bytes.push((bits >> count) as u8);
            bits &= (1 << count) - 1;
        }
    }
    let (&tag, rest) = bytes.split_first()?;
    if tag != 0x1a {
        return None;
    }
    let mut len = 0usize;
    let mut shift = 0;
    let mut i = 0;
    loop {
        let b = *rest.get(i)?;
        len |= usize::from(b & 0x7f) << shift;
        shift += 7;
        i += 1;
        if b & 0x80 == 0 {
            break;
        }
    }
    let value = rest.get(i..)?;
    (value.len() == len).then(|| value.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns() {
        let p = Publish::new(&["oauthv2accesstoken.*.scope", "fault.name", "oauthV2.**"]).unwrap();
        assert!(p.matches("oauthv2accesstoken.Get.scope"));
        assert!(!p.matches("oauthv2accesstoken.Get.scope.x"));
        assert!(!p.matches("oauthv2accesstoken.scope"));
        assert!(p.matches("fault.name"));
        assert!(!p.matches("fault.names"));
        assert!(p.matches("oauthV2.Get.failed"));
        assert!(p.matches("oauthV2.Get.fault.cause"));
        assert!(!p.matches("oauthV2"));
        let all = Publish::new(&["**"]).unwrap();
        assert!(all.matches("a") && all.matches("a.b.c"));
        let none = Publish::new(&[]).unwrap();
        assert!(!none.matches("a"));
    }

    #[test]
    fn families() {
        let prefix = "oauthv2accesstoken.G.accesstoken.";
        let f = |patterns: &[&str]| Publish::new(patterns).unwrap().family(prefix);
        assert_eq!(Publish::everything().family(prefix), Family::All);
        assert_eq!(f(&["oauthv2accesstoken.**"]), Family::All);
        assert_eq!(f(&["oauthv2accesstoken.*.accesstoken.**"]), Family::All);
        assert_eq!(f(&["oauthv2accesstoken.G.accesstoken.*"]), Family::Some);
        assert_eq!(f(&["oauthv2accesstoken.G.accesstoken.dept"]), Family::Some);
        assert_eq!(f(&["oauthv2accesstoken.*.scope"]), Family::None);
        assert_eq!(f(&["oauthv2accesstoken.G.accesstoken"]), Family::None);
        assert_eq!(f(&["fault.name", "oauthv2accesstoken.H.**"]), Family::None);
        assert_eq!(f(&[]), Family::None);
        // A policy name with periods.
        assert_eq!(
            Publish::new(&["oauthv2accesstoken.A.B.accesstoken.**"])
                .unwrap()
                .family("oauthv2accesstoken.A.B.accesstoken."),
            Family::All
        );
    }

    #[test]
    fn bad_patterns() {
        assert_eq!(Publish::new(&["a", ""]).unwrap_err().0, 1);
        assert!(Publish::new(&["a.**.b"]).unwrap_err().1.contains("last"));
        assert!(Publish::new(&["a.b*"])
            .unwrap_err()
            .1
            .contains("whole segment"));
        assert!(Publish::new(&["a..b"])
            .unwrap_err()
            .1
            .contains("empty segment"));
    }

    #[test]
    fn bridge_encoding_round_trips() {
        let pairs = [("a.b", "1"), ("weird:key,", "v,a:l\n\u{0}é"), ("empty", "")];
        let blob = encode_bridge("apigee", pairs.iter().copied());
        let (ns, decoded) = decode_bridge(&blob).unwrap();
        assert_eq!(ns, "apigee");
        let expected: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(decoded, expected);
        assert_eq!(&encode_bridge("ns", std::iter::empty())[..], b"2:ns,");
        assert!(decode_bridge(b"3:ab,").is_none());
    }

    #[test]
    fn metadata_values_round_trip() {
        let mut out = Vec::new();
        encode_metadata_value(b"", &mut out);
        assert_eq!(out, b"GgA");
        encode_metadata_value(b"READ", &mut out);
        // 1a 04 'R' 'E' 'A' 'D', base64 without padding.
        assert_eq!(out, b"GgRSRUFE");
        let long = vec![b'x'; 300];
        for value in [
            &b""[..],
            b"a",
            b"ab",
            b"abc",
            " lead\x01\x7f\t\u{e9}".as_bytes(),
            &long,
        ] {
            encode_metadata_value(value, &mut out);
            assert!(out
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || *b == b'+' || *b == b'/'));
            assert_eq!(
                decode_metadata_value(&out).as_deref(),
                Some(value),
                "{value:?}"
            );
        }
    }
}
