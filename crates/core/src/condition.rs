//! Apigee's condition language: the `<Condition>` of a step, parsed and
//! checked once at load time into a tree, evaluated per request over the
//! variables a [`Vars`] reads, without allocating once its scratch buffers
//! have grown. A policy entry's `condition` (docs/configuration.md#steps-and-conditions)
//! is one of these.
//!
//! What the Conditions reference page defines, with the decisions where it
//! is silent or disagrees with apigeelint's grammar
//! (docs/decisions.md#conditions):
//! Java precedence (`not` above `and` above `or`), symbol and word forms of
//! every operator (words in any case), spaces around symbols optional, the
//! page's null table, string comparison whenever either side is a string,
//! `Matches` a whole-string glob with `*`, `JavaRegex` a whole-string
//! regular expression ([`crate::regex`]), `MatchesPath` path elements with `*`, `**` and
//! `{name}`.

use std::fmt;

/// A condition that failed to parse: where (a 1-based character position
/// in the condition as written) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConditionError {
    pub at: usize,
    pub problem: String,
}

impl fmt::Display for ConditionError {
    /// One line, whatever the condition holds (it goes to the log).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let problem = self.problem.replace(['\n', '\r'], " ");
        write!(f, "at character {}: {problem}", self.at)
    }
}

/// What a variable holds when it is set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Text (every request variable and every variable the policies set).
    Text,
    /// A number (compared as one with a number literal).
    Number,
}

/// Reads the condition's variables, by their index in
/// [`Condition::variables`].
pub trait Vars {
    /// Appends variable `index`'s value to `out`; `None` when it is unset.
    fn read(&mut self, index: usize, out: &mut String) -> Option<Kind>;
}

/// The buffers an evaluation writes variable values into (kept between
/// requests, so that an evaluation allocates nothing once they have grown).
#[derive(Debug, Default)]
pub struct Scratch {
    left: String,
    right: String,
    regex: crate::regex::Cache,
}

/// A parsed condition.
#[derive(Debug, Clone)]
pub struct Condition {
    nodes: Vec<Node>,
    root: usize,
    variables: Vec<String>,
    regexes: Vec<crate::regex::Regex>,
    /// Load-time notes that do not refuse the condition.
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone)]
enum Node {
    And(usize, usize),
    Or(usize, usize),
    Not(usize),
    /// A bare variable: true when it holds `true` (any case).
    Bare(usize),
    Compare {
        var: usize,
        op: Op,
        rhs: Operand,
    },
}

#[derive(Debug, Clone, PartialEq)]
enum Operand {
    Text(String),
    /// The literal as written (without a type suffix).
    Number(String),
    Bool(bool),
    Null,
    Var(usize),
}

#[derive(Debug, Clone, PartialEq)]
enum Op {
    Eq,
    Ne,
    EqIgnoreCase,
    Gt,
    Ge,
    Lt,
    Le,
    StartsWith,
    Matches,
    NotMatches,
    /// Index into `regexes`.
    Regex(usize),
    Path(Vec<PathPart>),
}

#[derive(Debug, Clone, PartialEq)]
enum PathPart {
    Literal(String),
    /// `*` or `{name}`: one element.
    One,
    /// `**`: one or more elements.
    Rest,
}

/// `text` with every `from` replaced by `to`, left to right, as
/// `str::replace` does for a non-empty `from`, without linking the standard
/// library's substring searcher (2.2 KB of `.wasm` with `str::contains`,
/// docs/performance.md#module-size): `from` is a few bytes here.
fn replace(text: &str, from: &str, to: &str) -> String {
    let (mut out, mut rest) = (String::with_capacity(text.len()), text);
    while let Some(at) = (0..rest.len()).find(|&i| {
        !from.is_empty()
            && rest
                .as_bytes()
                .get(i..)
                .is_some_and(|b| b.starts_with(from.as_bytes()))
    }) {
        out.push_str(rest.get(..at).unwrap_or_default());
        out.push_str(to);
        rest = rest.get(at + from.len()..).unwrap_or_default();
    }
    out.push_str(rest);
    out
}

impl Condition {
    /// Parses a condition as written in a `<Condition>` (XML entities for
    /// `<`, `>` and `&` are read as the characters).
    pub fn parse(text: &str) -> Result<Condition, ConditionError> {
        let decoded = replace(text, "&gt;", ">");
        let decoded = replace(&decoded, "&lt;", "<");
        let decoded = replace(&decoded, "&amp;", "&");
        let decoded = replace(&decoded, "&quot;", "\"");
        let tokens = lex(&decoded)?;
        let mut p = Parser {
            tokens,
            next: 0,
            c: Condition {
                nodes: Vec::new(),
                root: 0,
                variables: Vec::new(),
                regexes: Vec::new(),
                warnings: Vec::new(),
            },
            end: decoded.chars().count() + 1,
        };
        if p.tokens.is_empty() {
            return Err(ConditionError {
                at: 1,
                problem: "the condition is empty".into(),
            });
        }
        let root = p.or()?;
        if let Some(t) = p.tokens.get(p.next) {
            return Err(p.error_at(t.at, format!("unexpected {}", t.tok.describe())));
        }
        p.c.root = root;
        Ok(p.c)
    }

    /// The variable names the condition reads, in index order.
    pub fn variables(&self) -> &[String] {
        &self.variables
    }

    /// Evaluates the condition.
    pub fn eval(&self, vars: &mut dyn Vars, scratch: &mut Scratch) -> bool {
        self.eval_node(self.root, vars, scratch)
    }

    fn eval_node(&self, node: usize, vars: &mut dyn Vars, s: &mut Scratch) -> bool {
        match &self.nodes[node] {
            Node::And(a, b) => self.eval_node(*a, vars, s) && self.eval_node(*b, vars, s),
            Node::Or(a, b) => self.eval_node(*a, vars, s) || self.eval_node(*b, vars, s),
            Node::Not(a) => !self.eval_node(*a, vars, s),
            Node::Bare(var) => {
                s.left.clear();
                vars.read(*var, &mut s.left).is_some() && s.left.eq_ignore_ascii_case("true")
            }
            Node::Compare { var, op, rhs } => {
                s.left.clear();
                let left = vars.read(*var, &mut s.left);
                let right = match rhs {
                    Operand::Var(v) => {
                        s.right.clear();
                        vars.read(*v, &mut s.right).map(|k| Value::of(k, &s.right))
                    }
                    Operand::Null => None,
                    Operand::Text(t) => Some(Value::Text(t)),
                    Operand::Number(text) => Some(Value::Number(text)),
                    Operand::Bool(b) => Some(Value::Text(if *b { "true" } else { "false" })),
                };
                let left = left.map(|k| Value::of(k, &s.left));
                self.compare(
                    op,
                    left,
                    right,
                    matches!(rhs, Operand::Bool(_)),
                    &mut s.regex,
                )
            }
        }
    }

    fn compare(
        &self,
        op: &Op,
        left: Option<Value>,
        right: Option<Value>,
        boolean: bool,
        regex: &mut crate::regex::Cache,
    ) -> bool {
        let (l, r) = match (left, right) {
            (Some(l), Some(r)) => (l, r),
            // The null table of the Conditions reference, as documented.
            (None, Some(_)) => {
                return matches!(op, Op::Ne | Op::Gt | Op::Lt | Op::Le | Op::NotMatches)
            }
            (Some(_), None) => return matches!(op, Op::Ne | Op::Ge),
            (None, None) => return matches!(op, Op::Eq | Op::EqIgnoreCase | Op::Ge | Op::Le),
        };
        match op {
            Op::Eq if boolean => l.text_eq_ignore_case(&r),
            Op::Eq => l.cmp(&r) == Some(std::cmp::Ordering::Equal),
            Op::Ne => l.cmp(&r) != Some(std::cmp::Ordering::Equal),
            Op::EqIgnoreCase => l.text_eq_ignore_case(&r),
            Op::Gt => l.cmp(&r) == Some(std::cmp::Ordering::Greater),
            Op::Ge => matches!(
                l.cmp(&r),
                Some(std::cmp::Ordering::Greater | std::cmp::Ordering::Equal)
            ),
            Op::Lt => l.cmp(&r) == Some(std::cmp::Ordering::Less),
            Op::Le => matches!(
                l.cmp(&r),
                Some(std::cmp::Ordering::Less | std::cmp::Ordering::Equal)
            ),
            Op::StartsWith => l.text().starts_with(r.text()),
            Op::Matches => glob(r.text().as_bytes(), l.text().as_bytes()),
            Op::NotMatches => !glob(r.text().as_bytes(), l.text().as_bytes()),
            Op::Regex(i) => self.regexes[*i].is_match(l.text(), regex),
            Op::Path(parts) => path_matches(parts, l.text()),
        }
    }
}

/// One side of a comparison.
#[derive(Debug, Clone, Copy)]
enum Value<'a> {
    Text(&'a str),
    /// A number literal, and how it is written (for a comparison as text).
    Number(&'a str),
    /// A numeric variable's value, as text (compared as a number with a
    /// number, as text with text).
    NumericText(&'a str),
}

impl<'a> Value<'a> {
    fn of(kind: Kind, text: &'a str) -> Value<'a> {
        match kind {
            Kind::Text => Value::Text(text),
            Kind::Number => Value::NumericText(text),
        }
    }

    fn text(&self) -> &'a str {
        match self {
            Value::Text(t) | Value::NumericText(t) | Value::Number(t) => t,
        }
    }

    /// The reference page's adaptation: text wins, so two numbers compare
    /// as numbers and anything else as text.
    fn cmp(&self, other: &Value) -> Option<std::cmp::Ordering> {
        let numeric = |v: &Value| !matches!(v, Value::Text(_));
        if numeric(self) && numeric(other) {
            return Some(Decimal::parse(self.text())?.cmp(&Decimal::parse(other.text())?));
        }
        Some(self.text().cmp(other.text()))
    }

    fn text_eq_ignore_case(&self, other: &Value) -> bool {
        let (a, b) = (self.text(), other.text());
        // ASCII letters only: Unicode case tables cost the filter about
        // 15 KB for a case no migrated condition has shown
        // (docs/decisions.md#conditions).
        a.eq_ignore_ascii_case(b)
    }
}

/// A decimal number as written (`-12.50`, `7L`), compared exactly without
/// converting it to a float: digits before the point without leading
/// zeros, digits after it without trailing zeros.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Decimal<'a> {
    negative: bool,
    int: &'a str,
    frac: &'a str,
}

impl<'a> Decimal<'a> {
    fn parse(t: &'a str) -> Option<Decimal<'a>> {
        let t = t.trim();
        let t = t.strip_suffix(['f', 'F', 'd', 'D', 'l', 'L']).unwrap_or(t);
        let (negative, t) = match t.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, t),
        };
        let (int, frac) = t.split_once('.').unwrap_or((t, ""));
        let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if (int.is_empty() && frac.is_empty()) || !digits(int) || !digits(frac) {
            return None;
        }
        let int = int.trim_start_matches('0');
        let frac = frac.trim_end_matches('0');
        Some(Decimal {
            // -0 is 0.
            negative: negative && !(int.is_empty() && frac.is_empty()),
            int,
            frac,
        })
    }

    fn cmp(&self, other: &Decimal) -> std::cmp::Ordering {
        use std::cmp::Ordering;
        let magnitude = self
            .int
            .len()
            .cmp(&other.int.len())
            .then_with(|| self.int.cmp(other.int))
            .then_with(|| self.frac.cmp(other.frac));
        match (self.negative, other.negative) {
            (false, false) => magnitude,
            (true, true) => magnitude.reverse(),
            (false, true) => Ordering::Greater,
            (true, false) => Ordering::Less,
        }
    }
}

/// `Matches`: the whole value against a pattern where `*` is any run of
/// characters (none included) and everything else is itself.
fn glob(pattern: &[u8], value: &[u8]) -> bool {
    let (mut p, mut v) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while v < value.len() {
        if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, v));
            p += 1;
        } else if p < pattern.len() && pattern[p] == value[v] {
            p += 1;
            v += 1;
        } else if let Some((sp, sv)) = star {
            p = sp + 1;
            v = sv + 1;
            star = Some((sp, sv + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&b| b == b'*')
}

fn compile_path(pattern: &str) -> Vec<PathPart> {
    pattern
        .split('/')
        .map(|element| match element {
            "*" => PathPart::One,
            "**" => PathPart::Rest,
            e if e.len() >= 2
                && e.starts_with('{')
                && e.ends_with('}')
                && !e.as_bytes().contains(&b'%') =>
            {
                PathPart::One
            }
            e => PathPart::Literal(replace(
                &replace(&replace(e, "%{", "{"), "%}", "}"),
                "%%",
                "%",
            )),
        })
        .collect()
}

/// A `MatchesPath` pattern with a wildcard glued to other characters in
/// an element (`/music**`, `/a*`, `*b`, `/v1/*.json`), as a whole-string
/// regular expression; `None` when every wildcard is a whole element. As
/// on Apigee: a glued `*` is any run of characters within the element, a
/// glued `**` any run of characters, `/` included (`/music**` matches
/// `/music`, `/music/x` and `/musicals`); the whole elements `*`, `**` and
/// `{name}` keep their meaning.
fn glued_path_regex(pattern: &str) -> Option<String> {
    let glued = pattern
        .split('/')
        .any(|e| e.as_bytes().contains(&b'*') && e != "*" && e != "**");
    if !glued {
        return None;
    }
    let mut re = String::new();
    for (i, element) in pattern.split('/').enumerate() {
        if i > 0 {
            re.push('/');
        }
        match element {
            "*" => re.push_str("[^/]*"),
            "**" => re.push_str("[^/]*(/[^/]*)*"),
            e if e.len() >= 2
                && e.starts_with('{')
                && e.ends_with('}')
                && !e.as_bytes().contains(&b'%') =>
            {
                re.push_str("[^/]*")
            }
            e => {
                let mut chars = e.chars().peekable();
                while let Some(c) = chars.next() {
                    match c {
                        '*' if chars.peek() == Some(&'*') => {
                            chars.next();
                            re.push_str("(/|[^/])*");
                        }
                        '*' => re.push_str("[^/]*"),
                        '%' if matches!(chars.peek(), Some('{' | '}' | '%')) => {
                            if let Some(next) = chars.next() {
                                re.push('\\');
                                re.push(next);
                            }
                        }
                        c @ ('\\' | '.' | '[' | ']' | '{' | '}' | '(' | ')' | '+' | '?' | '^'
                        | '$' | '|') => {
                            re.push('\\');
                            re.push(c);
                        }
                        c => re.push(c),
                    }
                }
            }
        }
    }
    Some(re)
}

/// `MatchesPath`: the value's `/`-separated elements against the
/// pattern's: a literal element is itself, `*` and `{name}` any one
/// element, `**` one or more.
fn path_matches(parts: &[PathPart], value: &str) -> bool {
    fn go<'a>(parts: &[PathPart], mut elements: impl Iterator<Item = &'a str> + Clone) -> bool {
        let Some((first, rest)) = parts.split_first() else {
            return elements.next().is_none();
        };
        match first {
            PathPart::Literal(l) => elements.next() == Some(l.as_str()) && go(rest, elements),
            PathPart::One => elements.next().is_some() && go(rest, elements),
            PathPart::Rest => {
                if elements.next().is_none() {
                    return false;
                }
                loop {
                    if go(rest, elements.clone()) {
                        return true;
                    }
                    if elements.next().is_none() {
                        return false;
                    }
                }
            }
        }
    }
    go(parts, value.split('/'))
}

// ------------------------------------------------------------------ lexer

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Name(String),
    /// A single-quoted name.
    QuotedName(String),
    Text(String),
    Number(String),
    Open,
    Close,
    /// An operator or keyword, lower-cased.
    Word(&'static str),
}

impl Tok {
    fn describe(&self) -> String {
        match self {
            Tok::Name(n) | Tok::QuotedName(n) => format!("{n:?}"),
            Tok::Text(t) => format!("{t:?}"),
            Tok::Number(text) => text.clone(),
            Tok::Open => "\"(\"".into(),
            Tok::Close => "\")\"".into(),
            Tok::Word(w) => format!("{w:?}"),
        }
    }
}

#[derive(Debug, Clone)]
struct Token {
    tok: Tok,
    /// 1-based character position.
    at: usize,
}

/// The word forms, in any case, and what they stand for.
const WORDS: &[(&str, &str)] = &[
    ("and", "and"),
    ("or", "or"),
    ("not", "not"),
    ("equals", "="),
    ("is", "="),
    ("notequals", "!="),
    ("isnot", "!="),
    ("equalscaseinsensitive", ":="),
    ("greaterthan", ">"),
    ("greaterthanorequals", ">="),
    ("lesserthan", "<"),
    ("lesserthanorequals", "<="),
    ("startswith", "=|"),
    ("matches", "~"),
    ("like", "~"),
    ("javaregex", "~~"),
    ("matchespath", "~/"),
    ("likepath", "~/"),
    ("null", "null"),
    ("true", "true"),
    ("false", "false"),
];

/// Symbol operators, longest first.
const SYMBOLS: &[(&str, &str)] = &[
    ("&&", "and"),
    ("||", "or"),
    ("==", "="),
    ("!=", "!="),
    (":=", ":="),
    (">=", ">="),
    ("<=", "<="),
    ("=|", "=|"),
    ("~~", "~~"),
    ("~/", "~/"),
    ("!~", "!~"),
    ("=", "="),
    (">", ">"),
    ("<", "<"),
    ("~", "~"),
    ("!", "not"),
];

/// Variable names are ASCII, as Apigee's are; any other character outside
/// a quoted text is refused with its position (a pasted typographic quote
/// is caught that way).
fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')
}

fn lex(text: &str) -> Result<Vec<Token>, ConditionError> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let at = i + 1;
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        if c == '(' || c == ')' {
            out.push(Token {
                tok: if c == '(' { Tok::Open } else { Tok::Close },
                at,
            });
            i += 1;
            continue;
        }
        if c == '"' || c == '\'' {
            let Some(len) = chars[i + 1..].iter().position(|&q| q == c) else {
                return Err(ConditionError {
                    at,
                    problem: format!("the quote {c} is not closed"),
                });
            };
            let s: String = chars[i + 1..i + 1 + len].iter().collect();
            out.push(Token {
                tok: if c == '"' {
                    Tok::Text(s)
                } else {
                    Tok::QuotedName(s)
                },
                at,
            });
            i += len + 2;
            continue;
        }
        if let Some((sym, op)) = SYMBOLS.iter().find(|(sym, _)| {
            let n = sym.chars().count();
            chars
                .get(i..i + n)
                .is_some_and(|w| w.iter().copied().eq(sym.chars()))
        }) {
            out.push(Token {
                tok: Tok::Word(op),
                at,
            });
            i += sym.chars().count();
            continue;
        }
        let number_start = c.is_ascii_digit()
            || (c == '-' && chars.get(i + 1).is_some_and(|d| d.is_ascii_digit()));
        if is_name_char(c) {
            let len = chars[i..].iter().take_while(|&&c| is_name_char(c)).count();
            let word: String = chars[i..i + len].iter().collect();
            i += len;
            if number_start {
                if Decimal::parse(&word).is_none() {
                    return Err(ConditionError {
                        at,
                        problem: format!("{word:?} is not a number"),
                    });
                }
                let text = word
                    .trim_end_matches(['f', 'F', 'd', 'D', 'l', 'L'])
                    .to_string();
                out.push(Token {
                    tok: Tok::Number(text),
                    at,
                });
                continue;
            }
            let lower = word.to_ascii_lowercase();
            match WORDS.iter().find(|(w, _)| *w == lower) {
                Some((_, op)) => out.push(Token {
                    tok: Tok::Word(op),
                    at,
                }),
                None => out.push(Token {
                    tok: Tok::Name(word),
                    at,
                }),
            }
            continue;
        }
        return Err(ConditionError {
            at,
            problem: format!("unexpected {c:?} (no arithmetic or other operators)"),
        });
    }
    Ok(out)
}

// ----------------------------------------------------------------- parser

struct Parser {
    tokens: Vec<Token>,
    next: usize,
    c: Condition,
    end: usize,
}

impl Parser {
    fn error_at(&self, at: usize, problem: String) -> ConditionError {
        ConditionError { at, problem }
    }

    fn peek(&self) -> Option<&Tok> {
        self.tokens.get(self.next).map(|t| &t.tok)
    }

    fn at(&self) -> usize {
        self.tokens.get(self.next).map_or(self.end, |t| t.at)
    }

    fn push(&mut self, node: Node) -> usize {
        self.c.nodes.push(node);
        self.c.nodes.len() - 1
    }

    fn word(&self, w: &'static str) -> bool {
        self.peek() == Some(&Tok::Word(w))
    }

    fn or(&mut self) -> Result<usize, ConditionError> {
        let (mut left, mut mixed) = self.and()?;
        let mut any_or = false;
        while self.word("or") {
            self.next += 1;
            let (right, and) = self.and()?;
            mixed |= and;
            any_or = true;
            left = self.push(Node::Or(left, right));
        }
        let mixed = mixed && any_or;
        if mixed {
            self.c.warnings.push(
                "\"and\" and \"or\" mixed without parentheses: \"and\" binds tighter (Java precedence, as Apigee's reference says)".into(),
            );
        }
        Ok(left)
    }

    /// An `and` chain, and whether it has an `and` outside parentheses.
    fn and(&mut self) -> Result<(usize, bool), ConditionError> {
        let mut left = self.unary()?;
        let mut any = false;
        while self.word("and") {
            self.next += 1;
            let right = self.unary()?;
            left = self.push(Node::And(left, right));
            any = true;
        }
        Ok((left, any))
    }

    fn unary(&mut self) -> Result<usize, ConditionError> {
        if self.word("not") {
            self.next += 1;
            let inner = self.unary()?;
            return Ok(self.push(Node::Not(inner)));
        }
        if self.peek() == Some(&Tok::Open) {
            let open = self.at();
            self.next += 1;
            let inner = self.or()?;
            if self.peek() != Some(&Tok::Close) {
                return Err(self.error_at(open, "this parenthesis is not closed".into()));
            }
            self.next += 1;
            return Ok(inner);
        }
        self.comparison()
    }

    fn variable(&mut self, name: String) -> usize {
        match self.c.variables.iter().position(|v| *v == name) {
            Some(i) => i,
            None => {
                self.c.variables.push(name);
                self.c.variables.len() - 1
            }
        }
    }

    fn comparison(&mut self) -> Result<usize, ConditionError> {
        let at = self.at();
        let var = match self.peek().cloned() {
            Some(Tok::Name(n) | Tok::QuotedName(n)) => {
                self.next += 1;
                self.variable(n)
            }
            Some(t @ (Tok::Text(_) | Tok::Number(..) | Tok::Word("null" | "true" | "false"))) => {
                return Err(self.error_at(
                    at,
                    format!(
                        "{} where a variable belongs: the left side of a comparison is a variable",
                        t.describe()
                    ),
                ))
            }
            Some(t) => return Err(self.error_at(at, format!("unexpected {}", t.describe()))),
            None => return Err(self.error_at(at, "a comparison is missing at the end".into())),
        };
        let negated = if self.word("not") {
            self.next += 1;
            true
        } else {
            false
        };
        let op_at = self.at();
        let op =
            match self.peek() {
                Some(Tok::Word(w))
                    if !matches!(*w, "and" | "or" | "not" | "null" | "true" | "false") =>
                {
                    *w
                }
                _ if negated => return Err(self.error_at(
                    op_at,
                    "\"not\" after a variable needs StartsWith, Matches, JavaRegex or MatchesPath"
                        .into(),
                )),
                // A bare variable.
                _ => return Ok(self.push(Node::Bare(var))),
            };
        self.next += 1;
        if negated && !matches!(op, "=|" | "~" | "~~" | "~/") {
            return Err(self.error_at(
                op_at,
                "\"not\" after a variable needs StartsWith, Matches, JavaRegex or MatchesPath"
                    .into(),
            ));
        }
        let rhs_at = self.at();
        let rhs = match self.peek().cloned() {
            Some(Tok::Text(t)) => Operand::Text(t),
            Some(Tok::Number(text)) => Operand::Number(text),
            Some(Tok::Word("null")) => Operand::Null,
            Some(Tok::Word("true")) => Operand::Bool(true),
            Some(Tok::Word("false")) => Operand::Bool(false),
            Some(Tok::Name(n)) => Operand::Var(self.variable(n)),
            Some(Tok::QuotedName(_)) => {
                return Err(self.error_at(
                    rhs_at,
                    "a value is written in double quotes, not single".into(),
                ))
            }
            Some(t) => {
                return Err(self.error_at(
                    rhs_at,
                    format!("unexpected {}: a value belongs here", t.describe()),
                ))
            }
            None => return Err(self.error_at(rhs_at, "a value is missing at the end".into())),
        };
        self.next += 1;
        let text_only = |p: &Parser| match &rhs {
            Operand::Text(t) => Ok(t.clone()),
            _ => Err(p.error_at(
                rhs_at,
                format!("{op:?} takes a double-quoted text on its right"),
            )),
        };
        let op = match op {
            "=" => Op::Eq,
            "!=" => Op::Ne,
            ":=" => {
                text_only(self)?;
                Op::EqIgnoreCase
            }
            ">" | ">=" | "<" | "<=" => {
                if matches!(rhs, Operand::Text(_) | Operand::Bool(_)) {
                    return Err(self.error_at(
                        rhs_at,
                        format!("{op:?} takes a number or a variable on its right"),
                    ));
                }
                match op {
                    ">" => Op::Gt,
                    ">=" => Op::Ge,
                    "<" => Op::Lt,
                    _ => Op::Le,
                }
            }
            "=|" => {
                if !matches!(rhs, Operand::Text(_) | Operand::Var(_)) {
                    return Err(self.error_at(
                        rhs_at,
                        "\"=|\" takes a double-quoted text or a variable on its right".into(),
                    ));
                }
                Op::StartsWith
            }
            "~" => {
                text_only(self)?;
                Op::Matches
            }
            "!~" => {
                text_only(self)?;
                Op::NotMatches
            }
            "~~" => {
                let pattern = text_only(self)?;
                let regex = crate::regex::Regex::new(&pattern)
                    .map_err(|e| self.error_at(rhs_at, format!("not a regular expression: {e}")))?;
                self.c.regexes.push(regex);
                Op::Regex(self.c.regexes.len() - 1)
            }
            "~/" => {
                let pattern = text_only(self)?;
                match glued_path_regex(&pattern) {
                    // A wildcard inside an element: the whole pattern as a
                    // regular expression (docs/decisions.md#conditions).
                    Some(re) => {
                        let regex = crate::regex::Regex::new(&re).map_err(|e| {
                            self.error_at(rhs_at, format!("path pattern {pattern:?}: {e}"))
                        })?;
                        self.c.regexes.push(regex);
                        Op::Regex(self.c.regexes.len() - 1)
                    }
                    None => Op::Path(compile_path(&pattern)),
                }
            }
            other => return Err(self.error_at(op_at, format!("unexpected {other:?}"))),
        };
        let node = self.push(Node::Compare { var, op, rhs });
        Ok(if negated {
            self.push(Node::Not(node))
        } else {
            node
        })
    }
}

#[cfg(test)]
#[path = "condition_tests.rs"]
mod tests;
