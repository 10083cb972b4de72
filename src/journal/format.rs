//! The journal's byte format: header, record framing, CRC-32, and a checked scanner.
//!
//! ```text
//! header  = MAGIC (8 bytes) | version (u32 LE) | reserved (u32 LE, zero)
//! record  = word (u32 LE) | crc32 (u32 LE) over word bytes + payload | payload (postcard)
//! word    = SKIPPABLE flag (bit 31) | payload length (bits 0-30, at most MAX_RECORD_LEN)
//! ```
//!
//! **Adding a record kind** (a firmware rollback must never cost records). A reader
//! that meets a whole frame (its checksum is right) whose payload it cannot decode never
//! cuts the journal there:
//! - if the frame has the [`SKIPPABLE`] flag, it skips it and keeps it on disk, and does
//!   not compact the journal while it holds such a frame (compaction rewrites only what
//!   it understands, so it would drop it);
//! - otherwise it refuses to open the store ([`super::JournalError::RecordUnreadable`],
//!   `Error::JournalUnreadable`) and leaves the file byte for byte as it was.
//!
//! So a new kind that an older build may ignore without misreading any upload (a hint,
//! a statistic, a field that only adds) is written with the flag, at the same version.
//! A kind an older build would misread by ignoring (it changes what an upload is, or
//! where its bytes are) is written without the flag; older builds then refuse the
//! store until the newer build runs again. A change to the encoding of an existing kind,
//! or to the framing, raises [`VERSION`]: older builds refuse the header
//! (`Error::JournalVersion`), also leaving the file as it was. New kinds are appended
//! at the end of `Record`, so that the variant numbers of the old ones never change.
//!
//! The scanner reads like rustls' codec: every access is checked, lengths are capped
//! before anything is allocated, and the first frame that does not check out ends the
//! scan. It never panics on any input.

use super::record::Record;

/// The first bytes of every journal file.
pub const MAGIC: [u8; 8] = *b"BGXFERJ\x01";
/// The format version this build writes and the newest it reads.
pub const VERSION: u32 = 1;
/// Size of the file header.
pub const HEADER_LEN: usize = 16;
/// Size of a record frame's header (length + checksum).
pub const FRAME_HEADER_LEN: usize = 8;
/// Hard cap on a record's payload: no legitimate record comes near it, and replay never
/// trusts a length beyond it.
pub const MAX_RECORD_LEN: usize = 1 << 20;
/// Flag in a frame's length word: a record kind that builds which do not know it may
/// skip (see the module docs). This build knows every kind it writes and writes none
/// with the flag.
pub const SKIPPABLE: u32 = 1 << 31;

/// The file header for this build.
pub fn header() -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[..8].copy_from_slice(&MAGIC);
    h[8..12].copy_from_slice(&VERSION.to_le_bytes());
    h
}

/// What the header of a file says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderCheck {
    /// Our magic and a version we read.
    Valid,
    /// The file is shorter than a header but is a prefix of ours: a creation cut short.
    TornHeader,
    /// Not our magic.
    NotRecognized,
    /// Our magic with a version newer than this build.
    Newer(u32),
}

/// Checks the first bytes of a file.
pub fn check_header(bytes: &[u8]) -> HeaderCheck {
    let ours = header();
    if bytes.len() < HEADER_LEN {
        return if ours.starts_with(bytes) {
            HeaderCheck::TornHeader
        } else {
            HeaderCheck::NotRecognized
        };
    }
    if bytes[..8] != MAGIC {
        return HeaderCheck::NotRecognized;
    }
    let version = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
    match version {
        0 => HeaderCheck::NotRecognized,
        v if v > VERSION => HeaderCheck::Newer(v),
        _ => HeaderCheck::Valid,
    }
}

/// Frames `payload` as a newer build would frame a record of a kind this one does not
/// know, with the [`SKIPPABLE`] flag or without: what the rollback tests write.
#[doc(hidden)]
pub fn encode_raw_frame(payload: &[u8], skippable: bool) -> Vec<u8> {
    let word = payload.len() as u32 | if skippable { SKIPPABLE } else { 0 };
    let word = word.to_le_bytes();
    let mut crc = Crc32::new();
    crc.update(&word);
    crc.update(payload);
    let mut out = Vec::with_capacity(FRAME_HEADER_LEN + payload.len());
    out.extend_from_slice(&word);
    out.extend_from_slice(&crc.finish().to_le_bytes());
    out.extend_from_slice(payload);
    out
}

/// Encodes one record as a frame, or says it is too large.
pub fn encode_frame(record: &Record) -> Result<Vec<u8>, usize> {
    let payload = postcard::to_allocvec(record).expect("postcard encodes plain data to a Vec");
    if payload.len() > MAX_RECORD_LEN {
        return Err(payload.len());
    }
    Ok(encode_raw_frame(&payload, false))
}

/// Why a scan stopped before the end of the bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Damage {
    /// What a crash during an append leaves: a partial frame at the very end, or a zeroed
    /// tail. Normal after a crash.
    TornTail,
    /// Something that a crash during an append does not explain: a bad checksum with data
    /// after it, or an oversize length.
    Corrupt(String),
    /// A whole frame (its checksum is right) whose payload does not decode and that is not
    /// marked [`SKIPPABLE`]: from a newer build, or a bug. Never a reason to cut the file.
    Unreadable(String),
}

/// One frame as read.
// Transient: moved into the scan's Vec at once, so boxing the record would only add an
// allocation per record.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    /// A record this build knows.
    Record(Record),
    /// A record of a kind this build does not know, marked [`SKIPPABLE`]: kept on disk,
    /// not applied.
    Skipped,
}

/// The result of scanning the records after the header.
#[derive(Debug)]
pub struct Scan {
    /// The records that checked out, in order.
    pub records: Vec<Record>,
    /// Where each of `records` that keeps a response body starts (its frame): its index
    /// in `records` and its offset from the start of the scanned bytes.
    pub body_offsets: Vec<(usize, usize)>,
    /// Frames of unknown kinds marked [`SKIPPABLE`], skipped (inside `valid_len`).
    pub skipped: usize,
    /// Offset (from the start of the scanned bytes) just past the last good record.
    pub valid_len: usize,
    /// Why the scan stopped early, if it did.
    pub damage: Option<Damage>,
}

/// Reads one frame at the start of `bytes`: `Ok(Some((frame, frame_len)))`, `Ok(None)` at
/// the end, or the damage.
pub fn decode_frame(bytes: &[u8]) -> Result<Option<(Frame, usize)>, Damage> {
    if bytes.is_empty() {
        return Ok(None);
    }
    match decode_frame_inner(bytes) {
        // A zeroed tail (a file extended but its data never written) is a crash artifact.
        Err(Damage::Corrupt(_)) if bytes.iter().all(|&b| b == 0) => Err(Damage::TornTail),
        other => other,
    }
}

fn decode_frame_inner(bytes: &[u8]) -> Result<Option<(Frame, usize)>, Damage> {
    let Some((head, rest)) = bytes.split_first_chunk::<FRAME_HEADER_LEN>() else {
        return Err(Damage::TornTail);
    };
    let len_bytes = [head[0], head[1], head[2], head[3]];
    let word = u32::from_le_bytes(len_bytes);
    let skippable = word & SKIPPABLE != 0;
    let len = (word & !SKIPPABLE) as usize;
    let stored_crc = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
    if len > MAX_RECORD_LEN {
        return Err(Damage::Corrupt(format!(
            "record length {len} exceeds the {MAX_RECORD_LEN}-byte cap"
        )));
    }
    let Some(payload) = rest.get(..len) else {
        // The frame runs past the end of the file: an append cut short.
        return Err(Damage::TornTail);
    };
    let mut crc = Crc32::new();
    crc.update(&len_bytes);
    crc.update(payload);
    if crc.finish() != stored_crc {
        let after = rest.get(len..).unwrap_or_default();
        return Err(if after.iter().all(|&b| b == 0) {
            // The last frame of the file (maybe followed by zeroes), its pages only partly
            // written.
            Damage::TornTail
        } else {
            Damage::Corrupt("checksum mismatch".to_string())
        });
    }
    match postcard::from_bytes::<Record>(payload) {
        Ok(record) => Ok(Some((Frame::Record(record), FRAME_HEADER_LEN + len))),
        Err(_) if skippable => Ok(Some((Frame::Skipped, FRAME_HEADER_LEN + len))),
        Err(e) => Err(Damage::Unreadable(format!("record does not decode: {e}"))),
    }
}

/// Scans the records in `bytes` (the file without its header).
pub fn scan(bytes: &[u8]) -> Scan {
    let mut records = Vec::new();
    let mut body_offsets = Vec::new();
    let mut skipped = 0;
    let mut pos = 0usize;
    loop {
        let rest = bytes.get(pos..).unwrap_or_default();
        let damage = match decode_frame(rest) {
            Ok(None) => None,
            Ok(Some((frame, used))) => {
                match frame {
                    Frame::Record(record) => {
                        if matches!(record, Record::ResponseWithBody(_)) {
                            body_offsets.push((records.len(), pos));
                        }
                        records.push(record);
                    }
                    Frame::Skipped => skipped += 1,
                }
                pos += used;
                continue;
            }
            Err(damage) => Some(damage),
        };
        return Scan {
            records,
            body_offsets,
            skipped,
            valid_len: pos,
            damage,
        };
    }
}

/// Ids above this are not taken from what damage left (salvaged frames, a marker, file
/// names): a stray value must not exhaust the ids. Far above any store's real ids.
pub const MAX_PLAUSIBLE_ID: u64 = 1 << 48;

/// Bytes of record payload [`salvage_next_id`] checks at most: a bound on the work a
/// damaged journal of any size can cost an open.
const SALVAGE_BUDGET: usize = 64 << 20;

/// One past the highest upload id among the frames that still check out in `bytes` (a
/// damaged journal past the damage), found by trying every offset: the ids of uploads the
/// damage took out of the journal, which must not be handed out again. 0 if none.
pub fn salvage_next_id(bytes: &[u8]) -> u64 {
    let mut next = 0u64;
    let mut pos = 0usize;
    let mut budget = SALVAGE_BUDGET;
    while let Some(rest) = bytes.get(pos..).filter(|r| r.len() > FRAME_HEADER_LEN) {
        let word = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]);
        let len = (word & !SKIPPABLE) as usize;
        let fits = len <= MAX_RECORD_LEN && len <= rest.len() - FRAME_HEADER_LEN;
        if fits && len <= budget {
            budget -= len;
            if let Ok(Some((frame, used))) = decode_frame_inner(rest) {
                if let Frame::Record(record) = frame {
                    if record.id() < MAX_PLAUSIBLE_ID {
                        next = next.max(record.id() + 1);
                    }
                }
                pos += used;
                continue;
            }
        }
        pos += 1;
    }
    next
}

/// CRC-32 (IEEE 802.3, reflected, the zlib/PNG one), table driven.
///
/// Written here rather than pulled in: it is twenty lines and the journal is its only user.
#[derive(Debug, Clone)]
pub struct Crc32(u32);

const CRC_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
};

impl Crc32 {
    /// A fresh checksum.
    pub fn new() -> Self {
        Crc32(0xFFFF_FFFF)
    }
    /// Feeds bytes.
    pub fn update(&mut self, bytes: &[u8]) {
        let mut c = self.0;
        for &b in bytes {
            c = CRC_TABLE[((c ^ b as u32) & 0xFF) as usize] ^ (c >> 8);
        }
        self.0 = c;
    }
    /// The checksum of everything fed.
    pub fn finish(&self) -> u32 {
        self.0 ^ 0xFFFF_FFFF
    }
}

impl Default for Crc32 {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_known_value() {
        let mut c = Crc32::new();
        c.update(b"123456789");
        assert_eq!(c.finish(), 0xCBF4_3926);
    }

    #[test]
    fn header_checks() {
        let h = header();
        assert_eq!(check_header(&h), HeaderCheck::Valid);
        assert_eq!(check_header(&h[..5]), HeaderCheck::TornHeader);
        assert_eq!(check_header(b""), HeaderCheck::TornHeader);
        assert_eq!(
            check_header(b"garbage!garbage!"),
            HeaderCheck::NotRecognized
        );
        let mut newer = h;
        newer[8..12].copy_from_slice(&7u32.to_le_bytes());
        assert_eq!(check_header(&newer), HeaderCheck::Newer(7));
    }

    #[test]
    fn unknown_kinds_are_skipped_when_marked_and_never_cut() {
        let payload = [200u8, 1, 2, 3];
        let marked = encode_raw_frame(&payload, true);
        assert_eq!(
            decode_frame(&marked),
            Ok(Some((Frame::Skipped, marked.len())))
        );
        let unmarked = encode_raw_frame(&payload, false);
        assert!(matches!(
            decode_frame(&unmarked),
            Err(Damage::Unreadable(_))
        ));
        // A known kind marked skippable is still read.
        let known = postcard::to_allocvec(&Record::Removed(3)).unwrap();
        assert_eq!(
            decode_frame(&encode_raw_frame(&known, true))
                .unwrap()
                .unwrap()
                .0,
            Frame::Record(Record::Removed(3))
        );
    }

    #[test]
    fn salvage_finds_the_ids_past_the_damage() {
        let mut bytes = encode_frame(&Record::Removed(5)).unwrap();
        bytes[9] ^= 0xff; // the damaged frame itself
        bytes.extend(b"garbage");
        bytes.extend(encode_frame(&Record::Restarted(17)).unwrap());
        bytes.extend(encode_frame(&Record::Removed(9)).unwrap());
        assert_eq!(salvage_next_id(&bytes), 18);
        assert_eq!(salvage_next_id(b"no frames at all"), 0);
        // A known kind written with the flag is salvaged too; an absurd id is not taken.
        let known = postcard::to_allocvec(&Record::Removed(30)).unwrap();
        bytes.extend(encode_raw_frame(&known, true));
        assert_eq!(salvage_next_id(&bytes), 31);
        bytes.extend(encode_frame(&Record::Removed(u64::MAX - 1)).unwrap());
        assert_eq!(salvage_next_id(&bytes), 31);
    }

    #[test]
    fn frame_round_trip_and_torn() {
        let rec = Record::Removed(42);
        let frame = encode_frame(&rec).unwrap();
        let (back, used) = decode_frame(&frame).unwrap().unwrap();
        assert_eq!(back, Frame::Record(rec));
        assert_eq!(used, frame.len());
        for cut in 1..frame.len() {
            assert_eq!(
                decode_frame(&frame[..cut]),
                Err(Damage::TornTail),
                "cut {cut}"
            );
        }
    }

    #[test]
    fn oversize_length_is_corrupt_not_allocated() {
        let mut frame = vec![0xFF, 0xFF, 0xFF, 0x7F, 1, 2, 3, 4];
        frame.extend_from_slice(&[1; 16]);
        assert!(matches!(decode_frame(&frame), Err(Damage::Corrupt(_))));
    }
}
