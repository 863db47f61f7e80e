//! AssignMessage, as a step of a fault rule: it changes the reply being
//! built (docs/faults.md#fault-rules). In a request flow it is out of
//! scope here, and refused with one line (the configuration's check).

use oauthv2info_names::{Fault, TokenKind};

use super::elements::{parse_bool, Reader};
use super::message::{self, Op};
use super::{ApigeePolicy, CompileContext, Compiled, PolicyRun};
use crate::catalog::CatalogVar;
use crate::error::ConfigError;
use crate::plan::ValueRef;
use crate::profile::Lookup;

/// The prefix of its own variables (`assignmessage.P.failed`).
pub(crate) const PREFIX: &str = "assignmessage";

/// `<AssignMessage>`, as parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AssignMessage {
    pub(crate) ops: std::sync::Arc<[Op]>,
    /// `<AssignTo createNew="true">`: the reply starts without headers and
    /// body.
    pub(crate) create_new: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AssignRun {
    pub(crate) create_new: bool,
    pub(crate) ops: std::sync::Arc<[Op]>,
}

impl AssignRun {
    pub(crate) fn apply(&self, reply: &mut message::Reply, read: &mut message::Read<'_>) {
        if self.create_new {
            reply.headers.clear();
            reply.body.clear();
        }
        message::apply(&self.ops, reply, read);
    }
}

impl ApigeePolicy for AssignMessage {
    const ROOT: &'static str = "AssignMessage";
    const SHOWN: &'static str = "<AssignMessage> (in fault rules)";
    const ELEMENTS: &'static [&'static str] = &[
        "DisplayName",
        "Description",
        "Properties",
        "FaultRules",
        "Set",
        "Add",
        "Remove",
        "AssignVariable",
        "AssignTo",
        "IgnoreUnresolvedVariables",
        "Copy",
    ];
    type Run = AssignRun;

    fn parse(reader: &mut Reader<'_>) -> Result<Self, ConfigError> {
        let policy = reader.policy.to_string();
        let err = |element: &str, problem: String| ConfigError::policy(&policy, element, problem);
        if reader.child("Copy").is_some() {
            return Err(err(
                "<Copy>",
                "is not supported: a fault response here is built with <Set>, <Add>, <Remove> and <AssignVariable>".to_string(),
            ));
        }
        // `type` names the message `createNew="true"` creates; without it
        // (and without a variable name) the policy changes the message of
        // the flow it runs in: in a fault handler, the response.
        let mut create_new = false;
        let mut kind = "request";
        if let Some(to) = reader.child("AssignTo") {
            if let Some(c) = to.children.first() {
                return Err(err(
                    "<AssignTo>",
                    format!("unexpected element <{}> inside it", c.name),
                ));
            }
            for (k, v) in &to.attributes {
                match k.as_str() {
                    "createNew" => {
                        create_new = parse_bool(v).ok_or_else(|| {
                            err(
                                "<AssignTo>",
                                format!("createNew must be true or false, not {v:?}"),
                            )
                        })?
                    }
                    "transport" if v == "http" => {}
                    "type" if v == "request" || v == "response" => kind = v.as_str(),
                    // Not a documented type (real bundles have `message`):
                    // the response, as without a type.
                    "type" => {
                        kind = "response";
                        reader.ignored.push((
                            "<AssignTo>".to_string(),
                            format!("type={v:?} (documented: request, response): the fault response is assigned"),
                        ));
                    }
                    other => {
                        return Err(err(
                            "<AssignTo>",
                            format!("unknown attribute {other}={v:?} (known: createNew, transport=\"http\", type=\"request\" or \"response\")"),
                        ))
                    }
                }
            }
            let target = to.text.trim();
            if !target.is_empty() && target != "response" {
                return Err(err(
                    "<AssignTo>",
                    format!("{target:?}: in a fault handler only the response can be assigned"),
                ));
            }
            if create_new && kind == "request" && target.is_empty() {
                return Err(err(
                    "<AssignTo>",
                    "createNew=\"true\" type=\"request\": a new request has no meaning in a fault handler; only the response can be assigned".to_string(),
                ));
            }
        }
        reader.bool_leaf("IgnoreUnresolvedVariables")?;
        let ops = message::parse_ops(reader.root, &err)?;
        Ok(AssignMessage {
            ops: ops.into(),
            create_new,
        })
    }

    fn references<'a>(&'a self, refs: &mut Vec<(String, &'a str)>) {
        let mut reads = Vec::new();
        message::reads(&self.ops, &mut reads);
        let own: Vec<&str> = message::assigns(&self.ops).collect();
        refs.extend(
            reads
                .into_iter()
                .filter(|(_, name)| !own.contains(name))
                .map(|(element, name)| (element.to_string(), name)),
        );
    }

    fn compile(&self, at: &CompileContext<'_>) -> Compiled<AssignRun> {
        Compiled {
            run: AssignRun {
                create_new: self.create_new,
                ops: self.ops.clone(),
            },
            kind: TokenKind::AccessToken,
            token: ValueRef {
                reference: None,
                literal: None,
            },
            outputs: Vec::new(),
            attribute_prefix: format!("{PREFIX}.{}.", at.name),
            bare_attributes: false,
            known_attributes: Vec::new(),
        }
    }

    fn success_variables(&self, _policy: &str, _out: &mut Vec<CatalogVar>) {}

    fn describe(&self) -> String {
        let assigned: Vec<&str> = message::assigns(&self.ops).collect();
        let mut s = format!(
            "changes the fault response ({} operation{})",
            self.ops.len(),
            if self.ops.len() == 1 { "" } else { "s" }
        );
        if !assigned.is_empty() {
            s.push_str(&format!("; assigns {}", assigned.join(", ")));
        }
        s
    }
}

impl PolicyRun for AssignRun {
    fn variable_prefix(&self) -> Option<&'static str> {
        Some(PREFIX)
    }
    fn attribute_segment(&self) -> &'static str {
        "\u{0}"
    }
    fn fault_prefix(&self) -> &'static str {
        PREFIX
    }
    /// Never a flow step (the configuration refuses it there).
    fn check(&self, _kind: TokenKind, _lookup: Lookup<'_>, _now_ms: i64) -> Result<(), Fault> {
        Ok(())
    }
    fn handle(&self, reply: &mut message::Reply, read: &mut message::Read<'_>) -> bool {
        self.apply(reply, read);
        false
    }
}
