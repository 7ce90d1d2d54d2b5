//! Is this one JSON document? The socket gateway asks it of every request body before framing it, so a
//! backend never receives text that is not JSON (RFC 8259).
//!
//! serde_json answers the same question by skipping a value (`IgnoredAny`): about 2,600 instructions for
//! the bench's 101-byte envelope, 9 % of a forwarded request's. This reads each byte once, allocates
//! nothing below 128 levels of nesting, and takes about 1,800; it accepts exactly what that skip accepts,
//! which a test checks on many mutated documents. UTF-8 is the caller's check: outside strings the
//! grammar admits ASCII alone.

use std::fmt;

/// Why a body is not one JSON document, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    /// What was expected, or what was wrong.
    pub what: &'static str,
    /// The offset of the byte where it went wrong (the length of the input at its end).
    pub at: usize,
}

/// Checks that `text` holds exactly one JSON value, with only whitespace around it.
pub fn check(text: &[u8]) -> Result<(), SyntaxError> {
    Reader { text, at: 0 }.document()
}

impl SyntaxError {
    /// The 1-based line and column of the error in `text`, the input it was found in.
    pub fn line_column(&self, text: &[u8]) -> (usize, usize) {
        let before = &text[..self.at.min(text.len())];
        let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
        let column = before.len() - before.iter().rposition(|&b| b == b'\n').map_or(0, |nl| nl + 1) + 1;
        (line, column)
    }

    /// The error with its line and column in `text`, as a client is told it.
    pub fn describe(&self, text: &[u8]) -> String {
        let (line, column) = self.line_column(text);
        format!("{} at line {line} column {column}", self.what)
    }
}

impl fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at byte {}", self.what, self.at)
    }
}

/// The arrays and objects that enclose the innermost open one: a bit per level (set for an object), in a
/// `u128` for the first 128 levels.
#[derive(Default)]
struct Nesting {
    depth: usize,
    shallow: u128,
    deeper: Vec<bool>,
}

impl Nesting {
    fn push(&mut self, object: bool) {
        if self.depth < 128 {
            self.shallow = (self.shallow & !(1u128 << self.depth)) | (u128::from(object) << self.depth);
        } else {
            self.deeper.push(object);
        }
        self.depth += 1;
    }

    /// The kind of the container pushed last, now innermost again; `None` when nothing was pushed.
    fn pop(&mut self) -> Option<bool> {
        self.depth = self.depth.checked_sub(1)?;
        if self.depth >= 128 {
            return self.deeper.pop();
        }
        Some(self.shallow >> self.depth & 1 == 1)
    }
}

/// Bytes that may stand in a string as they are: not the quote, the backslash or a control character.
const PLAIN: [bool; 256] = {
    let mut plain = [true; 256];
    let mut byte = 0;
    while byte < 0x20 {
        plain[byte] = false;
        byte += 1;
    }
    plain[b'"' as usize] = false;
    plain[b'\\' as usize] = false;
    plain
};

struct Reader<'a> {
    text: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn document(mut self) -> Result<(), SyntaxError> {
        // The innermost open container (`Some(true)` for an object), and those around it.
        let mut inner: Option<bool> = None;
        let mut nesting = Nesting::default();
        'value: loop {
            self.skip_whitespace();
            match self.peek() {
                Some(open @ (b'{' | b'[')) => {
                    self.at += 1;
                    self.skip_whitespace();
                    let object = open == b'{';
                    if self.peek() == Some(if object { b'}' } else { b']' }) {
                        self.at += 1;
                    } else {
                        if let Some(enclosing) = inner {
                            nesting.push(enclosing);
                        }
                        inner = Some(object);
                        if object {
                            self.member_name()?;
                        }
                        continue 'value;
                    }
                }
                Some(b'"') => self.string()?,
                Some(b't') => self.literal(b"true")?,
                Some(b'f') => self.literal(b"false")?,
                Some(b'n') => self.literal(b"null")?,
                Some(b'-' | b'0'..=b'9') => self.number()?,
                Some(_) => return Err(self.error("expected a value")),
                None => return Err(self.error("the document ended where a value was expected")),
            }
            // A value is complete: close what it completes, then find where the next one starts.
            loop {
                self.skip_whitespace();
                let Some(object) = inner else {
                    return match self.peek() {
                        None => Ok(()),
                        Some(_) => Err(self.error("unexpected characters after the document")),
                    };
                };
                match (self.peek(), object) {
                    (Some(b','), _) => {
                        self.at += 1;
                        if object {
                            self.skip_whitespace();
                            self.member_name()?;
                        }
                        continue 'value;
                    }
                    (Some(b'}'), true) | (Some(b']'), false) => {
                        self.at += 1;
                        inner = nesting.pop();
                    }
                    (Some(_), true) => return Err(self.error("expected ',' or '}' in an object")),
                    (Some(_), false) => return Err(self.error("expected ',' or ']' in an array")),
                    (None, true) => return Err(self.error("the document ended inside an object")),
                    (None, false) => return Err(self.error("the document ended inside an array")),
                }
            }
        }
    }

    fn peek(&self) -> Option<u8> {
        self.text.get(self.at).copied()
    }

    fn error(&self, what: &'static str) -> SyntaxError {
        SyntaxError { what, at: self.at }
    }

    #[inline]
    fn skip_whitespace(&mut self) {
        while let Some(b' ' | b'\n' | b'\t' | b'\r') = self.peek() {
            self.at += 1;
        }
    }

    /// `"name"`, whitespace and the colon, at the start of an object's member.
    fn member_name(&mut self) -> Result<(), SyntaxError> {
        match self.peek() {
            Some(b'"') => self.string()?,
            Some(_) => return Err(self.error("expected a member name in quotes")),
            None => return Err(self.error("the document ended inside an object")),
        }
        self.skip_whitespace();
        match self.peek() {
            Some(b':') => {
                self.at += 1;
                Ok(())
            }
            Some(_) => Err(self.error("expected ':' after a member name")),
            None => Err(self.error("the document ended inside an object")),
        }
    }

    /// A string, from its opening quote to past its closing one.
    fn string(&mut self) -> Result<(), SyntaxError> {
        self.at += 1;
        loop {
            while self.at < self.text.len() && PLAIN[usize::from(self.text[self.at])] {
                self.at += 1;
            }
            match self.peek() {
                Some(b'"') => {
                    self.at += 1;
                    return Ok(());
                }
                Some(b'\\') => {
                    self.at += 1;
                    match self.peek() {
                        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => self.at += 1,
                        Some(b'u') => {
                            self.at += 1;
                            for _ in 0..4 {
                                match self.peek() {
                                    Some(b) if b.is_ascii_hexdigit() => self.at += 1,
                                    Some(_) => return Err(self.error("expected four hex digits after \\u")),
                                    None => return Err(self.error("the document ended inside a string")),
                                }
                            }
                        }
                        Some(_) => return Err(self.error("invalid escape in a string")),
                        None => return Err(self.error("the document ended inside a string")),
                    }
                }
                Some(_) => return Err(self.error("control character in a string (escape it)")),
                None => return Err(self.error("the document ended inside a string")),
            }
        }
    }

    fn literal(&mut self, word: &'static [u8]) -> Result<(), SyntaxError> {
        for &expected in word {
            match self.peek() {
                Some(b) if b == expected => self.at += 1,
                Some(_) => return Err(self.error("expected a value")),
                None => return Err(self.error("the document ended inside a value")),
            }
        }
        Ok(())
    }

    /// `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`
    fn number(&mut self) -> Result<(), SyntaxError> {
        if self.peek() == Some(b'-') {
            self.at += 1;
        }
        match self.peek() {
            Some(b'0') => {
                self.at += 1;
                if let Some(b'0'..=b'9') = self.peek() {
                    return Err(self.error("a number may not start with 0"));
                }
            }
            Some(b'1'..=b'9') => self.digits(),
            _ => return Err(self.error("invalid number")),
        }
        if self.peek() == Some(b'.') {
            self.at += 1;
            self.some_digits()?;
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.at += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.at += 1;
            }
            self.some_digits()?;
        }
        Ok(())
    }

    fn digits(&mut self) {
        while let Some(b'0'..=b'9') = self.peek() {
            self.at += 1;
        }
    }

    fn some_digits(&mut self) -> Result<(), SyntaxError> {
        match self.peek() {
            Some(b'0'..=b'9') => {
                self.digits();
                Ok(())
            }
            _ => Err(self.error("invalid number")),
        }
    }
}

#[cfg(test)]
mod tests {
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use super::*;

    /// What the gateway accepted before: serde_json skipping one value.
    fn serde_accepts(text: &[u8]) -> bool {
        std::str::from_utf8(text).is_ok_and(|s| serde_json::from_str::<serde::de::IgnoredAny>(s).is_ok())
    }

    fn accepts(text: &[u8]) -> bool {
        std::str::from_utf8(text).is_ok() && check(text).is_ok()
    }

    const VALID: &[&str] = &[
        r#"{"head":{"method":"echo","token":"bench"},"data":{"user":"ada","id":12345,"tags":["a","b"],"ok":true}}"#,
        "0",
        "-0.5e+10",
        "1E-3",
        " \t\r\n[ ] ",
        "{}",
        r#"{"a":[1,2,{"b":null}],"c":"\u00e9\n\"\\\/\b\f\r\t","d":false}"#,
        r#""\ud800""#,
        "[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]",
        r#"{"ünïcode":"日本"}"#,
        "123456789012345678901234567890",
    ];

    const INVALID: &[&str] = &[
        "",
        " ",
        "{",
        "}",
        "[1,]",
        "{\"a\":1,}",
        "{\"a\" 1}",
        "{a:1}",
        "01",
        "-",
        "1.",
        ".5",
        "1e",
        "+1",
        "tru",
        "nul",
        "True",
        "\"abc",
        "\"\\x\"",
        "\"\\u12G4\"",
        "\"a\nb\"",
        "1 2",
        "[1 2]",
        "{\"a\":1}}",
        "[1]]",
        "NaN",
        "{\"head\":",
    ];

    #[test]
    fn valid_documents_pass_and_invalid_ones_fail() {
        for text in VALID {
            assert!(check(text.as_bytes()).is_ok(), "{text}: {:?}", check(text.as_bytes()));
            assert!(serde_accepts(text.as_bytes()), "serde_json disagrees on {text}");
        }
        for text in INVALID {
            assert!(check(text.as_bytes()).is_err(), "{text} passed");
            assert!(!serde_accepts(text.as_bytes()), "serde_json disagrees on {text}");
        }
    }

    #[test]
    fn deep_nesting_beyond_the_inline_levels_is_checked() {
        for depth in [127, 128, 129, 300] {
            let open = "[{\"k\":".repeat(depth);
            let close = "}]".repeat(depth);
            let good = format!("{open}1{close}");
            assert!(check(good.as_bytes()).is_ok(), "depth {depth}");
            let crossed = format!("{open}1]{}", &close[1..]);
            assert!(
                check(crossed.as_bytes()).is_err(),
                "depth {depth}: ']' closed an object"
            );
        }
    }

    #[test]
    fn errors_say_where() {
        let text = b"{\n  \"a\": tru\n}";
        let error = check(text).unwrap_err();
        assert_eq!(error.line_column(text), (2, 11));
        assert_eq!(error.describe(text), "expected a value at line 2 column 11");
    }

    /// Mutations of valid documents (bytes replaced, inserted, removed, cut short): wherever serde_json
    /// accepts, this accepts, and nowhere else.
    #[test]
    fn agrees_with_serde_json_on_mutated_documents() {
        const ALPHABET: &[u8] = b"{}[]:,\"\\/ \n\t0123456789-+.eEtrufalsn\x01\xc3\xa9ux";
        let mut rng = StdRng::seed_from_u64(18);
        let mut disagreements = Vec::new();
        for round in 0..200_000 {
            let mut text = VALID[round % VALID.len()].as_bytes().to_vec();
            for _ in 0..rng.random_range(1..4) {
                let at = rng.random_range(0..=text.len());
                let byte = ALPHABET[rng.random_range(0..ALPHABET.len())];
                match rng.random_range(0..4) {
                    0 if at < text.len() => text[at] = byte,
                    1 => text.insert(at, byte),
                    2 if at < text.len() => drop(text.remove(at)),
                    _ => text.truncate(at),
                }
            }
            if accepts(&text) != serde_accepts(&text) {
                disagreements.push(String::from_utf8_lossy(&text).into_owned());
            }
        }
        assert!(
            disagreements.is_empty(),
            "{} disagreements, e.g. {:?}",
            disagreements.len(),
            &disagreements[..disagreements.len().min(5)]
        );
    }
}
