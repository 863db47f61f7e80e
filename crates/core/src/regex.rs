//! `JavaRegex` (`~~`) of the condition language: a whole-string match
//! (Java's `String.matches`) in linear time, with no backtracking, over the
//! part of Java's syntax a condition uses (docs/decisions.md#conditions):
//! literals and escapes, `.`, classes with ranges and negation, `\d \w \s`
//! and their negations, groups (`(...)`, `(?:...)`), alternation, the
//! quantifiers `* + ? {n} {n,} {n,m}` (greedy or lazy: alike for a whole
//! match), `^` and `$`, and a leading `(?i)` (ASCII letters). What it does
//! not take (back-references, look-around, possessive quantifiers, named
//! classes, `\b`) is refused when the configuration loads.
//!
//! A pattern compiles to a small program that a Thompson simulation runs
//! (Pike's VM without captures): time proportional to the value's length
//! times the program's, buffers kept in a [`Cache`] between requests. The
//! crate's tests compare it with `regex-lite` on random patterns and values.

/// A compiled pattern.
#[derive(Debug, Clone)]
pub struct Regex {
    program: Vec<Inst>,
    classes: Vec<Class>,
    ignore_case: bool,
}

/// The buffers a match works in (kept between requests).
#[derive(Debug, Default)]
pub struct Cache {
    current: Vec<usize>,
    next: Vec<usize>,
    /// For each instruction, the step that last added it.
    seen: Vec<usize>,
    stack: Vec<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Inst {
    Char(char),
    Any,
    Class(usize),
    Split(usize, usize),
    Jmp(usize),
    Start,
    End,
    Match,
}

/// A character class: inclusive ranges, maybe negated.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Class {
    ranges: Vec<(char, char)>,
    negated: bool,
}

impl Class {
    fn contains(&self, c: char, ignore_case: bool) -> bool {
        let has = |c: char| self.ranges.iter().any(|&(a, b)| a <= c && c <= b);
        let found =
            has(c) || (ignore_case && (has(c.to_ascii_lowercase()) || has(c.to_ascii_uppercase())));
        found != self.negated
    }
}

#[derive(Debug, Clone)]
enum Node {
    Empty,
    Char(char),
    Any,
    Class(Class),
    Start,
    End,
    Concat(Vec<Node>),
    Alt(Vec<Node>),
    Repeat {
        node: Box<Node>,
        min: u32,
        max: Option<u32>,
    },
}

/// Bounds that keep a pattern's program small.
const MAX_COUNT: u32 = 1000;
const MAX_PROGRAM: usize = 10_000;
const MAX_DEPTH: usize = 100;

impl Regex {
    /// Compiles `pattern`; the error says what is wrong, for the
    /// configuration's load-time message.
    pub fn new(pattern: &str) -> Result<Regex, String> {
        let mut chars: Vec<char> = pattern.chars().collect();
        let ignore_case = chars.starts_with(&['(', '?', 'i', ')']);
        if ignore_case {
            chars.drain(..4);
        }
        let mut p = Parser {
            chars,
            at: 0,
            depth: 0,
        };
        let node = p.alternation()?;
        if let Some(c) = p.peek() {
            return Err(format!("unexpected {c:?} at position {}", p.at + 1));
        }
        let mut regex = Regex {
            program: Vec::new(),
            classes: Vec::new(),
            ignore_case,
        };
        regex.emit(&node)?;
        regex.program.push(Inst::Match);
        Ok(regex)
    }

    /// True when the whole of `value` matches.
    pub fn is_match(&self, value: &str, cache: &mut Cache) -> bool {
        let n = self.program.len();
        cache.seen.clear();
        cache.seen.resize(n, usize::MAX);
        cache.current.clear();
        cache.next.clear();
        let len = value.len();
        self.add(cache, 0, 0, 0, len, false);
        let mut step = 0;
        for (at, c) in value.char_indices() {
            if cache.current.is_empty() {
                return false;
            }
            step += 1;
            let after = at + c.len_utf8();
            let current = std::mem::take(&mut cache.current);
            for &pc in &current {
                let advance = match self.program.get(pc) {
                    Some(Inst::Char(want)) => {
                        *want == c || (self.ignore_case && want.eq_ignore_ascii_case(&c))
                    }
                    Some(Inst::Any) => {
                        !matches!(c, '\n' | '\r' | '\u{85}' | '\u{2028}' | '\u{2029}')
                    }
                    Some(Inst::Class(i)) => self
                        .classes
                        .get(*i)
                        .is_some_and(|class| class.contains(c, self.ignore_case)),
                    _ => false,
                };
                if advance {
                    self.add(cache, pc + 1, step, after, len, true);
                }
            }
            cache.current = current;
            std::mem::swap(&mut cache.current, &mut cache.next);
            cache.next.clear();
        }
        cache
            .current
            .iter()
            .any(|&pc| self.program.get(pc) == Some(&Inst::Match))
    }

    /// Adds the thread at `pc` and every thread its jumps reach without
    /// reading, at position `at`, to the list for `step` (`next` when
    /// `to_next`).
    fn add(&self, cache: &mut Cache, pc: usize, step: usize, at: usize, len: usize, to_next: bool) {
        cache.stack.clear();
        cache.stack.push(pc);
        while let Some(pc) = cache.stack.pop() {
            match cache.seen.get_mut(pc) {
                Some(seen) if *seen != step => *seen = step,
                _ => continue,
            }
            match self.program.get(pc) {
                Some(Inst::Jmp(to)) => cache.stack.push(*to),
                Some(Inst::Split(a, b)) => {
                    // `a` first: popped first.
                    cache.stack.push(*b);
                    cache.stack.push(*a);
                }
                Some(Inst::Start) if at == 0 => cache.stack.push(pc + 1),
                Some(Inst::End) if at == len => cache.stack.push(pc + 1),
                Some(Inst::Start | Inst::End) | None => {}
                Some(_) => {
                    if to_next {
                        cache.next.push(pc);
                    } else {
                        cache.current.push(pc);
                    }
                }
            }
        }
    }

    fn push(&mut self, inst: Inst) -> Result<usize, String> {
        if self.program.len() >= MAX_PROGRAM {
            return Err(
                "the pattern is too large (its repetitions make too long a program)".into(),
            );
        }
        self.program.push(inst);
        Ok(self.program.len() - 1)
    }

    fn patch(&mut self, at: usize, inst: Inst) {
        if let Some(slot) = self.program.get_mut(at) {
            *slot = inst;
        }
    }

    fn emit(&mut self, node: &Node) -> Result<(), String> {
        match node {
            Node::Empty => {}
            Node::Char(c) => {
                self.push(Inst::Char(*c))?;
            }
            Node::Any => {
                self.push(Inst::Any)?;
            }
            Node::Class(class) => {
                self.classes.push(class.clone());
                self.push(Inst::Class(self.classes.len() - 1))?;
            }
            Node::Start => {
                self.push(Inst::Start)?;
            }
            Node::End => {
                self.push(Inst::End)?;
            }
            Node::Concat(nodes) => {
                for n in nodes {
                    self.emit(n)?;
                }
            }
            Node::Alt(nodes) => {
                // split L1, next; L1: a; jmp end; next: split L2, ...
                let mut jumps = Vec::new();
                for (i, n) in nodes.iter().enumerate() {
                    if i + 1 < nodes.len() {
                        let split = self.push(Inst::Split(0, 0))?;
                        self.emit(n)?;
                        jumps.push(self.push(Inst::Jmp(0))?);
                        let next = self.program.len();
                        self.patch(split, Inst::Split(split + 1, next));
                    } else {
                        self.emit(n)?;
                    }
                }
                let end = self.program.len();
                for j in jumps {
                    self.patch(j, Inst::Jmp(end));
                }
            }
            Node::Repeat { node, min, max } => {
                for _ in 0..*min {
                    self.emit(node)?;
                }
                match max {
                    None => {
                        // L: split body, end; body; jmp L
                        let split = self.push(Inst::Split(0, 0))?;
                        self.emit(node)?;
                        self.push(Inst::Jmp(split))?;
                        let end = self.program.len();
                        self.patch(split, Inst::Split(split + 1, end));
                    }
                    Some(max) => {
                        let mut splits = Vec::new();
                        for _ in *min..*max {
                            splits.push(self.push(Inst::Split(0, 0))?);
                            self.emit(node)?;
                        }
                        let end = self.program.len();
                        for s in splits {
                            self.patch(s, Inst::Split(s + 1, end));
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

struct Parser {
    chars: Vec<char>,
    at: usize,
    depth: usize,
}

impl Parser {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.at).copied()
    }

    fn eat(&mut self, c: char) -> bool {
        let found = self.peek() == Some(c);
        if found {
            self.at += 1;
        }
        found
    }

    fn alternation(&mut self) -> Result<Node, String> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err("the pattern nests too deeply".into());
        }
        let mut branches = vec![self.concat()?];
        while self.eat('|') {
            branches.push(self.concat()?);
        }
        self.depth -= 1;
        Ok(if branches.len() == 1 {
            branches.pop().unwrap_or(Node::Empty)
        } else {
            Node::Alt(branches)
        })
    }

    fn concat(&mut self) -> Result<Node, String> {
        let mut items = Vec::new();
        while let Some(c) = self.peek() {
            if c == '|' || c == ')' {
                break;
            }
            let atom = self.atom()?;
            items.push(self.quantified(atom)?);
        }
        Ok(match items.len() {
            0 => Node::Empty,
            1 => items.pop().unwrap_or(Node::Empty),
            _ => Node::Concat(items),
        })
    }

    fn atom(&mut self) -> Result<Node, String> {
        let at = self.at + 1;
        let Some(c) = self.peek() else {
            return Ok(Node::Empty);
        };
        self.at += 1;
        Ok(match c {
            '.' => Node::Any,
            '^' => Node::Start,
            '$' => Node::End,
            '[' => Node::Class(self.class()?),
            '(' => {
                if self.eat('?') && !self.eat(':') {
                    return Err(format!(
                        "only (?:...) groups and a leading (?i) are supported (position {at})"
                    ));
                }
                let inner = self.alternation()?;
                if !self.eat(')') {
                    return Err(format!("the group at position {at} is not closed"));
                }
                inner
            }
            '*' | '+' | '?' | '{' => {
                return Err(format!("{c:?} at position {at} repeats nothing"));
            }
            '\\' => match self.escape(at)? {
                Escaped::Char(c) => Node::Char(c),
                Escaped::Class(class) => Node::Class(class),
            },
            c => Node::Char(c),
        })
    }

    fn quantified(&mut self, atom: Node) -> Result<Node, String> {
        let at = self.at + 1;
        let (min, max) = match self.peek() {
            Some('*') => (0, None),
            Some('+') => (1, None),
            Some('?') => (0, Some(1)),
            Some('{') => {
                self.at += 1;
                let min = self.number(at)?;
                let max = if self.eat(',') {
                    if self.peek() == Some('}') {
                        None
                    } else {
                        Some(self.number(at)?)
                    }
                } else {
                    Some(min)
                };
                if self.peek() != Some('}') {
                    return Err(format!("the repetition at position {at} is not closed"));
                }
                if max.is_some_and(|max| max < min) {
                    return Err(format!(
                        "the repetition at position {at} has its minimum above its maximum"
                    ));
                }
                (min, max)
            }
            _ => return Ok(atom),
        };
        self.at += 1;
        // Lazy and greedy agree on a whole match; possessive does not.
        self.eat('?');
        if self.peek() == Some('+') {
            return Err(format!(
                "possessive quantifiers are not supported (position {})",
                self.at + 1
            ));
        }
        if matches!(self.peek(), Some('*' | '+' | '?' | '{')) {
            return Err(format!(
                "a repetition is repeated at position {}",
                self.at + 1
            ));
        }
        Ok(Node::Repeat {
            node: Box::new(atom),
            min,
            max,
        })
    }

    fn number(&mut self, at: usize) -> Result<u32, String> {
        let start = self.at;
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.at += 1;
        }
        let digits: String = self
            .chars
            .get(start..self.at)
            .unwrap_or_default()
            .iter()
            .collect();
        match digits.parse::<u32>() {
            Ok(n) if n <= MAX_COUNT => Ok(n),
            Ok(_) => Err(format!(
                "the repetition at position {at} counts above {MAX_COUNT}"
            )),
            Err(_) => Err(format!("the repetition at position {at} needs a number")),
        }
    }

    fn class(&mut self) -> Result<Class, String> {
        let open = self.at;
        let negated = self.eat('^');
        let mut ranges = Vec::new();
        let mut first = true;
        loop {
            let at = self.at + 1;
            let Some(c) = self.peek() else {
                return Err(format!("the class at position {open} is not closed"));
            };
            self.at += 1;
            let low = match c {
                ']' if !first => break,
                '[' => return Err(format!("nested classes are not supported (position {at})")),
                '&' if self.peek() == Some('&') => {
                    return Err(format!(
                        "class intersection (&&) is not supported (position {at})"
                    ))
                }
                '\\' => match self.escape(at)? {
                    Escaped::Char(c) => c,
                    Escaped::Class(class) => {
                        if class.negated {
                            return Err(format!(
                                "a negated escape inside a class is not supported (position {at})"
                            ));
                        }
                        ranges.extend(class.ranges);
                        first = false;
                        continue;
                    }
                },
                c => c,
            };
            first = false;
            if self.peek() == Some('-') && self.chars.get(self.at + 1).is_some_and(|&n| n != ']') {
                self.at += 1;
                let high_at = self.at + 1;
                let high = match self.peek() {
                    Some('\\') => {
                        self.at += 1;
                        match self.escape(high_at)? {
                            Escaped::Char(c) => c,
                            Escaped::Class(_) => {
                                return Err(format!(
                                    "a range ends in a class at position {high_at}"
                                ))
                            }
                        }
                    }
                    Some(c) => {
                        self.at += 1;
                        c
                    }
                    None => return Err(format!("the class at position {open} is not closed")),
                };
                if high < low {
                    return Err(format!("the range at position {at} is backwards"));
                }
                ranges.push((low, high));
            } else {
                ranges.push((low, low));
            }
        }
        Ok(Class { ranges, negated })
    }

    /// After a backslash.
    fn escape(&mut self, at: usize) -> Result<Escaped, String> {
        let Some(c) = self.peek() else {
            return Err(format!("the pattern ends in a backslash (position {at})"));
        };
        self.at += 1;
        let class = |ranges: &[(char, char)], negated: bool| {
            Ok(Escaped::Class(Class {
                ranges: ranges.to_vec(),
                negated,
            }))
        };
        const DIGIT: &[(char, char)] = &[('0', '9')];
        const WORD: &[(char, char)] = &[('a', 'z'), ('A', 'Z'), ('0', '9'), ('_', '_')];
        const SPACE: &[(char, char)] = &[('\t', '\r'), (' ', ' ')];
        match c {
            'd' => class(DIGIT, false),
            'D' => class(DIGIT, true),
            'w' => class(WORD, false),
            'W' => class(WORD, true),
            's' => class(SPACE, false),
            'S' => class(SPACE, true),
            't' => Ok(Escaped::Char('\t')),
            'n' => Ok(Escaped::Char('\n')),
            'r' => Ok(Escaped::Char('\r')),
            'f' => Ok(Escaped::Char('\u{c}')),
            c if c.is_ascii_alphanumeric() => Err(format!(
                "the escape \\{c} at position {at} is not supported (back-references, \\b, \\p and the like are not)"
            )),
            c => Ok(Escaped::Char(c)),
        }
    }
}

enum Escaped {
    Char(char),
    Class(Class),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(pattern: &str, value: &str) -> bool {
        let re = Regex::new(pattern).unwrap_or_else(|e| panic!("{pattern}: {e}"));
        re.is_match(value, &mut Cache::default())
    }

    #[test]
    fn whole_matches() {
        for (pattern, value, want) in [
            ("abc", "abc", true),
            ("abc", "abcd", false),
            ("abc", "xabc", false),
            ("a.c", "abc", true),
            ("a.c", "a\nc", false),
            ("a*", "", true),
            ("a*", "aaaa", true),
            ("a+", "", false),
            ("ab?c", "ac", true),
            ("ab?c", "abbc", false),
            ("a{2,3}", "aa", true),
            ("a{2,3}", "aaaa", false),
            ("a{2,}", "aaaaa", true),
            ("a{2}", "aa", true),
            ("(ab)+", "ababab", true),
            ("(?:ab|cd)*e", "abcdabe", true),
            ("cat|dog", "dog", true),
            ("cat|dog", "cats", false),
            ("[a-c]+", "abcabc", true),
            ("[^a-c]+", "xyz", true),
            ("[^a-c]+", "xaz", false),
            ("[-a]+", "-a-", true),
            ("[a-]+", "-a-", true),
            (r"\d{3}-\d{4}", "555-1234", true),
            (r"\w+@\w+\.com", "me@host.com", true),
            (r"\s*x\s*", "  x\t", true),
            (r"\D+", "abc", true),
            (r"\.", ".", true),
            (r"\.", "a", false),
            (r"[\d.]+", "1.2.3", true),
            ("(?i)get|post", "POST", true),
            ("get|post", "POST", false),
            ("(?i)[a-c]+", "ABC", true),
            // Java folds each character, not the range: 'y' is in [A-c]
            // because 'Y' is (regex-lite folds only the a-c half).
            ("(?i)[A-c]", "y", true),
            ("(?i)[X-c]", "A", true),
            ("(?i)[X-c]", "w", false),
            // A leading ']' is a literal, and can start a range (Java's
            // reading; regex-lite reads ']', '-', 'c').
            ("[]-c]", "a", true),
            ("[]-c]", "-", false),
            ("[^]-c]+", "-x", true),
            ("[]a]+", "]a", true),
            ("^/v1/.*$", "/v1/x", true),
            ("a^b", "ab", false),
            ("(a*)*b", "aaaab", true),
            ("(a|)+", "aaa", true),
            ("/orders/[0-9]+(/items)?", "/orders/12/items", true),
            ("é+", "éé", true),
            ("", "", true),
            ("", "a", false),
        ] {
            assert_eq!(matches(pattern, value), want, "{pattern} on {value:?}");
        }
    }

    /// The classic exponential case for a backtracking matcher is linear.
    #[test]
    fn no_catastrophic_backtracking() {
        let re = Regex::new("(a+)+b").unwrap();
        let value = "a".repeat(10_000);
        assert!(!re.is_match(&value, &mut Cache::default()));
        let re = Regex::new("(a|aa){1,50}c").unwrap();
        assert!(!re.is_match(&"a".repeat(5_000), &mut Cache::default()));
    }

    #[test]
    fn refused_at_load_time() {
        for (pattern, problem) in [
            ("(a", "not closed"),
            ("[a", "not closed"),
            ("*a", "repeats nothing"),
            ("a**", "repeated"),
            ("a*+", "possessive"),
            (r"(a)\1", "not supported"),
            (r"\bword", "not supported"),
            (r"\p{L}", "not supported"),
            ("(?=a)", "(?:...)"),
            ("(?<n>a)", "(?:...)"),
            ("a{3,2}", "minimum above"),
            ("a{1001}", "above 1000"),
            ("a{x}", "needs a number"),
            ("[z-a]", "backwards"),
            ("[[a]]", "nested"),
            ("[a-z&&[^aeiou]]", "intersection"),
            ("a)", "unexpected"),
            ("x\\", "backslash"),
            ("(a{1000}){1000}", "too large"),
        ] {
            let e = Regex::new(pattern).unwrap_err();
            assert!(e.contains(problem), "{pattern}: {e}");
        }
        let deep = "(".repeat(200) + &")".repeat(200);
        assert!(Regex::new(&deep).unwrap_err().contains("nests"));
    }

    /// Against regex-lite (whole match) on random patterns from a small
    /// alphabet and random values: the same answer whenever both accept
    /// the pattern.
    #[test]
    fn agrees_with_regex_lite() {
        let atoms = [
            "a", "b", ".", "[ab]", "[^a]", r"\d", "1", "(a|b)", "(?:ab)", "(a*)", "x?",
        ];
        let quants = ["", "", "*", "+", "?", "{2}", "{1,2}", "{0,}"];
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n as u64) as usize
        };
        let mut cache = Cache::default();
        let mut compared = 0;
        for _ in 0..3000 {
            let mut pattern = String::new();
            for _ in 0..1 + next(4) {
                pattern.push_str(atoms[next(atoms.len())]);
                pattern.push_str(quants[next(quants.len())]);
                if next(6) == 0 {
                    pattern.push('|');
                }
            }
            let (Ok(ours), Ok(theirs)) = (
                Regex::new(&pattern),
                regex_lite::Regex::new(&format!("^(?:{pattern})$")),
            ) else {
                continue;
            };
            for _ in 0..8 {
                let value: String = (0..next(6))
                    .map(|_| ['a', 'b', '1', 'x'][next(4)])
                    .collect();
                assert_eq!(
                    ours.is_match(&value, &mut cache),
                    theirs.is_match(&value),
                    "{pattern} on {value:?}"
                );
                compared += 1;
            }
        }
        assert!(compared > 10_000, "{compared}");
    }
}
