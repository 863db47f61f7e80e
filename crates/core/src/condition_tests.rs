//! The condition language against a table of expressions and results
//! (the Conditions reference page's examples and null table, apigeelint's
//! accepted and refused forms, and the decisions in docs/decisions.md).

use super::*;
use std::collections::HashMap;

struct Map(Vec<Option<(Kind, String)>>);

impl Vars for Map {
    fn read(&mut self, index: usize, out: &mut String) -> Option<Kind> {
        let (kind, v) = self.0.get(index)?.as_ref()?;
        out.push_str(v);
        Some(*kind)
    }
}

/// The variables of the table: `request.verb=GET`,
/// `proxy.pathsuffix=/cat`, `response.status.code=404` (a number),
/// `request.header.x` absent, `request.header.e` empty,
/// `request.header.n=9`, `a=1`, `b=0`, `c=1`, `flow.cachehit=true`.
fn world(path: &str) -> HashMap<&'static str, (Kind, String)> {
    let text = |v: &str| (Kind::Text, v.to_string());
    HashMap::from([
        ("request.verb", text("GET")),
        ("proxy.pathsuffix", text(path)),
        ("response.status.code", (Kind::Number, "404".to_string())),
        ("request.header.e", text("")),
        ("request.header.n", text("9")),
        ("a", text("1")),
        ("b", text("0")),
        ("c", text("1")),
        ("flow.cachehit", text("true")),
    ])
}

fn eval_in(condition: &str, path: &str) -> bool {
    let c = Condition::parse(condition).unwrap_or_else(|e| panic!("{condition}: {e}"));
    let w = world(path);
    let mut vars = Map(c
        .variables()
        .iter()
        .map(|v| w.get(v.as_str()).cloned())
        .collect());
    c.eval(&mut vars, &mut Scratch::default())
}

fn eval(condition: &str) -> bool {
    eval_in(condition, "/cat")
}

#[test]
fn comparisons_in_every_form() {
    for (condition, want) in [
        (r#"request.verb = "GET""#, true),
        (r#"request.verb = "get""#, false),
        (r#"request.verb := "get""#, true),
        (r#"request.verb EqualsCaseInsensitive "Get""#, true),
        (r#"request.verb == "GET""#, true),
        (r#"request.verb Equals "GET""#, true),
        (r#"request.verb Is "GET""#, true),
        (r#"request.verb equals "GET""#, true),
        (r#"request.verb != "POST""#, true),
        (r#"request.verb NotEquals "GET""#, false),
        (r#"request.verb IsNot "POST""#, true),
        (r#"request.verb="GET""#, true),
        ("response.status.code = 404", true),
        (r#"response.status.code = "404""#, true),
        ("response.status.code > 399", true),
        ("response.status.code GreaterThan 404", false),
        ("response.status.code >= 404", true),
        ("response.status.code < 500", true),
        ("response.status.code LesserThanOrEquals 403", false),
        ("response.status.code &gt; 399", true),
        ("response.status.code &lt; 400", false),
        ("response.status.code = 404L", true),
        ("response.status.code > 403.5", true),
        // Text against a number: compared as text ("9" > "10").
        ("request.header.n > 10", true),
        ("flow.cachehit is true", true),
        ("flow.cachehit = false", false),
        (
            "response.status.code = 503 or response.status.code = 400",
            false,
        ),
    ] {
        assert_eq!(eval(condition), want, "{condition}");
    }
}

#[test]
fn the_null_table() {
    for (condition, want) in [
        ("request.header.x = null", true),
        ("request.header.x is null", true),
        ("request.header.x != null", false),
        ("request.verb = null", false),
        ("request.verb != null", true),
        (r#"request.header.x = "abc""#, false),
        (r#"request.header.x != "abc""#, true),
        (r#"request.header.x =| "a""#, false),
        (r#"request.header.x ~ "*""#, false),
        (r#"request.header.x !~ "*""#, true),
        // As documented, surprising as it is.
        ("request.header.x > 5", true),
        ("request.header.x >= 5", false),
        ("request.header.x < 5", true),
        ("request.header.x <= 5", true),
        ("request.verb >= null", true),
        ("request.verb > null", false),
        ("request.header.x <= request.header.y", true),
        ("request.header.x > request.header.y", false),
        // Empty is not unset.
        (r#"request.header.e = """#, true),
        (r#"request.header.x = """#, false),
        ("request.header.e = null", false),
    ] {
        assert_eq!(eval(condition), want, "{condition}");
    }
}

#[test]
fn patterns() {
    for (condition, want) in [
        (r#"proxy.pathsuffix Matches "/cat""#, true),
        (r#"proxy.pathsuffix Matches "/ca""#, false),
        (r#"proxy.pathsuffix ~ "/c*t""#, true),
        (r#"proxy.pathsuffix Like "*at""#, true),
        (r#"proxy.pathsuffix Matches "/c*""#, true),
        (r#"proxy.pathsuffix Matches "*""#, true),
        (r#"proxy.pathsuffix Matches "/CAT""#, false),
        (r#"proxy.pathsuffix Matches "/c?t""#, false),
        (r#"proxy.pathsuffix ~~ "/c*t""#, false),
        (r#"proxy.pathsuffix JavaRegex "/c.t""#, true),
        (r#"proxy.pathsuffix ~~ "/[cbr]at""#, true),
        (r#"proxy.pathsuffix ~~ "/ca""#, false),
        (r#"proxy.pathsuffix ~~ "(?i)/CAT""#, true),
        (r#"proxy.pathsuffix =| "/c""#, true),
        (r#"proxy.pathsuffix StartsWith "/C""#, false),
        (r#"proxy.pathsuffix =| request.verb"#, false),
        (r#"proxy.pathsuffix !~ "/d*""#, true),
        (r#"request.verb not StartsWith "P""#, true),
        (r#"request.verb not Matches "G*""#, false),
    ] {
        assert_eq!(eval(condition), want, "{condition}");
    }
}

#[test]
fn paths() {
    for (path, pattern, want) in [
        ("/x/a/", "/*/a/", true),
        ("/x/a/b", "/*/a/*", true),
        ("/x/a/b/c", "/*/a/*", false),
        ("/x/a/b/c/d", "/*/a/**", true),
        ("/y/a/foo/feed/", "/*/a/{reader}/feed/", true),
        ("/a/b/feed/rss/1234", "/a/**/feed/**", true),
        ("/a/b/c/feed/rss", "/a/**/feed/**", true),
        ("/a/feed/rss", "/a/**/feed/**", false),
        ("/{user}", "/%{user%}", true),
        ("/user", "/%{user%}", false),
        ("/x/a", "/*/a/", false),
        ("/statuses/1", "/statuses/**", true),
        ("/statuses/1/2", "/statuses/**", true),
        ("/statuses/", "/statuses/**", true),
        ("/statuses", "/statuses/**", false),
        ("/orders/7/items", "/orders/**", true),
        // A wildcard glued to an element (docs/decisions.md#conditions).
        ("/music", "/music**", true),
        ("/music/", "/music**", true),
        ("/music/jazz/1", "/music**", true),
        ("/musicals", "/music**", true),
        ("/musi", "/music**", false),
        ("/a", "/a*", true),
        ("/a12", "/a*", true),
        ("/a1/2", "/a*", false),
        ("/xb", "/*b", true),
        ("/b", "/*b", true),
        ("/x/b", "/*b", false),
        ("/v1/a.json", "/v1/*.json", true),
        ("/v1/axjson", "/v1/*.json", false),
        ("/v1/x/a.json", "/*/x/*.json", true),
        ("/v1/x/y/a.json", "/*/x/*.json", false),
        ("/v1/x/y/a.json", "/**/a.js*", true),
        ("/{a}b", "/%{a%}*", true),
    ] {
        let condition = format!(r#"proxy.pathsuffix MatchesPath "{pattern}""#);
        assert_eq!(eval_in(&condition, path), want, "{path} {pattern}");
        let condition = format!(r#"proxy.pathsuffix ~/ "{pattern}""#);
        assert_eq!(eval_in(&condition, path), want, "{path} ~/ {pattern}");
    }
}

#[test]
fn precedence_and_grouping() {
    for (condition, want) in [
        // Java precedence: (b and a) or c.
        (r#"b = "1" and a = "1" or c = "1""#, true),
        (r#"a = "1" or b = "1" and c = "0""#, true),
        (r#"(a = "1" and b = "1") or c = "1""#, true),
        (r#"a = "1" and (b = "1" or c = "1")"#, true),
        (r#"a = "1" AND b = "0""#, true),
        (r#"a = "1" aNd b = "0""#, true),
        (r#"a = "1" && b = "0""#, true),
        (r#"b = "1" OR c = "1""#, true),
        (r#"b = "1" Or c = "1""#, true),
        (r#"b = "1" || c = "1""#, true),
        (r#"!(request.verb = "POST")"#, true),
        (r#"not request.verb = "GET""#, false),
        (r#"NOT (request.verb = "GET")"#, false),
        (r#"((a = "1"))"#, true),
        (r#"not not a = "1""#, true),
        ("valid", false),
        ("!valid", true),
        ("flow.cachehit", true),
        (r#"request.verb = GET"#, false),
        (r#"'request.verb' = "GET""#, true),
        // "nothing" is a name, not "not hing".
        (r#"nothing = "1""#, false),
    ] {
        assert_eq!(eval(condition), want, "{condition}");
    }
    let mixed = Condition::parse(r#"a = "1" and b = "1" or c = "1""#).unwrap();
    assert_eq!(mixed.warnings.len(), 1, "{:?}", mixed.warnings);
    let grouped = Condition::parse(r#"(a = "1" and b = "1") or c = "1""#).unwrap();
    assert!(grouped.warnings.is_empty());
}

#[test]
fn malformed_conditions_are_refused_with_their_position() {
    for (condition, at, problem) in [
        (r#"request.verb equalsa "GET""#, 14, "unexpected"),
        (r#"request.verb SeemsLike "GET""#, 14, "unexpected"),
        (
            r#"response.status.code > "399""#,
            24,
            "takes a number or a variable",
        ),
        ("response.status.code > 20.20.20", 24, "is not a number"),
        (r#"proxy.pathsuffix ~~ 20"#, 21, "double-quoted text"),
        (
            r#"proxy.pathsuffix =| 103"#,
            21,
            "double-quoted text or a variable",
        ),
        (
            r#"proxy.pathsuffix MatchesPath 42"#,
            30,
            "double-quoted text",
        ),
        (r#"request.verb := GET"#, 17, "double-quoted text"),
        (r#"request.verb = 'GET'"#, 16, "double quotes, not single"),
        (r#""request.verb is null""#, 1, "where a variable belongs"),
        (r#"{a = "1"} and {b = "0"}"#, 1, "unexpected '{'"),
        (r#"(request.verb = "GET""#, 1, "not closed"),
        (r#"request.verb = "GET")"#, 21, "unexpected \")\""),
        (r#"request.verb = "GET" and"#, 25, "missing at the end"),
        ("20 = 42", 1, "where a variable belongs"),
        (r#""a" = "b""#, 1, "where a variable belongs"),
        ("a + 1 > 2", 3, "no arithmetic"),
        (r#"request.verb = "GET"#, 16, "not closed"),
        (r#"proxy.pathsuffix ~~ "(""#, 21, "not a regular expression"),
        (
            r#"proxy.pathsuffix ~~ "(a)\1""#,
            21,
            "not a regular expression",
        ),
        (
            r#"proxy.pathsuffix ~~ "a(?=b)""#,
            21,
            "not a regular expression",
        ),
        (r#"request.verb not = "GET""#, 18, "needs StartsWith"),
        ("", 1, "empty"),
        ("request.verb =", 15, "missing at the end"),
    ] {
        let e = Condition::parse(condition).expect_err(condition);
        assert_eq!(e.at, at, "{condition}: {e}");
        assert!(e.problem.contains(problem), "{condition}: {e}");
        assert!(!e.to_string().contains('\n'));
    }
}

/// Found by the fuzz target: a text with a line break in it, in the
/// wrong place, made a two-line error (and a regex error is several lines
/// long as its library writes it).
#[test]
fn an_error_is_one_line_whatever_the_condition_holds() {
    for condition in [
        "rathsuPath \"//de/\n/*\"",
        "proxy.pathsuffix ~~ \"(\nx\"",
        "a = \"1\" \"x\ny\"",
    ] {
        let e = Condition::parse(condition).expect_err(condition);
        assert!(!e.to_string().contains(['\n', '\r']), "{e}");
    }
}

#[test]
fn an_evaluation_allocates_nothing_once_warm() {
    let c = Condition::parse(
        r#"request.verb = "GET" and proxy.pathsuffix MatchesPath "/a/**" and request.header.n ~~ "[0-9]+""#,
    )
    .unwrap();
    assert_eq!(
        c.variables(),
        ["request.verb", "proxy.pathsuffix", "request.header.n"]
    );
    let w = world("/a/b/c");
    let mut vars = Map(c
        .variables()
        .iter()
        .map(|v| w.get(v.as_str()).cloned())
        .collect());
    let mut scratch = Scratch::default();
    assert!(c.eval(&mut vars, &mut scratch));
    let (l, r) = (scratch.left.capacity(), scratch.right.capacity());
    for _ in 0..10 {
        assert!(c.eval(&mut vars, &mut scratch));
    }
    assert_eq!((scratch.left.capacity(), scratch.right.capacity()), (l, r));
}

/// Numbers compare exactly as decimals (no float conversion): leading and
/// trailing zeros, signs, type suffixes.
#[test]
fn numbers_compare_as_decimals() {
    let number = |v: &str| {
        let mut vars = Map(vec![Some((Kind::Number, v.to_string()))]);
        move |condition: &str| {
            let c = Condition::parse(condition).unwrap_or_else(|e| panic!("{condition}: {e}"));
            c.eval(&mut vars, &mut Scratch::default())
        }
    };
    for (value, condition, want) in [
        ("10", "n > 9", true),
        ("9", "n < 10", true),
        ("007", "n = 7", true),
        ("1.50", "n = 1.5", true),
        ("1.5", "n > 1.25", true),
        ("-1.5", "n < -1.25", true),
        ("-0", "n = 0", true),
        ("0.0", "n = 0", true),
        (
            "12345678901234567890123",
            "n > 12345678901234567890122",
            true,
        ),
        ("5", "n = 5L", true),
        ("-3", "n > -4", true),
        ("-3", "n >= 2", false),
        (".5", "n < 1", true),
        ("1e5", "n > 1", false), // not a decimal: no comparison holds
    ] {
        assert_eq!(number(value)(condition), want, "{value} {condition}");
    }
}

#[test]
fn replace_is_str_replace() {
    for text in [
        "",
        "&amp;quot;",
        "a &gt; b &amp;&amp; c",
        "&&gt;gt;",
        "%%{x%}%%%",
        "é&lt;ü&lt;",
        "no entity",
    ] {
        for (from, to) in [("&gt;", ">"), ("&amp;", "&"), ("%%", "%"), ("%{", "{")] {
            assert_eq!(
                super::replace(text, from, to),
                text.replace(from, to),
                "{text} {from}"
            );
        }
    }
    // Decoded in order, as before: "&amp;quot;" is "&quot;" after the
    // &amp; pass, then a quote.
    assert!(Condition::parse("a = &amp;quot;x&amp;quot;").is_ok());
}
