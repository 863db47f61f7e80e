//! What the proxy still reads once the filter has run: the words the
//! untranslated steps read (for `publish`, narrowed to them), and the
//! variables they set (a translated step that reads one will find it
//! unset) (docs/decisions.md#import).

use std::collections::BTreeSet;

use super::core;

/// What a policy may read, as words: its attribute values (`ref="..."`),
/// the texts of its elements that are one word (`<Source>`, `<Ref>`,
/// a variable's `<Name>`), and the `{variable}`s of its message templates.
/// Not the words of a payload, where `status` or `scope` is just text.
pub fn reads_of(root: &core::Element) -> String {
    let mut out = String::new();
    let mut stack = vec![root];
    while let Some(e) = stack.pop() {
        for (_, v) in &e.attributes {
            out.push_str(v);
            out.push(' ');
        }
        let text = e.text.trim();
        if !text.is_empty() && !text.contains(char::is_whitespace) && !text.contains('{') {
            out.push_str(text);
            out.push(' ');
        }
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            let Some(close) = rest[open..].find('}') else {
                break;
            };
            out.push_str(&rest[open + 1..open + close]);
            out.push(' ');
            rest = &rest[open + close + 1..];
        }
        stack.extend(e.children.iter());
    }
    out
}

/// The variables a translated policy sets that `texts` name: what the proxy
/// still reads from the filter (`publish`). Families (`{name}`) match any
/// name under their prefix.
pub fn narrow_publish(sets: &[String], texts: &[String]) -> Vec<String> {
    let mut out: BTreeSet<String> = BTreeSet::new();
    for text in texts {
        for word in text.split(|c: char| !(c.is_ascii_alphanumeric() || "._-".contains(c))) {
            let word = word.trim_matches('.');
            if word.is_empty() {
                continue;
            }
            for set in sets {
                let hit = match set.split_once("{name}") {
                    Some((prefix, _)) => word.len() > prefix.len() && word.starts_with(prefix),
                    None => set == word,
                };
                if hit {
                    out.insert(word.to_string());
                }
            }
        }
    }
    out.into_iter().collect()
}

/// For a warning about a variable nothing sets: the untranslated policies
/// that set it on Apigee (so it will be unset here).
pub fn unset_hint(warning: &str, setters: &[(String, Vec<String>)]) -> String {
    let Some(var) = warning.split('"').nth(3).or(warning.split('"').nth(1)) else {
        return String::new();
    };
    let names: BTreeSet<&str> = setters
        .iter()
        .filter(|(_, sets)| sets.iter().any(|s| s == var))
        .map(|(name, _)| name.as_str())
        .collect();
    if names.is_empty() {
        String::new()
    } else {
        let list: Vec<String> = names.iter().map(|n| format!("{n:?}")).collect();
        format!(
            " (only the untranslated {} set{} it: it will be unset)",
            list.join(", "),
            if names.len() == 1 { "s" } else { "" }
        )
    }
}
