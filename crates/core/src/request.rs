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
    /// `:path` was read (the configuration reads it, or the API-product
    /// check did).
    pub path_read: bool,
    /// `:method` was read (the configuration reads it, or the API-product
    /// check did).
    pub method_read: bool,
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
        self.path_read = false;
        self.method_read = false;
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
#[path = "request_tests.rs"]
mod tests;
