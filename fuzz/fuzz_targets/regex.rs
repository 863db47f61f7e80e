//! JavaRegex's matcher against regex-lite, the crate it replaced: a
//! pattern both accept gives the same whole-string answer on the same
//! value. Input: the pattern, then after a NUL the value. Values with a
//! carriage return are left out of the comparison (Java's `.` does not
//! match one; regex-lite's does), as are non-ASCII patterns and values
//! (case folding beyond ASCII is regex-lite's, not the filter's), and
//! patterns with regex-lite's class set operations (`--`, `~~`, `&&`,
//! `[:alpha:]`) or word boundaries (`\<`, `\>`), which Java reads
//! otherwise (as literals). Patterns with `(?i)`, a class and a `-` are
//! left out too: a range that holds letters of both cases (`[A-c]`,
//! `[\x1e-c]`) folds differently. Java folds each character it tests (`y`
//! is in `(?i)[A-c]` because `Y` is; a unit test holds that), regex-lite
//! folds only one letter half of the range. And a class whose leading
//! `]` starts a range (`[]-c]`, `[^]-c]`): Java reads the range `]`..`c`,
//! regex-lite the three characters (unit tests hold Java's reading).
#![no_main]

use libfuzzer_sys::fuzz_target;
use oauthv2info_core::{Regex, RegexCache as Cache};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (pattern, value) = text.split_once('\0').unwrap_or((&text, ""));
    let Ok(ours) = Regex::new(pattern) else {
        return;
    };
    let mut cache = Cache::default();
    let answer = ours.is_match(value, &mut cache);
    assert_eq!(ours.is_match(value, &mut cache), answer, "repeatable");
    let set_operation = ["--", "~~", "&&", "[:", "\\<", "\\>"]
        .iter()
        .any(|op| pattern.contains(op));
    if !pattern.is_ascii() || !value.is_ascii() || value.contains('\r') || set_operation {
        return;
    }
    let leading_bracket_range = pattern.contains("[]-") || pattern.contains("[^]-");
    if leading_bracket_range
        || pattern.contains("(?i") && pattern.contains('[') && pattern.contains('-')
    {
        return;
    }
    if let Ok(theirs) = regex_lite::Regex::new(&format!("^(?:{pattern})$")) {
        assert_eq!(answer, theirs.is_match(value), "{pattern:?} on {value:?}");
    }
});
