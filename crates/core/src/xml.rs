//! A minimal element tree over quick-xml, enough for policy documents.
//!
//! Policies are small and read once at load time, so a tree is simpler to
//! validate than a stream. DOCTYPE declarations are refused (no entity
//! expansion), and only the five predefined entities and character references
//! are resolved.

use quick_xml::escape::resolve_predefined_entity;
use quick_xml::events::{BytesStart, Event};
use quick_xml::{Reader, XmlVersion};

/// One XML element: name, attributes in document order, child elements, and
/// the concatenated character data directly inside it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Element {
    pub name: String,
    pub attributes: Vec<(String, String)>,
    pub children: Vec<Element>,
    pub text: String,
}

impl Element {
    /// The value of attribute `name`, if present.
    pub fn attribute(&self, name: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Parses a document holding exactly one root element.
pub fn parse(document: &str) -> Result<Element, String> {
    let mut reader = Reader::from_str(document);
    let config = reader.config_mut();
    config.check_end_names = true;
    config.expand_empty_elements = false;

    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    loop {
        let event = reader
            .read_event()
            .map_err(|e| format!("malformed XML at byte {}: {e}", reader.error_position()))?;
        match event {
            Event::Start(start) => {
                check_single_root(&root, &stack)?;
                stack.push(open(&start)?);
            }
            Event::Empty(start) => {
                check_single_root(&root, &stack)?;
                let element = open(&start)?;
                close(element, &mut stack, &mut root);
            }
            Event::End(_) => {
                let element = stack
                    .pop()
                    .ok_or_else(|| "malformed XML: unexpected closing tag".to_string())?;
                close(element, &mut stack, &mut root);
            }
            Event::Text(text) => {
                append_text(&mut stack, &text.xml_content(XmlVersion::Implicit1_0))?
            }
            Event::CData(data) => {
                append_text(&mut stack, &data.xml_content(XmlVersion::Implicit1_0))?
            }
            Event::GeneralRef(reference) => {
                let resolved = if reference.is_char_ref() {
                    reference
                        .resolve_char_ref()
                        .ok()
                        .flatten()
                        .map(String::from)
                } else {
                    resolve_predefined_entity(&reference.xml10_content()).map(String::from)
                };
                match resolved {
                    Some(text) => append_text(&mut stack, &text)?,
                    None => {
                        return Err(format!(
                            "malformed XML: unknown entity &{};",
                            reference.xml10_content()
                        ))
                    }
                }
            }
            Event::DocType(_) => {
                return Err("DOCTYPE declarations are not allowed in a policy".to_string())
            }
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) => {}
            Event::Eof => break,
        }
    }
    if let Some(open) = stack.last() {
        return Err(format!("malformed XML: <{}> is not closed", open.name));
    }
    root.ok_or_else(|| "no XML element found".to_string())
}

fn check_single_root(root: &Option<Element>, stack: &[Element]) -> Result<(), String> {
    if root.is_some() && stack.is_empty() {
        return Err("malformed XML: more than one root element".to_string());
    }
    Ok(())
}

fn open(start: &BytesStart<'_>) -> Result<Element, String> {
    let name = AsRef::<str>::as_ref(&start.name()).to_string();
    let mut attributes = Vec::new();
    for attribute in start.attributes() {
        let attribute = attribute.map_err(|e| format!("malformed attribute in <{name}>: {e}"))?;
        let key = AsRef::<str>::as_ref(&attribute.key).to_string();
        let value = attribute
            .normalized_value(XmlVersion::Implicit1_0)
            .map_err(|e| format!("malformed value of attribute {key} in <{name}>: {e}"))?
            .into_owned();
        attributes.push((key, value));
    }
    Ok(Element {
        name,
        attributes,
        ..Element::default()
    })
}

fn close(element: Element, stack: &mut [Element], root: &mut Option<Element>) {
    match stack.last_mut() {
        Some(parent) => parent.children.push(element),
        None => *root = Some(element),
    }
}

fn append_text(stack: &mut [Element], text: &str) -> Result<(), String> {
    match stack.last_mut() {
        Some(element) => {
            element.text.push_str(text);
            Ok(())
        }
        None if text.trim().is_empty() => Ok(()),
        None => Err("malformed XML: text outside the root element".to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_nested_elements_attributes_and_text() {
        let root = parse(
            r#"<?xml version="1.0"?>
            <!-- a comment -->
            <A x="1" y='two &amp; three'><B>hi &lt;there&gt; &#65;</B><C/><![CDATA[<raw>]]></A>"#,
        )
        .unwrap();
        assert_eq!(root.name, "A");
        assert_eq!(root.attribute("x"), Some("1"));
        assert_eq!(root.attribute("y"), Some("two & three"));
        assert_eq!(root.children.len(), 2);
        assert_eq!(root.children[0].text, "hi <there> A");
        assert_eq!(root.children[1].name, "C");
        assert_eq!(root.text, "<raw>");
    }

    #[test]
    fn refuses_malformed_documents() {
        for bad in [
            "",
            "<A>",
            "<A></B>",
            "<A/><B/>",
            "text<A/>",
            "<A x=1/>",
            "<A>&nope;</A>",
            "<!DOCTYPE A [<!ENTITY e 'x'>]><A>&e;</A>",
            "<A x='1' x='2'/>",
        ] {
            assert!(parse(bad).is_err(), "accepted {bad:?}");
        }
    }
}
