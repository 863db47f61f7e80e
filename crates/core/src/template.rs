//! Apigee's message templates, as fault handlers use them (RaiseFault's
//! `<FaultResponse>`, AssignMessage's `<Set>`/`<Add>`, `<AssignVariable>
//! <Template>`): literal text and `{variable}` references
//! (docs/decisions.md#fault-handling-faultrules-defaultfaultrule-raisefault-issue-19).
//!
//! - `{name}` is the variable's value; an unresolved variable gives "".
//! - Text in braces that is not a variable name (`{"code": 401}`) stays as
//!   it is, so JSON payloads need no escaping.
//! - No implicit escaping: `{escapeJSON(name)}` and `{escapeXML(name)}`
//!   escape explicitly; any other `{function(...)}` is refused at load
//!   time.
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
    Var { var: V, escape: Escape },
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

/// What the text between the delimiters is.
fn reference(inner: &str) -> Result<Option<(&str, Escape)>, String> {
    let inner = inner.trim();
    if is_variable_name(inner) {
        return Ok(Some((inner, Escape::None)));
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
        other => {
            return Err(format!(
                "message template function {other}() is not supported (supported: escapeJSON, escapeXML)"
            ))
        }
    };
    if !is_variable_name(argument) {
        return Err(format!(
            "{function}() takes one variable name, not {argument:?}"
        ));
    }
    Ok(Some((argument, escape)))
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
                Some(((name, escape), close)) => {
                    literal.push_str(&rest[..open]);
                    if !literal.is_empty() {
                        parts.push(Part::Text(std::mem::take(&mut literal)));
                    }
                    parts.push(Part::Var {
                        var: name.to_string(),
                        escape,
                    });
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
        self.parts.iter().filter_map(|p| match p {
            Part::Var { var, .. } => Some(var),
            Part::Text(_) => None,
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
    fn custom_delimiters() {
        let t = Template::parse_with(r#"{"n":"@fault.name#","o":{x}}"#, '@', '#').unwrap();
        assert_eq!(
            render(&t, &[("fault.name", "F"), ("x", "no")]).0,
            r#"{"n":"F","o":{x}}"#
        );
    }
}
