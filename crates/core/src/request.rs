//! The request variables a `ref` can read (docs/variables.md#variables-a-ref-can-read):
//! what the filter captured of the request, and how each variable resolves.
//!
//! Variables are parsed once at load time into [`RequestVar`]; at run time a
//! value is appended to a caller's buffer, so that resolving a token or a
//! header value allocates nothing in the common case (UTF-8 text without
//! percent escapes).

/// What the filter knows of the request, captured once from the host. The
/// byte vectors are the host's own buffers, kept as they came.
#[derive(Debug, Clone, Default)]
pub struct RequestInfo {
    /// `:method` (read only when a ref uses `request.verb`).
    pub method: Vec<u8>,
    /// `:path`: path and query (read only when a ref needs it).
    pub path: Vec<u8>,
    pub headers: Headers,
    pub client_ip: Option<String>,
    /// The urlencoded request body, when a policy reads form parameters and
    /// the body was handed over.
    pub form_body: Option<Vec<u8>>,
    /// `:path` was read for the API-product check.
    pub call_read: bool,
    /// `:method` was read for the API-product check.
    pub verb_read: bool,
}

/// The request headers the filter read.
#[derive(Debug, Clone)]
pub enum Headers {
    /// The values of the names the configuration reads, in its order
    /// (`HeaderReads::Named` in the configuration); `None` when absent.
    Named(Vec<Option<Vec<u8>>>),
    /// Every header, names lower-cased, in the host's order (a ref uses
    /// `.N` or `.values.*`, which see repeated headers as one list).
    All(Vec<(String, Vec<u8>)>),
}

impl Default for Headers {
    fn default() -> Self {
        Headers::Named(Vec::new())
    }
}

impl RequestInfo {
    /// Empties the request for reuse, keeping the allocations.
    pub(crate) fn clear(&mut self) {
        self.method.clear();
        self.path.clear();
        match &mut self.headers {
            Headers::Named(values) => values.clear(),
            Headers::All(all) => all.clear(),
        }
        self.client_ip = None;
        self.form_body = None;
        self.call_read = false;
        self.verb_read = false;
    }

    /// The first value of header `name` (lower-case), in either mode.
    pub(crate) fn header(&self, name: &str, named_index: Option<usize>) -> Option<&[u8]> {
        match (&self.headers, named_index) {
            (Headers::Named(values), Some(i)) => values.get(i)?.as_deref(),
            (Headers::Named(_), None) => None,
            (Headers::All(all), _) => all
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_slice()),
        }
    }

    fn all_headers<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        let all: &[(String, Vec<u8>)] = match &self.headers {
            Headers::All(all) => all,
            Headers::Named(_) => &[],
        };
        all.iter()
            .filter(move |(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }

    fn query(&self) -> Option<&[u8]> {
        split_query(&self.path).1
    }

    /// Appends the value of `var` to `out`; false when it is unset.
    pub fn resolve_into(&self, var: &RequestVar, out: &mut String) -> bool {
        match var {
            RequestVar::Verb => push_text(out, &self.method),
            RequestVar::Uri => push_text(out, &self.path),
            RequestVar::Path => push_text(out, split_query(&self.path).0),
            RequestVar::QueryString => push_text(out, self.query().unwrap_or_default()),
            RequestVar::ClientIp => match &self.client_ip {
                Some(ip) => out.push_str(ip),
                None => return false,
            },
            RequestVar::Header {
                name,
                named_index,
                whole,
            } => match self.header(name, *named_index) {
                Some(v) if *whole => push_text(out, v),
                Some(v) => push_text(out, first_value(v)),
                None => return false,
            },
            RequestVar::HeaderIndexed { rest } => return self.resolve_header(rest, out),
            RequestVar::QueryParam(param) => match self.query() {
                Some(query) => return resolve_param(query, param, out),
                None => return false,
            },
            RequestVar::FormParam(param) => match &self.form_body {
                Some(body) => return resolve_param(body, param, out),
                None => return false,
            },
            RequestVar::BasePath { basepath } => out.push_str(basepath),
            RequestVar::ProxyName { name } | RequestVar::Environment { name } => match name {
                Some(n) => out.push_str(n),
                None => return false,
            },
            RequestVar::PathSuffix { basepath } => {
                match path_suffix(split_query(&self.path).0, basepath.as_bytes()) {
                    Some(suffix) => push_text(out, suffix),
                    None => return false,
                }
            }
        }
        true
    }

    /// What the API-product check compares, as the request has it: the
    /// path suffix after `basepath` (without the query; the whole path
    /// when it is not under `basepath`) and the verb, as bytes (compared as
    /// text, U+FFFD for what is not UTF-8: `profile::products::CallBytes`).
    #[inline]
    pub(crate) fn call_bytes(&self, basepath: &str) -> (&[u8], &[u8]) {
        let path = split_query(&self.path).0;
        let suffix = path_suffix(path, basepath.as_bytes()).unwrap_or(path);
        (suffix, &self.method)
    }

    /// Apigee's header forms (docs/variables.md): `name.N` the N-th
    /// comma-separated value (1-based), `name.values.string` the whole
    /// value, `name.values.count` how many values; repeated headers are one
    /// list. Only in [`Headers::All`] mode.
    fn resolve_header(&self, rest: &str, out: &mut String) -> bool {
        if let Some(name) = rest.strip_suffix(".values.string") {
            let mut any = false;
            for value in self.all_headers(name) {
                if any {
                    out.push_str(", ");
                }
                push_text(out, value);
                any = true;
            }
            return any;
        }
        if let Some(name) = rest.strip_suffix(".values.count") {
            if self.all_headers(name).next().is_none() {
                return false;
            }
            let count = self.header_values(name).count();
            out.push_str(&count.to_string());
            return true;
        }
        let (name, index) = split_index(rest);
        if let Some(index) = index {
            if self.all_headers(name).next().is_some() {
                return match self.header_values(name).nth(index - 1) {
                    Some(v) => {
                        push_text(out, v);
                        true
                    }
                    None => false,
                };
            }
        }
        // No index, or a header really named like "x.2" when "x" is absent.
        match self.header_values(rest).next() {
            Some(v) => {
                push_text(out, v);
                true
            }
            None => false,
        }
    }

    fn header_values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.all_headers(name)
            .flat_map(|v| v.split(|&b| b == b','))
            .map(trim)
    }
}

/// A request variable, parsed at load time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestVar {
    Verb,
    Path,
    Uri,
    QueryString,
    ClientIp,
    /// `request.header.{name}`: the first comma-separated value.
    /// `named_index` is the name's place in the configuration's header reads.
    Header {
        name: String,
        named_index: Option<usize>,
        /// The whole value, commas included (VerifyAccessToken's
        /// `Authorization`); no ref names this form.
        whole: bool,
    },
    /// `request.header.{name}.N`, `.values.string`, `.values.count`.
    HeaderIndexed {
        rest: String,
    },
    QueryParam(Param),
    FormParam(Param),
    /// `proxy.basepath`: the configuration's `basepath`.
    BasePath {
        basepath: String,
    },
    /// `proxy.pathsuffix`: the path after `basepath` (docs/variables.md#variables-a-ref-can-read);
    /// unset when the path is not under it. `basepath` is filled in when
    /// the configuration is compiled.
    PathSuffix {
        basepath: String,
    },
    /// `apiproxy.name`: the configuration's `proxy_name` (unset without
    /// one); filled in when the configuration is compiled.
    ProxyName {
        name: Option<String>,
    },
    /// `environment.name`: the configuration's `environment` (unset
    /// without one).
    Environment {
        name: Option<String>,
    },
}

/// A query or form parameter ref, split at load time: `name`, or `name.N`
/// (the N-th value; a parameter really named `name.N` when there is no
/// `name`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Param {
    /// Everything after `request.queryparam.` / `request.formparam.`.
    pub(crate) rest: String,
    /// `(name, N)` when `rest` ends with `.N`.
    pub(crate) indexed: Option<(String, usize)>,
}

impl Param {
    fn new(rest: &str) -> Param {
        let (name, index) = split_index(rest);
        Param {
            rest: rest.to_string(),
            indexed: index.map(|n| (name.to_string(), n)),
        }
    }
}

impl RequestVar {
    /// Parses a request variable name; `None` when `name` is not one.
    pub fn parse(name: &str) -> Option<RequestVar> {
        let non_empty = |rest: &str| (!rest.is_empty()).then(|| rest.to_string());
        Some(match name {
            "request.verb" => RequestVar::Verb,
            "request.path" => RequestVar::Path,
            "request.uri" => RequestVar::Uri,
            "request.querystring" => RequestVar::QueryString,
            "client.ip" => RequestVar::ClientIp,
            "proxy.basepath" => RequestVar::BasePath {
                basepath: String::new(),
            },
            "proxy.pathsuffix" => RequestVar::PathSuffix {
                basepath: String::new(),
            },
            "apiproxy.name" => RequestVar::ProxyName { name: None },
            "environment.name" => RequestVar::Environment { name: None },
            _ => {
                if let Some(rest) = name.strip_prefix("request.header.") {
                    let rest = non_empty(rest)?;
                    if is_indexed_header(&rest) {
                        RequestVar::HeaderIndexed { rest }
                    } else {
                        RequestVar::Header {
                            name: rest.to_ascii_lowercase(),
                            named_index: None,
                            whole: false,
                        }
                    }
                } else if let Some(rest) = name.strip_prefix("request.queryparam.") {
                    RequestVar::QueryParam(Param::new(&non_empty(rest)?))
                } else if let Some(rest) = name.strip_prefix("request.formparam.") {
                    RequestVar::FormParam(Param::new(&non_empty(rest)?))
                } else {
                    return None;
                }
            }
        })
    }
}

/// True for header refs that need every header: `.N`, `.values.string`,
/// `.values.count`.
fn is_indexed_header(rest: &str) -> bool {
    let indexed = rsplit_once_ascii(rest, b'.')
        .is_some_and(|(_, last)| !last.is_empty() && last.bytes().all(|b| b.is_ascii_digit()));
    indexed || rest.ends_with(".values.string") || rest.ends_with(".values.count")
}

/// True for the request variables docs/variables.md lists.
#[cfg(test)]
fn is_request_variable(name: &str) -> bool {
    RequestVar::parse(name).is_some()
}

/// Appends header or parameter bytes as text: as they are when UTF-8,
/// else with U+FFFD for each invalid sequence (a client can send those).
/// What `String::from_utf8_lossy` gives, over `str::from_utf8`'s error
/// alone: the standard library's chunk iterator is not linked (1 KB of
/// `.wasm`, docs/performance.md#module-size).
pub(crate) fn push_text(out: &mut String, mut bytes: &[u8]) {
    loop {
        match std::str::from_utf8(bytes) {
            Ok(s) => {
                out.push_str(s);
                return;
            }
            Err(e) => {
                let (valid, rest) = bytes.split_at(e.valid_up_to());
                out.push_str(std::str::from_utf8(valid).unwrap_or_default());
                out.push(char::REPLACEMENT_CHARACTER);
                match e.error_len() {
                    Some(n) => bytes = rest.get(n..).unwrap_or_default(),
                    None => return,
                }
            }
        }
    }
}

/// Bytes as text, as [`push_text`] writes them.
pub(crate) fn lossy(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    push_text(&mut out, bytes);
    out
}

/// Header bytes as text, without a copy when they are UTF-8.
pub(crate) fn header_text(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).unwrap_or_else(|e| lossy(e.as_bytes()))
}

fn first_value(value: &[u8]) -> &[u8] {
    trim(value.split(|&b| b == b',').next().unwrap_or_default())
}

fn trim(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |i| i + 1);
    &bytes[start..end]
}

/// `s.rsplit_once(c)` for an ASCII `c`, by a byte scan: no reverse
/// character searcher in the `.wasm` (docs/performance.md#module-size).
fn rsplit_once_ascii(s: &str, c: u8) -> Option<(&str, &str)> {
    let i = s.bytes().rposition(|b| b == c)?;
    Some((s.get(..i)?, s.get(i + 1..)?))
}

/// Splits `name.N` into `(name, Some(N))` when the last segment is a
/// positive integer.
fn split_index(rest: &str) -> (&str, Option<usize>) {
    if let Some((name, last)) = rsplit_once_ascii(rest, b'.') {
        if let Ok(n) = last.parse::<usize>() {
            if n >= 1 && !name.is_empty() && last.bytes().all(|b| b.is_ascii_digit()) {
                return (name, Some(n));
            }
        }
    }
    (rest, None)
}

/// The path after `basepath`, which must end there or at a `/`: under
/// `/v1/orders`, `/v1/orders/7` has the suffix `/7`, `/v1/orders` the empty
/// suffix, and `/v1/ordersX` none. A basepath of `/` (or empty) leaves the
/// whole path. An element `*` of the base path is any one non-empty path
/// element, as in Apigee X's wildcard base paths (`/team/*/members`:
/// docs/decisions.md#wildcard-base-paths).
fn path_suffix<'a>(path: &'a [u8], basepath: &[u8]) -> Option<&'a [u8]> {
    let base = basepath.strip_suffix(b"/").unwrap_or(basepath);
    if !base.contains(&b'*') {
        let rest = path.strip_prefix(base)?;
        return (rest.is_empty() || rest.starts_with(b"/")).then_some(rest);
    }
    let mut rest = path;
    for element in base.split(|&b| b == b'/').skip(1) {
        rest = rest.strip_prefix(b"/")?;
        let end = rest.iter().position(|&b| b == b'/').unwrap_or(rest.len());
        let (segment, after) = rest.split_at(end);
        let fits = match element {
            b"*" => !segment.is_empty(),
            literal => segment == literal,
        };
        if !fits {
            return None;
        }
        rest = after;
    }
    Some(rest)
}

/// Why a configured base path cannot be matched as Apigee matches it:
/// Apigee X allows `*` only as a whole element (`/team/*/members`), not
/// `/**`, `/something*` or `/*something`.
pub fn basepath_problem(basepath: &str) -> Option<&'static str> {
    basepath
        .split('/')
        .any(|element| element.as_bytes().contains(&b'*') && element != "*")
        .then_some(
            "a wildcard must be a whole element between two / (\"/team/*/members\"): Apigee takes no /**, /something* or /*something in a base path",
        )
}

fn split_query(path: &[u8]) -> (&[u8], Option<&[u8]>) {
    match path.iter().position(|&b| b == b'?') {
        Some(i) => (&path[..i], Some(&path[i + 1..])),
        None => (path, None),
    }
}

/// The (n+1)-th value of parameter `name` in an `a=1&b=2` string, raw:
/// one pass over the string, each pair's `&` and `=` found a word at a
/// time and its name compared in place (decoded only when it holds an
/// escape).
fn find_param<'a>(encoded: &'a [u8], name: &str, mut n: usize) -> Option<&'a [u8]> {
    let mut rest = encoded;
    loop {
        let end = find_byte(rest, b'&');
        let pair = rest.get(..end).unwrap_or_default();
        if !pair.is_empty() {
            let eq = find_byte(pair, b'=');
            if decoded_equals(pair.get(..eq).unwrap_or_default(), name) {
                if n == 0 {
                    return Some(pair.get(eq + 1..).unwrap_or_default());
                }
                n -= 1;
            }
        }
        rest = rest.get(end + 1..)?;
    }
}

/// Each byte 1: a word-at-a-time search's constant.
const ONES: u64 = u64::from_le_bytes([1; 8]);

/// The high bit of each byte of `word` that equals `b`. The lowest flag
/// is exact (a borrow can only set a false one in a byte above a true
/// one), and so is "none".
#[inline]
fn bytes_equal_to(word: u64, b: u8) -> u64 {
    let x = word ^ (ONES * u64::from(b));
    x.wrapping_sub(ONES) & !x & (ONES << 7)
}

/// Where the first `b` lies in `bytes` (their length when none), eight
/// bytes at a time.
#[inline]
fn find_byte(bytes: &[u8], b: u8) -> usize {
    let mut chunks = bytes.chunks_exact(8);
    let mut at = 0;
    for chunk in &mut chunks {
        let word = u64::from_le_bytes(chunk.try_into().unwrap_or_default());
        let found = bytes_equal_to(word, b);
        if found != 0 {
            return at + (found.trailing_zeros() / 8) as usize;
        }
        at += 8;
    }
    let tail = chunks.remainder();
    at + tail.iter().position(|&c| c == b).unwrap_or(tail.len())
}

/// True when `bytes` hold a `%` or a `+` (something percent-decoding
/// changes), eight bytes at a time.
#[inline]
fn has_escapes(bytes: &[u8]) -> bool {
    let mut chunks = bytes.chunks_exact(8);
    let mut found = 0;
    for chunk in &mut chunks {
        let word = u64::from_le_bytes(chunk.try_into().unwrap_or_default());
        found |= bytes_equal_to(word, b'%') | bytes_equal_to(word, b'+');
    }
    found != 0
        || chunks
            .remainder()
            .iter()
            .fold(false, |any, &c| any | (c == b'%') | (c == b'+'))
}

/// First (or N-th) value of a parameter, decoded; a parameter really
/// named `x.2` is found when there is no `x`.
fn resolve_param(encoded: &[u8], param: &Param, out: &mut String) -> bool {
    let found = match &param.indexed {
        Some((name, index)) => match find_param(encoded, name, index - 1) {
            Some(v) => Some(v),
            None if find_param(encoded, name, 0).is_some() => return false,
            None => find_param(encoded, &param.rest, 0),
        },
        None => find_param(encoded, &param.rest, 0),
    };
    match found {
        Some(v) => {
            percent_decode_into(v, out);
            true
        }
        None => false,
    }
}

/// Compares a raw (encoded) parameter name with a decoded one without
/// decoding when there is nothing to decode.
fn decoded_equals(raw: &[u8], name: &str) -> bool {
    if raw == name.as_bytes() {
        return true;
    }
    if !has_escapes(raw) {
        return false;
    }
    let mut decoded = String::new();
    percent_decode_into(raw, &mut decoded);
    decoded == name
}

/// Decodes `%XX` escapes and `+` (as a space) into `out`. A malformed
/// escape is kept as it is; bytes that are not UTF-8 after decoding become
/// U+FFFD. Plain text is copied as it is, without a temporary buffer.
pub(crate) fn percent_decode_into(input: &[u8], out: &mut String) {
    if !has_escapes(input) {
        push_text(out, input);
        return;
    }
    let mut bytes = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        match input[i] {
            b'+' => bytes.push(b' '),
            b'%' if i + 2 < input.len() => match (hex(input[i + 1]), hex(input[i + 2])) {
                (Some(h), Some(l)) => {
                    bytes.push(h << 4 | l);
                    i += 2;
                }
                _ => bytes.push(b'%'),
            },
            b => bytes.push(b),
        }
        i += 1;
    }
    push_text(out, &bytes);
}

/// `percent_decode_into` into a new string.
pub fn percent_decode(input: &str) -> String {
    let mut out = String::with_capacity(input.len());
    percent_decode_into(input.as_bytes(), &mut out);
    out
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
pub(crate) fn percent_encode_into(input: &str, out: &mut String) {
    for b in input.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(char::from(b"0123456789ABCDEF"[usize::from(b >> 4)]));
            out.push(char::from(b"0123456789ABCDEF"[usize::from(b & 15)]));
        }
    }
}

pub fn percent_encode(input: &str) -> String {
    let mut out = String::with_capacity(input.len());
    percent_encode_into(input, &mut out);
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

/// The IP part of an Envoy address (`1.2.3.4:5678`, `[::1]:5678`).
pub(crate) fn ip_from_address(address: &str) -> String {
    if let Some(rest) = address.strip_prefix('[') {
        if let Some((ip, _)) = rest.split_once(']') {
            return ip.to_string();
        }
    }
    match rsplit_once_ascii(address, b':') {
        Some((ip, port))
            if !ip.as_bytes().contains(&b':') && port.bytes().all(|b| b.is_ascii_digit()) =>
        {
            ip.to_string()
        }
        _ => address.to_string(),
    }
}

/// True when a content type is `application/x-www-form-urlencoded`.
pub(crate) fn is_form_urlencoded(content_type: &[u8]) -> bool {
    let text = lossy(content_type);
    text.split(';').next().is_some_and(|t| {
        t.trim()
            .eq_ignore_ascii_case("application/x-www-form-urlencoded")
    })
}

/// True when Envoy accepts a value in an HTTP header as it is: no control
/// character other than horizontal tab (RFC 9110 field values; Envoy
/// refuses the request otherwise).
pub fn is_valid_header_value(value: &[u8]) -> bool {
    value.iter().fold(true, |ok, &b| {
        ok & ((b >= 0x20 && b != 0x7f) | (b == b'\t'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lossy_text_is_from_utf8_lossy() {
        let cases: [&[u8]; 12] = [
            b"",
            b"plain",
            "\u{e9}t\u{e9} \u{1f600}".as_bytes(),
            b"o\xffk",
            b"\xff\xfe",
            b"\xe2\x82",
            b"ab\xe2\x82",
            b"\xe2\x82x\xf0\x9f\x98",
            b"\xc0\xaf\xed\xa0\x80",
            b"\xf4\x90\x80\x80end",
            b"\x80\x80\x80",
            b"\xf0\x9f\x98\x80\xf0",
        ];
        for bytes in cases {
            assert_eq!(lossy(bytes), String::from_utf8_lossy(bytes), "{bytes:?}");
        }
        // Every two-byte sequence, and each after a valid prefix.
        for a in 0..=255u8 {
            for b in [0x00, 0x41, 0x80, 0x9f, 0xa0, 0xbf, 0xc0, 0xe0, 0xf0, 0xff] {
                let bytes = [b'x', a, b, a];
                assert_eq!(lossy(&bytes), String::from_utf8_lossy(&bytes), "{bytes:?}");
            }
        }
    }

    fn request() -> RequestInfo {
        let headers = [
            ("authorization", b"Bearer t0k".to_vec()),
            ("x-list", b"a, b ,c".to_vec()),
            ("x-list", b"d".to_vec()),
            ("x-empty", b"".to_vec()),
            ("x-bin", vec![b'o', 0xff, b'k']),
            ("x.2", b"dotted".to_vec()),
        ];
        RequestInfo {
            method: b"POST".to_vec(),
            path: b"/v1/items?access_token=abc%20def&x=1&x=2&plus=a+b&bad=%zz%4&empty=&flag&enc%5Fname=v&utf=%C3%A9&nonutf=%FF".to_vec(),
            headers: Headers::All(headers.iter().map(|(k, v)| (k.to_string(), v.clone())).collect()),
            client_ip: Some("10.1.2.3".into()),
            form_body: Some(b"department_id=42&dup=a&dup=b&sp=a+b%21".to_vec()),
            call_read: false,
            verb_read: false,
        }
    }

    fn resolve(r: &RequestInfo, name: &str) -> Option<String> {
        let var = RequestVar::parse(name)?;
        let mut out = String::new();
        r.resolve_into(&var, &mut out).then_some(out)
    }

    #[test]
    fn proxy_path_suffix_is_the_path_after_the_basepath() {
        let suffix = |basepath: &str, path: &str| {
            let r = RequestInfo {
                path: path.as_bytes().to_vec(),
                ..RequestInfo::default()
            };
            let var = RequestVar::PathSuffix {
                basepath: basepath.to_string(),
            };
            let mut out = String::new();
            r.resolve_into(&var, &mut out).then_some(out)
        };
        assert_eq!(
            suffix("/v1/orders", "/v1/orders/7?x=1").as_deref(),
            Some("/7")
        );
        assert_eq!(
            suffix("/v1/orders/", "/v1/orders/7/a").as_deref(),
            Some("/7/a")
        );
        assert_eq!(suffix("/v1/orders", "/v1/orders").as_deref(), Some(""));
        assert_eq!(suffix("/v1/orders", "/v1/orders?x").as_deref(), Some(""));
        assert_eq!(suffix("/v1/orders", "/v1/ordersX"), None);
        assert_eq!(suffix("/v1/orders", "/v2/orders/7"), None);
        assert_eq!(suffix("/", "/a/b").as_deref(), Some("/a/b"));
        assert_eq!(suffix("", "/a/b").as_deref(), Some("/a/b"));
        let base = RequestVar::BasePath {
            basepath: "/v1".into(),
        };
        let mut out = String::new();
        assert!(RequestInfo::default().resolve_into(&base, &mut out));
        assert_eq!(out, "/v1");
    }

    #[test]
    fn a_wildcard_element_of_the_base_path_is_any_one_element() {
        fn suffix<'a>(basepath: &str, path: &'a str) -> Option<&'a [u8]> {
            path_suffix(path.as_bytes(), basepath.as_bytes())
        }
        let base = "/cds-au/v1/banking/accounts/*/transactions";
        assert_eq!(
            suffix(base, "/cds-au/v1/banking/accounts/a1/transactions"),
            Some(&b""[..])
        );
        assert_eq!(
            suffix(base, "/cds-au/v1/banking/accounts/a1/transactions/t9"),
            Some(&b"/t9"[..])
        );
        assert_eq!(
            suffix(base, "/cds-au/v1/banking/accounts//transactions"),
            None
        );
        assert_eq!(
            suffix(base, "/cds-au/v1/banking/accounts/a/b/transactions"),
            None
        );
        assert_eq!(
            suffix(base, "/cds-au/v1/banking/accounts/a1/transactionsX"),
            None
        );
        assert_eq!(suffix(base, "/cds-au/v1/banking/accounts/a1"), None);
        assert_eq!(
            suffix("/team/*", "/team/blue/x").map(|s| s.to_vec()),
            Some(b"/x".to_vec())
        );
        assert_eq!(suffix("/*/*/", "/a/b"), Some(&b""[..]));
        assert_eq!(basepath_problem(base), None);
        for bad in ["/a/**", "/a/b*", "/*b/c", "/a/*.json"] {
            assert!(basepath_problem(bad).is_some(), "{bad}");
        }
    }

    #[test]
    fn request_line_variables() {
        let r = request();
        assert_eq!(resolve(&r, "request.verb").as_deref(), Some("POST"));
        assert_eq!(resolve(&r, "request.path").as_deref(), Some("/v1/items"));
        assert!(resolve(&r, "request.uri")
            .unwrap()
            .starts_with("/v1/items?access_token="));
        assert!(resolve(&r, "request.querystring")
            .unwrap()
            .starts_with("access_token=abc%20def&"));
        assert_eq!(resolve(&r, "client.ip").as_deref(), Some("10.1.2.3"));
        assert_eq!(resolve(&r, "request.unknown"), None);
        let bare = RequestInfo {
            path: b"/p".to_vec(),
            ..RequestInfo::default()
        };
        assert_eq!(resolve(&bare, "request.querystring").as_deref(), Some(""));
        assert_eq!(resolve(&bare, "request.queryparam.a"), None);
        assert_eq!(resolve(&bare, "client.ip"), None);
    }

    #[test]
    fn header_rules_follow_apigee() {
        let r = request();
        assert_eq!(
            resolve(&r, "request.header.authorization").as_deref(),
            Some("Bearer t0k")
        );
        assert_eq!(
            resolve(&r, "request.header.AUTHORIZATION").as_deref(),
            Some("Bearer t0k")
        );
        assert_eq!(resolve(&r, "request.header.x-list").as_deref(), Some("a"));
        assert_eq!(resolve(&r, "request.header.x-list.1").as_deref(), Some("a"));
        assert_eq!(resolve(&r, "request.header.x-list.2").as_deref(), Some("b"));
        assert_eq!(resolve(&r, "request.header.x-list.3").as_deref(), Some("c"));
        assert_eq!(resolve(&r, "request.header.x-list.4").as_deref(), Some("d"));
        assert_eq!(resolve(&r, "request.header.x-list.5"), None);
        assert_eq!(
            resolve(&r, "request.header.x-list.values.string").as_deref(),
            Some("a, b ,c, d")
        );
        assert_eq!(
            resolve(&r, "request.header.x-list.values.count").as_deref(),
            Some("4")
        );
        assert_eq!(resolve(&r, "request.header.x-empty").as_deref(), Some(""));
        assert_eq!(
            resolve(&r, "request.header.x-bin").as_deref(),
            Some("o\u{fffd}k")
        );
        assert_eq!(resolve(&r, "request.header.missing"), None);
        assert_eq!(resolve(&r, "request.header.missing.values.string"), None);
        // "x" is absent, so "x.2" is the header really named so.
        assert_eq!(resolve(&r, "request.header.x.2").as_deref(), Some("dotted"));
        assert_eq!(resolve(&r, "request.header.x-list.0"), None);
    }

    #[test]
    fn named_header_reads_use_their_index() {
        let r = RequestInfo {
            headers: Headers::Named(vec![None, Some(b" v1 , v2".to_vec())]),
            ..RequestInfo::default()
        };
        let var = RequestVar::Header {
            name: "x-b".into(),
            named_index: Some(1),
            whole: false,
        };
        let mut out = String::new();
        assert!(r.resolve_into(&var, &mut out));
        assert_eq!(out, "v1");
        let whole = RequestVar::Header {
            name: "x-b".into(),
            named_index: Some(1),
            whole: true,
        };
        out.clear();
        assert!(r.resolve_into(&whole, &mut out));
        assert_eq!(out, " v1 , v2");
        let absent = RequestVar::Header {
            name: "x-a".into(),
            named_index: Some(0),
            whole: false,
        };
        assert!(!r.resolve_into(&absent, &mut out));
    }

    #[test]
    fn query_parameters_are_decoded() {
        let r = request();
        let q = |n: &str| resolve(&r, &format!("request.queryparam.{n}"));
        assert_eq!(q("access_token").as_deref(), Some("abc def"));
        assert_eq!(q("x").as_deref(), Some("1"));
        assert_eq!(q("x.2").as_deref(), Some("2"));
        assert_eq!(q("x.3"), None);
        assert_eq!(q("plus").as_deref(), Some("a b"));
        assert_eq!(q("bad").as_deref(), Some("%zz%4"));
        assert_eq!(q("empty").as_deref(), Some(""));
        assert_eq!(q("flag").as_deref(), Some(""));
        assert_eq!(q("enc_name").as_deref(), Some("v"));
        assert_eq!(q("utf").as_deref(), Some("é"));
        assert_eq!(q("nonutf").as_deref(), Some("\u{fffd}"));
        assert_eq!(q("none"), None);
    }

    #[test]
    fn form_parameters() {
        let r = request();
        let f = |n: &str| resolve(&r, &format!("request.formparam.{n}"));
        assert_eq!(f("department_id").as_deref(), Some("42"));
        assert_eq!(f("dup.2").as_deref(), Some("b"));
        assert_eq!(f("sp").as_deref(), Some("a b!"));
        let no_body = RequestInfo::default();
        assert_eq!(resolve(&no_body, "request.formparam.department_id"), None);
    }

    /// `find_param` as it was: the string split at each `&`, each pair
    /// at its first `=`, each name decoded when it holds an escape.
    fn find_param_reference<'a>(encoded: &'a [u8], name: &str, mut n: usize) -> Option<&'a [u8]> {
        for pair in encoded.split(|&b| b == b'&') {
            let (key, value) = match pair.iter().position(|&b| b == b'=') {
                Some(i) => (&pair[..i], &pair[i + 1..]),
                None => (pair, &[][..]),
            };
            let equal = key == name.as_bytes()
                || key.iter().any(|&b| b == b'%' || b == b'+') && {
                    let mut decoded = String::new();
                    percent_decode_into(key, &mut decoded);
                    decoded == name
                };
            if pair.is_empty() || !equal {
                continue;
            }
            if n == 0 {
                return Some(value);
            }
            n -= 1;
        }
        None
    }

    #[test]
    fn the_one_pass_parameter_finder_finds_what_the_split_one_did() {
        let pieces: [&[u8]; 24] = [
            b"a",
            b"ab",
            b"a=",
            b"a=1",
            b"a=1=2",
            b"=",
            b"=v",
            b"",
            b"a%3D",
            b"a%3D=v",
            b"%61=x",
            b"a+b=y",
            b"a%20b=z",
            b"a.2=dotted",
            b"access_token=BT00042a1b2c3d4e5f6",
            b"access_token",
            b"access_token=",
            b"access_token_x=n",
            b"xaccess_token=m",
            b"b=%C3%A9",
            b"c=\xff\xfe",
            b"a%=%",
            b"%zz=q",
            b"long_name_of_a_parameter=0123456789abcdef",
        ];
        let names = [
            "a",
            "ab",
            "a=",
            "a b",
            "a+b",
            "a.2",
            "access_token",
            "access_token_x",
            "",
            "%zz",
            "long_name_of_a_parameter",
            "c",
            "b",
            "a%",
            "=",
        ];
        // Every two pieces joined by one or two `&`, alone and with a third.
        let mut queries: Vec<Vec<u8>> = vec![Vec::new(), b"&".to_vec(), b"&&".to_vec()];
        for x in pieces {
            for y in pieces {
                for sep in [&b"&"[..], b"&&"] {
                    queries.push([x, sep, y].concat());
                    for z in [&b"a=3"[..], b"access_token=t2", b"", b"a"] {
                        queries.push([x, sep, y, b"&", z].concat());
                    }
                }
            }
        }
        for query in &queries {
            for name in names {
                for n in 0..3 {
                    assert_eq!(
                        find_param(query, name, n),
                        find_param_reference(query, name, n),
                        "{:?} {name:?} {n}",
                        lossy(query)
                    );
                }
            }
        }
    }

    #[test]
    fn the_word_at_a_time_scans_agree_with_byte_scans() {
        // Every length up to 40 and every place of the byte sought, with
        // bytes around it that differ from it by one bit or by the high bit.
        for len in 0..40usize {
            for fill in [b'a', b'\'', b'%' ^ 0x80, 0xa6, 0x27, b'$', 0x00, 0xff] {
                for at in 0..=len {
                    let mut bytes = vec![fill; len];
                    if at < len {
                        bytes[at] = b'&';
                    }
                    let expected = bytes.iter().position(|&b| b == b'&').unwrap_or(len);
                    assert_eq!(find_byte(&bytes, b'&'), expected, "{bytes:?}");
                    for escape in [b'%', b'+'] {
                        let mut coded = vec![fill; len];
                        if at < len {
                            coded[at] = escape;
                        }
                        let expected = coded.iter().any(|&b| b == b'%' || b == b'+');
                        assert_eq!(has_escapes(&coded), expected, "{coded:?}");
                    }
                }
                // Two matches: the first is found.
                if len >= 2 {
                    let mut bytes = vec![fill; len];
                    bytes[len - 1] = b'&';
                    bytes[len / 2] = b'&';
                    assert_eq!(find_byte(&bytes, b'&'), len / 2);
                }
            }
        }
    }

    #[test]
    fn percent_decoding_keeps_bad_escapes_and_replaces_what_is_not_utf8() {
        let decode = |input: &[u8]| {
            let mut out = String::from("<");
            percent_decode_into(input, &mut out);
            out
        };
        assert_eq!(decode(b"BT00042a1b2c3d4e5f6"), "<BT00042a1b2c3d4e5f6");
        assert_eq!(decode(b"%ff"), "<\u{fffd}");
        assert_eq!(decode(b"a%C3"), "<a\u{fffd}");
        assert_eq!(decode(b"%C3%A9+%E2%82%AC"), "<\u{e9} \u{20ac}");
        assert_eq!(decode(b"\xff%41"), "<\u{fffd}A");
        assert_eq!(decode(b"\xc3%A9"), "<\u{e9}");
        assert_eq!(decode(b"o\xffk"), "<o\u{fffd}k");
        assert_eq!(decode("\u{e9}t\u{e9}".as_bytes()), "<\u{e9}t\u{e9}");
        assert_eq!(decode(b"%"), "<%");
        assert_eq!(decode(b"%%"), "<%%");
        assert_eq!(decode(b"%4"), "<%4");
        assert_eq!(decode(b"%zz%4g%G1"), "<%zz%4g%G1");
        assert_eq!(decode(b"100%"), "<100%");
        assert_eq!(decode(b"%2B+"), "<+ ");
        assert_eq!(decode(b"a%2"), "<a%2");
        assert_eq!(decode(b""), "<");
        // Long plain and coded values (past the word-at-a-time scan's tail).
        assert_eq!(decode(&[b'x'; 37]), format!("<{}", "x".repeat(37)));
        let mut coded = vec![b'y'; 33];
        coded.push(b'+');
        assert_eq!(decode(&coded), format!("<{} ", "y".repeat(33)));
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
    fn request_variable_names() {
        assert!(is_request_variable("request.header.x"));
        assert!(is_request_variable("client.ip"));
        assert!(!is_request_variable("request.header."));
        assert!(!is_request_variable("request.content"));
        assert_eq!(
            RequestVar::parse("request.header.X-A"),
            Some(RequestVar::Header {
                name: "x-a".into(),
                named_index: None,
                whole: false,
            })
        );
        assert!(matches!(
            RequestVar::parse("request.header.x.2"),
            Some(RequestVar::HeaderIndexed { .. })
        ));
    }

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
        assert!(is_form_urlencoded(b"application/x-www-form-urlencoded"));
        assert!(is_form_urlencoded(
            b"Application/X-WWW-Form-Urlencoded; charset=UTF-8"
        ));
        assert!(!is_form_urlencoded(b"application/json"));
        assert!(!is_form_urlencoded(b"multipart/form-data; boundary=x"));
        assert!(is_valid_header_value(b"a b\tc"));
        assert!(!is_valid_header_value(b"a\r\nb: c"));
        for b in (0u8..0x20).filter(|&b| b != b'\t').chain([0x7f]) {
            assert!(!is_valid_header_value(&[b'a', b]), "{b:#x}");
        }
        assert!(is_valid_header_value("é".as_bytes()));
    }
}
