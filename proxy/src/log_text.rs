//! Client-controlled text on its way into a log line. A request's path, a raw frame's method or an error
//! that quotes a client's bytes could otherwise end a line early and forge the next one; escaped, every
//! log line is one line and says only what the proxy wrote.

use std::fmt::{self, Display, Write};

/// Shows `T` with control characters, line and paragraph separators, bidirectional overrides and `\`
/// escaped (`\n`, `\r`, `\t`, `\\`, else `\u{hex}`); everything else, UTF-8 included, as it is.
#[derive(Debug, Clone, Copy)]
pub struct LogText<T> {
    value: T,
    word: bool,
}

impl<T: Display> LogText<T> {
    /// Text that may hold spaces (an error message).
    pub fn new(value: T) -> Self {
        LogText { value, word: false }
    }

    /// One field of a space-separated line (a path, a method): spaces are escaped too, so the value
    /// cannot add fields such as `status=200` of its own.
    pub fn word(value: T) -> Self {
        LogText { value, word: true }
    }
}

impl<T: Display> Display for LogText<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Escapes as the inner value writes, so nothing is allocated.
        write!(
            Escaper {
                out: f,
                word: self.word
            },
            "{}",
            self.value
        )
    }
}

struct Escaper<'a, 'b> {
    out: &'a mut fmt::Formatter<'b>,
    word: bool,
}

impl Write for Escaper<'_, '_> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        let mut plain = 0;
        for (at, c) in text.char_indices() {
            let escape = match c {
                '\n' => Some("\\n"),
                '\r' => Some("\\r"),
                '\t' => Some("\\t"),
                '\\' => Some("\\\\"),
                _ if c.is_control() || is_invisible_steering(c) || (self.word && c == ' ') => None,
                _ => continue,
            };
            self.out.write_str(&text[plain..at])?;
            match escape {
                Some(escape) => self.out.write_str(escape)?,
                None => write!(self.out, "\\u{{{:x}}}", c as u32)?,
            }
            plain = at + c.len_utf8();
        }
        self.out.write_str(&text[plain..])
    }
}

/// Characters that are not control characters but still move text around on a reader's screen: line
/// and paragraph separators and bidirectional overrides.
fn is_invisible_steering(c: char) -> bool {
    matches!(c, '\u{2028}' | '\u{2029}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_is_unchanged() {
        assert_eq!(
            LogText::new("no module 'a b' is configured").to_string(),
            "no module 'a b' is configured"
        );
        assert_eq!(
            LogText::word("/store/café.html?x=1").to_string(),
            "/store/café.html?x=1"
        );
        assert_eq!(LogText::word("").to_string(), "");
    }

    #[test]
    fn nothing_hostile_survives() {
        let forged = "add\r\n2024-01-01T00:00:00Z  INFO 1.2.3.4 GET / status=200";
        assert_eq!(
            LogText::new(forged).to_string(),
            "add\\r\\n2024-01-01T00:00:00Z  INFO 1.2.3.4 GET / status=200"
        );
        assert_eq!(LogText::word("x status=200").to_string(), "x\\u{20}status=200");
        assert_eq!(
            LogText::new("\u{1b}[31mred\u{7f}\u{85}\0").to_string(),
            "\\u{1b}[31mred\\u{7f}\\u{85}\\u{0}"
        );
        assert_eq!(LogText::new("a\u{2028}b\u{202e}c").to_string(), "a\\u{2028}b\\u{202e}c");
        // An escape the client wrote itself stays distinguishable from one the proxy made.
        assert_eq!(LogText::new("\\n\n").to_string(), "\\\\n\\n");
        assert_eq!(LogText::new(format_args!("{}:{}", "a\n", 1)).to_string(), "a\\n:1");
    }

    #[test]
    fn no_output_has_a_line_break_or_control_character() {
        for c in (0..=0x10ffff).filter_map(char::from_u32) {
            let text = format!("a{c}b");
            for shown in [LogText::new(&text).to_string(), LogText::word(&text).to_string()] {
                assert!(
                    !shown.chars().any(|c| c.is_control() || is_invisible_steering(c)),
                    "{:?} -> {shown:?}",
                    c
                );
            }
        }
    }
}
