//! The PROXY protocol header (HAProxy's, v1 text and v2 binary) that a load balancer in front sends
//! before anything else, naming the client it accepted. With `[server] proxy_protocol = true` every
//! connection must start with one; the parsing is pure and tested with hostile input, the reading reads
//! exactly the header's bytes so the rest of the stream is the client's own.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};

/// What a v2 header begins with.
const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\x00\r\nQUIT\n";

/// A v1 header is at most 107 bytes, CRLF included (the specification's bound).
const V1_MAX: usize = 107;

/// Why a connection's PROXY header was refused; the connection is closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// The connection did not start with `PROXY ` or the v2 signature.
    #[error("no PROXY header")]
    Missing,
    /// A v1 line longer than 107 bytes, or without its CRLF.
    #[error("PROXY v1 line too long or not ended by CRLF")]
    TooLong,
    /// A v1 line that is not `PROXY TCP4|TCP6 src dst sport dport` or `PROXY UNKNOWN…`.
    #[error("malformed PROXY v1 line")]
    BadV1,
    /// A v2 header with another version, command, family or too short an address block.
    #[error("malformed PROXY v2 header")]
    BadV2,
    /// No whole header within `header_timeout`.
    #[error("no PROXY header within the header timeout")]
    Timeout,
    /// The connection ended (or failed) before the header did.
    #[error("the connection ended inside the PROXY header")]
    Ended,
}

/// Reads the header at the start of `stream`, within `timeout`. `Ok(Some(client))` names the client;
/// `Ok(None)` says the balancer speaks for itself (v1 `UNKNOWN`, v2 `LOCAL`): the socket peer is the
/// client.
pub async fn read<S: AsyncRead + Unpin>(stream: &mut S, timeout: Duration) -> Result<Option<SocketAddr>, HeaderError> {
    tokio::time::timeout(timeout, read_header(stream))
        .await
        .map_err(|_| HeaderError::Timeout)?
}

async fn read_header<S: AsyncRead + Unpin>(stream: &mut S) -> Result<Option<SocketAddr>, HeaderError> {
    let io = |_| HeaderError::Ended;
    let mut start = [0u8; 12];
    stream.read_exact(&mut start[..6]).await.map_err(io)?;
    if &start[..6] == b"PROXY " {
        // Byte by byte: nothing past the CRLF may be taken from the client's own bytes.
        let mut line = start[..6].to_vec();
        while !line.ends_with(b"\r\n") {
            if line.len() >= V1_MAX {
                return Err(HeaderError::TooLong);
            }
            line.push(stream.read_u8().await.map_err(io)?);
        }
        return parse_v1(&line);
    }
    if start[..6] != V2_SIGNATURE[..6] {
        return Err(HeaderError::Missing);
    }
    let mut fixed = [0u8; 16];
    fixed[..6].copy_from_slice(&start[..6]);
    stream.read_exact(&mut fixed[6..]).await.map_err(io)?;
    let mut block = vec![0u8; v2_block_len(&fixed)?];
    stream.read_exact(&mut block).await.map_err(io)?;
    parse_v2(&fixed, &block)
}

/// Parses a whole v1 line, CRLF included.
pub fn parse_v1(line: &[u8]) -> Result<Option<SocketAddr>, HeaderError> {
    if line.len() > V1_MAX {
        return Err(HeaderError::TooLong);
    }
    let text = line
        .strip_suffix(b"\r\n")
        .and_then(|l| std::str::from_utf8(l).ok())
        .ok_or(HeaderError::BadV1)?;
    let fields: Vec<&str> = text.split(' ').collect();
    match fields[..] {
        ["PROXY", "UNKNOWN", ..] => Ok(None),
        ["PROXY", family @ ("TCP4" | "TCP6"), source, destination, source_port, destination_port] => {
            let source: IpAddr = source.parse().map_err(|_| HeaderError::BadV1)?;
            let destination: IpAddr = destination.parse().map_err(|_| HeaderError::BadV1)?;
            let v4 = family == "TCP4";
            if source.is_ipv4() != v4 || destination.is_ipv4() != v4 {
                return Err(HeaderError::BadV1);
            }
            port(destination_port)?;
            Ok(Some(SocketAddr::new(source, port(source_port)?)))
        }
        _ => Err(HeaderError::BadV1),
    }
}

/// A v1 port: 1 to 5 decimal digits, no sign, at most 65535.
fn port(text: &str) -> Result<u16, HeaderError> {
    if text.is_empty() || text.len() > 5 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(HeaderError::BadV1);
    }
    text.parse().map_err(|_| HeaderError::BadV1)
}

/// The length of the address block (and TLVs) that follows a v2 header's fixed 16 bytes.
pub fn v2_block_len(fixed: &[u8; 16]) -> Result<usize, HeaderError> {
    if &fixed[..12] != V2_SIGNATURE {
        return Err(HeaderError::Missing);
    }
    // Version 2, command LOCAL (0) or PROXY (1).
    if fixed[12] >> 4 != 2 || fixed[12] & 0xf > 1 {
        return Err(HeaderError::BadV2);
    }
    Ok(usize::from(u16::from_be_bytes([fixed[14], fixed[15]])))
}

/// Parses a v2 header: its fixed 16 bytes and the block [`v2_block_len`] announced.
pub fn parse_v2(fixed: &[u8; 16], block: &[u8]) -> Result<Option<SocketAddr>, HeaderError> {
    if v2_block_len(fixed)? != block.len() {
        return Err(HeaderError::BadV2);
    }
    if fixed[12] & 0xf == 0 {
        // LOCAL: the balancer's own connection (a health check); the addresses, if any, mean nothing.
        return Ok(None);
    }
    match fixed[13] {
        // Unspecified family: the sender does not know the client.
        0x00 => Ok(None),
        // TCP over IPv4: source, destination, source port, destination port.
        0x11 if block.len() >= 12 => {
            let ip = Ipv4Addr::from(<[u8; 4]>::try_from(&block[..4]).expect("4 bytes"));
            Ok(Some(SocketAddr::new(
                ip.into(),
                u16::from_be_bytes([block[8], block[9]]),
            )))
        }
        // TCP over IPv6.
        0x21 if block.len() >= 36 => {
            let ip = Ipv6Addr::from(<[u8; 16]>::try_from(&block[..16]).expect("16 bytes"));
            Ok(Some(SocketAddr::new(
                ip.into(),
                u16::from_be_bytes([block[32], block[33]]),
            )))
        }
        // UDP, Unix sockets, or an address block too short for its family.
        _ => Err(HeaderError::BadV2),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v2(command: u8, family: u8, block: &[u8]) -> ([u8; 16], Vec<u8>) {
        let mut fixed = [0u8; 16];
        fixed[..12].copy_from_slice(V2_SIGNATURE);
        fixed[12] = 0x20 | command;
        fixed[13] = family;
        fixed[14..].copy_from_slice(&(block.len() as u16).to_be_bytes());
        (fixed, block.to_vec())
    }

    #[test]
    fn v1_lines() {
        let ok = |line: &str| parse_v1(line.as_bytes());
        assert_eq!(
            ok("PROXY TCP4 198.51.100.7 10.0.0.1 5555 80\r\n"),
            Ok(Some("198.51.100.7:5555".parse().unwrap()))
        );
        assert_eq!(
            ok("PROXY TCP6 2001:db8::7 ::1 65535 443\r\n"),
            Ok(Some("[2001:db8::7]:65535".parse().unwrap()))
        );
        assert_eq!(ok("PROXY UNKNOWN\r\n"), Ok(None));
        assert_eq!(ok("PROXY UNKNOWN 1 2 3 4\r\n"), Ok(None));
    }

    #[test]
    fn hostile_v1_lines_are_refused() {
        for line in [
            "PROXY TCP4 198.51.100.7 10.0.0.1 5555 80",
            "PROXY TCP4 198.51.100.7 10.0.0.1 5555 80\n",
            "PROXY TCP4 198.51.100.7 10.0.0.1 5555\r\n",
            "PROXY TCP4 198.51.100.7 10.0.0.1 5555 80 9\r\n",
            "PROXY TCP4  198.51.100.7 10.0.0.1 5555 80\r\n",
            "PROXY TCP4 999.1.1.1 10.0.0.1 5555 80\r\n",
            "PROXY TCP4 2001:db8::7 10.0.0.1 5555 80\r\n",
            "PROXY TCP6 198.51.100.7 ::1 5555 80\r\n",
            "PROXY TCP4 198.51.100.7 10.0.0.1 65536 80\r\n",
            "PROXY TCP4 198.51.100.7 10.0.0.1 +555 80\r\n",
            "PROXY TCP4 198.51.100.7 10.0.0.1 -1 80\r\n",
            "PROXY TCP4 198.51.100.7 10.0.0.1 5555 \r\n",
            "PROXY UDP4 198.51.100.7 10.0.0.1 5555 80\r\n",
            "proxy TCP4 198.51.100.7 10.0.0.1 5555 80\r\n",
            "PROXY\r\n",
        ] {
            assert!(parse_v1(line.as_bytes()).is_err(), "{line:?}");
        }
        assert_eq!(parse_v1(&[b'P'; 200]), Err(HeaderError::TooLong));
        assert!(parse_v1(b"PROXY TCP4 \xff 10.0.0.1 5555 80\r\n").is_err());
    }

    #[test]
    fn v2_headers() {
        let (fixed, block) = v2(1, 0x11, &[203, 0, 113, 9, 10, 0, 0, 1, 0x15, 0xb3, 0, 80]);
        assert_eq!(v2_block_len(&fixed), Ok(12));
        assert_eq!(parse_v2(&fixed, &block), Ok(Some("203.0.113.9:5555".parse().unwrap())));
        let mut six = vec![0u8; 36];
        six[..16].copy_from_slice(&"2001:db8::9".parse::<Ipv6Addr>().unwrap().octets());
        six[32..34].copy_from_slice(&443u16.to_be_bytes());
        // TLVs after the addresses are allowed and skipped.
        six.extend([0x04, 0x00, 0x01, 0x00]);
        let (fixed, block) = v2(1, 0x21, &six);
        assert_eq!(parse_v2(&fixed, &block), Ok(Some("[2001:db8::9]:443".parse().unwrap())));
        let (fixed, block) = v2(0, 0x00, &[]);
        assert_eq!(parse_v2(&fixed, &block), Ok(None), "LOCAL");
        let (fixed, block) = v2(1, 0x00, &[]);
        assert_eq!(parse_v2(&fixed, &block), Ok(None), "unspecified family");
    }

    #[test]
    fn hostile_v2_headers_are_refused() {
        let (fixed, block) = v2(1, 0x11, &[1, 2, 3, 4]);
        assert_eq!(parse_v2(&fixed, &block), Err(HeaderError::BadV2), "short block");
        let (fixed, block) = v2(1, 0x21, &[0; 12]);
        assert_eq!(parse_v2(&fixed, &block), Err(HeaderError::BadV2), "short for IPv6");
        for family in [0x12, 0x22, 0x31, 0x32, 0x41, 0xff] {
            let (fixed, block) = v2(1, family, &[0; 216]);
            assert_eq!(parse_v2(&fixed, &block), Err(HeaderError::BadV2), "{family:#x}");
        }
        let (mut fixed, block) = v2(1, 0x11, &[0; 12]);
        fixed[12] = 0x31;
        assert_eq!(parse_v2(&fixed, &block), Err(HeaderError::BadV2), "version 3");
        fixed[12] = 0x22;
        assert_eq!(parse_v2(&fixed, &block), Err(HeaderError::BadV2), "command 2");
        fixed[12] = 0x21;
        fixed[0] = b'X';
        assert_eq!(v2_block_len(&fixed), Err(HeaderError::Missing));
        let (fixed, _) = v2(1, 0x11, &[0; 12]);
        assert_eq!(
            parse_v2(&fixed, &[0; 11]),
            Err(HeaderError::BadV2),
            "block not as announced"
        );
    }

    #[tokio::test]
    async fn reading_takes_exactly_the_header() {
        let timeout = Duration::from_secs(1);
        let mut input: &[u8] = b"PROXY TCP4 198.51.100.7 10.0.0.1 5555 80\r\nGET / HTTP/1.1\r\n";
        assert_eq!(
            read(&mut input, timeout).await,
            Ok(Some("198.51.100.7:5555".parse().unwrap()))
        );
        assert_eq!(input, b"GET / HTTP/1.1\r\n");
        let (fixed, block) = v2(1, 0x11, &[203, 0, 113, 9, 10, 0, 0, 1, 0x15, 0xb3, 0, 80]);
        let bytes = [&fixed[..], &block, b"rest"].concat();
        let mut input = &bytes[..];
        assert_eq!(
            read(&mut input, timeout).await,
            Ok(Some("203.0.113.9:5555".parse().unwrap()))
        );
        assert_eq!(input, b"rest");
        let mut input: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
        assert_eq!(read(&mut input, timeout).await, Err(HeaderError::Missing));
        let long = [&b"PROXY "[..], &[b'1'; 300]].concat();
        assert_eq!(read(&mut &long[..], timeout).await, Err(HeaderError::TooLong));
        let mut short: &[u8] = b"PROX";
        assert_eq!(read(&mut short, timeout).await, Err(HeaderError::Ended));
    }
}
