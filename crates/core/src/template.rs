//! Apigee's message templates, as fault handlers use them (RaiseFault's
//! `<FaultResponse>`, AssignMessage's `<Set>`/`<Add>`, `<AssignVariable>
//! <Template>`): literal text and `{variable}` references
//! (docs/decisions.md#fault-handling-faultrules-defaultfaultrule-raisefault-issue-19).
//!
//! - `{name}` is the variable's value; an unresolved variable gives "".
//! - Text in braces that is not a variable name (`{"code": 401}`) stays as
//!   it is, so JSON payloads need no escaping.
//! - No implicit escaping: `{escapeJSON(name)}` and `{escapeXML(name)}`
//!   escape explicitly; `{firstnonnull(a, b, 'fallback')}` is the first
//!   argument that resolves (a variable, or a single-quoted literal); any
//!   other `{function(...)}` is refused at load time.
//! - `variablePrefix`/`variableSuffix` replace `{` and `}`.
//!
//! References are variable names, read by name when a fault handler runs
//! (a cold path: a request that raises no fault never renders one).

/// How a reference's value is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Escape {
    None,
    Json,
    Xml,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Part<V> {
    Text(String),
    Var {
        var: V,
        escape: Escape,
    },
    /// `firstnonnull(...)`: the first argument that resolves.
    First(Vec<Arg<V>>),
}

/// An argument of `firstnonnull`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Arg<V> {
    Var(V),
    Literal(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template<V = String> {
    pub(crate) parts: Vec<Part<V>>,
}

/// A variable name as templates accept it: letters, digits, `.`, `_`,
/// `-` (header names), starting with a letter or `_`.
pub(crate) fn is_variable_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        && !name.ends_with('.')
}

/// What the text between the delimiters is: a reference, or `None` for
/// text.
fn reference(inner: &str) -> Result<Option<Part<String>>, String> {
    let inner = inner.trim();
    if is_variable_name(inner) {
        return Ok(Some(Part::Var {
            var: inner.to_string(),
            escape: Escape::None,
        }));
    }
    let Some((function, rest)) = inner.split_once('(') else {
        return Ok(None);
    };
    let function = function.trim();
    let Some(argument) = rest.strip_suffix(')') else {
        return Ok(None);
    };
    // Not a function call (`{"a":(1)}`): text.
    if !function.bytes().all(|b| b.is_ascii_alphanumeric()) || function.is_empty() {
        return Ok(None);
    }
    let argument = argument.trim();
    let escape = match function {
        "escapeJSON" => Escape::Json,
        "escapeXML" => Escape::Xml,
        "firstnonnull" => return first_non_null(argument).map(Some),
        other => {
            return Err(format!(
                "message template function {other}() is not supported (supported: escapeJSON, escapeXML, firstnonnull)"
            ))
        }
    };
    if !is_variable_name(argument) {
        return Err(format!(
            "{function}() takes one variable name, not {argument:?}"
        ));
    }
    Ok(Some(Part::Var {
        var: argument.to_string(),
        escape,
    }))
}

/// `firstnonnull(a, b, 'fallback')`: variable names and single-quoted
/// literals, separated by commas; at least one.
fn first_non_null(arguments: &str) -> Result<Part<String>, String> {
    let mut args = Vec::new();
    let mut rest = arguments.trim();
    loop {
        if let Some(quoted) = rest.strip_prefix('\'') {
            let Some(end) = quoted.find('\'') else {
                return Err(format!("firstnonnull(): unclosed literal in {arguments:?}"));
            };
            args.push(Arg::Literal(quoted[..end].to_string()));
            rest = quoted[end + 1..].trim_start();
        } else {
            let end = rest.find(',').unwrap_or(rest.len());
            let name = rest[..end].trim();
            if !is_variable_name(name) {
                return Err(format!(
                    "firstnonnull() takes variable names and 'literals', not {name:?}"
                ));
            }
            args.push(Arg::Var(name.to_string()));
            rest = &rest[end..];
        }
        match rest.strip_prefix(',') {
            Some(next) => rest = next.trim_start(),
            None if rest.is_empty() => return Ok(Part::First(args)),
            None => return Err(format!("firstnonnull(): expected a comma in {arguments:?}")),
        }
    }
}

impl Template<String> {
    /// Parses `text` with `{`/`}` delimiters.
    pub fn parse(text: &str) -> Result<Template, String> {
        Template::parse_with(text, '{', '}')
    }

    /// Parses `text` with the given delimiters (`variablePrefix`,
    /// `variableSuffix`). An error names the problem (an unsupported
    /// function).
    pub fn parse_with(text: &str, prefix: char, suffix: char) -> Result<Template, String> {
        let mut parts: Vec<Part<String>> = Vec::new();
        let mut literal = String::new();
        let mut rest = text;
        while let Some(open) = rest.find(prefix) {
            let after = &rest[open + prefix.len_utf8()..];
            let found = match after.find(suffix) {
                Some(close) => reference(&after[..close])?.map(|r| (r, close)),
                None => None,
            };
            match found {
                Some((part, close)) => {
                    literal.push_str(&rest[..open]);
                    if !literal.is_empty() {
                        parts.push(Part::Text(std::mem::take(&mut literal)));
                    }
                    parts.push(part);
                    rest = &after[close + suffix.len_utf8()..];
                }
                None => {
                    // Not a reference: the delimiter is text; look again
                    // after it (`{"a":{x}}` holds one reference).
                    literal.push_str(&rest[..open + prefix.len_utf8()]);
                    rest = after;
                }
            }
        }
        literal.push_str(rest);
        if !literal.is_empty() {
            parts.push(Part::Text(literal));
        }
        Ok(Template { parts })
    }
}

impl<V> Template<V> {
    /// The references, in order.
    pub fn variables(&self) -> impl Iterator<Item = &V> {
        self.parts.iter().flat_map(|p| {
            let (one, args) = match p {
                Part::Var { var, .. } => (Some(var), &[][..]),
                Part::First(args) => (None, &args[..]),
                Part::Text(_) => (None, &[][..]),
            };
            one.into_iter().chain(args.iter().filter_map(|a| match a {
                Arg::Var(v) => Some(v),
                Arg::Literal(_) => None,
            }))
        })
    }

    /// Writes the template into `out`; `read` appends a reference's value
    /// to its buffer and answers whether it resolved. Answers how many
    /// references did not resolve (each wrote "").
    pub fn render(&self, read: &mut dyn FnMut(&V, &mut String) -> bool, out: &mut String) -> usize {
        let mut unresolved = 0;
        let mut value = String::new();
        for part in &self.parts {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Var { var, escape } => {
                    value.clear();
                    if !read(var, &mut value) {
                        unresolved += 1;
                        continue;
                    }
                    match escape {
                        Escape::None => out.push_str(&value),
                        Escape::Json => escape_json(&value, out),
                        Escape::Xml => escape_xml(&value, out),
                    }
                }
                Part::First(args) => {
                    let found = args.iter().any(|arg| match arg {
                        Arg::Var(var) => read(var, out),
                        Arg::Literal(text) => {
                            out.push_str(text);
                            true
                        }
                    });
                    if !found {
                        unresolved += 1;
                    }
                }
            }
        }
        unresolved
    }
}

/// JSON string escaping (RFC 8259 section 7): quotes, backslashes and
/// control characters.
pub(crate) fn escape_json(value: &str, out: &mut String) {
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if u32::from(c) < 0x20 => {
                out.push_str(&format!("\\u{:04x}", u32::from(c)));
            }
            c => out.push(c),
        }
    }
}

/// `value` as serde_json writes it compactly (`Value`'s `Display`), over
/// [`escape_json`] and the number's own `Display`: the filter's one
/// message that shows JSON (an unreadable change-feed entry) keeps the
/// JSON serializer out of the `.wasm` (docs/performance.md#module-size).
pub(crate) fn write_json(value: &serde_json::Value, out: &mut String) {
    use serde_json::Value;
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&n.to_string()),
        Value::String(s) => {
            out.push('"');
            escape_json(s, out);
            out.push('"');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_json(item, out);
            }
            out.push(']');
        }
        Value::Object(members) => {
            out.push('{');
            for (i, (name, item)) in members.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push('"');
                escape_json(name, out);
                out.push_str("\":");
                write_json(item, out);
            }
            out.push('}');
        }
    }
}

/// XML escaping of the five predefined entities.
pub(crate) fn escape_xml(value: &str, out: &mut String) {
    for c in value.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_is_written_as_serde_json_writes_it() {
        let value = serde_json::json!({
            "kind": "access\"_token\\", "n": [1, -2, 0.5, 1e300, 18446744073709551615u64],
            "t": true, "f": false, "z": null, "ctl": "a\u{1}\u{8}\u{c}\n\r\t\u{7f}é/",
            "": {"nested": [[], {}]}
        });
        let mut out = String::new();
        write_json(&value, &mut out);
        assert_eq!(out, value.to_string());
    }

    fn render(t: &Template, vars: &[(&str, &str)]) -> (String, usize) {
        let mut out = String::new();
        let n = t.render(
            &mut |name: &String, buf: &mut String| match vars.iter().find(|(n, _)| n == name) {
                Some((_, v)) => {
                    buf.push_str(v);
                    true
                }
                None => false,
            },
            &mut out,
        );
        (out, n)
    }

    #[test]
    fn references_and_text() {
        let t = Template::parse("Hello {user.name}, {request.header.x-id}!").unwrap();
        assert_eq!(
            t.variables().cloned().collect::<Vec<_>>(),
            vec!["user.name", "request.header.x-id"]
        );
        assert_eq!(
            render(&t, &[("user.name", "jdoe"), ("request.header.x-id", "7")]),
            ("Hello jdoe, 7!".to_string(), 0)
        );
    }

    #[test]
    fn unresolved_is_empty() {
        let t = Template::parse("[{nope}]").unwrap();
        assert_eq!(render(&t, &[]), ("[]".to_string(), 1));
        // Set to "": resolved.
        assert_eq!(render(&t, &[("nope", "")]), ("[]".to_string(), 0));
    }

    #[test]
    fn json_payload_braces_stay() {
        let text = r#"{"fault":{"code":401,"name":"{fault.name}","x":{ }}}"#;
        let t = Template::parse(text).unwrap();
        assert_eq!(t.variables().count(), 1);
        assert_eq!(
            render(&t, &[("fault.name", "invalid_access_token")]).0,
            r#"{"fault":{"code":401,"name":"invalid_access_token","x":{ }}}"#
        );
        // No reference at all: the text as it is.
        let plain = r#"{"a":[1,2],"b":{"c":"d"}}"#;
        assert_eq!(render(&Template::parse(plain).unwrap(), &[]).0, plain);
        // An unclosed brace.
        assert_eq!(render(&Template::parse("{a").unwrap(), &[]).0, "{a");
    }

    #[test]
    fn no_implicit_escaping_and_explicit_functions() {
        let v = [("v", "a\"b<c>&'\\\n")];
        let raw = Template::parse(r#"{"m":"{v}"}"#).unwrap();
        assert_eq!(render(&raw, &v).0, "{\"m\":\"a\"b<c>&'\\\n\"}");
        let json = Template::parse(r#"{"m":"{escapeJSON(v)}"}"#).unwrap();
        assert_eq!(render(&json, &v).0, r#"{"m":"a\"b<c>&'\\\n"}"#);
        let xml = Template::parse("<m>{escapeXML(v)}</m>").unwrap();
        assert_eq!(
            render(&xml, &v).0,
            "<m>a&quot;b&lt;c&gt;&amp;&apos;\\\n</m>"
        );
        let mut out = String::new();
        escape_json("\u{1}", &mut out);
        assert_eq!(out, "\\u0001");
    }

    #[test]
    fn xml_payload() {
        let t = Template::parse("<Error><Code>{fault.name}</Code></Error>").unwrap();
        assert_eq!(
            render(&t, &[("fault.name", "InsufficientScope")]).0,
            "<Error><Code>InsufficientScope</Code></Error>"
        );
    }

    #[test]
    fn unsupported_functions_are_refused() {
        let e = Template::parse("{toUpperCase(a)}").unwrap_err();
        assert!(e.contains("toUpperCase() is not supported"), "{e}");
        let e = Template::parse("{escapeJSON(a b)}").unwrap_err();
        assert!(e.contains("one variable name"), "{e}");
        // Any other function of Apigee's template language, refused.
        assert!(Template::parse("{f(x)}").is_err());
        // Not a function call: text.
        assert_eq!(
            render(&Template::parse(r#"{"a":(1)}"#).unwrap(), &[]).0,
            r#"{"a":(1)}"#
        );
    }

    #[test]
    fn firstnonnull_is_the_first_argument_that_resolves() {
        let t = Template::parse("[{firstnonnull(a, b ,'none, really')}]").unwrap();
        assert_eq!(t.variables().cloned().collect::<Vec<_>>(), vec!["a", "b"]);
        assert_eq!(render(&t, &[("a", "1"), ("b", "2")]), ("[1]".into(), 0));
        assert_eq!(render(&t, &[("b", "2")]), ("[2]".into(), 0));
        // Set to "" is not null.
        assert_eq!(render(&t, &[("a", ""), ("b", "2")]), ("[]".into(), 0));
        assert_eq!(render(&t, &[]), ("[none, really]".into(), 0));
        // Without a literal, nothing resolved: "" and one unresolved.
        let t = Template::parse("{firstnonnull(a,b)}").unwrap();
        assert_eq!(render(&t, &[]), (String::new(), 1));
        for bad in [
            "{firstnonnull()}",
            "{firstnonnull(a,)}",
            "{firstnonnull('x)}",
            "{firstnonnull('x' a)}",
            "{firstnonnull(a b)}",
        ] {
            let e = Template::parse(bad).unwrap_err();
            assert!(e.starts_with("firstnonnull()"), "{bad}: {e}");
        }
    }

    #[test]
    fn custom_delimiters() {
        let t = Template::parse_with(r#"{"n":"@fault.name#","o":{x}}"#, '@', '#').unwrap();
        assert_eq!(
            render(&t, &[("fault.name", "F"), ("x", "no")]).0,
            r#"{"n":"F","o":{x}}"#
        );
    }
}
