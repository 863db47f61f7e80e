//! The response a fault handler builds: the `<Set>`, `<Add>`, `<Remove>`
//! and `<AssignVariable>` elements RaiseFault's `<FaultResponse>` and
//! AssignMessage share (docs/faults.md#fault-rules), parsed, and applied
//! to the reply being built, in the order they are written (the AssignMessage
//! page: the order of these elements is the order they run in).

use crate::error::ConfigError;
use crate::request::is_valid_header_value;
use crate::template::Template;
use crate::xml::Element;

use super::elements::{expect_leaf, parse_bool, truncate};

/// One operation on the reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Op {
    Set(SetSpec),
    /// `<Add><Headers>`: each header appended.
    Add(Vec<(String, Template)>),
    Remove(RemoveSpec),
    Variable(AssignVariable),
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct SetSpec {
    pub(crate) headers: Vec<(String, Template)>,
    pub(crate) payload: Option<(Option<String>, Template)>,
    pub(crate) status: Option<Template>,
    pub(crate) reason: Option<Template>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct RemoveSpec {
    /// `<Headers/>` without children: every header.
    pub(crate) all_headers: bool,
    pub(crate) headers: Vec<String>,
    pub(crate) payload: bool,
}

/// `<AssignVariable>`: `<Name>` set from `<Ref>`, else `<Template>`, else
/// `<Value>` (the AssignMessage page's precedence).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AssignVariable {
    pub(crate) name: String,
    pub(crate) reference: Option<String>,
    pub(crate) template: Option<Template>,
    pub(crate) value: Option<String>,
}

/// What a fault handler's policies build: the reply and the variables
/// they assign.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Reply {
    pub(crate) status: u32,
    pub(crate) reason: Option<String>,
    /// Lower-cased names, in order.
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: String,
    pub(crate) variables: Vec<(String, String)>,
}

impl Reply {
    /// Appends what the reply itself answers for `name`: a variable a
    /// handler assigned, or `error.status.code`, `error.reason.phrase`,
    /// `error.content` (the reply as built so far).
    pub(crate) fn read(&self, name: &str, out: &mut String) -> bool {
        if let Some((_, v)) = self.variables.iter().find(|(n, _)| n == name) {
            out.push_str(v);
            return true;
        }
        match name {
            "error.status.code" => out.push_str(&self.status.to_string()),
            "error.reason.phrase" => match &self.reason {
                Some(r) => out.push_str(r),
                None => return false,
            },
            "error.content" => out.push_str(&self.body),
            _ => return false,
        }
        true
    }

    pub(crate) fn assign(&mut self, name: &str, value: String) {
        self.variables.retain(|(n, _)| n != name);
        self.variables.push((name.to_string(), value));
    }

    fn set_header(&mut self, name: &str, value: String) {
        self.headers.retain(|(n, _)| n != name);
        self.add_header(name, value);
    }

    fn add_header(&mut self, name: &str, value: String) {
        // A value that cannot be a header (a control character a variable
        // brought in) is left out rather than sent broken.
        if is_valid_header_value(value.as_bytes()) {
            self.headers.push((name.to_string(), value));
        }
    }
}

/// How a handler reads a variable: its value appended to the buffer, and
/// whether it resolved. The reply's own assigned variables come first.
pub(crate) type Read<'a> = dyn FnMut(&str, &mut String) -> bool + 'a;

/// Applies `ops` to `reply`.
pub(crate) fn apply(ops: &[Op], reply: &mut Reply, read: &mut Read<'_>) {
    let mut text = String::new();
    for op in ops {
        match op {
            Op::Set(set) => {
                for (name, t) in &set.headers {
                    text.clear();
                    render(t, reply, read, &mut text);
                    reply.set_header(name, std::mem::take(&mut text));
                }
                if let Some((content_type, t)) = &set.payload {
                    text.clear();
                    render(t, reply, read, &mut text);
                    reply.body = std::mem::take(&mut text);
                    if let Some(ct) = content_type {
                        reply.set_header("content-type", ct.clone());
                    }
                }
                if let Some(t) = &set.status {
                    text.clear();
                    render(t, reply, read, &mut text);
                    // A status that is not one (an unresolved variable):
                    // the reply keeps the status it had.
                    if let Ok(code) = text.trim().parse::<u32>() {
                        if (200..=599).contains(&code) {
                            reply.status = code;
                        }
                    }
                }
                if let Some(t) = &set.reason {
                    text.clear();
                    render(t, reply, read, &mut text);
                    reply.reason = Some(std::mem::take(&mut text));
                }
            }
            Op::Add(headers) => {
                for (name, t) in headers {
                    text.clear();
                    render(t, reply, read, &mut text);
                    reply.add_header(name, std::mem::take(&mut text));
                }
            }
            Op::Remove(remove) => {
                if remove.all_headers {
                    reply.headers.clear();
                } else {
                    reply
                        .headers
                        .retain(|(n, _)| !remove.headers.iter().any(|r| r == n));
                }
                if remove.payload {
                    reply.body.clear();
                }
            }
            Op::Variable(v) => {
                text.clear();
                let resolved = v
                    .reference
                    .as_deref()
                    .is_some_and(|r| read_var(r, reply, read, &mut text));
                if !resolved {
                    text.clear();
                    if let Some(t) = &v.template {
                        render(t, reply, read, &mut text);
                    } else if let Some(value) = &v.value {
                        text.push_str(value);
                    } else {
                        continue;
                    }
                }
                reply.assign(&v.name, std::mem::take(&mut text));
            }
        }
    }
}

fn read_var(name: &str, reply: &Reply, read: &mut Read<'_>, out: &mut String) -> bool {
    reply.read(name, out) || read(name, out)
}

fn render(t: &Template, reply: &Reply, read: &mut Read<'_>, out: &mut String) {
    t.render(
        &mut |name: &String, buf: &mut String| read_var(name, reply, read, buf),
        out,
    );
}

/// Reads the operations among `parent`'s children (`<Set>`, `<Add>`,
/// `<Remove>`, `<AssignVariable>`); other children are the caller's.
/// `err` names the policy.
pub(crate) fn parse_ops(
    parent: &Element,
    err: &dyn Fn(&str, String) -> ConfigError,
) -> Result<Vec<Op>, ConfigError> {
    let mut ops = Vec::new();
    for child in &parent.children {
        let element = format!("<{}>", child.name);
        let e = |problem: String| err(&element, problem);
        match child.name.as_str() {
            "Set" => ops.push(Op::Set(parse_set(child, err)?)),
            "Add" => {
                no_attributes_or_text(child).map_err(e)?;
                let mut headers = Vec::new();
                for c in &child.children {
                    match c.name.as_str() {
                        "Headers" => headers.extend(parse_headers(c, "<Add>", err)?),
                        "QueryParams" | "FormParams" => {
                            return Err(e(format!(
                            "<{}> has no meaning in a fault response: only <Headers> can be added",
                            c.name
                        )))
                        }
                        other => {
                            return Err(e(format!("unknown element <{other}> (known: <Headers>)")))
                        }
                    }
                }
                ops.push(Op::Add(headers));
            }
            "Remove" => {
                no_attributes_or_text(child).map_err(e)?;
                let mut remove = RemoveSpec::default();
                for c in &child.children {
                    match c.name.as_str() {
                        "Headers" => {
                            no_attributes_or_text(c).map_err(|p| err("<Remove><Headers>", p))?;
                            if c.children.is_empty() {
                                remove.all_headers = true;
                            }
                            for h in &c.children {
                                let name = header_name(h, "<Remove><Headers>", err)?;
                                if !h.text.trim().is_empty() {
                                    return Err(err(
                                        "<Remove><Headers><Header>",
                                        format!("{name}: a header to remove takes no value"),
                                    ));
                                }
                                remove.headers.push(name);
                            }
                        }
                        "Payload" => {
                            expect_leaf(c, &[]).map_err(|p| err("<Remove><Payload>", p))?;
                            let text = c.text.trim();
                            remove.payload = parse_bool(text).ok_or_else(|| {
                                err(
                                    "<Remove><Payload>",
                                    format!("must be true or false, not {text:?}"),
                                )
                            })?;
                        }
                        "QueryParams" | "FormParams" => {
                            return Err(e(format!(
                                "<{}> has no meaning in a fault response: only <Headers> and <Payload> can be removed",
                                c.name
                            )))
                        }
                        other => {
                            return Err(e(format!(
                                "unknown element <{other}> (known: <Headers>, <Payload>)"
                            )))
                        }
                    }
                }
                ops.push(Op::Remove(remove));
            }
            "AssignVariable" => ops.push(Op::Variable(parse_assign_variable(child, err)?)),
            _ => {}
        }
    }
    Ok(ops)
}

fn no_attributes_or_text(e: &Element) -> Result<(), String> {
    if let Some((k, _)) = e.attributes.first() {
        return Err(format!("unknown attribute {k}"));
    }
    if !e.text.trim().is_empty() {
        return Err(format!("unexpected text {:?}", truncate(e.text.trim())));
    }
    Ok(())
}

fn template(
    text: &str,
    element: &str,
    err: &dyn Fn(&str, String) -> ConfigError,
) -> Result<Template, ConfigError> {
    Template::parse(text).map_err(|p| err(element, p))
}

/// A header name: an HTTP token, lower-cased; pseudo-headers and the
/// framing headers Envoy writes itself are refused.
fn header_name(
    h: &Element,
    label: &str,
    err: &dyn Fn(&str, String) -> ConfigError,
) -> Result<String, ConfigError> {
    if h.name != "Header" {
        return Err(err(
            label,
            format!("unknown element <{}> (known: <Header>)", h.name),
        ));
    }
    expect_leaf(h, &["name"]).map_err(|p| err(label, p))?;
    let Some(name) = h.attribute("name").map(str::trim).filter(|n| !n.is_empty()) else {
        return Err(err(label, "<Header> needs a name attribute".to_string()));
    };
    let valid = name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if !valid {
        return Err(err(label, format!("{name:?} is not a header name")));
    }
    let lower = name.to_ascii_lowercase();
    if matches!(
        lower.as_str(),
        "content-length" | "transfer-encoding" | "connection" | "upgrade" | "keep-alive"
    ) {
        return Err(err(
            label,
            format!("{name}: Envoy writes this header itself; a fault response cannot set it"),
        ));
    }
    Ok(lower)
}

fn parse_headers(
    headers: &Element,
    parent: &str,
    err: &dyn Fn(&str, String) -> ConfigError,
) -> Result<Vec<(String, Template)>, ConfigError> {
    let label = format!("{parent}<Headers>");
    no_attributes_or_text(headers).map_err(|p| err(&label, p))?;
    let mut out = Vec::new();
    for h in &headers.children {
        let name = header_name(h, &label, err)?;
        out.push((name, template(h.text.trim(), &label, err)?));
    }
    Ok(out)
}

fn parse_set(
    set: &Element,
    err: &dyn Fn(&str, String) -> ConfigError,
) -> Result<SetSpec, ConfigError> {
    no_attributes_or_text(set).map_err(|p| err("<Set>", p))?;
    let mut spec = SetSpec::default();
    for c in &set.children {
        let label = format!("<Set><{}>", c.name);
        match c.name.as_str() {
            "Headers" => spec.headers.extend(parse_headers(c, "<Set>", err)?),
            "Payload" => {
                if let Some(child) = c.children.first() {
                    return Err(err(
                        &label,
                        format!(
                            "holds the element <{}>: write an XML payload escaped (&lt;...&gt;) or in a CDATA section",
                            child.name
                        ),
                    ));
                }
                let mut content_type = None;
                let (mut prefix, mut suffix) = ('{', '}');
                for (k, v) in &c.attributes {
                    match k.as_str() {
                        "contentType" => content_type = Some(v.trim().to_string()),
                        "variablePrefix" | "variableSuffix" => {
                            let mut chars = v.chars();
                            let (Some(ch), None) = (chars.next(), chars.next()) else {
                                return Err(err(&label, format!("{k} must be one character, not {v:?}")));
                            };
                            if k == "variablePrefix" {
                                prefix = ch;
                            } else {
                                suffix = ch;
                            }
                        }
                        other => {
                            return Err(err(
                                &label,
                                format!("unknown attribute {other} (known: contentType, variablePrefix, variableSuffix)"),
                            ))
                        }
                    }
                }
                if let Some(ct) = &content_type {
                    if ct.is_empty() || !is_valid_header_value(ct.as_bytes()) {
                        return Err(err(&label, format!("contentType {ct:?} is not a header value")));
                    }
                }
                let t = Template::parse_with(c.text.trim(), prefix, suffix)
                    .map_err(|p| err(&label, p))?;
                spec.payload = Some((content_type, t));
            }
            "StatusCode" => {
                expect_leaf(c, &[]).map_err(|p| err(&label, p))?;
                let text = c.text.trim();
                let t = template(text, &label, err)?;
                // A literal status is checked now; a template when it runs.
                if t.variables().next().is_none() {
                    match text.parse::<u32>() {
                        Ok(code) if (200..=599).contains(&code) => {}
                        _ => {
                            return Err(err(
                                &label,
                                format!("must be an HTTP status from 200 to 599, not {text:?}"),
                            ))
                        }
                    }
                }
                spec.status = Some(t);
            }
            "ReasonPhrase" => {
                expect_leaf(c, &[]).map_err(|p| err(&label, p))?;
                spec.reason = Some(template(c.text.trim(), &label, err)?);
            }
            "QueryParams" | "FormParams" | "Path" | "Verb" | "Version" => {
                return Err(err(
                    &label,
                    "has no meaning in a fault response (known: <Headers>, <Payload>, <StatusCode>, <ReasonPhrase>)"
                        .to_string(),
                ))
            }
            other => {
                return Err(err(
                    "<Set>",
                    format!("unknown element <{other}> (known: <Headers>, <Payload>, <StatusCode>, <ReasonPhrase>)"),
                ))
            }
        }
    }
    Ok(spec)
}

fn parse_assign_variable(
    e: &Element,
    err: &dyn Fn(&str, String) -> ConfigError,
) -> Result<AssignVariable, ConfigError> {
    let label = "<AssignVariable>";
    no_attributes_or_text(e).map_err(|p| err(label, p))?;
    let mut name = None;
    let mut reference = None;
    let mut template_ = None;
    let mut value = None;
    for c in &e.children {
        let l = format!("<AssignVariable><{}>", c.name);
        match c.name.as_str() {
            "Name" => {
                expect_leaf(c, &[]).map_err(|p| err(&l, p))?;
                name = Some(c.text.trim().to_string());
            }
            "Ref" => {
                expect_leaf(c, &[]).map_err(|p| err(&l, p))?;
                reference = Some(c.text.trim().to_string()).filter(|r| !r.is_empty());
            }
            "Template" => {
                if c.attribute("ref").is_some() {
                    return Err(err(&l, "a template read from a variable (ref) is not supported: write the template".to_string()));
                }
                expect_leaf(c, &[]).map_err(|p| err(&l, p))?;
                template_ = Some(template(c.text.trim(), &l, err)?);
            }
            "Value" => {
                expect_leaf(c, &[]).map_err(|p| err(&l, p))?;
                value = Some(c.text.trim().to_string());
            }
            other => {
                return Err(err(
                    label,
                    format!(
                        "unknown element <{other}> (known: <Name>, <Ref>, <Template>, <Value>)"
                    ),
                ))
            }
        }
    }
    let Some(name) = name.filter(|n| !n.is_empty()) else {
        return Err(err(label, "needs a <Name>".to_string()));
    };
    if !crate::template::is_variable_name(&name) {
        return Err(err(
            label,
            format!("<Name> {name:?} is not a variable name"),
        ));
    }
    if name.starts_with("request.")
        || name.starts_with("response.")
        || name.starts_with("message.")
        || name == "fault.name"
    {
        return Err(err(
            label,
            format!(
                "{name} cannot be assigned in a fault handler here: set the response with <Set>"
            ),
        ));
    }
    if let Some(r) = &reference {
        if !crate::template::is_variable_name(r) {
            return Err(err(
                "<AssignVariable><Ref>",
                format!("{r:?} is not a variable name"),
            ));
        }
    }
    Ok(AssignVariable {
        name,
        reference,
        template: template_,
        value,
    })
}

/// Every variable name the operations read (for the load-time warning on
/// names nothing sets), with the element that reads it.
pub(crate) fn reads<'a>(ops: &'a [Op], out: &mut Vec<(&'static str, &'a str)>) {
    for op in ops {
        match op {
            Op::Set(s) => {
                for (_, t) in &s.headers {
                    out.extend(t.variables().map(|v| ("<Set><Headers>", v.as_str())));
                }
                if let Some((_, t)) = &s.payload {
                    out.extend(t.variables().map(|v| ("<Set><Payload>", v.as_str())));
                }
                if let Some(t) = &s.status {
                    out.extend(t.variables().map(|v| ("<Set><StatusCode>", v.as_str())));
                }
                if let Some(t) = &s.reason {
                    out.extend(t.variables().map(|v| ("<Set><ReasonPhrase>", v.as_str())));
                }
            }
            Op::Add(headers) => {
                for (_, t) in headers {
                    out.extend(t.variables().map(|v| ("<Add><Headers>", v.as_str())));
                }
            }
            Op::Remove(_) => {}
            Op::Variable(a) => {
                if let Some(r) = &a.reference {
                    out.push(("<AssignVariable><Ref>", r.as_str()));
                }
                if let Some(t) = &a.template {
                    out.extend(
                        t.variables()
                            .map(|v| ("<AssignVariable><Template>", v.as_str())),
                    );
                }
            }
        }
    }
}

/// The variables the operations assign.
pub(crate) fn assigns(ops: &[Op]) -> impl Iterator<Item = &str> {
    ops.iter().filter_map(|op| match op {
        Op::Variable(a) => Some(a.name.as_str()),
        _ => None,
    })
}
