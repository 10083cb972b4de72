//! Content-MD5 of a range of the source: S3 parts and Azure blocks carry one, and the
//! server refuses a range that arrived damaged.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};

use md5::{Digest, Md5};

use crate::model::Source;
use crate::Error;

/// Base64 of the MD5 of `len` bytes of `src` from `start`.
pub(crate) fn content_md5(src: &Source, start: u64, len: u64) -> Result<String, Error> {
    let io = |e| Error::io("read source", &src.path, e);
    let mut f = File::open(&src.path).map_err(io)?;
    f.seek(SeekFrom::Start(start)).map_err(io)?;
    let mut hasher = Md5::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut left = len;
    while left > 0 {
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = f.read(&mut buf[..want]).map_err(io)?;
        if n == 0 {
            return Err(Error::SourceChanged {
                path: src.path.clone(),
                what: "it is shorter than when the upload was created".into(),
            });
        }
        hasher.update(&buf[..n]);
        left -= n as u64;
    }
    Ok(crate::base64::encode(&hasher.finalize()))
}
