//! File bytes that cross the socket by `sendfile(2)`, never through user space: the body side.
//!
//! hyper 1.x writes only the buffers a body yields, and a plain HTTP/1.1 connection hands them to the
//! socket's `writev` as they are (its write strategy queues body buffers when the IO takes vectored
//! writes, which every one of ours does). So where the connection can do it, a [`FileSlot`] is put in
//! each request's extensions (`server/file_sending.rs`, plain HTTP/1.1 only), and a large file's body
//! yields *placeholders*: buffers inside [`PLACEHOLDER`], a region of this module's own, each noted in
//! the slot as the file range it stands for. The connection's IO finds a placeholder at the front of a
//! write and sends that range of the file with `sendfile` instead.
//!
//! A placeholder's bytes are zeros; they must never reach a client as if they were the file. So:
//! - a body yields placeholders only when its request carried a slot, and only the plain HTTP/1.1 serve
//!   path puts one there (TLS cannot `sendfile`; HTTP/2 frames and copies its DATA itself);
//! - the IO checks every write: a placeholder where no slot is, one that is not the slot's next owed
//!   range, or a write while ranges are owed that carries none of them (hyper copied the placeholder
//!   into a flattened buffer) is an error that ends the connection: the client sees a cut response,
//!   never zeros with a 200.

use std::collections::VecDeque;
use std::fs::File;
use std::io;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bytes::Bytes;

use crate::body::BoxError;

/// Most bytes one placeholder stands for. `sendfile` sends what the socket takes whatever it is asked,
/// so this only sets how often hyper asks the body for more: a few times per MiB is nothing.
pub const SPAN: usize = 256 * 1024;

/// What placeholders point into. Never read: its address tells a placeholder from any other buffer.
static PLACEHOLDER: [u8; SPAN] = [0; SPAN];

/// Most ranges owed on one connection at once. hyper holds at most 16 body buffers before it writes
/// them, and writes them before it asks the body for more, so more than this means a placeholder was
/// lost on the way to the socket.
const MOST_OWED: usize = 32;

/// Whether `buf` lies in the placeholder region (an empty slice is no placeholder).
pub fn is_placeholder(buf: &[u8]) -> bool {
    let start = PLACEHOLDER.as_ptr() as usize;
    let at = buf.as_ptr() as usize;
    !buf.is_empty() && at >= start && at < start + SPAN
}

/// One connection's file ranges handed to hyper as placeholders and not yet sent, in the order hyper
/// writes them. Shared by the connection's IO and the bodies of its requests.
#[derive(Clone, Default)]
pub struct FileSlot(Arc<Mutex<VecDeque<Owed>>>);

/// `len` bytes of `file` from `offset`, of which `sent` have gone out; `last`: the end of the body.
pub struct Owed {
    pub file: Arc<File>,
    pub offset: u64,
    pub len: usize,
    pub sent: usize,
    pub last: bool,
}

impl std::fmt::Debug for FileSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileSlot").field("owed", &self.owed().len()).finish()
    }
}

impl FileSlot {
    /// A placeholder standing for `len` (at most [`SPAN`], more than 0) bytes of `file` from `offset`,
    /// noted as owed; `last` when the body ends with it.
    pub fn placeholder(&self, file: &Arc<File>, offset: u64, len: usize, last: bool) -> Result<Bytes, BoxError> {
        if len == 0 || len > SPAN {
            return Err(format!("a placeholder of {len} bytes").into());
        }
        let mut owed = self.owed();
        if owed.len() >= MOST_OWED {
            return Err("file ranges handed to the connection are not being written".into());
        }
        owed.push_back(Owed {
            file: Arc::clone(file),
            offset,
            len,
            sent: 0,
            last,
        });
        Ok(Bytes::from_static(&PLACEHOLDER[..len]))
    }

    /// The owed ranges, oldest first.
    pub fn owed(&self) -> MutexGuard<'_, VecDeque<Owed>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The owed range that a write beginning with the placeholder `buf` stands for: the front one, and
/// `buf` must be exactly its unsent rest (hyper advances a placeholder by what the socket took, as any
/// buffer). Anything else is a placeholder gone astray.
pub fn front_for<'a>(owed: &'a mut VecDeque<Owed>, buf: &[u8]) -> io::Result<&'a mut Owed> {
    let at = buf.as_ptr() as usize - PLACEHOLDER.as_ptr() as usize;
    match owed.front_mut() {
        Some(front) if at == front.sent && buf.len() == front.len - front.sent => Ok(front),
        _ => Err(io::Error::other(
            "a file placeholder does not match the range the connection owes; closing rather than send it",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_told_apart_and_bounded() {
        let slot = FileSlot::default();
        let file = Arc::new(tempfile::tempfile().unwrap());
        let first = slot.placeholder(&file, 0, SPAN, false).unwrap();
        assert!(is_placeholder(&first) && is_placeholder(&first[SPAN - 1..]));
        assert!(!is_placeholder(&first[..0]));
        assert!(!is_placeholder(&Bytes::from(vec![0u8; 16])) && !is_placeholder(b"static text"));
        assert!(slot.placeholder(&file, 0, 0, false).is_err() && slot.placeholder(&file, 0, SPAN + 1, false).is_err());
        let second = slot.placeholder(&file, SPAN as u64, 10, false).unwrap();
        {
            let mut owed = slot.owed();
            // Only the front's unsent rest matches.
            assert!(front_for(&mut owed, &second).is_err());
            assert!(front_for(&mut owed, &first[1..]).is_err());
            front_for(&mut owed, &first).unwrap().sent = 100;
            assert!(front_for(&mut owed, &first).is_err());
            assert_eq!(front_for(&mut owed, &first[100..]).unwrap().offset, 0);
            owed.clear();
        }
        for _ in 0..MOST_OWED {
            slot.placeholder(&file, 0, 1, false).unwrap();
        }
        assert!(slot.placeholder(&file, 0, 1, false).is_err(), "owed ranges are bounded");
    }
}
