//! What a request publishes (SPEC 4): which variables go to filter state and
//! dynamic metadata, and the one filter-state entry the metadata bridge reads.

use crate::vars::FlowVars;

/// Filter-state key (without Envoy's `wasm.` prefix) of the entry the
/// metadata bridge (envoy/oauthv2info-after.lua, and envoy/oauthv2info-before.lua for
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

/// The variables of one request that go to filter state and metadata:
/// those `publish` matches, secrets only with `export_secrets`.
pub fn published<'a>(
    vars: &'a FlowVars,
    publish: &'a Publish,
    export_secrets: bool,
) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
    vars.iter()
        .filter(move |v| (export_secrets || !v.secret) && publish.matches(&v.name))
        .map(|v| (v.name.as_str(), v.value.as_str()))
}

/// Encodes the metadata bridge's entry: netstrings (`<len>:<bytes>,`), first
/// the namespace, then each key and value. Lengths are in bytes.
pub fn encode_bridge<'a>(
    namespace: &str,
    vars: impl Iterator<Item = (&'a str, &'a str)>,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    push_netstring(&mut out, namespace);
    for (k, v) in vars {
        push_netstring(&mut out, k);
        push_netstring(&mut out, v);
    }
    out
}

fn push_netstring(out: &mut Vec<u8>, s: &str) {
    push_decimal(out, s.len());
    out.push(b':');
    out.extend_from_slice(s.as_bytes());
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

/// Decodes [`encode_bridge`]'s output (used by tests and the checker).
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
    fn secrets_are_held_back_unless_exported() {
        let mut vars = FlowVars::default();
        vars.set(
            "oauthv2accesstoken.G.access_token".into(),
            "secret".into(),
            true,
        );
        vars.set("oauthv2accesstoken.G.scope".into(), "READ".into(), false);
        let all = Publish::everything();
        let names: Vec<&str> = published(&vars, &all, false).map(|(k, _)| k).collect();
        assert_eq!(names, ["oauthv2accesstoken.G.scope"]);
        let names: Vec<&str> = published(&vars, &all, true).map(|(k, _)| k).collect();
        assert_eq!(names.len(), 2);
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
}
