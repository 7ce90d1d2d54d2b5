//! Properties of the length-line codec over arbitrary input: what is written reads back, however TCP
//! cuts it up, and no byte sequence can make the reader panic or over-allocate.

use bytes::{Bytes, BytesMut};
use modproxy_sdk::frame::{length_line, parse_length_line, read_frame, write_frame, LENGTH_LINE_LEN, MAX_ENCODABLE};
use modproxy_sdk::{decode_stream, LengthLineCodec};
use proptest::prelude::*;
use tokio_util::codec::{Decoder, Encoder};

const MAX_FRAME: usize = 4096;

fn encode_all(payloads: &[Vec<u8>]) -> Vec<u8> {
    let mut codec = LengthLineCodec::new(MAX_FRAME);
    let mut wire = BytesMut::new();
    for payload in payloads {
        codec.encode(payload.as_slice(), &mut wire).unwrap();
    }
    wire.to_vec()
}

/// Decodes a stream delivered in `chunks`; `Err` carries the error kind.
fn decode_chunks<'a>(chunks: impl IntoIterator<Item = &'a [u8]>) -> Result<Vec<Bytes>, &'static str> {
    let decoded = decode_stream(MAX_FRAME, chunks);
    match decoded.error {
        None => Ok(decoded.frames),
        Some(error) => Err(error.kind()),
    }
}

/// Cuts `bytes` at the given sizes (cycled), as a socket might deliver them.
fn cut<'a>(bytes: &'a [u8], sizes: &[usize]) -> Vec<&'a [u8]> {
    let mut chunks = Vec::new();
    let mut rest = bytes;
    for size in sizes.iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let (chunk, tail) = rest.split_at((*size).min(rest.len()));
        chunks.push(chunk);
        rest = tail;
    }
    chunks
}

fn payloads() -> impl Strategy<Value = Vec<Vec<u8>>> {
    prop::collection::vec(prop::collection::vec(any::<u8>(), 0..300), 0..6)
}

/// Length lines drawn mostly from the bytes that matter, so valid and nearly valid lines are common.
fn near_lines() -> impl Strategy<Value = [u8; LENGTH_LINE_LEN]> {
    let byte = prop_oneof![
        4 => prop::sample::select(b" 0123456789".to_vec()),
        1 => prop::sample::select(b"\r\n-+\t".to_vec()),
        1 => any::<u8>(),
    ];
    (prop::array::uniform10(byte), prop::bool::weighted(0.8)).prop_map(|(columns, crlf)| {
        let mut line = [0u8; LENGTH_LINE_LEN];
        line[..10].copy_from_slice(&columns);
        line[10..].copy_from_slice(if crlf { b"\r\n" } else { b"\n\r" });
        line
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn encode_then_decode_round_trips(payloads in payloads()) {
        let wire = encode_all(&payloads);
        let frames = decode_chunks([wire.as_slice()]).unwrap();
        prop_assert_eq!(frames, payloads);
    }

    #[test]
    fn the_same_bytes_split_anywhere_decode_identically(payloads in payloads()) {
        let wire = encode_all(&payloads);
        let whole = decode_chunks([wire.as_slice()]);
        for i in 0..=wire.len() {
            prop_assert_eq!(&decode_chunks([&wire[..i], &wire[i..]]), &whole, "split at {}", i);
        }
    }

    #[test]
    fn arbitrary_chunking_decodes_identically(
        payloads in payloads(),
        sizes in prop::collection::vec(1usize..40, 1..10),
    ) {
        let wire = encode_all(&payloads);
        prop_assert_eq!(decode_chunks(cut(&wire, &sizes)).unwrap(), payloads);
    }

    #[test]
    fn blocking_writer_and_reader_agree_with_the_codec(payloads in payloads()) {
        let mut wire = Vec::new();
        for payload in &payloads {
            write_frame(&mut wire, payload).unwrap();
        }
        prop_assert_eq!(&wire, &encode_all(&payloads));
        let mut reader = wire.as_slice();
        let mut frames = Vec::new();
        while let Some(frame) = read_frame(&mut reader, MAX_FRAME).unwrap() {
            frames.push(frame);
        }
        prop_assert_eq!(frames, payloads);
    }

    #[test]
    fn arbitrary_lines_never_panic(line in any::<[u8; LENGTH_LINE_LEN]>(), max in any::<usize>()) {
        let _ = parse_length_line(&line, max);
    }

    /// An accepted line means exactly what a person reading it would say: leading spaces and zeros, then
    /// the digits of a number no larger than the maximum.
    #[test]
    fn accepted_lines_mean_what_they_say(line in near_lines(), max in 0usize..20_000_000) {
        if let Ok(len) = parse_length_line(&line, max) {
            prop_assert!(len <= max);
            prop_assert_eq!(&line[10..], b"\r\n");
            let text = std::str::from_utf8(&line[..10]).unwrap();
            let digits = text.trim_start_matches([' ', '0']);
            prop_assert!(digits.bytes().all(|b| b.is_ascii_digit()), "{:?}", text);
            prop_assert_eq!(digits.parse::<usize>().unwrap_or(0), len);
        }
    }

    #[test]
    fn every_padding_style_of_every_length_parses(len in 0..=MAX_ENCODABLE) {
        prop_assert_eq!(parse_length_line(&length_line(len).unwrap(), MAX_ENCODABLE).unwrap(), len);
        let zero_padded: [u8; LENGTH_LINE_LEN] = format!("{len:010}\r\n").into_bytes().try_into().unwrap();
        prop_assert_eq!(parse_length_line(&zero_padded, MAX_ENCODABLE).unwrap(), len);
    }

    /// Garbage on the wire ends in frames, a clean end, or a typed error; and the decoder never reserves
    /// more than a bounded amount ahead of what actually arrived.
    #[test]
    fn arbitrary_bytes_never_panic_or_balloon(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        let mut codec = LengthLineCodec::new(usize::MAX);
        let mut buf = BytesMut::from(bytes.as_slice());
        while let Ok(Some(_)) = codec.decode(&mut buf) {}
        prop_assert!(buf.capacity() <= 200 + 128 * 1024, "capacity {}", buf.capacity());
        let _ = codec.decode_eof(&mut buf);
    }
}
