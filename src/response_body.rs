//! [`ResponseBody`]: a stored response body, read from its file or, for a small one, from
//! the journal record that keeps it.

use std::fmt;
use std::fs::File;
use std::io::{self, Cursor, Read, Seek, SeekFrom};

/// A response body kept in the store, as [`crate::Upload::response_body`] returns it:
/// read it like a file. A body of at most 4 KiB, which most answers are, is kept in the
/// journal's record of the response (no file of its own), and comes whole in memory; a
/// larger one is read from its file.
pub struct ResponseBody {
    inner: Inner,
    len: u64,
}

enum Inner {
    File(File),
    Bytes(Cursor<Vec<u8>>),
}

impl ResponseBody {
    pub(crate) fn file(file: File) -> io::Result<ResponseBody> {
        let len = file.metadata()?.len();
        Ok(ResponseBody {
            inner: Inner::File(file),
            len,
        })
    }

    pub(crate) fn bytes(bytes: Vec<u8>) -> ResponseBody {
        ResponseBody {
            len: bytes.len() as u64,
            inner: Inner::Bytes(Cursor::new(bytes)),
        }
    }

    /// The body's length in bytes (as kept: at most the uploader's response body cap).
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the body is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Read for ResponseBody {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match &mut self.inner {
            Inner::File(f) => f.read(buf),
            Inner::Bytes(c) => c.read(buf),
        }
    }
}

impl Seek for ResponseBody {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        match &mut self.inner {
            Inner::File(f) => f.seek(pos),
            Inner::Bytes(c) => c.seek(pos),
        }
    }
}

impl fmt::Debug for ResponseBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kept = match self.inner {
            Inner::File(_) => "file",
            Inner::Bytes(_) => "journal",
        };
        f.debug_struct("ResponseBody")
            .field("len", &self.len)
            .field("kept_in", &kept)
            .finish()
    }
}
