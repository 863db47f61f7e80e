//! The app's API products, as a lookup answers them (`api_products`,
//! docs/token-service.md) and the profile keeps them: one span of the
//! profile's data, read in place on a cache hit without copying.
//!
//! The encoding is compact: every length and count is a LEB128 varint (one
//! byte below 128), every string its length then its bytes. A product is
//! `name, proxies, resources, environments, operation configs, attributes`;
//! a list is its count then its items; an operation configuration is
//! `api_source, operations (resource, methods), attributes`; attributes are
//! name/value pairs. Reads are bounds-checked: bytes that are not an
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
    put_attributes(out, config)
}

fn put_product(out: &mut Vec<u8>, product: &Value) -> Result<(), Malformed> {
    put_str(out, product, Some("name"))?;
    put_strs(out, product, "proxies")?;
    put_strs(out, product, "resources")?;
    put_strs(out, product, "environments")?;
    put_list(out, product, "operation_configs", put_config)?;
    put_attributes(out, product)
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

/// A cursor over encoded bytes.
#[derive(Debug, Clone, Copy)]
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    #[inline]
    fn len(&mut self) -> usize {
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

    #[inline]
    fn str(&mut self) -> &'a str {
        std::str::from_utf8(self.bytes()).unwrap_or_default()
    }

    /// Skips `n` strings.
    fn skip_strs(&mut self, n: usize) {
        for _ in 0..n {
            self.bytes();
        }
    }

    /// A list of strings; the cursor moves past it.
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
    fn pairs(&mut self) -> Pairs<'a> {
        let count = self.len();
        let start = *self;
        self.skip_strs(count.saturating_mul(2));
        Pairs {
            left: count,
            at: start,
        }
    }

    fn config(&mut self) -> ConfigRef<'a> {
        let api_source = self.str();
        let count = self.len();
        let start = *self;
        for _ in 0..count {
            self.bytes();
            self.strs();
        }
        let operations = Operations {
            left: count,
            at: start,
        };
        ConfigRef {
            api_source,
            operations,
            attributes: self.pairs(),
        }
    }

    fn configs(&mut self) -> Configs<'a> {
        let count = self.len();
        let start = *self;
        for _ in 0..count {
            self.config();
        }
        Configs {
            left: count,
            at: start,
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
        }
    };
}

list!(
    /// A list of strings (proxies, resources, environments, methods).
    Strs, &'a str, |r| r.str()
);
list!(
    /// Custom attributes, names and values, in the answer's order.
    Pairs, (&'a str, &'a str), |r| (r.str(), r.str())
);
list!(
    /// An operation configuration's operations.
    Operations, OperationRef<'a>, |r| OperationRef { resource: r.str(), methods: r.strs() }
);
list!(
    /// A product's operation configurations.
    Configs, ConfigRef<'a>, |r| r.config()
);
list!(
    /// The app's products, in the answer's order.
    Products, ProductRef<'a>, |r| ProductRef {
        name: r.str(),
        proxies: r.strs(),
        resources: r.strs(),
        environments: r.strs(),
        operation_configs: r.configs(),
        attributes: r.pairs(),
    }
);

/// One operation (`resource` and the verbs it allows).
#[derive(Debug, Clone, Copy)]
pub struct OperationRef<'a> {
    pub resource: &'a str,
    pub methods: Strs<'a>,
}

/// One operation configuration.
#[derive(Debug, Clone, Copy)]
pub struct ConfigRef<'a> {
    pub api_source: &'a str,
    pub operations: Operations<'a>,
    pub attributes: Pairs<'a>,
}

/// One product, read in place.
#[derive(Debug, Clone, Copy)]
pub struct ProductRef<'a> {
    pub name: &'a str,
    pub proxies: Strs<'a>,
    pub resources: Strs<'a>,
    pub environments: Strs<'a>,
    pub operation_configs: Configs<'a>,
    pub attributes: Pairs<'a>,
}

/// The products in `bytes` (an [`encode`]d span; empty: none).
pub(crate) fn read(bytes: &[u8]) -> Products<'_> {
    let mut r = Reader(bytes);
    let count = r.len();
    Products { left: count, at: r }
}

/// The product (and, with operation groups, the operation configuration
/// and operation) that allows a call.
#[derive(Debug, Clone, Copy)]
pub struct MatchRef<'a> {
    pub product: ProductRef<'a>,
    pub operation: Option<(ConfigRef<'a>, OperationRef<'a>)>,
}

/// Where the match lies among the profile's products: the product's
/// index, and the operation configuration's and operation's. A flow keeps
/// this (three numbers) and reads the match again from the profile's
/// bytes when a variable needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ProductAt {
    product: u32,
    operation: Option<(u32, u32)>,
}

fn index(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

impl ProductAt {
    /// The match, read from `products` (the same profile's).
    pub(crate) fn resolve(self, products: Products<'_>) -> Option<MatchRef<'_>> {
        let mut products = products;
        let product = products.nth(self.product as usize)?;
        let operation = match self.operation {
            None => None,
            Some((c, o)) => {
                let mut configs = product.operation_configs;
                let config = configs.nth(c as usize)?;
                let mut operations = config.operations;
                Some((config, operations.nth(o as usize)?))
            }
        };
        Some(MatchRef { product, operation })
    }
}

/// The first product, in the app's order, that allows `call`: the rules of
/// `oauthv2info_names::product::allows` (docs/decisions.md#api-products),
/// read over the profile's bytes in place, without allocating. The
/// resource-path rule is the names crate's own
/// ([`oauthv2info_names::product::resource_matches`]); a unit test holds
/// the two readings equal. An empty `call.proxy` (no `proxy_name`
/// configured) checks no product's proxies nor operations' `apiSource`.
pub(crate) fn find(
    products: Products<'_>,
    call: &oauthv2info_names::product::Call<'_>,
) -> Option<ProductAt> {
    products.enumerate().find_map(|(i, p)| {
        allows(p, call).map(|operation| ProductAt {
            product: index(i),
            operation,
        })
    })
}

/// `None`: the product does not allow the call; `Some(operation)`: it
/// does, through that operation (configuration, operation) if any.
fn allows(
    product: ProductRef<'_>,
    call: &oauthv2info_names::product::Call<'_>,
) -> Option<Option<(u32, u32)>> {
    use oauthv2info_names::product::resource_matches;
    if let Some(env) = call.environment {
        if !product.environments.is_empty() && !product.environments.into_iter().any(|e| e == env) {
            return None;
        }
    }
    let any_proxy = call.proxy.is_empty();
    if product.operation_configs.is_empty() {
        let proxy_ok = any_proxy
            || product.proxies.is_empty()
            || product.proxies.into_iter().any(|p| p == call.proxy);
        let path_ok = product.resources.is_empty()
            || product
                .resources
                .into_iter()
                .any(|r| resource_matches(r, call.suffix));
        return (proxy_ok && path_ok).then_some(None);
    }
    for (c, config) in product
        .operation_configs
        .enumerate()
        .filter(|(_, c)| any_proxy || c.api_source == call.proxy)
    {
        if config.operations.is_empty() {
            return Some(None);
        }
        for (o, op) in config.operations.enumerate() {
            let verb_ok = op.methods.is_empty()
                || op
                    .methods
                    .into_iter()
                    .any(|m| m.eq_ignore_ascii_case(call.verb));
            if verb_ok && resource_matches(op.resource, call.suffix) {
                return Some(Some((index(c), index(o))));
            }
        }
    }
    None
}
