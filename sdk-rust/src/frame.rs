//! The length line: 12 ASCII bytes that announce the size of the payload that follows.
//!
//! ```text
//! "        42\r\n"   space-padded (what this project writes, "%10d\r\n")
//! "0000000042\r\n"   zero-padded (Java's "%010d\r\n")
//! "   0000042\r\n"   mixed padding, also accepted
//! ```
//!
//! [`parse_length_line`] is a pure function so that every reader — the tokio codec, the blocking helpers,
//! the proxy and the language bindings — agrees on exactly which lines are valid.

use std::io::{self, Read, Write};

/// Size of the length line in bytes: ten columns of decimal digits and `\r\n`.
pub const LENGTH_LINE_LEN: usize = 12;

/// Columns available for the number.
const DIGIT_COLUMNS: usize = LENGTH_LINE_LEN - 2;

/// Largest length the ten columns can hold.
pub const MAX_ENCODABLE: usize = 9_999_999_999;

/// Default upper bound on one frame's payload (64 MiB): the proxy's `max_frame` default (docs/PROTOCOL.md).
pub const DEFAULT_MAX_FRAME: usize = 64 * 1024 * 1024;

/// Why a frame could not be read or written.
///
/// Every variant but [`FrameError::Io`] means the peer broke the protocol; the stream cannot be
/// resynchronised after one, so the connection must be closed.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The 11th and 12th bytes of the length line are not `\r\n`.
    #[error("length line does not end in \\r\\n")]
    MissingCrlf,
    /// A byte other than leading padding is not an ASCII digit.
    #[error("length line has the non-digit byte 0x{byte:02x} in column {column}")]
    BadDigit {
        /// The offending byte.
        byte: u8,
        /// Its zero-based position in the line.
        column: usize,
    },
    /// The ten columns hold only spaces.
    #[error("length line holds no number")]
    Empty,
    /// The announced payload is larger than the reader allows.
    #[error("frame of {len} bytes is larger than the maximum of {max} bytes")]
    TooLarge {
        /// The announced (or attempted) length.
        len: usize,
        /// The maximum in force.
        max: usize,
    },
    /// The stream ended inside a frame.
    #[error("stream ended {got} bytes into a {expected}-byte {part}")]
    Truncated {
        /// `"length line"` or `"payload"`.
        part: &'static str,
        /// Bytes that arrived.
        got: usize,
        /// Bytes that were announced.
        expected: usize,
    },
    /// The underlying stream failed.
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
}

impl FrameError {
    /// A stable, machine-readable name for the error, shared with the test vectors and the bindings.
    pub fn kind(&self) -> &'static str {
        match self {
            FrameError::MissingCrlf => "missing_crlf",
            FrameError::BadDigit { .. } => "bad_digit",
            FrameError::Empty => "empty",
            FrameError::TooLarge { .. } => "too_large",
            FrameError::Truncated { .. } => "truncated",
            FrameError::Io(_) => "io",
        }
    }
}

/// Parses a length line and checks the length against `max_frame`.
///
/// Leading padding may be any mix of spaces and zeros; after it only digits may follow.
///
/// ```
/// use modproxy_sdk::frame::parse_length_line;
/// assert_eq!(parse_length_line(b"        42\r\n", 100).unwrap(), 42);
/// assert_eq!(parse_length_line(b"0000000042\r\n", 100).unwrap(), 42);
/// assert_eq!(parse_length_line(b"   0000042\r\n", 100).unwrap(), 42);
/// assert!(parse_length_line(b"        42\n\n", 100).is_err());
/// ```
pub fn parse_length_line(line: &[u8; LENGTH_LINE_LEN], max_frame: usize) -> Result<usize, FrameError> {
    if &line[DIGIT_COLUMNS..] != b"\r\n" {
        return Err(FrameError::MissingCrlf);
    }
    let columns = &line[..DIGIT_COLUMNS];
    let padding = columns.iter().take_while(|&&b| b == b' ' || b == b'0').count();
    let saw_zero = columns[..padding].contains(&b'0');
    let mut len: usize = 0;
    for (offset, &byte) in columns[padding..].iter().enumerate() {
        if !byte.is_ascii_digit() {
            return Err(FrameError::BadDigit {
                byte,
                column: padding + offset,
            });
        }
        // Ten decimal digits always fit in a u64; usize is 64-bit on every target we build for.
        len = len * 10 + usize::from(byte - b'0');
    }
    if padding == DIGIT_COLUMNS && !saw_zero {
        return Err(FrameError::Empty);
    }
    if len > max_frame {
        return Err(FrameError::TooLarge { len, max: max_frame });
    }
    Ok(len)
}

/// Formats the length line for a payload of `len` bytes, space-padded (`"%10d\r\n"`).
///
/// ```
/// use modproxy_sdk::frame::length_line;
/// assert_eq!(&length_line(42).unwrap(), b"        42\r\n");
/// ```
pub fn length_line(len: usize) -> Result<[u8; LENGTH_LINE_LEN], FrameError> {
    if len > MAX_ENCODABLE {
        return Err(FrameError::TooLarge {
            len,
            max: MAX_ENCODABLE,
        });
    }
    let mut line = [b' '; LENGTH_LINE_LEN];
    line[DIGIT_COLUMNS] = b'\r';
    line[DIGIT_COLUMNS + 1] = b'\n';
    let mut digits = [0; MAX_DECIMAL_DIGITS];
    let digits = decimal(len as u64, &mut digits);
    line[DIGIT_COLUMNS - digits.len()..DIGIT_COLUMNS].copy_from_slice(digits);
    Ok(line)
}

/// Digits in the largest `u64`.
pub(crate) const MAX_DECIMAL_DIGITS: usize = 20;

/// `n` in decimal, in the tail of `buf`: by hand, since `format!` would allocate on every frame.
pub(crate) fn decimal(mut n: u64, buf: &mut [u8; MAX_DECIMAL_DIGITS]) -> &[u8] {
    let mut start = MAX_DECIMAL_DIGITS;
    loop {
        start -= 1;
        buf[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    &buf[start..]
}

/// Writes one frame to a blocking stream.
pub fn write_frame<W: Write>(writer: &mut W, payload: &[u8]) -> Result<(), FrameError> {
    writer.write_all(&length_line(payload.len())?)?;
    writer.write_all(payload)?;
    writer.flush()?;
    Ok(())
}

/// Reads one frame from a blocking stream.
///
/// Returns `Ok(None)` when the stream ends cleanly between frames. The payload buffer grows as bytes
/// arrive, so a hostile length line cannot make the reader allocate `max_frame` bytes up front.
pub fn read_frame<R: Read>(reader: &mut R, max_frame: usize) -> Result<Option<Vec<u8>>, FrameError> {
    let mut line = [0u8; LENGTH_LINE_LEN];
    let got = read_full(reader, &mut line)?;
    if got == 0 {
        return Ok(None);
    }
    if got < LENGTH_LINE_LEN {
        return Err(FrameError::Truncated {
            part: "length line",
            got,
            expected: LENGTH_LINE_LEN,
        });
    }
    let len = parse_length_line(&line, max_frame)?;
    let mut payload = Vec::new();
    let got = reader.take(len as u64).read_to_end(&mut payload)?;
    if got < len {
        return Err(FrameError::Truncated {
            part: "payload",
            got,
            expected: len,
        });
    }
    Ok(Some(payload))
}

/// Fills `buf` unless the stream ends first; returns how many bytes arrived.
fn read_full<R: Read>(reader: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(s: &str) -> [u8; LENGTH_LINE_LEN] {
        s.as_bytes().try_into().expect("12 bytes")
    }

    #[test]
    fn accepts_every_padding_style() {
        for s in ["        42\r\n", "0000000042\r\n", "   0000042\r\n", "0000    42\r\n"] {
            assert_eq!(parse_length_line(&line(s), 1000).unwrap(), 42, "{s:?}");
        }
    }

    #[test]
    fn trailing_padding_is_not_padding() {
        assert!(matches!(
            parse_length_line(&line("42        \r\n"), 1000),
            Err(FrameError::BadDigit { byte: b' ', column: 2 })
        ));
    }

    #[test]
    fn zero_is_a_length_but_blank_is_not() {
        assert_eq!(parse_length_line(&line("         0\r\n"), 0).unwrap(), 0);
        assert_eq!(parse_length_line(&line("0000000000\r\n"), 0).unwrap(), 0);
        assert!(matches!(
            parse_length_line(&line("          \r\n"), 10),
            Err(FrameError::Empty)
        ));
    }

    #[test]
    fn rejects_hostile_lines() {
        let cases = [
            ("        42\n\r", "missing_crlf"),
            ("         42\n", "missing_crlf"),
            ("       -42\r\n", "bad_digit"),
            ("       +42\r\n", "bad_digit"),
            ("      4 2 \r\n", "bad_digit"),
            ("\t       42\r\n", "bad_digit"),
            ("9999999999\r\n", "too_large"),
        ];
        for (s, kind) in cases {
            assert_eq!(parse_length_line(&line(s), 1 << 20).unwrap_err().kind(), kind, "{s:?}");
        }
        let mut nul = line("        42\r\n");
        nul[3] = 0;
        assert_eq!(parse_length_line(&nul, 100).unwrap_err().kind(), "bad_digit");
    }

    #[test]
    fn max_frame_is_inclusive() {
        assert_eq!(parse_length_line(&line("       100\r\n"), 100).unwrap(), 100);
        assert!(matches!(
            parse_length_line(&line("       101\r\n"), 100),
            Err(FrameError::TooLarge { len: 101, max: 100 })
        ));
    }

    #[test]
    fn writes_space_padded_lines() {
        assert_eq!(&length_line(0).unwrap(), b"         0\r\n");
        assert_eq!(&length_line(MAX_ENCODABLE).unwrap(), b"9999999999\r\n");
        assert!(length_line(MAX_ENCODABLE + 1).is_err());
    }

    #[test]
    fn blocking_round_trip_and_clean_eof() {
        let mut wire = Vec::new();
        write_frame(&mut wire, b"{\"a\":1}").unwrap();
        write_frame(&mut wire, b"[]").unwrap();
        let mut reader = wire.as_slice();
        assert_eq!(read_frame(&mut reader, 100).unwrap().unwrap(), b"{\"a\":1}");
        assert_eq!(read_frame(&mut reader, 100).unwrap().unwrap(), b"[]");
        assert!(read_frame(&mut reader, 100).unwrap().is_none());
    }

    #[test]
    fn blocking_reader_reports_truncation() {
        let mut short_line: &[u8] = b"      ";
        assert!(matches!(
            read_frame(&mut short_line, 100),
            Err(FrameError::Truncated {
                part: "length line",
                got: 6,
                ..
            })
        ));
        let mut short_payload: &[u8] = b"        10\r\nabc";
        assert!(matches!(
            read_frame(&mut short_payload, 100),
            Err(FrameError::Truncated {
                part: "payload",
                got: 3,
                expected: 10
            })
        ));
    }
}
