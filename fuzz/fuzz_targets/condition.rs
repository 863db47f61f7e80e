//! A step's `<Condition>`, as a user pastes it: parsed, or refused with a
//! position inside it and one line; a parsed one evaluates over any
//! values without a panic. Input: the condition, then after a NUL the
//! variables' values, NUL-separated (an empty one is unset).
#![no_main]

use libfuzzer_sys::fuzz_target;
use oauthv2info_core::{Condition, ConditionKind as Kind, Scratch, Vars};

struct Values<'a>(Vec<&'a str>);

impl Vars for Values<'_> {
    fn read(&mut self, index: usize, out: &mut String) -> Option<Kind> {
        let v = self.0.get(index).copied().filter(|v| !v.is_empty())?;
        out.push_str(v);
        Some(if index % 2 == 0 {
            Kind::Text
        } else {
            Kind::Number
        })
    }
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.split('\0');
    let condition = parts.next().unwrap_or_default();
    match Condition::parse(condition) {
        Ok(c) => {
            let mut values = Values(parts.collect());
            let mut scratch = Scratch::default();
            let first = c.eval(&mut values, &mut scratch);
            assert_eq!(
                c.eval(&mut values, &mut scratch),
                first,
                "evaluation is repeatable"
            );
        }
        Err(e) => {
            assert!(e.at >= 1 && e.at <= condition.chars().count() + 1, "{e}");
            assert!(!e.to_string().contains('\n'));
        }
    }
});
