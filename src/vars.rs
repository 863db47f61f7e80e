//! Flow variables: the request variables a `ref` can read (SPEC 3.2) and the
//! variables policies set during one request.

/// What the filter knows of the request, captured once from the host.
#[derive(Debug, Clone, Default)]
pub struct RequestInfo {
    pub method: String,
    /// The `:path` pseudo-header: path and query.
    pub path: String,
    /// Header names lower-cased, values decoded lossily (non-UTF-8 bytes
    /// become U+FFFD), in the order the host gave them.
    pub headers: Vec<(String, String)>,
    pub client_ip: Option<String>,
    /// The urlencoded request body, when a policy needs form parameters and
    /// the body was buffered within the limit.
    pub form_body: Option<String>,
}

impl RequestInfo {
    /// Builds the header list from the host's byte pairs.
    pub fn with_header_bytes(mut self, headers: Vec<(String, Vec<u8>)>) -> Self {
        self.headers = headers
            .into_iter()
            .map(|(k, v)| {
                (
                    k.to_ascii_lowercase(),
                    String::from_utf8_lossy(&v).into_owned(),
                )
            })
            .collect();
        self
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Resolves a request variable; `None` when unset or not a request
    /// variable.
    pub fn resolve(&self, name: &str) -> Option<String> {
        match name {
            "request.verb" => return Some(self.method.clone()),
            "request.uri" => return Some(self.path.clone()),
            "request.path" => return Some(split_query(&self.path).0.to_string()),
            "request.querystring" => {
                return Some(split_query(&self.path).1.unwrap_or_default().to_string())
            }
            "client.ip" => return self.client_ip.clone(),
            _ => {}
        }
        if let Some(rest) = name.strip_prefix("request.header.") {
            return self.resolve_header(rest);
        }
        if let Some(rest) = name.strip_prefix("request.queryparam.") {
            let query = split_query(&self.path).1?;
            return resolve_param(query, rest);
        }
        if let Some(rest) = name.strip_prefix("request.formparam.") {
            let body = self.form_body.as_deref()?;
            return resolve_param(body, rest);
        }
        None
    }

    /// Apigee header rules: `name` is the first comma-separated value,
    /// `name.N` the N-th (1-based), `name.values.string` the whole value,
    /// `name.values.count` how many values. Repeated headers are one list.
    fn resolve_header(&self, rest: &str) -> Option<String> {
        if let Some(name) = rest.strip_suffix(".values.string") {
            let values: Vec<&str> = self
                .headers
                .iter()
                .filter(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
                .collect();
            return (!values.is_empty()).then(|| values.join(", "));
        }
        if let Some(name) = rest.strip_suffix(".values.count") {
            let count = self.header_values(name).count();
            return (count > 0 || self.header(name).is_some()).then(|| count.to_string());
        }
        let (name, index) = split_index(rest);
        if let Some(index) = index {
            if self.header(name).is_some() {
                return self.header_values(name).nth(index - 1).map(String::from);
            }
        }
        // No index, or a header really named like "x.2" when "x" is absent.
        self.header_values(rest).next().map(String::from)
    }

    fn header_values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(k, _)| k.eq_ignore_ascii_case(name))
            .flat_map(|(_, v)| v.split(','))
            .map(str::trim)
    }
}

/// Splits `name.N` into `(name, Some(N))` when the last segment is a positive
/// integer.
fn split_index(rest: &str) -> (&str, Option<usize>) {
    if let Some((name, last)) = rest.rsplit_once('.') {
        if let Ok(n) = last.parse::<usize>() {
            if n >= 1 && !name.is_empty() && last.bytes().all(|b| b.is_ascii_digit()) {
                return (name, Some(n));
            }
        }
    }
    (rest, None)
}

fn split_query(path: &str) -> (&str, Option<&str>) {
    match path.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path, None),
    }
}

/// First (or N-th) value of a parameter in an `a=1&b=2` string, decoded.
fn resolve_param(encoded: &str, rest: &str) -> Option<String> {
    let lookup = |name: &str, index: usize| {
        encoded
            .split('&')
            .filter(|pair| !pair.is_empty())
            .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
            .filter(|(k, _)| percent_decode(k) == name)
            .nth(index)
            .map(|(_, v)| percent_decode(v))
    };
    let (name, index) = split_index(rest);
    if let Some(index) = index {
        if let Some(v) = lookup(name, index - 1) {
            return Some(v);
        }
        if lookup(name, 0).is_some() {
            return None;
        }
    }
    lookup(rest, 0)
}

/// Decodes `%XX` escapes and `+` (as a space). A malformed escape is kept as
/// it is; bytes that are not UTF-8 after decoding become U+FFFD.
pub fn percent_decode(input: &str) -> String {
    let bytes = input.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
pub fn percent_encode(input: &str) -> String {
    let mut out = String::with_capacity(input.len());
    for b in input.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(char::from(b"0123456789ABCDEF"[usize::from(b >> 4)]));
            out.push(char::from(b"0123456789ABCDEF"[usize::from(b & 15)]));
        }
    }
    out
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// True for the request variables SPEC 3.2 lists (used to warn at load time
/// about refs that can never be set).
pub fn is_request_variable(name: &str) -> bool {
    matches!(
        name,
        "request.verb" | "request.path" | "request.uri" | "request.querystring" | "client.ip"
    ) || [
        "request.header.",
        "request.queryparam.",
        "request.formparam.",
    ]
    .iter()
    .any(|p| name.strip_prefix(p).is_some_and(|rest| !rest.is_empty()))
}

/// One variable set by a policy during a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowVar {
    pub name: String,
    pub value: String,
    /// Token values and client secrets: never published unless
    /// `export_secrets` (SPEC 4).
    pub secret: bool,
}

/// The variables policies set during one request, in the order set.
#[derive(Debug, Clone, Default)]
pub struct FlowVars {
    vars: Vec<FlowVar>,
}

impl FlowVars {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars
            .iter()
            .find(|v| v.name == name)
            .map(|v| v.value.as_str())
    }

    /// Sets (or replaces) a variable.
    pub fn set(&mut self, name: String, value: String, secret: bool) {
        match self.vars.iter_mut().find(|v| v.name == name) {
            Some(existing) => {
                existing.value = value;
                existing.secret = secret;
            }
            None => self.vars.push(FlowVar {
                name,
                value,
                secret,
            }),
        }
    }

    /// Adds a variable known not to be set yet (a policy's own variables:
    /// each policy runs once per request), without searching.
    pub fn push_new(&mut self, name: String, value: String, secret: bool) {
        debug_assert!(self.get(&name).is_none(), "{name} set twice");
        self.vars.push(FlowVar {
            name,
            value,
            secret,
        });
    }

    pub fn iter(&self) -> impl Iterator<Item = &FlowVar> {
        self.vars.iter()
    }

    pub fn len(&self) -> usize {
        self.vars.len()
    }

    pub fn is_empty(&self) -> bool {
        self.vars.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> RequestInfo {
        RequestInfo {
            method: "POST".into(),
            path: "/v1/items?access_token=abc%20def&x=1&x=2&plus=a+b&bad=%zz%4&empty=&flag&enc%5Fname=v&utf=%C3%A9&nonutf=%FF".into(),
            client_ip: Some("10.1.2.3".into()),
            form_body: Some("department_id=42&dup=a&dup=b&sp=a+b%21".into()),
            ..RequestInfo::default()
        }
        .with_header_bytes(vec![
            ("Authorization".into(), b"Bearer t0k".to_vec()),
            ("x-list".into(), b"a, b ,c".to_vec()),
            ("x-list".into(), b"d".to_vec()),
            ("x-empty".into(), b"".to_vec()),
            ("x-bin".into(), vec![b'o', 0xff, b'k']),
            ("x.2".into(), b"dotted".to_vec()),
        ])
    }

    #[test]
    fn request_line_variables() {
        let r = request();
        assert_eq!(r.resolve("request.verb").as_deref(), Some("POST"));
        assert_eq!(r.resolve("request.path").as_deref(), Some("/v1/items"));
        assert!(r
            .resolve("request.uri")
            .unwrap()
            .starts_with("/v1/items?access_token="));
        assert!(r
            .resolve("request.querystring")
            .unwrap()
            .starts_with("access_token=abc%20def&"));
        assert_eq!(r.resolve("client.ip").as_deref(), Some("10.1.2.3"));
        assert_eq!(r.resolve("request.unknown"), None);
        let bare = RequestInfo {
            path: "/p".into(),
            ..RequestInfo::default()
        };
        assert_eq!(bare.resolve("request.querystring").as_deref(), Some(""));
        assert_eq!(bare.resolve("request.queryparam.a"), None);
        assert_eq!(bare.resolve("client.ip"), None);
    }

    #[test]
    fn header_rules_follow_apigee() {
        let r = request();
        assert_eq!(
            r.resolve("request.header.authorization").as_deref(),
            Some("Bearer t0k")
        );
        assert_eq!(
            r.resolve("request.header.AUTHORIZATION").as_deref(),
            Some("Bearer t0k")
        );
        assert_eq!(r.resolve("request.header.x-list").as_deref(), Some("a"));
        assert_eq!(r.resolve("request.header.x-list.1").as_deref(), Some("a"));
        assert_eq!(r.resolve("request.header.x-list.2").as_deref(), Some("b"));
        assert_eq!(r.resolve("request.header.x-list.3").as_deref(), Some("c"));
        assert_eq!(r.resolve("request.header.x-list.4").as_deref(), Some("d"));
        assert_eq!(r.resolve("request.header.x-list.5"), None);
        assert_eq!(
            r.resolve("request.header.x-list.values.string").as_deref(),
            Some("a, b ,c, d")
        );
        assert_eq!(
            r.resolve("request.header.x-list.values.count").as_deref(),
            Some("4")
        );
        assert_eq!(r.resolve("request.header.x-empty").as_deref(), Some(""));
        assert_eq!(
            r.resolve("request.header.x-bin").as_deref(),
            Some("o\u{fffd}k")
        );
        assert_eq!(r.resolve("request.header.missing"), None);
        assert_eq!(r.resolve("request.header.missing.values.string"), None);
        // "x" is absent, so "x.2" is the header really named so.
        assert_eq!(r.resolve("request.header.x.2").as_deref(), Some("dotted"));
        assert_eq!(r.resolve("request.header.x-list.0"), None);
    }

    #[test]
    fn query_parameters_are_decoded() {
        let r = request();
        assert_eq!(
            r.resolve("request.queryparam.access_token").as_deref(),
            Some("abc def")
        );
        assert_eq!(r.resolve("request.queryparam.x").as_deref(), Some("1"));
        assert_eq!(r.resolve("request.queryparam.x.2").as_deref(), Some("2"));
        assert_eq!(r.resolve("request.queryparam.x.3"), None);
        assert_eq!(r.resolve("request.queryparam.plus").as_deref(), Some("a b"));
        assert_eq!(
            r.resolve("request.queryparam.bad").as_deref(),
            Some("%zz%4")
        );
        assert_eq!(r.resolve("request.queryparam.empty").as_deref(), Some(""));
        assert_eq!(r.resolve("request.queryparam.flag").as_deref(), Some(""));
        assert_eq!(
            r.resolve("request.queryparam.enc_name").as_deref(),
            Some("v")
        );
        assert_eq!(r.resolve("request.queryparam.utf").as_deref(), Some("é"));
        assert_eq!(
            r.resolve("request.queryparam.nonutf").as_deref(),
            Some("\u{fffd}")
        );
        assert_eq!(r.resolve("request.queryparam.none"), None);
    }

    #[test]
    fn form_parameters() {
        let r = request();
        assert_eq!(
            r.resolve("request.formparam.department_id").as_deref(),
            Some("42")
        );
        assert_eq!(r.resolve("request.formparam.dup.2").as_deref(), Some("b"));
        assert_eq!(r.resolve("request.formparam.sp").as_deref(), Some("a b!"));
        let no_body = RequestInfo::default();
        assert_eq!(no_body.resolve("request.formparam.department_id"), None);
    }

    #[test]
    fn percent_coding_round_trips() {
        for s in ["", "abc", "a b+c/d?e=f&g", "é€😀", "%%", "\u{0}"] {
            assert_eq!(percent_decode(&percent_encode(s)), s);
        }
        assert_eq!(percent_decode("%"), "%");
        assert_eq!(percent_decode("%4"), "%4");
        assert_eq!(percent_decode("%41"), "A");
        assert_eq!(percent_decode("a%2"), "a%2");
    }

    #[test]
    fn flow_vars_replace_in_place() {
        let mut v = FlowVars::default();
        v.set("a".into(), "1".into(), false);
        v.set("b".into(), "2".into(), true);
        v.set("a".into(), "3".into(), false);
        assert_eq!(v.get("a"), Some("3"));
        assert_eq!(v.len(), 2);
        assert_eq!(
            v.iter().map(|x| x.name.as_str()).collect::<Vec<_>>(),
            ["a", "b"]
        );
    }

    #[test]
    fn request_variable_names() {
        assert!(is_request_variable("request.header.x"));
        assert!(is_request_variable("client.ip"));
        assert!(!is_request_variable("request.header."));
        assert!(!is_request_variable("request.content"));
    }
}

/// The IP part of an Envoy address (`1.2.3.4:5678`, `[::1]:5678`).
pub fn ip_from_address(address: &str) -> String {
    if let Some(rest) = address.strip_prefix('[') {
        if let Some((ip, _)) = rest.split_once(']') {
            return ip.to_string();
        }
    }
    match address.rsplit_once(':') {
        Some((ip, port)) if !ip.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => {
            ip.to_string()
        }
        _ => address.to_string(),
    }
}

/// Header bytes as text, without a copy when they are UTF-8; other bytes
/// (a client can send them) become U+FFFD instead of failing.
pub fn header_text(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// True when a content type is `application/x-www-form-urlencoded`.
pub fn is_form_urlencoded(content_type: &str) -> bool {
    content_type.split(';').next().is_some_and(|t| {
        t.trim()
            .eq_ignore_ascii_case("application/x-www-form-urlencoded")
    })
}

/// True when a value can go into an HTTP header as it is.
pub fn is_valid_header_value(value: &str) -> bool {
    !value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0)
}

#[cfg(test)]
mod address_tests {
    use super::*;

    #[test]
    fn addresses() {
        assert_eq!(ip_from_address("10.0.0.1:443"), "10.0.0.1");
        assert_eq!(ip_from_address("[::1]:8080"), "::1");
        assert_eq!(ip_from_address("::1"), "::1");
        assert_eq!(ip_from_address("10.0.0.1"), "10.0.0.1");
        assert_eq!(ip_from_address("unix:/tmp/s"), "unix:/tmp/s");
    }

    #[test]
    fn content_types_and_header_values() {
        assert!(is_form_urlencoded("application/x-www-form-urlencoded"));
        assert!(is_form_urlencoded(
            "Application/X-WWW-Form-Urlencoded; charset=UTF-8"
        ));
        assert!(!is_form_urlencoded("application/json"));
        assert!(!is_form_urlencoded("multipart/form-data; boundary=x"));
        assert!(is_valid_header_value("a b\tc"));
        assert!(!is_valid_header_value("a\r\nb: c"));
    }
}
