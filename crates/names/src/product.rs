//! Apigee's API-product rules: which product of an app allows a call
//! (docs/decisions.md#api-products). The filter's product check, the
//! token service's validation of the products it stores and the checker
//! share them, so the three can never disagree on what a resource path
//! means.
//!
//! A call is the proxy's name, the request's path suffix (the path after
//! the proxy's base path, `proxy.pathsuffix`), its verb and, when known,
//! the environment. A product allows it when:
//!
//! - with **operation groups** (Apigee X's `operationGroup`): one operation
//!   configuration names the proxy (`apiSource`) and one of its operations
//!   has a resource that matches the suffix and lists the verb (or lists no
//!   verb: every verb); a configuration without operations allows every
//!   resource of its proxy. The product's `proxies` and `apiResources` are
//!   not looked at (Apigee ignores them once operation groups are set);
//! - without: the product lists the proxy (or lists no proxy: every proxy)
//!   and one of its `apiResources` matches the suffix (or it lists none:
//!   every resource);
//! - and in both cases the product lists the environment (or lists none).
//!
//! Resource paths are matched segment by segment ([`resource_matches`]).

/// One operation of an operation configuration: a resource path and the
/// verbs it allows (none: every verb).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Operation {
    pub resource: String,
    pub methods: Vec<String>,
}

/// One operation configuration (`operationConfigs[]`): the proxy it is for
/// (`apiSource`), its operations and its custom attributes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OperationConfig {
    pub api_source: String,
    pub operations: Vec<Operation>,
    pub attributes: Vec<(String, String)>,
}

/// An API product, as the product check needs it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Product {
    pub name: String,
    /// `proxies`: the proxies it allows (none: every proxy).
    pub proxies: Vec<String>,
    /// `apiResources`: the resource paths it allows (none: every path).
    pub resources: Vec<String>,
    /// `environments` (none: every environment).
    pub environments: Vec<String>,
    /// `operationGroup.operationConfigs` (none: the legacy rules above).
    pub operations: Vec<OperationConfig>,
    /// The product's custom attributes (`apiproduct.{name}`).
    pub attributes: Vec<(String, String)>,
}

/// The call a product check is about.
#[derive(Debug, Clone, Copy)]
pub struct Call<'a> {
    pub proxy: &'a str,
    /// The path after the proxy's base path, without the query (`""` is the
    /// base path itself).
    pub suffix: &'a str,
    pub verb: &'a str,
    /// The environment the filter runs in, when configured (None: not
    /// checked).
    pub environment: Option<&'a str>,
}

/// The product that allows a call, and the operation that matched (for
/// `apiproduct.operation*`), when the product has operation groups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Match<'a> {
    pub product: &'a Product,
    pub operation: Option<(&'a OperationConfig, &'a Operation)>,
}

/// The first product (in the app's order) that allows the call.
pub fn find<'a>(products: &'a [Product], call: &Call<'_>) -> Option<Match<'a>> {
    products.iter().find_map(|p| allows(p, call))
}

/// Whether one product allows the call.
pub fn allows<'a>(product: &'a Product, call: &Call<'_>) -> Option<Match<'a>> {
    if let Some(env) = call.environment {
        if !product.environments.is_empty() && !product.environments.iter().any(|e| e == env) {
            return None;
        }
    }
    if product.operations.is_empty() {
        let proxy_ok =
            product.proxies.is_empty() || product.proxies.iter().any(|p| p == call.proxy);
        let path_ok = product.resources.is_empty()
            || product
                .resources
                .iter()
                .any(|r| resource_matches(r, call.suffix));
        return (proxy_ok && path_ok).then_some(Match {
            product,
            operation: None,
        });
    }
    for config in product
        .operations
        .iter()
        .filter(|c| c.api_source == call.proxy)
    {
        if config.operations.is_empty() {
            return Some(Match {
                product,
                operation: None,
            });
        }
        for op in &config.operations {
            let verb_ok = op.methods.is_empty()
                || op.methods.iter().any(|m| m.eq_ignore_ascii_case(call.verb));
            if verb_ok && resource_matches(&op.resource, call.suffix) {
                return Some(Match {
                    product,
                    operation: Some((config, op)),
                });
            }
        }
    }
    None
}

/// Whether a product's resource path matches a path suffix:
///
/// - `/` matches every suffix, the base path itself included;
/// - `*` as a whole segment matches exactly one segment, `**` as a whole
///   segment one or more: `/*` allows `/a` but not `/a/b`, `/**` allows
///   both but not the base path itself, `/a/**` allows `/a/b` and `/a/b/c`
///   but not `/a`;
/// - any other segment matches itself exactly (case-sensitive);
/// - one trailing `/` on the suffix or the resource is ignored (`/a/`
///   is `/a`; the base path followed by `/` is the base path).
///
/// A resource that [`check_resource`] refuses matches nothing.
pub fn resource_matches(resource: &str, suffix: &str) -> bool {
    bytes_match(resource.as_bytes(), suffix.as_bytes())
}

/// [`resource_matches`] over bytes, as the filter reads them from a cached
/// profile: one pass over both paths, no allocation, no UTF-8 check (the
/// rules only ever compare bytes). `**` (one or more segments) is
/// matched greedily, backtracking to the last `**` only: enough for a
/// pattern whose only variable-width segment is `**`, and at most
/// (pattern segments) x (path segments) steps whatever the number of
/// `**`.
pub fn bytes_match(resource: &[u8], suffix: &[u8]) -> bool {
    if resource.first() != Some(&b'/') || resource.len() > MAX_RESOURCE {
        return false;
    }
    if resource == b"/" {
        return true;
    }
    let (mut pattern, mut path) = (Segs::new(resource), Segs::new(suffix));
    // The pattern after the last `**`, and the path after what it took.
    let mut back: Option<(Segs<'_>, Segs<'_>)> = None;
    loop {
        let Some(seg) = path.next() else {
            // Every pattern segment takes at least one path segment.
            return pattern.next().is_none();
        };
        let ok = match pattern.next() {
            Some(b"**") => {
                back = Some((pattern, path));
                true
            }
            Some(b"*") => !seg.is_empty(),
            Some(lit) if lit.contains(&b'*') => return false,
            Some(lit) => lit == seg,
            None => false,
        };
        if !ok {
            // The last `**` takes one segment more.
            let Some((after, mut took)) = back else {
                return false;
            };
            if took.next().is_none() {
                return false;
            }
            back = Some((after, took));
            (pattern, path) = (after, took);
        }
    }
}

const MAX_RESOURCE: usize = 1024;

/// The segments of a path as a copyable cursor: after its leading `/`,
/// one trailing `/` dropped; `""` and `/` have none.
#[derive(Clone, Copy)]
struct Segs<'a>(Option<&'a [u8]>);

impl<'a> Segs<'a> {
    fn new(path: &'a [u8]) -> Segs<'a> {
        let p = path.strip_prefix(b"/").unwrap_or(path);
        let p = p.strip_suffix(b"/").unwrap_or(p);
        Segs((!p.is_empty()).then_some(p))
    }
}

impl<'a> Iterator for Segs<'a> {
    type Item = &'a [u8];
    #[inline]
    fn next(&mut self) -> Option<&'a [u8]> {
        let rest = self.0?;
        match rest.iter().position(|&b| b == b'/') {
            Some(i) => {
                self.0 = rest.get(i + 1..);
                rest.get(..i)
            }
            None => {
                self.0 = None;
                Some(rest)
            }
        }
    }
}

/// Why a resource path cannot be stored (None of Apigee's rules would
/// match it the way its author meant): it must start with `/`, and `*`
/// may only be a whole segment (`*` or `**`).
pub fn check_resource(resource: &str) -> Result<(), &'static str> {
    if !resource.starts_with('/') {
        return Err("a resource path starts with '/'");
    }
    if resource.len() > MAX_RESOURCE {
        return Err("a resource path is at most 1024 bytes");
    }
    for seg in segments(resource) {
        if seg.as_bytes().contains(&b'*') && seg != "*" && seg != "**" {
            return Err("'*' and '**' must be whole path segments");
        }
    }
    Ok(())
}

/// The segments of a path: after its leading `/`, one trailing `/`
/// dropped; `""` and `/` have none.
fn segments(path: &str) -> impl Iterator<Item = &str> {
    let p = path.strip_prefix('/').unwrap_or(path);
    let p = p.strip_suffix('/').unwrap_or(p);
    p.split('/').filter(move |_| !p.is_empty())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    /// The rules as first written, a dynamic program over (pattern, path)
    /// segment positions: the reference [`bytes_match`] is held to.
    fn reference(resource: &str, suffix: &str) -> bool {
        if check_resource(resource).is_err() {
            return false;
        }
        if resource == "/" {
            return true;
        }
        let path: Vec<&str> = segments(suffix).collect();
        let mut reach = vec![false; path.len() + 1];
        let mut next = vec![false; path.len() + 1];
        glob(segments(resource), &path, &mut reach, &mut next)
    }

    /// Segment matching, `*` one segment, `**` one or more. Dynamic
    /// programming over (pattern, path) positions: linear in their product,
    /// whatever the number of `**`. `reach` and `next` are `path.len() + 1`
    /// long.
    fn glob<'p>(
        pattern: impl Iterator<Item = &'p str>,
        path: &[&str],
        reach: &mut [bool],
        next: &mut [bool],
    ) -> bool {
        // reach[j]: the pattern segments so far can consume the first j path
        // segments.
        reach.fill(false);
        if let Some(first) = reach.first_mut() {
            *first = true;
        }
        let mut reach = reach;
        let mut next = next;
        for seg in pattern {
            next.fill(false);
            match seg {
                "**" => {
                    // One or more: j reachable after this if some k < j was.
                    let mut any = false;
                    for j in 1..next.len() {
                        any |= reach[j - 1];
                        next[j] = any;
                    }
                }
                "*" => {
                    for j in 1..next.len() {
                        next[j] = reach[j - 1] && !path[j - 1].is_empty();
                    }
                }
                lit => {
                    for j in 1..next.len() {
                        next[j] = reach[j - 1] && path[j - 1] == lit;
                    }
                }
            }
            std::mem::swap(&mut reach, &mut next);
        }
        reach.last().copied().unwrap_or(false)
    }

    /// Every pattern and path of up to four segments over a small alphabet
    /// (literals, `*`, `**`, empty segments, trailing slashes, glued
    /// stars): the one-pass matcher agrees with the dynamic program.
    #[test]
    fn the_one_pass_matcher_agrees_with_the_reference() {
        let pattern_segs = ["a", "b", "*", "**", "", "a*"];
        let path_segs = ["a", "b", "c", ""];
        fn all(segs: &[&str], max: usize) -> Vec<String> {
            let mut out = vec![String::new()];
            let mut level = vec![String::new()];
            for _ in 0..max {
                let mut next = Vec::new();
                for p in &level {
                    for s in segs {
                        next.push(format!("{p}/{s}"));
                    }
                }
                out.extend(next.iter().cloned());
                level = next;
            }
            let with_slash: Vec<String> = out.iter().map(|p| format!("{p}/")).collect();
            out.extend(with_slash);
            out
        }
        let (patterns, paths) = (all(&pattern_segs, 4), all(&path_segs, 4));
        let mut matched = 0;
        for pattern in &patterns {
            for path in &paths {
                let want = reference(pattern, path);
                assert_eq!(
                    resource_matches(pattern, path),
                    want,
                    "{pattern:?} {path:?}"
                );
                matched += usize::from(want);
            }
        }
        assert!(matched > 1000, "{matched}");
    }

    /// Paths longer than the stack's 32 segments match by the same rules.
    #[test]
    fn long_paths_match_by_the_same_rules() {
        for n in [31usize, 32, 33, 40] {
            let path: String = (0..n).map(|i| format!("/s{i}")).collect();
            assert!(resource_matches("/**", &path), "{n}");
            assert!(resource_matches("/s0/**", &path), "{n}");
            assert!(!resource_matches("/*", &path), "{n}");
            assert!(resource_matches(&path, &path), "{n}");
            let stars: String = (0..n).map(|_| "/*").collect();
            assert!(resource_matches(&stars, &path), "{n}");
            assert!(!resource_matches(&stars, &format!("{path}/x")), "{n}");
        }
    }

    #[test]
    fn single_slash_matches_everything_and_the_base_path() {
        for s in ["", "/", "/a", "/a/b/c"] {
            assert!(resource_matches("/", s), "{s}");
        }
    }

    #[test]
    fn double_star_is_every_sub_path_but_not_the_base_path() {
        assert!(!resource_matches("/**", ""));
        assert!(!resource_matches("/**", "/"));
        assert!(resource_matches("/**", "/a"));
        assert!(resource_matches("/**", "/a/b/c"));
        assert!(resource_matches("/a/**", "/a/b"));
        assert!(resource_matches("/a/**", "/a/b/c"));
        assert!(!resource_matches("/a/**", "/a"));
        assert!(!resource_matches("/a/**", "/ab/c"));
        assert!(resource_matches("/a/**/z", "/a/b/c/z"));
        assert!(!resource_matches("/a/**/z", "/a/z"));
    }

    #[test]
    fn single_star_is_one_level() {
        assert!(resource_matches("/*", "/a"));
        assert!(!resource_matches("/*", "/a/b"));
        assert!(!resource_matches("/*", ""));
        assert!(resource_matches("/a/*", "/a/b"));
        assert!(!resource_matches("/a/*", "/a/b/c"));
        assert!(!resource_matches("/a/*", "/a"));
        assert!(resource_matches("/a/*/c", "/a/b/c"));
        assert!(!resource_matches("/a/*/c", "/a//c"));
    }

    #[test]
    fn literals_match_exactly_with_one_trailing_slash_ignored() {
        assert!(resource_matches("/forecastrss", "/forecastrss"));
        assert!(resource_matches("/forecastrss", "/forecastrss/"));
        assert!(resource_matches("/forecastrss/", "/forecastrss"));
        assert!(!resource_matches("/forecastrss", "/forecastrss/x"));
        assert!(!resource_matches("/forecastrss", "/ForecastRSS"));
        assert!(!resource_matches("/forecastrss", ""));
    }

    #[test]
    fn malformed_resources_are_refused_and_match_nothing() {
        assert!(check_resource("a/b").is_err());
        assert!(check_resource("/a*").is_err());
        assert!(check_resource("/a/b**").is_err());
        assert!(check_resource(&format!("/{}", "a".repeat(1100))).is_err());
        assert!(!resource_matches("a", "a"));
        assert!(!resource_matches("/a*", "/ab"));
        assert!(check_resource("/").is_ok());
        assert!(check_resource("/a/*/b/**").is_ok());
    }

    #[test]
    fn many_double_stars_stay_linear() {
        let pattern = format!("{}/z", "/**".repeat(200));
        let path = "/a".repeat(400);
        assert!(!resource_matches(&pattern, &path));
        assert!(resource_matches(&pattern, &format!("{path}/z")));
    }

    fn product(name: &str, proxies: &[&str], resources: &[&str]) -> Product {
        Product {
            name: name.into(),
            proxies: proxies.iter().map(|s| s.to_string()).collect(),
            resources: resources.iter().map(|s| s.to_string()).collect(),
            ..Product::default()
        }
    }

    fn call<'a>(proxy: &'a str, suffix: &'a str, verb: &'a str) -> Call<'a> {
        Call {
            proxy,
            suffix,
            verb,
            environment: None,
        }
    }

    #[test]
    fn legacy_products_check_proxy_and_resources() {
        let ps = [
            product("weather", &["weather-v1"], &["/forecastrss"]),
            product("all-of-maps", &["maps"], &[]),
            product("anything", &[], &["/open/**"]),
        ];
        let name = |c: Call| find(&ps, &c).map(|m| m.product.name.as_str());
        assert_eq!(
            name(call("weather-v1", "/forecastrss", "GET")),
            Some("weather")
        );
        assert_eq!(name(call("weather-v1", "/other", "GET")), None);
        assert_eq!(name(call("maps", "/x/y", "DELETE")), Some("all-of-maps"));
        assert_eq!(name(call("other", "/open/door", "GET")), Some("anything"));
        assert_eq!(name(call("other", "/closed", "GET")), None);
    }

    #[test]
    fn environments_restrict_when_both_are_known() {
        let mut p = product("p", &[], &[]);
        p.environments = vec!["prod".into()];
        let ps = [p];
        let mut c = call("x", "/a", "GET");
        assert!(find(&ps, &c).is_some());
        c.environment = Some("test");
        assert!(find(&ps, &c).is_none());
        c.environment = Some("prod");
        assert!(find(&ps, &c).is_some());
    }

    #[test]
    fn operation_groups_check_proxy_resource_and_verb() {
        let op = |resource: &str, methods: &[&str]| Operation {
            resource: resource.into(),
            methods: methods.iter().map(|s| s.to_string()).collect(),
        };
        // `proxies` and `apiResources` are ignored once operations are set.
        let mut read = product("read", &["other"], &["/nothing"]);
        read.operations = vec![OperationConfig {
            api_source: "apiproduct-operations".into(),
            operations: vec![op("/users/*", &["GET"]), op("/status", &[])],
            attributes: vec![("tier".into(), "free".into())],
        }];
        let mut whole = product("whole", &[], &[]);
        whole.operations = vec![OperationConfig {
            api_source: "admin".into(),
            ..OperationConfig::default()
        }];
        let ps = [read, whole];
        let m = find(&ps, &call("apiproduct-operations", "/users/7", "get")).unwrap();
        assert_eq!(m.product.name, "read");
        let (config, op) = m.operation.unwrap();
        assert_eq!(op.resource, "/users/*");
        assert_eq!(config.attributes[0].1, "free");
        assert!(find(&ps, &call("apiproduct-operations", "/users/7", "POST")).is_none());
        assert!(find(&ps, &call("apiproduct-operations", "/nothing", "GET")).is_none());
        assert!(find(&ps, &call("other", "/nothing", "GET")).is_none());
        let m = find(&ps, &call("apiproduct-operations", "/status", "PATCH")).unwrap();
        assert_eq!(m.operation.unwrap().1.resource, "/status");
        let m = find(&ps, &call("admin", "/x/y", "DELETE")).unwrap();
        assert_eq!((m.product.name.as_str(), m.operation), ("whole", None));
    }

    /// GoogleCloudPlatform/apigee-samples `apiproduct-operations`: its
    /// three products (viewer, creator, admin, as its configuration data
    /// defines their operation groups) and what its token tests expect for
    /// each call (the resource that matched, or the 401).
    #[test]
    fn the_apiproduct_operations_sample_expectations() {
        let proxy = "apiproduct-operations";
        let config = |resource: &str, methods: &[&str]| OperationConfig {
            api_source: proxy.into(),
            operations: vec![Operation {
                resource: resource.into(),
                methods: methods.iter().map(|s| s.to_string()).collect(),
            }],
            attributes: Vec::new(),
        };
        let with = |name: &str, operations: Vec<OperationConfig>| Product {
            name: name.into(),
            operations,
            ..Product::default()
        };
        let viewer = with(
            "viewer",
            vec![config("/*/users", &["GET"]), config("/*/users/*", &["GET"])],
        );
        let creator = with("creator", vec![config("/*/users", &["POST"])]);
        let admin = with(
            "admin",
            vec![
                config("/*/users", &["GET", "POST"]),
                config("/*/users/*", &["DELETE", "GET", "PUT"]),
            ],
        );
        let cases: &[(&Product, &str, &str, Option<&str>)] = &[
            (&viewer, "GET", "/token/users", Some("/*/users")),
            (&creator, "GET", "/token/users", None),
            (&viewer, "GET", "/token/users/1234", Some("/*/users/*")),
            (&creator, "GET", "/token/users/1234", None),
            (&viewer, "POST", "/token/users", None),
            (&creator, "POST", "/token/users", Some("/*/users")),
            (&viewer, "DELETE", "/token/users/1234", None),
            (&creator, "DELETE", "/token/users/1234", None),
            (&admin, "DELETE", "/token/users/1234", Some("/*/users/*")),
            // The same products guard the API-key half of the proxy.
            (&viewer, "GET", "/apikey/users", Some("/*/users")),
            (&admin, "PUT", "/apikey/users/7", Some("/*/users/*")),
            (&admin, "PATCH", "/apikey/users/7", None),
        ];
        for (product, verb, suffix, want) in cases {
            let got = allows(product, &call(proxy, suffix, verb))
                .map(|m| m.operation.map(|(_, op)| op.resource.as_str()));
            assert_eq!(got, want.map(Some), "{} {verb} {suffix}", product.name);
        }
        // Another proxy is allowed by none of them.
        assert!(find(
            &[viewer, creator, admin],
            &call("other", "/token/users", "GET")
        )
        .is_none());
    }
}
