//! The request body as a `Read` that ureq pulls from: segments streamed from disk,
//! the shared bandwidth budget, progress, and the control channel checked every read.
//! With zero copy on, a read of file bytes into the plain socket's output buffer claims
//! that buffer's transmit for the file range instead of copying it (`zero_copy.rs`).

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use crossbeam_channel::Receiver;

use super::{Claim, Control, ZeroCopy};
use crate::bandwidth::Bandwidth;
use crate::multipart::Segment;
use crate::source;
use crate::Error;

/// Streams `segments` from byte `start` to byte `end` of the whole body.
pub(crate) struct BodyReader<'a> {
    segments: &'a [Segment],
    /// Index of the segment holding byte `pos`, and where that segment starts.
    seg: usize,
    seg_start: u64,
    /// The current file segment's file, read at explicit offsets (`pread`), as
    /// `sendfile` reads it.
    file: Option<Arc<File>>,
    pos: u64,
    end: u64,
    ctl: &'a Receiver<Control>,
    bandwidth: Option<&'a Bandwidth>,
    progress: &'a mut dyn FnMut(u64),
    zero_copy: Option<&'a ZeroCopy>,
    /// Set when a control message stopped the body.
    pub stop: Option<Control>,
    /// Set when the source failed (changed, shrank, unreadable).
    pub failure: Option<Error>,
}

impl<'a> BodyReader<'a> {
    pub fn new(
        segments: &'a [Segment],
        start: u64,
        end: u64,
        ctl: &'a Receiver<Control>,
        bandwidth: Option<&'a Bandwidth>,
        progress: &'a mut dyn FnMut(u64),
        zero_copy: Option<&'a ZeroCopy>,
    ) -> Self {
        if let Some(zc) = zero_copy {
            zc.new_request();
        }
        let mut seg = 0;
        let mut seg_start = 0u64;
        while seg < segments.len() && seg_start.saturating_add(segments[seg].len()) <= start {
            seg_start = seg_start.saturating_add(segments[seg].len());
            seg += 1;
        }
        BodyReader {
            segments,
            seg,
            seg_start,
            file: None,
            pos: start,
            end,
            ctl,
            bandwidth,
            progress,
            zero_copy,
            stop: None,
            failure: None,
        }
    }

    /// Whether every byte up to `end` was handed to ureq.
    pub fn is_complete(&self) -> bool {
        self.pos >= self.end
    }

    fn fail(&mut self, e: Error) -> io::Error {
        let msg = e.to_string();
        self.failure = Some(e);
        io::Error::other(msg)
    }

    /// The current file segment's file, opened (and checked unchanged) on first use.
    fn source(&mut self, src: &crate::model::Source) -> io::Result<Arc<File>> {
        if let Some(f) = &self.file {
            return Ok(f.clone());
        }
        let f = Arc::new(source::open_unchanged(src).map_err(|e| self.fail(e))?);
        self.file = Some(f.clone());
        Ok(f)
    }

    /// Reads file bytes into `buf`, or, with `claim` (the zero copy that `buf` begins
    /// the output buffer of), claims the transmit of that buffer for them.
    fn read_file(
        &mut self,
        src: &crate::model::Source,
        buf: &mut [u8],
        claim: Option<&ZeroCopy>,
    ) -> io::Result<usize> {
        let file = self.source(src)?;
        let at = self.pos - self.seg_start;
        if let Some(zc) = claim {
            // ureq transmits these bytes of its output buffer next, from its start: that
            // transmit sends the range from the file.
            zc.claim(Claim {
                file,
                path: src.path.clone(),
                offset: at,
                len: buf.len(),
            });
            return Ok(buf.len());
        }
        let n = loop {
            match file.read_at(buf, at) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    let path = src.path.clone();
                    return Err(self.fail(Error::io("read source file", path, e)));
                }
                Ok(n) => break n,
            }
        };
        if n == 0 {
            // An early EOF must be an error: ureq would spin on a body that ends before
            // its Content-Length.
            return Err(self.fail(Error::SourceChanged {
                path: src.path.clone(),
                what: "it shrank while being uploaded".into(),
            }));
        }
        Ok(n)
    }
}

impl<'a> Read for BodyReader<'a> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if let Ok(c) = self.ctl.try_recv() {
                self.stop = Some(c);
                return Err(io::Error::other("upload stopped"));
            }
            if self.pos >= self.end || buf.is_empty() {
                return Ok(0);
            }
            let segments: &'a [Segment] = self.segments;
            let Some(segment) = segments.get(self.seg) else {
                return Err(self.fail(Error::InvalidRequest {
                    reason: "body layout shorter than its length".into(),
                }));
            };
            let seg_left = self
                .seg_start
                .saturating_add(segment.len())
                .saturating_sub(self.pos);
            if seg_left == 0 {
                self.seg_start = self.seg_start.saturating_add(segment.len());
                self.seg += 1;
                self.file = None;
                continue;
            }
            let mut want = (buf.len() as u64).min(seg_left).min(self.end - self.pos) as usize;
            if let Some(bw) = self.bandwidth {
                want = bw.take(want);
                if want == 0 {
                    continue;
                }
            }
            // ureq fills the plain socket's output buffer from its start and transmits
            // what was read: then file bytes need not be copied into it.
            let claim = self.zero_copy.filter(|zc| zc.is_output(buf));
            let n = match segment {
                Segment::Bytes(b) => {
                    let off = (self.pos - self.seg_start) as usize;
                    buf[..want].copy_from_slice(&b[off..off + want]);
                    want
                }
                Segment::File(src) => self.read_file(src, &mut buf[..want], claim)?,
            };
            self.pos += n as u64;
            (self.progress)(self.pos);
            return Ok(n);
        }
    }
}
