//! Lookup tables as objects hold them: a LUT Descriptor and LUT Data (the Modality LUT and VOI
//! LUT Sequences' items, PS3.3 C.11.1 and C.11.2; the Palette Color Lookup Tables, C.7.6.3.1.5),
//! and segmented palette data (C.7.9.2) expanded into the same entries.
//!
//! Every function answers what is wrong with a malformed table as a sentence, which the caller
//! puts in an [`Error`](crate::Error) with the object and the table it came from.

use dicom_core::Tag;
use dicom_object::InMemDicomObject;

use super::Lut;

/// The bits per entry a table may declare (its LUT Descriptor's third value).
pub(super) const ENTRY_BITS: std::ops::RangeInclusive<u16> = 8..=16;

/// A LUT Descriptor: number of entries (0 meaning 65536), first value mapped (raw, 16 bits) and
/// bits per entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Descriptor {
    /// The number of entries.
    pub entries: usize,
    /// The first value mapped, as stored (US or SS, 16 bits).
    pub first: u16,
    /// Bits per entry.
    pub bits: u16,
}

impl Descriptor {
    /// The first value mapped: signed (SS) or not (US).
    pub fn first_mapped(&self, signed: bool) -> i64 {
        if signed { i64::from(self.first as i16) } else { i64::from(self.first) }
    }
}

/// Reads the LUT Descriptor `tag` of `item`.
pub(super) fn descriptor(item: &InMemDicomObject, tag: Tag) -> Result<Descriptor, String> {
    let element = item.get(tag).ok_or("no LUT Descriptor")?;
    let values = element.to_multi_int::<i64>().map_err(|e| format!("the LUT Descriptor is not numeric ({e})"))?;
    let [entries, first, bits] = values[..] else {
        return Err(format!("the LUT Descriptor has {} values, 3 expected", values.len()));
    };
    // Each value is 16 bits, US or SS: the number of entries and bits per entry read as US.
    let (entries, bits) = (entries as u16, bits as u16);
    if !ENTRY_BITS.contains(&bits) {
        return Err(format!("the LUT Descriptor gives {bits} bits per entry, 8 to 16 expected"));
    }
    Ok(Descriptor { entries: if entries == 0 { 65536 } else { usize::from(entries) }, first: first as u16, bits })
}

/// The bytes of `tag` in `item` (little endian words for US and OW), if present.
pub(super) fn data<'a>(item: &'a InMemDicomObject, tag: Tag) -> Option<std::borrow::Cow<'a, [u8]>> {
    item.get(tag).and_then(|e| e.to_bytes().ok())
}

/// The entries of LUT Data `bytes` that `descriptor` describes: one 16-bit word per entry, or,
/// with at most 8 bits per entry, one byte per entry (packed two to a word, as DCMTK also reads
/// them). Any other length is an error.
pub(super) fn entries(bytes: &[u8], descriptor: &Descriptor) -> Result<Vec<u16>, String> {
    let count = descriptor.entries;
    if bytes.is_empty() {
        return Err("the LUT Data is empty".into());
    }
    if bytes.len() == count * 2 {
        Ok(bytes.chunks_exact(2).map(|w| u16::from_le_bytes([w[0], w[1]])).collect())
    } else if descriptor.bits <= 8 && bytes.len() == count + count % 2 {
        Ok(bytes[..count].iter().map(|b| u16::from(*b)).collect())
    } else {
        let expected = if descriptor.bits <= 8 { format!("{} or {}", count + count % 2, count * 2) } else { (count * 2).to_string() };
        Err(format!("the LUT Data has {} bytes, {expected} expected for {count} entries of {} bits", bytes.len(), descriptor.bits))
    }
}

/// A Modality or VOI LUT: the item's LUT Descriptor (0028,3002) and LUT Data (0028,3006), the
/// first value mapped signed or not, entries masked to their bits as DCMTK does.
pub(super) fn read(item: &InMemDicomObject, signed: bool) -> Result<Lut, String> {
    use dicom_dictionary_std::tags;
    let descriptor = descriptor(item, tags::LUT_DESCRIPTOR)?;
    let bytes = data(item, tags::LUT_DATA).ok_or("no LUT Data")?;
    let mask = ((1u32 << descriptor.bits) - 1) as u16;
    let entries = entries(&bytes, &descriptor)?.into_iter().map(|e| e & mask).collect();
    Ok(Lut { first_mapped: descriptor.first_mapped(signed), bits: descriptor.bits, entries })
}

/// Expands Segmented Palette Color Lookup Table Data (PS3.3 C.7.9.2) into `count` entries:
/// `bytes` holds 8-bit values (one byte each, possibly followed by a padding byte) when the
/// entries have 8 bits, 16-bit little-endian words otherwise.
///
/// Discrete segments give their entries; linear ones join the previous entry to their end value
/// (the i-th of n entries `y0 + (y1 - y0) * i / n`, rounded); indirect ones copy a number of the
/// discrete and linear segments before them, found by their byte offset from the start of the
/// data. The expansion must give exactly `count` entries.
pub(super) fn expand_segmented(bytes: &[u8], bits: u16, count: usize) -> Result<Vec<u16>, String> {
    let eight = bits <= 8;
    let data: Vec<u16> =
        if eight { bytes.iter().map(|b| u16::from(*b)).collect() } else { bytes.chunks_exact(2).map(|w| u16::from_le_bytes([w[0], w[1]])).collect() };
    let mut out: Vec<u16> = Vec::with_capacity(count);
    // The positions (in values) where the segments read so far start.
    let mut starts = Vec::new();
    let mut pos = 0;
    while pos < data.len() {
        if eight && pos + 1 == data.len() && data[pos] == 0 {
            break; // The padding of an odd number of 8-bit values.
        }
        let segment = starts.len() + 1;
        starts.push(pos);
        let opcode = data[pos];
        if opcode == 2 {
            // Indirect: number of segments to copy, then a 32-bit byte offset as two 16-bit
            // halves, least significant first (four bytes when the values are 8 bits).
            let field = |i: usize| data.get(pos + i).map(|v| u32::from(*v)).ok_or_else(|| format!("segment {segment} (indirect) is truncated"));
            let copies = field(1)?;
            let (offset, size) = if eight { (field(2)? | field(3)? << 8 | field(4)? << 16 | field(5)? << 24, 6) } else { (field(2)? | field(3)? << 16, 4) };
            let target = if eight { offset as usize } else { offset as usize / 2 };
            if (!eight && offset % 2 != 0) || !starts[..starts.len() - 1].contains(&target) {
                return Err(format!("segment {segment} (indirect) points at byte {offset}, where no earlier segment starts"));
            }
            let mut at = target;
            for _ in 0..copies {
                if data.get(at) == Some(&2) {
                    return Err(format!("segment {segment} (indirect) copies another indirect segment"));
                }
                at = expand_one(&data, at, &mut out, segment)?;
                if out.len() > count {
                    break;
                }
            }
            pos += size;
        } else {
            pos = expand_one(&data, pos, &mut out, segment)?;
        }
        if out.len() > count {
            return Err(format!("the segments expand to more than the {count} entries of the descriptor"));
        }
    }
    if out.len() != count {
        return Err(format!("the segments expand to {} entries, the descriptor gives {count}", out.len()));
    }
    Ok(out)
}

/// Expands the discrete or linear segment at `pos` (segment number `segment`, for messages)
/// onto `out`; returns where the next segment starts.
fn expand_one(data: &[u16], pos: usize, out: &mut Vec<u16>, segment: usize) -> Result<usize, String> {
    let truncated = || format!("segment {segment} is truncated");
    let opcode = data[pos];
    let length = usize::from(*data.get(pos + 1).ok_or_else(truncated)?);
    match opcode {
        0 => {
            let values = data.get(pos + 2..pos + 2 + length).ok_or_else(truncated)?;
            out.extend_from_slice(values);
            Ok(pos + 2 + length)
        }
        1 => {
            let y1 = i64::from(*data.get(pos + 2).ok_or_else(truncated)?);
            let y0 = i64::from(*out.last().ok_or_else(|| format!("segment {segment} is linear but has no entry before it to start from"))?);
            let n = length as i64;
            // y0 + (y1 - y0) * i / n (never negative), rounded half up, in integers.
            out.extend((1..=n).map(|i| ((2 * (y0 * n + (y1 - y0) * i) + n) / (2 * n)) as u16));
            Ok(pos + 3)
        }
        other => Err(format!("segment {segment} has opcode {other}, not 0 (discrete), 1 (linear) or 2 (indirect)")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(values: &[u16]) -> Vec<u8> {
        values.iter().flat_map(|v| v.to_le_bytes()).collect()
    }

    #[test]
    fn descriptors_and_data() {
        let d = Descriptor { entries: 4, first: 0xF800, bits: 16 };
        assert_eq!((d.first_mapped(true), d.first_mapped(false)), (-2048, 0xF800));
        assert_eq!(entries(&words(&[1, 2, 3, 4]), &d), Ok(vec![1, 2, 3, 4]));
        let d8 = Descriptor { bits: 8, ..d };
        assert_eq!(entries(&[1, 2, 3, 4], &d8), Ok(vec![1, 2, 3, 4]), "packed two to a word");
        assert_eq!(entries(&words(&[1, 2, 3, 4]), &d8), Ok(vec![1, 2, 3, 4]), "one to a word");
        let d3 = Descriptor { entries: 3, bits: 8, ..d };
        assert_eq!(entries(&[7, 8, 9, 0], &d3), Ok(vec![7, 8, 9]), "padded to even length");
        assert!(entries(&[1, 2, 3, 4], &d).expect_err("too short").contains("4 bytes, 8 expected"));
        assert!(entries(&[], &d).expect_err("empty").contains("empty"));
        assert!(entries(&words(&[1, 2, 3]), &d8).is_err(), "neither packed nor one to a word");
    }

    #[test]
    fn segments_expand() {
        // Discrete, linear, indirect (copying both from offset 0), linear.
        let data = words(&[0, 2, 10, 20, 1, 4, 60, 2, 2, 0, 0, 1, 2, 0]);
        assert_eq!(expand_segmented(&data, 16, 14), Ok(vec![10, 20, 30, 40, 50, 60, 10, 20, 30, 40, 50, 60, 30, 0]));
        // A 16-bit indirect offset is in bytes: 8 is the linear segment (the fifth word).
        // A 16-bit indirect offset is in bytes: 6 is the linear segment (the fourth word).
        let data = words(&[0, 1, 100, 1, 3, 0, 0, 1, 90, 2, 1, 6, 0]);
        assert_eq!(expand_segmented(&data, 16, 8), Ok(vec![100, 67, 33, 0, 90, 60, 30, 0]));
        // 8-bit values, an indirect offset of 8-bit bytes, the padding byte of an odd count.
        let data = [0, 1, 200, 1, 2, 100, 2, 1, 3, 0, 0, 0, 1, 1, 50, 0];
        assert_eq!(expand_segmented(&data, 8, 6), Ok(vec![200, 150, 100, 100, 100, 50]));
        // A linear segment of falling values, rounded half up.
        assert_eq!(expand_segmented(&words(&[0, 1, 3, 1, 2, 0]), 16, 3), Ok(vec![3, 2, 0]));
    }

    #[test]
    fn malformed_segments_are_errors() {
        let check = |data: &[u16], count: usize, expected: &str| {
            let error = expand_segmented(&words(data), 16, count).expect_err("malformed");
            assert!(error.contains(expected), "{data:?}: {error}");
        };
        check(&[1, 4, 60], 4, "linear but has no entry");
        check(&[0, 2, 1, 2, 3, 1], 2, "opcode 3");
        check(&[0, 4, 1, 2], 4, "truncated");
        check(&[0, 2, 1, 2], 3, "expand to 2 entries");
        check(&[0, 2, 1, 2, 1, 40000, 0], 3, "more than the 3 entries");
        check(&[0, 1, 1, 2, 1, 2, 0], 4, "points at byte 2");
        check(&[0, 1, 1, 2, 1, 0, 0, 2, 1, 6, 0], 4, "copies another indirect");
        check(&[2, 1, 0, 0], 4, "where no earlier segment starts");
        // Copies of copies cannot blow up: the count bounds the expansion.
        check(&[0, 1, 5, 1, 65535, 9, 2, 65535, 6, 0], 65536, "more than the 65536 entries");
        assert!(expand_segmented(&[], 8, 1).expect_err("no segments").contains("expand to 0"));
    }
}
