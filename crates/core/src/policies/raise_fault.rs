//! RaiseFault: ends the flow with a fault (`fault.name` = `RaiseFault`)
//! whose reply its `<FaultResponse>` builds (docs/faults.md#raisefault).
//! As a flow step, it is the one policy that resolves no token: its run
//! step is [`PolicyRun::raises`]. Inside a fault rule, its
//! `<FaultResponse>` is applied to the reply being built
//! (docs/faults.md#fault-rules).

use oauthv2info_names::{Fault, TokenKind};

use super::elements::{expect_leaf, parse_bool, Reader};
use super::message::{self, Op};
use super::{ApigeePolicy, CompileContext, Compiled, PolicyRun};
use crate::catalog::CatalogVar;
use crate::error::ConfigError;
use crate::plan::ValueRef;
use crate::profile::Lookup;

/// The prefix of its own fault variables (`raisefault.P.failed`).
pub(crate) const PREFIX: &str = "raisefault";

/// `<RaiseFault>`, as parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RaiseFault {
    pub(crate) ops: std::sync::Arc<[Op]>,
    pub(crate) ignore_unresolved_variables: Option<bool>,
    pub(crate) short_fault_reason: bool,
}

/// RaiseFault, compiled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RaiseRun {
    pub(crate) ops: std::sync::Arc<[Op]>,
    /// Apigee's default: `Raising fault. Fault name : P`.
    faultstring: String,
    body: String,
}

impl RaiseRun {
    /// Applies its `<FaultResponse>` to `reply`.
    pub(crate) fn apply(&self, reply: &mut message::Reply, read: &mut message::Read<'_>) {
        message::apply(&self.ops, reply, read);
    }
}

impl ApigeePolicy for RaiseFault {
    const ROOT: &'static str = "RaiseFault";
    const SHOWN: &'static str = "<RaiseFault>";
    const ELEMENTS: &'static [&'static str] = &[
        "DisplayName",
        "Description",
        "Properties",
        "FaultRules",
        "FaultResponse",
        "IgnoreUnresolvedVariables",
        "ShortFaultReason",
    ];
    type Run = RaiseRun;

    fn parse(reader: &mut Reader<'_>) -> Result<Self, ConfigError> {
        let policy = reader.policy.to_string();
        let err = |element: &str, problem: String| ConfigError::policy(&policy, element, problem);
        let ops = match reader.child("FaultResponse") {
            Some(response) => {
                if let Some((k, _)) = response.attributes.first() {
                    return Err(err("<FaultResponse>", format!("unknown attribute {k}")));
                }
                for c in &response.children {
                    match c.name.as_str() {
                        "Set" | "Add" | "Remove" | "AssignVariable" => {}
                        "Copy" => {
                            return Err(err(
                                "<FaultResponse><Copy>",
                                "is not supported: a fault response here is built with <Set>, <Add>, <Remove> and <AssignVariable>".to_string(),
                            ))
                        }
                        other => {
                            return Err(err(
                                "<FaultResponse>",
                                format!("unknown element <{other}> (known: <Set>, <Add>, <Remove>, <AssignVariable>)"),
                            ))
                        }
                    }
                }
                message::parse_ops(response, &err)?.into()
            }
            None => std::sync::Arc::from(Vec::new()),
        };
        let ignore_unresolved_variables = reader.bool_leaf("IgnoreUnresolvedVariables")?;
        let short_fault_reason = match reader.child("ShortFaultReason") {
            Some(e) => {
                expect_leaf(e, &[]).map_err(|p| err("<ShortFaultReason>", p))?;
                let text = e.text.trim();
                parse_bool(text).ok_or_else(|| {
                    err(
                        "<ShortFaultReason>",
                        format!("must be true or false, not {text:?}"),
                    )
                })?
            }
            None => false,
        };
        Ok(RaiseFault {
            ops,
            ignore_unresolved_variables,
            short_fault_reason,
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
                .map(|(element, name)| (format!("<FaultResponse>{element}"), name)),
        );
    }

    fn compile(&self, at: &CompileContext<'_>) -> Compiled<RaiseRun> {
        let faultstring = if self.short_fault_reason {
            at.name.to_string()
        } else {
            format!("Raising fault. Fault name : {}", at.name)
        };
        let body = super::fault_body(&faultstring, Fault::RaiseFault.errorcode());
        Compiled {
            run: RaiseRun {
                ops: self.ops.clone(),
                faultstring,
                body,
            },
            // It looks nothing up: [`PolicyRun::raises`] runs it.
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

    fn success_variables(&self, _policy: &str, out: &mut Vec<CatalogVar>) {
        let _ = out;
    }

    fn describe(&self) -> String {
        let mut s = "raises a fault (fault.name RaiseFault)".to_string();
        let set = self.ops.iter().find_map(|op| match op {
            Op::Set(s) => Some(s),
            _ => None,
        });
        match set.and_then(|s| s.status.as_ref()) {
            Some(t) => {
                let mut text = String::new();
                t.render(
                    &mut |n: &String, b: &mut String| {
                        b.push('{');
                        b.push_str(n);
                        b.push('}');
                        true
                    },
                    &mut text,
                );
                s.push_str(&format!(", status {text}"));
            }
            None => s.push_str(", status 500"),
        }
        if let Some((ct, _)) = set.and_then(|s| s.payload.as_ref()) {
            s.push_str(&format!(
                ", payload {}",
                ct.as_deref().unwrap_or("without contentType")
            ));
        }
        s
    }
}

impl PolicyRun for RaiseRun {
    fn variable_prefix(&self) -> Option<&'static str> {
        Some(PREFIX)
    }
    /// No custom attributes: a segment no variable name has.
    fn attribute_segment(&self) -> &'static str {
        "\u{0}"
    }
    fn faultstring(&self, _fault: Fault) -> &str {
        &self.faultstring
    }
    fn fault_body(&self, _fault: Fault) -> std::borrow::Cow<'_, str> {
        std::borrow::Cow::Borrowed(&self.body)
    }
    fn fault_prefix(&self) -> &'static str {
        PREFIX
    }
    #[inline]
    fn raises(&self) -> Option<Fault> {
        Some(Fault::RaiseFault)
    }
    fn check(&self, _kind: TokenKind, _lookup: Lookup<'_>, _now_ms: i64) -> Result<(), Fault> {
        Err(Fault::RaiseFault)
    }
    fn handle(&self, reply: &mut message::Reply, read: &mut message::Read<'_>) -> bool {
        self.apply(reply, read);
        true
    }
}
