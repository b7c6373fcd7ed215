//! Limits on source text, checked before an interpreter sees it. Both parsers
//! recurse once per bracket, so a source of a million `(` would overflow the
//! stack while compiling; a bounded nesting depth refuses it with a line and
//! column instead.

use super::EngineError;
use crate::domain::Lang;

/// Deeper bracket nesting than any real config needs.
const MAX_NESTING: usize = 64;

/// Sources longer than this are refused before parsing.
const MAX_SOURCE_BYTES: usize = 1 << 20;

/// Refuses sources that are too long or nest brackets too deeply. Strings and
/// comments are skipped; a JavaScript `/` is a regular expression when it
/// cannot be a division (after an operator, an opening bracket or the start).
pub fn check_source(lang: Lang, source: &str) -> Result<(), EngineError> {
    if source.len() > MAX_SOURCE_BYTES {
        return Err(limit_error(
            format!(
                "source is {} bytes, over the {MAX_SOURCE_BYTES} byte limit",
                source.len()
            ),
            1,
            1,
        ));
    }
    let mut scan = Scan::new(source);
    let mut depth = 0usize;
    // Whether the last significant character ends an operand (so `/` divides).
    let mut after_operand = false;
    while let Some(c) = scan.next() {
        match c {
            '(' | '[' | '{' => {
                depth += 1;
                if depth > MAX_NESTING {
                    let (line, column) = scan.position();
                    return Err(limit_error(
                        format!("brackets nest more than {MAX_NESTING} levels deep"),
                        line,
                        column,
                    ));
                }
                after_operand = false;
                continue;
            }
            ')' | ']' | '}' => {
                depth = depth.saturating_sub(1);
                after_operand = true;
                continue;
            }
            '"' | '\'' => scan.skip_string(c),
            '`' if lang == Lang::Javascript => scan.skip_string(c),
            '#' if lang == Lang::Starlark => scan.skip_line(),
            '/' if lang == Lang::Javascript => {
                match scan.peek() {
                    Some('/') => scan.skip_line(),
                    Some('*') => scan.skip_block_comment(),
                    _ if !after_operand => {
                        scan.skip_regex();
                        after_operand = true;
                    }
                    _ => after_operand = false,
                }
                continue;
            }
            c if c.is_whitespace() => continue,
            c if is_word(c) => {
                let mut word = String::from(c);
                while let Some(c) = scan.peek().filter(|c| is_word(*c)) {
                    word.push(c);
                    scan.next();
                }
                // After `return` or `typeof` a `/` starts a regular expression.
                after_operand = !KEYWORDS_BEFORE_EXPRESSION.contains(&word.as_str());
                continue;
            }
            _ => {}
        }
        after_operand = matches!(c, '"' | '\'' | '`');
    }
    Ok(())
}

const KEYWORDS_BEFORE_EXPRESSION: &[&str] = &[
    "return",
    "typeof",
    "case",
    "do",
    "else",
    "in",
    "of",
    "new",
    "delete",
    "void",
    "throw",
    "instanceof",
    "yield",
    "await",
];

fn is_word(c: char) -> bool {
    c.is_alphanumeric() || c == '_' || c == '$'
}

fn limit_error(message: String, line: usize, column: usize) -> EngineError {
    EngineError::Compile {
        message: format!("compile limit: {message}"),
        line,
        column,
    }
}

struct Scan<'a> {
    chars: std::iter::Peekable<std::str::Chars<'a>>,
    line: usize,
    column: usize,
}

impl<'a> Scan<'a> {
    fn new(source: &'a str) -> Self {
        Self {
            chars: source.chars().peekable(),
            line: 1,
            column: 0,
        }
    }

    fn next(&mut self) -> Option<char> {
        let c = self.chars.next()?;
        if c == '\n' {
            self.line += 1;
            self.column = 0;
        } else {
            self.column += 1;
        }
        Some(c)
    }

    fn peek(&mut self) -> Option<char> {
        self.chars.peek().copied()
    }

    fn position(&self) -> (usize, usize) {
        (self.line, self.column)
    }

    /// Skips to the unescaped closing `quote`. Line ends close ordinary
    /// strings too, as both parsers would refuse them anyway.
    fn skip_string(&mut self, quote: char) {
        while let Some(c) = self.next() {
            match c {
                '\\' => {
                    self.next();
                }
                '\n' if quote != '`' => return,
                c if c == quote => return,
                _ => {}
            }
        }
    }

    fn skip_line(&mut self) {
        while let Some(c) = self.next() {
            if c == '\n' {
                return;
            }
        }
    }

    fn skip_block_comment(&mut self) {
        let mut star = false;
        while let Some(c) = self.next() {
            if star && c == '/' {
                return;
            }
            star = c == '*';
        }
    }

    /// Skips a regular expression literal, whose `[...]` classes may hold `/`.
    fn skip_regex(&mut self) {
        let mut class = false;
        while let Some(c) = self.next() {
            match c {
                '\\' => {
                    self.next();
                }
                '[' => class = true,
                ']' => class = false,
                '/' if !class => return,
                '\n' => return,
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deep(open: &str, close: &str, n: usize) -> String {
        format!("return {}1{}", open.repeat(n), close.repeat(n))
    }

    #[test]
    fn accepts_ordinary_nesting() {
        for lang in [Lang::Starlark, Lang::Javascript] {
            check_source(lang, &deep("[", "]", MAX_NESTING)).unwrap();
        }
    }

    #[test]
    fn refuses_deep_nesting_with_its_position() {
        let err = check_source(Lang::Javascript, &deep("(", ")", MAX_NESTING + 1)).unwrap_err();
        assert_eq!(
            err,
            EngineError::Compile {
                message: format!("compile limit: brackets nest more than {MAX_NESTING} levels deep"),
                line: 1,
                column: 8 + MAX_NESTING,
            }
        );
    }

    #[test]
    fn brackets_in_strings_and_comments_do_not_count() {
        let noise = "\"((((\" + '[[[[' // ((((\n".repeat(40);
        check_source(Lang::Javascript, &format!("{noise}return 1")).unwrap();
        let noise = "x = \"((((\" + '[[[['  # ((((\n".repeat(40);
        check_source(Lang::Starlark, &format!("{noise}return 1")).unwrap();
    }

    #[test]
    fn closing_brackets_in_strings_cannot_hide_nesting() {
        // Each level opens a real bracket and closes one inside a string.
        let src = format!("return {}1", "(\")\" + ".repeat(MAX_NESTING + 1));
        assert!(check_source(Lang::Javascript, &src).is_err());
        let src = format!("return {}1", "(/)/.source + ".repeat(MAX_NESTING + 1));
        assert!(check_source(Lang::Javascript, &src).is_err());
        let src = format!("return /\"/.source + {}1", "(".repeat(MAX_NESTING + 1));
        assert!(check_source(Lang::Javascript, &src).is_err());
    }

    #[test]
    fn refuses_huge_sources() {
        let src = "x = 1\n".repeat(MAX_SOURCE_BYTES / 6 + 1);
        assert!(check_source(Lang::Starlark, &src).is_err());
    }
}
