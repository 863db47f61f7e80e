//! A message template (RaiseFault and AssignMessage payloads, headers,
//! status codes): parsed, or refused with one line; rendered with
//! variables that resolve and that do not; never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use oauthv2info_core::Template;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let template = match Template::parse(&text) {
        Ok(t) => t,
        Err(e) => {
            assert!(!e.contains(['\n', '\r']), "one line: {e:?}");
            return;
        }
    };
    let names = template.variables().count();
    // Nothing resolves: every reference is empty and counted.
    let mut out = String::new();
    let unresolved = template.render(&mut |_: &String, _: &mut String| false, &mut out);
    assert_eq!(unresolved, names);
    assert!(out.len() <= text.len());
    // Every reference resolves to a value that needs escaping.
    let mut full = String::new();
    let unresolved = template.render(
        &mut |name: &String, out: &mut String| {
            out.push_str(name);
            out.push_str("\"<&>\n");
            true
        },
        &mut full,
    );
    assert_eq!(unresolved, 0);
    // Without references, the text is the template.
    if names == 0 {
        assert_eq!(out, text);
    }
});
