//! The instance record: what the index keeps about one stored instance.

use crate::attribute::Attribute;
use crate::blob::BlobKey;
use crate::query::QueryRow;
use crate::scan::PixelLayout;
use crate::uid::Uid;

/// Everything the index keeps about one stored instance: its identifying UIDs, the indexed
/// attributes of its patient, study, series and itself (normalised as the matching rules expect),
/// where its bytes are and how to check them, and where its frames start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstanceRecord {
    /// SOP Instance UID (0008,0018).
    pub sop_instance_uid: Uid,
    /// SOP Class UID (0008,0016).
    pub sop_class_uid: Uid,
    /// Series Instance UID (0020,000E).
    pub series_instance_uid: Uid,
    /// Study Instance UID (0020,000D).
    pub study_instance_uid: Uid,
    /// Transfer Syntax UID (0002,0010) of the stored bytes.
    pub transfer_syntax_uid: Uid,
    /// The indexed attribute values, normalised (text decoded to UTF-8 and trimmed, dates as
    /// `YYYYMMDD`, times as `HHMMSS.FFFFFF`, integers in decimal). Absent values are not present.
    pub attributes: QueryRow,
    /// Where the pixel data is in the stored bytes.
    pub pixel: PixelLayout,
    /// Bytes per frame of native pixel data, when it can be computed.
    pub frame_size: Option<u64>,
    /// Size of the stored object in bytes.
    pub size: u64,
    /// SHA-256 of the stored object, lowercase hexadecimal.
    pub checksum: String,
    /// Where the bytes are in the blob store.
    pub blob: BlobKey,
    /// The object as received, when the archive stored a conversion of it (compression on
    /// ingest); `None` when the stored bytes are those received.
    pub original: Option<Original>,
}

/// The object as received, for an instance stored in another transfer syntax.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Original {
    /// Size of the received object in bytes.
    pub size: u64,
    /// SHA-256 of the received object, lowercase hexadecimal.
    pub checksum: String,
    /// Its Transfer Syntax UID.
    pub transfer_syntax_uid: Uid,
}

/// One frame's bytes inside a stored object, as `(offset, length)` pieces to concatenate.
pub type FrameRanges = Vec<(u64, u64)>;

impl InstanceRecord {
    /// The value of an indexed attribute, if present.
    pub fn get(&self, attribute: Attribute) -> Option<&str> {
        self.attributes.get(&attribute).map(String::as_str)
    }

    /// Number of frames: Number of Frames (0028,0008), or 1 for an object with pixel data.
    pub fn frame_count(&self) -> u32 {
        match self.get(Attribute::NumberOfFrames).and_then(|n| n.parse::<u32>().ok()) {
            Some(n) if n > 0 => n,
            _ => u32::from(self.pixel != PixelLayout::Unknown),
        }
    }

    /// The byte ranges of each frame, in order, when they can be located without decoding:
    /// native pixel data of a known frame size, or encapsulated data with one fragment per frame,
    /// a single frame, or a Basic Offset Table.
    pub fn frame_ranges(&self) -> Option<Vec<FrameRanges>> {
        let frames = self.frame_count() as usize;
        match &self.pixel {
            PixelLayout::Unknown => None,
            PixelLayout::Native { offset, length } => {
                let size = self.frame_size?;
                if size == 0 || size.checked_mul(frames as u64)? > *length {
                    return None;
                }
                Some((0..frames as u64).map(|i| vec![(offset + i * size, size)]).collect())
            }
            PixelLayout::Encapsulated { fragments, offset_table } => {
                let piece = |&(off, len): &(u64, u32)| (off, u64::from(len));
                if frames == 1 {
                    return Some(vec![fragments.iter().map(piece).collect()]);
                }
                if fragments.len() == frames {
                    return Some(fragments.iter().map(|f| vec![piece(f)]).collect());
                }
                if offset_table.len() != frames || fragments.is_empty() {
                    return None;
                }
                // Offsets in the table count from the first fragment's item tag (8 bytes before
                // its value).
                let base = fragments[0].0 - 8;
                let mut out: Vec<FrameRanges> = vec![Vec::new(); frames];
                for f in fragments {
                    let rel = f.0 - 8 - base;
                    let frame = offset_table.iter().rposition(|&start| u64::from(start) <= rel)?;
                    out[frame].push(piece(f));
                }
                out.iter().all(|f| !f.is_empty()).then_some(out)
            }
        }
    }
}
