//! The app's API products, as a lookup answers them (`api_products`,
//! docs/token-service.md) and the profile keeps them: one span of the
//! profile's data, read in place on a cache hit without copying.
//!
//! The encoding is compact: every length and count is a LEB128 varint (one
//! byte below 128), every string its length then its bytes. A product is
//! `name, proxies, resources, environments, operation configs, attributes,
//! quota`; a list is its count then its items; an operation configuration
//! is `api_source, operations (resource, methods), attributes, quota`;
//! attributes are name/value pairs; a quota is one byte saying which of
//! `limit`, `interval`, `time_unit` are present (bits 0, 1, 2), then those
//! strings. Reads are bounds-checked: bytes that are not an
//! encoding read as fewer, or empty, items, never a panic.

use serde_json::Value;

/// Why an `api_products` member cannot be used (reported as a service
/// failure): the member, and what it is not.
pub(crate) type Malformed = (&'static str, &'static str);

fn put_len(out: &mut Vec<u8>, mut n: usize) {
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// The string `name` of `object` (`None`: `object` is it).
fn put_str(out: &mut Vec<u8>, object: &Value, name: Option<&'static str>) -> Result<(), Malformed> {
    let value = match name {
        Some(m) => object.get(m),
        None => Some(object),
    };
    let s = value
        .and_then(Value::as_str)
        .ok_or((name.unwrap_or("a list item"), "a string"))?;
    put_len(out, s.len());
    out.extend_from_slice(s.as_bytes());
    Ok(())
}

/// The array `member` of `object` (absent or null: empty), each item
/// written by `each`.
fn put_list(
    out: &mut Vec<u8>,
    object: &Value,
    member: &'static str,
    each: fn(&mut Vec<u8>, &Value) -> Result<(), Malformed>,
) -> Result<(), Malformed> {
    match object.get(member) {
        None => put_len(out, 0),
        Some(Value::Array(items)) => {
            put_len(out, items.len());
            for item in items {
                each(out, item)?;
            }
        }
        Some(_) => return Err((member, "an array")),
    }
    Ok(())
}

/// The object of strings `attributes` of `object` (absent: empty).
fn put_attributes(out: &mut Vec<u8>, object: &Value) -> Result<(), Malformed> {
    match object.get("attributes") {
        None => put_len(out, 0),
        Some(Value::Object(map)) => {
            put_len(out, map.len());
            for (name, value) in map {
                put_len(out, name.len());
                out.extend_from_slice(name.as_bytes());
                put_str(out, value, None)?;
            }
        }
        Some(_) => return Err(("attributes", "an object of strings")),
    }
    Ok(())
}

/// The quota settings `quota` of `object` (absent or null: none): the
/// byte saying which are present, then those strings.
fn put_quota(out: &mut Vec<u8>, object: &Value) -> Result<(), Malformed> {
    const NOT: Malformed = ("quota", "an object of strings");
    let at = out.len();
    out.push(0);
    let quota = match object.get("quota") {
        None | Some(Value::Null) => return Ok(()),
        Some(q @ Value::Object(_)) => q,
        Some(_) => return Err(NOT),
    };
    let mut flags = 0u8;
    for (bit, member) in ["limit", "interval", "time_unit"].into_iter().enumerate() {
        match quota.get(member) {
            None | Some(Value::Null) => {}
            Some(Value::String(s)) => {
                flags |= 1 << bit;
                put_len(out, s.len());
                out.extend_from_slice(s.as_bytes());
            }
            Some(_) => return Err(NOT),
        }
    }
    if let Some(byte) = out.get_mut(at) {
        *byte = flags;
    }
    Ok(())
}

fn put_strs(out: &mut Vec<u8>, object: &Value, member: &'static str) -> Result<(), Malformed> {
    put_list(out, object, member, |out, item| put_str(out, item, None))
}

fn put_operation(out: &mut Vec<u8>, op: &Value) -> Result<(), Malformed> {
    put_str(out, op, Some("resource"))?;
    put_strs(out, op, "methods")
}

fn put_config(out: &mut Vec<u8>, config: &Value) -> Result<(), Malformed> {
    put_str(out, config, Some("api_source"))?;
    put_list(out, config, "operations", put_operation)?;
    put_attributes(out, config)?;
    put_quota(out, config)
}

fn put_product(out: &mut Vec<u8>, product: &Value) -> Result<(), Malformed> {
    put_str(out, product, Some("name"))?;
    put_strs(out, product, "proxies")?;
    put_strs(out, product, "resources")?;
    put_strs(out, product, "environments")?;
    put_list(out, product, "operation_configs", put_config)?;
    put_attributes(out, product)?;
    put_quota(out, product)
}

/// Encodes the `api_products` member of an answer.
pub(crate) fn encode(value: Value) -> Result<Vec<u8>, Malformed> {
    let Value::Array(products) = value else {
        return Err(("api_products", "an array"));
    };
    let mut out = Vec::with_capacity(256);
    put_len(&mut out, products.len());
    for product in &products {
        put_product(&mut out, product)?;
    }
    Ok(out)
}

/// A cursor over encoded bytes. Strings are read as bytes: the product
/// check compares bytes, and the bytes were UTF-8 when the profile was
/// encoded (from JSON strings).
#[derive(Debug, Clone, Copy)]
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    #[inline]
    fn len(&mut self) -> usize {
        // One byte below 128, the common case.
        if let Some((&byte, rest)) = self.0.split_first() {
            if byte & 0x80 == 0 {
                self.0 = rest;
                return usize::from(byte);
            }
        }
        let mut n: usize = 0;
        for shift in (0..usize::BITS).step_by(7) {
            let Some((&byte, rest)) = self.0.split_first() else {
                return 0;
            };
            self.0 = rest;
            n |= usize::from(byte & 0x7f).checked_shl(shift).unwrap_or(0);
            if byte & 0x80 == 0 {
                return n;
            }
        }
        0
    }

    #[inline]
    fn bytes(&mut self) -> &'a [u8] {
        let n = self.len().min(self.0.len());
        let (s, rest) = self.0.split_at(n);
        self.0 = rest;
        s
    }

    /// Skips `n` strings.
    #[inline]
    fn skip_strs(&mut self, n: usize) {
        for _ in 0..n {
            if self.0.is_empty() {
                return;
            }
            self.bytes();
        }
    }

    /// A list of strings; the cursor moves past it.
    #[inline]
    fn strs(&mut self) -> Strs<'a> {
        let count = self.len();
        let start = *self;
        self.skip_strs(count);
        Strs {
            left: count,
            at: start,
        }
    }

    /// A list of pairs; the cursor moves past it.
    #[inline]
    fn pairs(&mut self) -> Pairs<'a> {
        let count = self.len();
        let start = *self;
        self.skip_strs(count.saturating_mul(2));
        Pairs {
            left: count,
            at: start,
        }
    }

    /// Skips a quota record: whether it has a setting.
    #[inline]
    fn skip_quota(&mut self) -> bool {
        let Some((&flags, rest)) = self.0.split_first() else {
            return false;
        };
        self.0 = rest;
        if flags != 0 {
            self.skip_strs((flags & 0b111).count_ones() as usize);
        }
        flags & 0b111 != 0
    }

    #[inline]
    fn operation(&mut self) -> OperationRef<'a> {
        OperationRef {
            resource: self.bytes(),
            methods: self.strs(),
        }
    }

    fn config(&mut self) -> ConfigRef<'a> {
        let api_source = self.bytes();
        let count = self.len();
        let start = *self;
        for _ in 0..count {
            if self.0.is_empty() {
                break;
            }
            self.operation();
        }
        let operations = Operations {
            left: count,
            at: start,
        };
        let attributes_at = index(self.0.len());
        let attributes = self.pairs();
        let quota_at = index(self.0.len());
        let has_quota = self.skip_quota();
        ConfigRef {
            api_source,
            operations,
            attributes,
            attributes_at,
            quota_at: has_quota.then_some(quota_at),
        }
    }

    fn configs(&mut self) -> Configs<'a> {
        let count = self.len();
        let start = *self;
        for _ in 0..count {
            if self.0.is_empty() {
                break;
            }
            self.config();
        }
        Configs {
            left: count,
            at: start,
        }
    }

    fn product(&mut self) -> ProductRef<'a> {
        let name = self.bytes();
        let proxies = self.strs();
        let resources = self.strs();
        let environments = self.strs();
        let operation_configs = self.configs();
        let attributes_at = index(self.0.len());
        let attributes = self.pairs();
        let quota_at = index(self.0.len());
        let has_quota = self.skip_quota();
        ProductRef {
            name,
            proxies,
            resources,
            environments,
            operation_configs,
            attributes,
            attributes_at,
            quota_at: has_quota.then_some(quota_at),
        }
    }
}

macro_rules! list {
    ($(#[$doc:meta])* $name:ident, $item:ty, |$r:ident| $read:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy)]
        pub struct $name<'a> {
            left: usize,
            at: Reader<'a>,
        }

        impl<'a> Iterator for $name<'a> {
            type Item = $item;
            #[inline]
            fn next(&mut self) -> Option<$item> {
                // Counts come from the bytes: stop at their end whatever
                // the count says.
                if self.left == 0 || self.at.0.is_empty() {
                    return None;
                }
                self.left -= 1;
                let $r = &mut self.at;
                Some($read)
            }
        }

        impl<'a> $name<'a> {
            /// True when the list has no item.
            pub fn is_empty(&self) -> bool {
                self.left == 0
            }

            /// Where the next item starts, as the length of the bytes from
            /// there to the end of the products' span.
            #[allow(dead_code)]
            fn tail(&self) -> u32 {
                index(self.at.0.len())
            }
        }
    };
}

list!(
    /// A list of strings (proxies, resources, environments, methods).
    Strs, &'a [u8], |r| r.bytes()
);
list!(
    /// Custom attributes, names and values, in the answer's order.
    Pairs, (&'a [u8], &'a [u8]), |r| (r.bytes(), r.bytes())
);
list!(
    /// An operation configuration's operations.
    Operations, OperationRef<'a>, |r| r.operation()
);
list!(
    /// A product's operation configurations.
    Configs, ConfigRef<'a>, |r| r.config()
);
list!(
    /// The app's products, in the answer's order.
    Products, ProductRef<'a>, |r| r.product()
);

/// One operation (`resource` and the verbs it allows).
#[derive(Debug, Clone, Copy)]
pub struct OperationRef<'a> {
    pub resource: &'a [u8],
    pub methods: Strs<'a>,
}

/// One operation configuration.
#[derive(Debug, Clone, Copy)]
pub struct ConfigRef<'a> {
    pub api_source: &'a [u8],
    pub operations: Operations<'a>,
    pub attributes: Pairs<'a>,
    /// Where `attributes` starts ([`ProductAt`]).
    attributes_at: u32,
    /// Where its quota starts, when it has one.
    quota_at: Option<u32>,
}

/// A quota's settings (`limit`, `interval`, `time_unit`), each when
/// present: its record in place (the byte saying which are present, then
/// their strings), read when a setting is asked for; `None`: no quota.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QuotaRef<'a>(Option<&'a [u8]>);

impl<'a> QuotaRef<'a> {
    /// True when no setting is present.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.0.is_none()
    }

    /// The setting a quota variable shows (`part`: `QuotaLimit`,
    /// `QuotaInterval`, `QuotaTimeUnit`), when present. Out of line: the
    /// product variables' walk stays small for the calls whose quota has
    /// none.
    #[cold]
    #[inline(never)]
    pub fn setting(&self, part: oauthv2info_names::variables::ProductPart) -> Option<&'a [u8]> {
        use oauthv2info_names::variables::ProductPart;
        let bit = match part {
            ProductPart::QuotaLimit => 0,
            ProductPart::QuotaInterval => 1,
            ProductPart::QuotaTimeUnit => 2,
            _ => return None,
        };
        let (&flags, strs) = self.0?.split_first()?;
        if flags & (1 << bit) == 0 {
            return None;
        }
        let before = (flags & ((1 << bit) - 1)).count_ones() as usize;
        let mut r = Reader(strs);
        r.skip_strs(before);
        Some(r.bytes())
    }
}

/// One product, read in place.
#[derive(Debug, Clone, Copy)]
pub struct ProductRef<'a> {
    pub name: &'a [u8],
    pub proxies: Strs<'a>,
    pub resources: Strs<'a>,
    pub environments: Strs<'a>,
    pub operation_configs: Configs<'a>,
    pub attributes: Pairs<'a>,
    /// Where `attributes` starts ([`ProductAt`]).
    attributes_at: u32,
    /// Where its quota starts, when it has one ([`ProductAt`]).
    quota_at: Option<u32>,
}

/// True when an operation of the products in `span` lists methods: only
/// then does [`find`] compare the call's verb (with the test it makes).
pub(crate) fn lists_verbs(span: &[u8]) -> bool {
    read(span).any(|p| {
        p.operation_configs
            .into_iter()
            .any(|c| c.operations.into_iter().any(|o| !o.methods.is_empty()))
    })
}

/// The products in `bytes` (an [`encode`]d span; empty: none).
pub(crate) fn read(bytes: &[u8]) -> Products<'_> {
    let mut r = Reader(bytes);
    let count = r.len();
    Products { left: count, at: r }
}

/// What the variables read of the product that allows a call (and, with
/// operation groups, of the operation configuration and operation).
#[derive(Debug, Clone, Copy)]
pub struct MatchRef<'a> {
    pub product: Matched<'a>,
    pub operation: Option<(Matched<'a>, OperationRef<'a>)>,
    /// The quota that applies: the matching operation configuration's
    /// when it has one, else the product's (docs/decisions.md#api-products).
    pub quota: QuotaRef<'a>,
}

/// A matching product's (or operation configuration's) name (its
/// `apiSource`) and custom attributes.
#[derive(Debug, Clone, Copy)]
pub struct Matched<'a> {
    pub name: &'a [u8],
    pub attributes: Pairs<'a>,
}

/// Where the match lies in the profile's products: where the product's
/// name and attributes start and, with operation groups, the operation
/// configuration's `apiSource` and attributes and the operation (each as
/// the length of the span from there to its end). A flow keeps this and
/// reads what a variable needs at those places, without reading anything
/// else of the products again. `quota` is where the quota that applies
/// starts (the operation configuration's, else the product's; 0: neither
/// has one, nothing to read).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ProductAt {
    name: u32,
    attributes: u32,
    operation: Option<[u32; 3]>,
    quota: u32,
}

fn index(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// The quota record that ends `tail` bytes before the end of `span`. Out
/// of line: a match without a quota does not come here.
#[cold]
#[inline(never)]
fn quota_record(span: &[u8], tail: u32) -> Option<&[u8]> {
    let start = span.len().checked_sub(tail as usize)?;
    span.get(start..).filter(|s| !s.is_empty())
}

impl ProductAt {
    /// The match, read from `products` (the same profile's).
    pub(crate) fn resolve(self, products: Products<'_>) -> Option<MatchRef<'_>> {
        let span = products.at.0;
        let at = |tail: u32| {
            let start = span.len().checked_sub(tail as usize)?;
            span.get(start..).filter(|s| !s.is_empty()).map(Reader)
        };
        let product = Matched {
            name: at(self.name)?.bytes(),
            attributes: at(self.attributes)?.pairs(),
        };
        let operation = match self.operation {
            None => None,
            Some([c, a, o]) => Some((
                Matched {
                    name: at(c)?.bytes(),
                    attributes: at(a)?.pairs(),
                },
                at(o)?.operation(),
            )),
        };
        // 0: neither has a quota (decided with the match).
        let quota = QuotaRef(match self.quota {
            0 => None,
            tail => quota_record(span, tail),
        });
        Some(MatchRef {
            product,
            operation,
            quota,
        })
    }
}

/// The first product, in the app's order, that allows `call`: the rules of
/// `oauthv2info_names::product::allows` (docs/decisions.md#api-products),
/// read over the profile's bytes in place, once, without allocating. The
/// resource-path rule is the names crate's own
/// ([`oauthv2info_names::product::bytes_match`]); a unit test holds
/// the two readings equal. An empty `call.proxy` (no `proxy_name`
/// configured) checks no product's proxies nor operations' `apiSource`.
pub(crate) fn find(
    products: Products<'_>,
    call: &oauthv2info_names::product::Call<'_>,
) -> Option<ProductAt> {
    let mut products = products;
    loop {
        let tail = products.tail();
        let p = products.next()?;
        if let Some((operation, quota)) = allows(p, call) {
            return Some(ProductAt {
                name: tail,
                attributes: p.attributes_at,
                operation,
                quota: quota.or(p.quota_at).unwrap_or(0),
            });
        }
    }
}

/// `None`: the product does not allow the call; `Some((operation,
/// quota))`: it does, through that operation (configuration, operation) if
/// any, and the operation configuration's quota if it has one.
fn allows(
    product: ProductRef<'_>,
    call: &oauthv2info_names::product::Call<'_>,
) -> Option<(Option<[u32; 3]>, Option<u32>)> {
    use oauthv2info_names::product::bytes_match;
    let suffix = call.suffix.as_bytes();
    if let Some(env) = call.environment {
        let env = env.as_bytes();
        if !product.environments.is_empty() && !product.environments.into_iter().any(|e| e == env) {
            return None;
        }
    }
    let proxy = call.proxy.as_bytes();
    let any_proxy = proxy.is_empty();
    if product.operation_configs.is_empty() {
        let proxy_ok = any_proxy
            || product.proxies.is_empty()
            || product.proxies.into_iter().any(|p| p == proxy);
        let path_ok = product.resources.is_empty()
            || product
                .resources
                .into_iter()
                .any(|r| bytes_match(r, suffix));
        return (proxy_ok && path_ok).then_some((None, None));
    }
    let verb = call.verb.as_bytes();
    let mut configs = product.operation_configs;
    loop {
        let c = configs.tail();
        let config = configs.next()?;
        if !any_proxy && config.api_source != proxy {
            continue;
        }
        if config.operations.is_empty() {
            return Some((None, config.quota_at));
        }
        let mut operations = config.operations;
        loop {
            let o = operations.tail();
            let Some(op) = operations.next() else { break };
            let verb_ok = op.methods.is_empty()
                || op.methods.into_iter().any(|m| m.eq_ignore_ascii_case(verb));
            if verb_ok && bytes_match(op.resource, suffix) {
                return Some((Some([c, config.attributes_at, o]), config.quota_at));
            }
        }
    }
}

/// What the API-product check compares: the configured proxy and
/// environment, and the request's path suffix and verb as bytes, as the
/// request has them. They are compared as text (U+FFFD for what is not
/// UTF-8), as [`find`] takes them; the bytes are what [`Decisions`] keys
/// on.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CallBytes<'a> {
    pub(crate) proxy: &'a str,
    pub(crate) environment: Option<&'a str>,
    pub(crate) suffix: &'a [u8],
    pub(crate) verb: &'a [u8],
}

/// [`find`] over the products `span` (an [`encode`]d span) for `call`: the
/// request's bytes borrowed when they are UTF-8, else copied as text into
/// `text`.
fn decide(span: &[u8], call: &CallBytes<'_>, text: &mut String) -> Option<ProductAt> {
    let (suffix, verb) = match (
        std::str::from_utf8(call.suffix),
        std::str::from_utf8(call.verb),
    ) {
        (Ok(suffix), Ok(verb)) => (suffix, verb),
        _ => {
            text.clear();
            crate::request::push_text(text, call.suffix);
            let mid = text.len();
            crate::request::push_text(text, call.verb);
            let (suffix, verb) = text.split_at(mid);
            (suffix, verb)
        }
    };
    let call = oauthv2info_names::product::Call {
        proxy: call.proxy,
        suffix,
        verb,
        environment: call.environment,
    };
    find(read(span), &call)
}

/// A worker's memo of API-product decisions (docs/performance.md#the-warm-path):
/// what [`find`] answered for a products span, a path suffix and a verb,
/// so that a repeated call (the same app's products, path and verb) is
/// not read and matched again. A decision is a function of the span's
/// bytes, the path suffix's and verb's bytes and the configured proxy and
/// environment: a slot keeps the first three byte for byte and answers
/// only when all three are equal, and the memo serves one configuration
/// (the worker's current one; [`Decisions::clear`] when it changes). A
/// changed product is other bytes, so it is never answered from a stale
/// slot. Bounded: [`SLOTS`] slots, two a set, the set chosen by a hash of
/// the key (the one used last kept when a third key comes); spans longer
/// than [`MAX_SPAN`] bytes or calls longer than [`MAX_CALL`] are matched
/// without the memo. A slot's buffers grow when a longer key first lands
/// in it; a memo hit allocates nothing.
#[derive(Debug, Default)]
pub(crate) struct Decisions {
    slots: Vec<Slot>,
    /// The call as text, when the request's bytes are not UTF-8.
    text: String,
    #[cfg(test)]
    pub(crate) misses: usize,
}

/// How many decisions a worker keeps.
pub(crate) const SLOTS: usize = 32;
/// The longest products span a decision is kept for (bytes).
pub(crate) const MAX_SPAN: usize = 4096;
/// The longest path suffix plus verb a decision is kept for (bytes).
pub(crate) const MAX_CALL: usize = 512;

#[derive(Debug, Default)]
struct Slot {
    used: bool,
    suffix: Vec<u8>,
    verb: Vec<u8>,
    span: Vec<u8>,
    decision: Option<ProductAt>,
}

impl Slot {
    #[inline]
    fn holds(&self, span: &[u8], call: &CallBytes<'_>) -> bool {
        self.used && self.suffix == call.suffix && self.verb == call.verb && self.span == span
    }
}

/// The set of a key: a hash of the lengths, of four of the span's
/// eight-byte words (first, last, and two between), three of the
/// suffix's (first, middle, last; every byte of a shorter one) and the
/// verb's first. Equal keys, equal sets; a slot is then compared byte
/// for byte, so the hash only spreads keys (keys alike in every word
/// hashed share a set, and take turns in its two slots).
#[inline]
fn set_of(span: &[u8], call: &CallBytes<'_>) -> usize {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;
    let mix = |h: u64, w: u64| (h ^ w).rotate_left(23).wrapping_mul(K);
    let word = |w: Option<&[u8; 8]>| w.map_or(0, |w| u64::from_le_bytes(*w));
    let third = span.len() / 3;
    let mut h = mix(span.len() as u64, word(span.first_chunk()));
    h = mix(h, word(span.last_chunk()));
    h = mix(h, word(span.get(third..).and_then(<[u8]>::first_chunk)));
    h = mix(h, word(span.get(2 * third..).and_then(<[u8]>::first_chunk)));
    // The suffix's first, middle and last eight bytes (all of it when
    // shorter), and the verb's first eight.
    let mut tail = call.suffix.len() as u64;
    if let (Some(a), Some(b)) = (call.suffix.first_chunk(), call.suffix.last_chunk()) {
        let middle = call.suffix.get((call.suffix.len() / 2).saturating_sub(4)..);
        h = mix(h, word(Some(a)));
        h = mix(h, word(middle.and_then(<[u8]>::first_chunk)));
        h = mix(h, word(Some(b)));
    } else {
        for &b in call.suffix {
            tail = tail.rotate_left(8) ^ u64::from(b);
        }
    }
    h = mix(h, tail);
    let mut verb = call.verb.len() as u64;
    for &b in call.verb.iter().take(8) {
        verb = verb.rotate_left(8) ^ u64::from(b);
    }
    h = mix(h, verb);
    // The top bits: each depends on every bit of the last word.
    (h >> 56) as usize % (SLOTS / 2)
}

impl Decisions {
    /// Forgets every decision (the configuration changed).
    pub(crate) fn clear(&mut self) {
        for slot in &mut self.slots {
            slot.used = false;
        }
    }

    /// [`find`] over the products `span` for `call`, from the memo when
    /// it holds the same span and call. Two slots a set, the one used
    /// last first.
    #[inline]
    pub(crate) fn decide(&mut self, span: &[u8], call: &CallBytes<'_>) -> Option<ProductAt> {
        if span.len() > MAX_SPAN || call.suffix.len() + call.verb.len() > MAX_CALL {
            return decide(span, call, &mut self.text);
        }
        if self.slots.is_empty() {
            self.slots.resize_with(SLOTS, Slot::default);
        }
        let first = set_of(span, call) * 2;
        if let Some(slot) = self.slots.get(first) {
            if slot.holds(span, call) {
                return slot.decision;
            }
        }
        self.second(first, span, call)
    }

    /// The second slot of the set at `first`, or a decision made and kept
    /// in the first (the other moved second, the second's dropped). Out
    /// of line: a call repeated alone does not come here.
    #[inline(never)]
    fn second(&mut self, first: usize, span: &[u8], call: &CallBytes<'_>) -> Option<ProductAt> {
        let Some(set) = self.slots.get_mut(first..first + 2) else {
            return decide(span, call, &mut self.text);
        };
        set.swap(0, 1);
        if let Some(slot) = set.first() {
            if slot.holds(span, call) {
                return slot.decision;
            }
        }
        #[cfg(test)]
        {
            self.misses += 1;
        }
        let decision = decide(span, call, &mut self.text);
        if let Some(slot) = self.slots.get_mut(first) {
            for (to, from) in [
                (&mut slot.suffix, call.suffix),
                (&mut slot.verb, call.verb),
                (&mut slot.span, span),
            ] {
                to.clear();
                to.extend_from_slice(from);
            }
            slot.decision = decision;
            slot.used = true;
        }
        decision
    }
}

/// The API-product check of one call: what it compares, and the worker's
/// memo of decisions when the request runs under the worker's current
/// configuration (`None`: matched without it).
pub(crate) struct ProductCheck<'a> {
    pub(crate) call: CallBytes<'a>,
    pub(crate) memo: Option<&'a mut Decisions>,
}

impl ProductCheck<'_> {
    /// The first product of `span` (an [`encode`]d span) that allows the
    /// call ([`find`]).
    #[inline]
    pub(crate) fn find(&mut self, span: &[u8]) -> Option<ProductAt> {
        match self.memo.as_deref_mut() {
            Some(memo) => memo.decide(span, &self.call),
            None => decide(span, &self.call, &mut String::new()),
        }
    }
}
