//! Streamed multipart bodies: the layout (delimiters, part headers, files) and its exact
//! length, computed before the first byte is sent.

use crate::model::{Multipart, PartContent, Source};
use crate::Error;

/// A piece of a body: bytes made here, or a file streamed from disk.
#[derive(Debug, Clone)]
pub(crate) enum Segment {
    Bytes(Vec<u8>),
    File(Source),
}

impl Segment {
    pub fn len(&self) -> u64 {
        match self {
            Segment::Bytes(b) => b.len() as u64,
            Segment::File(s) => s.size,
        }
    }
}

/// The length of a body of `segments`. Saturating: the sizes come from the journal, and
/// a sum past `u64::MAX` (no file system holds such files) must not panic; the sources'
/// check before a send refuses such a body.
pub(crate) fn total_len(segments: &[Segment]) -> u64 {
    segments
        .iter()
        .fold(0u64, |sum, s| sum.saturating_add(s.len()))
}

/// `multipart/<subtype>; boundary=<boundary>`.
pub(crate) fn content_type(mp: &Multipart) -> String {
    format!("multipart/{}; boundary={}", mp.subtype, mp.boundary)
}

/// The body as segments, in order.
pub(crate) fn layout(mp: &Multipart) -> Vec<Segment> {
    let mut out = Vec::with_capacity(mp.parts.len() * 3 + 1);
    for part in &mp.parts {
        let mut head = format!(
            "--{}\r\nContent-Disposition: form-data; name=\"{}\"",
            mp.boundary,
            quote(&part.name)
        );
        if let Some(f) = &part.file_name {
            head.push_str(&format!("; filename=\"{}\"", quote(f)));
        }
        head.push_str("\r\n");
        if let Some(ct) = &part.content_type {
            head.push_str(&format!("Content-Type: {ct}\r\n"));
        }
        head.push_str("\r\n");
        match &part.content {
            PartContent::Text(t) => {
                head.push_str(t);
                head.push_str("\r\n");
                out.push(Segment::Bytes(head.into_bytes()));
            }
            PartContent::File(s) => {
                out.push(Segment::Bytes(head.into_bytes()));
                out.push(Segment::File(s.clone()));
                out.push(Segment::Bytes(b"\r\n".to_vec()));
            }
        }
    }
    out.push(Segment::Bytes(
        format!("--{}--\r\n", mp.boundary).into_bytes(),
    ));
    out
}

/// Quotes a name for a `Content-Disposition` parameter (the WHATWG form encoding:
/// `"` becomes `%22`; CR and LF were refused at creation).
fn quote(s: &str) -> String {
    s.replace('"', "%22")
}

/// Checks a boundary (RFC 2046: 1–70 characters, no trailing space).
pub(crate) fn validate_boundary(b: &str) -> Result<(), Error> {
    const EXTRA: &[u8] = b"'()+_,-./:=? ";
    let ok = (1..=70).contains(&b.len())
        && !b.ends_with(' ')
        && b.bytes()
            .all(|c| c.is_ascii_alphanumeric() || EXTRA.contains(&c));
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidRequest {
            reason: format!("multipart boundary {b:?} is not 1-70 characters of RFC 2046's set"),
        })
    }
}

/// Checks a part's name, file name, content type and subtype for characters that would
/// break the framing.
pub(crate) fn validate_text(what: &str, s: &str) -> Result<(), Error> {
    if s.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
        return Err(Error::InvalidRequest {
            reason: format!("multipart {what} contains CR, LF or NUL"),
        });
    }
    Ok(())
}

/// A random boundary: 32 hex digits from the std hasher's random keys.
pub(crate) fn random_boundary() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut out = String::from("bgxfer-");
    for i in 0..2u64 {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(i);
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0),
        );
        out.push_str(&format!("{:016x}", h.finish()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Part;

    #[test]
    fn layout_length_is_exact() {
        let mp = Multipart {
            subtype: "form-data".into(),
            boundary: "XyZ".into(),
            parts: vec![Part {
                name: "a\"b".into(),
                file_name: None,
                content_type: None,
                content: PartContent::Text("hi".into()),
            }],
        };
        let segs = layout(&mp);
        let bytes: Vec<u8> = segs
            .iter()
            .flat_map(|s| match s {
                Segment::Bytes(b) => b.clone(),
                Segment::File(_) => unreachable!(),
            })
            .collect();
        assert_eq!(
            String::from_utf8(bytes).unwrap(),
            "--XyZ\r\nContent-Disposition: form-data; name=\"a%22b\"\r\n\r\nhi\r\n--XyZ--\r\n"
        );
        assert!(validate_boundary("ok-boundary").is_ok());
        assert!(validate_boundary("bad\r\n").is_err());
        assert!(validate_boundary("").is_err());
        assert!(random_boundary().len() > 30);
    }
}
