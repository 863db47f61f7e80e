//! A small YAML writer for the Envoy configuration the command prints:
//! block maps and lists, strings quoted unless plainly safe, multi-line
//! strings (Lua code, the plugin configuration) as literal blocks.

use serde_json::Value;

/// Writes `value` as YAML, every line indented by `indent` spaces.
pub fn to_yaml(value: &Value, indent: usize) -> String {
    let mut out = String::new();
    write_value(&mut out, value, indent, true);
    out
}

fn pad(out: &mut String, n: usize) {
    out.extend(std::iter::repeat_n(' ', n));
}

/// `at_line_start`: the value begins a fresh line (a top-level value or a
/// list item's own line).
fn write_value(out: &mut String, value: &Value, indent: usize, at_line_start: bool) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            let mut first = true;
            for (key, v) in map {
                if !first || at_line_start {
                    pad(out, indent);
                }
                first = false;
                out.push_str(&scalar_key(key));
                out.push(':');
                write_child(out, v, indent);
            }
        }
        Value::Array(items) if !items.is_empty() => {
            let mut first = true;
            for item in items {
                if !first || at_line_start {
                    pad(out, indent);
                }
                first = false;
                out.push_str("- ");
                match item {
                    Value::Object(m) if !m.is_empty() => write_value(out, item, indent + 2, false),
                    Value::Array(a) if !a.is_empty() => {
                        out.push('\n');
                        write_value(out, item, indent + 2, true)
                    }
                    _ => {
                        write_inline(out, item, indent + 2);
                        out.push('\n');
                    }
                }
            }
        }
        _ => {
            if at_line_start {
                pad(out, indent);
            }
            write_inline(out, value, indent);
            out.push('\n');
        }
    }
}

/// The value after `key:`.
fn write_child(out: &mut String, v: &Value, indent: usize) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            out.push('\n');
            write_value(out, v, indent + 2, true);
        }
        Value::Array(a) if !a.is_empty() => {
            out.push('\n');
            write_value(out, v, indent, true);
        }
        _ => {
            out.push(' ');
            write_inline(out, v, indent + 2);
            out.push('\n');
        }
    }
}

fn write_inline(out: &mut String, v: &Value, indent: usize) {
    match v {
        Value::String(s) if s.contains('\n') && block_safe(s) => {
            out.push_str(if s.ends_with('\n') { "|" } else { "|-" });
            for line in s.trim_end_matches('\n').split('\n') {
                out.push('\n');
                if !line.is_empty() {
                    pad(out, indent);
                    out.push_str(line);
                }
            }
        }
        Value::String(s) => out.push_str(&scalar(s)),
        Value::Object(_) => out.push_str("{}"),
        Value::Array(_) => out.push_str("[]"),
        other => out.push_str(&other.to_string()),
    }
}

/// A string that a literal block carries as it is: no trailing spaces on
/// a line, no tabs or other control characters, no leading blank line, at
/// most one final newline.
fn block_safe(s: &str) -> bool {
    !s.starts_with('\n')
        && !s.starts_with(' ')
        && !s.ends_with("\n\n")
        && s.split('\n').all(|l| !l.ends_with(' '))
        && !s.chars().any(|c| c.is_control() && c != '\n')
}

fn scalar_key(key: &str) -> String {
    scalar(key)
}

/// A plain scalar when YAML reads it back as this same string, else a
/// double-quoted one (JSON escaping is valid YAML).
fn scalar(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._/-|~".contains(c))
        && !s.starts_with(['-', '.', '|', '~'])
        && !matches!(
            s.to_ascii_lowercase().as_str(),
            "true" | "false" | "yes" | "no" | "on" | "off" | "null" | "y" | "n"
        )
        && s.parse::<f64>().is_err()
        && !s.starts_with("0x");
    if plain {
        s.to_string()
    } else {
        Value::String(s.to_string()).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn writes_block_yaml_that_reads_back_the_same() {
        let v = json!({
            "a": 1, "b": "two", "@type": "x/y", "empty": {}, "none": [],
            "list": ["p", {"k": "v", "n": {"m": true}}, ["nested"]],
            "code": "line 1\n  indented\n\nlast\n", "no_newline": "a\nb",
            "tricky": ["true", "1.5", "-x", "a: b", "", "#c", "tab\there", " lead"]
        });
        let text = to_yaml(&v, 0);
        assert!(text.contains("\"@type\": x/y"), "{text}");
        assert!(
            text.contains("code: |\n  line 1\n    indented\n\n  last\n"),
            "{text}"
        );
        let back = yaml_rust2::YamlLoader::load_from_str(&text).unwrap();
        assert_eq!(from_yaml(&back[0]), v, "{text}");
        let indented = to_yaml(&v, 6);
        assert!(
            indented
                .lines()
                .all(|l| l.is_empty() || l.starts_with("      ")),
            "{indented}"
        );
    }

    fn from_yaml(y: &yaml_rust2::Yaml) -> Value {
        use yaml_rust2::Yaml;
        match y {
            Yaml::Hash(h) => Value::Object(
                h.iter()
                    .map(|(k, v)| (k.as_str().unwrap().to_string(), from_yaml(v)))
                    .collect(),
            ),
            Yaml::Array(a) => Value::Array(a.iter().map(from_yaml).collect()),
            Yaml::String(s) => Value::String(s.clone()),
            Yaml::Integer(i) => json!(i),
            Yaml::Boolean(b) => json!(b),
            Yaml::Real(r) => json!(r.parse::<f64>().unwrap()),
            other => panic!("{other:?}"),
        }
    }
}
