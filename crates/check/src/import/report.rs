//! The migration report: what was translated, what was not and what to use
//! instead, the access guards left out (first: fail closed), the variables
//! that will be unset, and the problems that stop the import.

use serde_json::{json, Value};

/// One step of the proxy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub policy: String,
    pub policy_type: String,
    pub endpoint: String,
    /// `PreFlow`, `Flow "name"`, `TargetEndpoint "t" PostFlow`..., and
    /// `via FlowCallout "F" (shared flow "S")` when inlined.
    pub flow: String,
    /// The condition the step runs under (the Flow's guard and the step's
    /// own), as the filter evaluates it.
    pub condition: Option<String>,
    /// What to use in Envoy instead (untranslated steps).
    pub advice: String,
}

#[derive(Debug, Default)]
pub struct Report {
    pub bundle: String,
    /// Why the import cannot be trusted: exit 1.
    pub problems: Vec<String>,
    /// Untranslated steps that can refuse a request.
    pub guards: Vec<Entry>,
    pub untranslated: Vec<Entry>,
    pub translated: Vec<Entry>,
    /// Load-time warnings of the generated configurations (variables that
    /// will be unset, with the untranslated step that sets them if any).
    pub warnings: Vec<String>,
    pub notes: Vec<String>,
}

impl Report {
    pub fn to_text(&self, allow_untranslated: bool) -> String {
        let mut out = format!("oauthv2info import: {}\n", self.bundle);
        let line = |e: &Entry| {
            let mut s = format!(
                "  {} {:?} ({}, {})",
                e.policy_type, e.policy, e.endpoint, e.flow
            );
            if let Some(c) = &e.condition {
                s.push_str(&format!("\n      when: {c}"));
            }
            if !e.advice.is_empty() {
                s.push_str(&format!("\n      instead: {}", e.advice));
            }
            s.push('\n');
            s
        };
        if !self.problems.is_empty() {
            out.push_str(&format!("\nproblems ({}):\n", self.problems.len()));
            for p in &self.problems {
                out.push_str(&format!("  {p}\n"));
            }
        }
        if !self.guards.is_empty() {
            out.push_str(&format!(
                "\naccess checks NOT translated ({}): {}\n",
                self.guards.len(),
                if allow_untranslated {
                    "acknowledged with --allow-untranslated; requests Apigee refuses pass"
                } else {
                    "requests Apigee refuses would pass; exit 1 unless --allow-untranslated"
                }
            ));
            for e in &self.guards {
                out.push_str(&line(e));
            }
        }
        out.push_str(&format!(
            "\ntranslated steps ({}):\n",
            self.translated.len()
        ));
        for e in &self.translated {
            out.push_str(&line(e));
        }
        out.push_str(&format!(
            "\nsteps not translated ({}):\n",
            self.untranslated.len()
        ));
        for e in &self.untranslated {
            out.push_str(&line(e));
        }
        if !self.warnings.is_empty() {
            out.push_str(&format!(
                "\nload-time warnings ({}):\n",
                self.warnings.len()
            ));
            for w in &self.warnings {
                out.push_str(&format!("  {w}\n"));
            }
        }
        if !self.notes.is_empty() {
            out.push_str("\nnotes:\n");
            for n in &self.notes {
                out.push_str(&format!("  {n}\n"));
            }
        }
        out
    }

    pub fn to_json(&self) -> Value {
        let entries = |list: &[Entry]| -> Value {
            list.iter()
                .map(|e| {
                    json!({"policy": e.policy, "type": e.policy_type, "endpoint": e.endpoint,
                           "flow": e.flow, "condition": e.condition, "instead": e.advice})
                })
                .collect()
        };
        json!({
            "bundle": self.bundle,
            "problems": self.problems,
            "untranslated_access_checks": entries(&self.guards),
            "translated": entries(&self.translated),
            "untranslated": entries(&self.untranslated),
            "warnings": self.warnings,
            "notes": self.notes,
        })
    }
}
