//! Lookup tables as objects hold them: a LUT Descriptor and LUT Data (the Modality LUT and VOI
//! LUT Sequences' items, PS3.3 C.11.1 and C.11.2; the Palette Color Lookup Tables, C.7.6.3.1.5).
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
}
