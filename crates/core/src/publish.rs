//! What a request publishes (docs/configuration.md#publish): the
//! `publish` patterns, and the encodings that carry published variables to
//! Envoy's dynamic metadata (docs/configuration.md#dynamic-metadata): the
//! Lua bridge's one filter-state entry, and the values of the internal
//! headers that `header_to_metadata` reads.

/// Filter-state key (without Envoy's `wasm.` prefix) of the entry the Lua
/// bridge (envoy/oauthv2info-after.lua; envoy/oauthv2info-before.lua for
/// requests the filter ends with a fault) turns into dynamic metadata.
pub(crate) const METADATA_BRIDGE_KEY: &str = "oauthv2info.metadata";

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
    pub(crate) fn everything() -> Self {
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
                    p if p.as_bytes().contains(&b'*') => {
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
    pub(crate) fn exact_names(&self) -> impl Iterator<Item = String> + '_ {
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
#[inline(always)]
pub(crate) fn push_netstring(out: &mut Vec<u8>, s: &[u8]) {
    let n = s.len();
    // Variables are short: one or two digits, without a loop.
    if n < 10 {
        out.push(b'0' + n as u8);
    } else if n < 100 {
        out.extend_from_slice(&[b'0' + (n / 10) as u8, b'0' + (n % 10) as u8]);
    } else {
        push_length(out, n);
    }
    out.push(b':');
    out.extend_from_slice(s);
    out.push(b',');
}

/// A netstring's length of three digits or more: out of line, so that
/// [`push_netstring`] stays small where it is inlined.
#[inline(never)]
fn push_length(out: &mut Vec<u8>, n: usize) {
    let n = u64::try_from(n).unwrap_or(u64::MAX);
    out.extend_from_slice(crate::number::NumberBuf::default().format_unsigned(n));
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

/// What the empty-value companion header carries: a serialized
/// `google.protobuf.Value` whose `string_value` is "" (tag 0x1a, length 0),
/// in base64 without padding, for a `header_to_metadata` rule of
/// `type: PROTOBUF_VALUE, encode: BASE64` (a `STRING` rule sets no empty
/// value).
pub(crate) const EMPTY_METADATA_VALUE: &[u8] = b"GgA";

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
        let long = "x".repeat(1234);
        let pairs = [
            ("a.b", "1"),
            ("weird:key,", "v,a:l\n\u{0}é"),
            ("empty", ""),
            ("ten chars!", "0123456789"),
            ("long", long.as_str()),
        ];
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
    fn the_empty_value_is_an_empty_protobuf_string() {
        // base64 "GgA" is the bytes 0x1a 0x00: field 3 (string_value),
        // length-delimited, length 0.
        let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let bits: Vec<u32> = EMPTY_METADATA_VALUE
            .iter()
            .map(|c| alphabet.iter().position(|a| a == c).unwrap() as u32)
            .collect();
        let n = (bits[0] << 18) | (bits[1] << 12) | (bits[2] << 6);
        assert_eq!(
            [(n >> 16) as u8, (n >> 8) as u8, n as u8],
            [0x1a, 0x00, 0x00]
        );
    }
}
