//! Synthetic DICOM objects for the benchmarks: deterministic, written as a stream (a 2 GB
//! multi-frame object never sits in memory), and index records generated without files.

use std::io::{self, Write};

use pacs_core::query::QueryRow;
use pacs_core::scan::PixelLayout;
use pacs_core::{Attribute, BlobKey, InstanceRecord, Uid};
use pacs_testkit::push_element as element;

/// CT Image Storage, the SOP class of every generated object.
pub const CT_IMAGE_STORAGE: &str = "1.2.840.10008.5.1.4.1.1.2";
/// Explicit VR Little Endian.
pub const EXPLICIT_VR_LE: &str = "1.2.840.10008.1.2.1";
/// The UID root of generated objects.
pub const ROOT: &str = "1.2.826.0.1.3680043.10.543";

/// What one generated instance looks like.
#[derive(Clone, Debug)]
pub struct InstanceSpec {
    /// Patient number.
    pub patient: u32,
    /// Study number within the corpus.
    pub study: u32,
    /// Series number within the corpus.
    pub series: u32,
    /// Instance number within the corpus.
    pub instance: u32,
    /// Rows and columns.
    pub size: u16,
    /// Frames (1 for a single-frame image).
    pub frames: u32,
    /// Modality.
    pub modality: &'static str,
}

impl InstanceSpec {
    /// Study Instance UID.
    pub fn study_uid(&self) -> String {
        format!("{ROOT}.1.{}", self.study)
    }
    /// Series Instance UID.
    pub fn series_uid(&self) -> String {
        format!("{ROOT}.2.{}", self.series)
    }
    /// SOP Instance UID.
    pub fn sop_uid(&self) -> String {
        format!("{ROOT}.3.{}", self.instance)
    }
    /// Study date: spread over 2020-2024.
    pub fn study_date(&self) -> String {
        date_of(self.study)
    }
    /// Bytes of pixel data.
    pub fn pixel_bytes(&self) -> u64 {
        u64::from(self.size) * u64::from(self.size) * 2 * u64::from(self.frames)
    }
}

/// A date in 2020-2024 derived from `n`.
pub fn date_of(n: u32) -> String {
    let day = n % (5 * 365);
    let (year, rest) = (2020 + day / 365, day % 365);
    format!("{year}{:02}{:02}", rest / 28 % 12 + 1, rest % 28 + 1)
}

fn pad(value: &str, padding: u8) -> Vec<u8> {
    let mut v = value.as_bytes().to_vec();
    if v.len() % 2 == 1 {
        v.push(padding);
    }
    v
}

/// Writes one Part 10 object (Explicit VR Little Endian, 16-bit monochrome pixels) to `out`,
/// streaming the pixel data. Returns the number of bytes written.
pub fn write_instance(out: &mut dyn Write, spec: &InstanceSpec) -> io::Result<u64> {
    let sop = spec.sop_uid();
    let mut meta = Vec::new();
    element(&mut meta, 0x0002, 0x0001, b"OB", &[0, 1]);
    element(&mut meta, 0x0002, 0x0002, b"UI", &pad(CT_IMAGE_STORAGE, 0));
    element(&mut meta, 0x0002, 0x0003, b"UI", &pad(&sop, 0));
    element(&mut meta, 0x0002, 0x0010, b"UI", &pad(EXPLICIT_VR_LE, 0));
    element(&mut meta, 0x0002, 0x0012, b"UI", &pad(ROOT, 0));
    let mut head = vec![0u8; 128];
    head.extend_from_slice(b"DICM");
    element(&mut head, 0x0002, 0x0000, b"UL", &(meta.len() as u32).to_le_bytes());
    head.extend_from_slice(&meta);
    let e = &mut head;
    element(e, 0x0008, 0x0016, b"UI", &pad(CT_IMAGE_STORAGE, 0));
    element(e, 0x0008, 0x0018, b"UI", &pad(&sop, 0));
    element(e, 0x0008, 0x0020, b"DA", spec.study_date().as_bytes());
    element(e, 0x0008, 0x0030, b"TM", b"101010");
    element(e, 0x0008, 0x0050, b"SH", &pad(&format!("ACC{}", spec.study), b' '));
    element(e, 0x0008, 0x0060, b"CS", &pad(spec.modality, b' '));
    element(e, 0x0008, 0x1030, b"LO", &pad("Synthetic study", b' '));
    element(e, 0x0010, 0x0010, b"PN", &pad(&format!("DOE^PATIENT{}", spec.patient), b' '));
    element(e, 0x0010, 0x0020, b"LO", &pad(&format!("PID{:06}", spec.patient), b' '));
    element(e, 0x0010, 0x0030, b"DA", b"19700101");
    element(e, 0x0010, 0x0040, b"CS", b"O ");
    element(e, 0x0020, 0x000D, b"UI", &pad(&spec.study_uid(), 0));
    element(e, 0x0020, 0x000E, b"UI", &pad(&spec.series_uid(), 0));
    element(e, 0x0020, 0x0010, b"SH", &pad(&spec.study.to_string(), b' '));
    element(e, 0x0020, 0x0011, b"IS", &pad(&(spec.series % 100).to_string(), b' '));
    element(e, 0x0020, 0x0013, b"IS", &pad(&spec.instance.to_string(), b' '));
    element(e, 0x0028, 0x0002, b"US", &1u16.to_le_bytes());
    element(e, 0x0028, 0x0004, b"CS", b"MONOCHROME2 ");
    if spec.frames > 1 {
        element(e, 0x0028, 0x0008, b"IS", &pad(&spec.frames.to_string(), b' '));
    }
    element(e, 0x0028, 0x0010, b"US", &spec.size.to_le_bytes());
    element(e, 0x0028, 0x0011, b"US", &spec.size.to_le_bytes());
    element(e, 0x0028, 0x0100, b"US", &16u16.to_le_bytes());
    element(e, 0x0028, 0x0101, b"US", &12u16.to_le_bytes());
    element(e, 0x0028, 0x0102, b"US", &11u16.to_le_bytes());
    element(e, 0x0028, 0x0103, b"US", &0u16.to_le_bytes());
    let pixels = spec.pixel_bytes();
    let length = u32::try_from(pixels).map_err(|_| io::Error::other("pixel data over 4 GiB"))?;
    e.extend_from_slice(&0x7FE0u16.to_le_bytes());
    e.extend_from_slice(&0x0010u16.to_le_bytes());
    e.extend_from_slice(b"OW\0\0");
    e.extend_from_slice(&length.to_le_bytes());
    out.write_all(&head)?;
    // 12-bit noise from a small LCG, written in 1 MiB chunks.
    let mut state = u32::from(spec.size) ^ spec.instance.wrapping_mul(2_654_435_761);
    let mut chunk = vec![0u8; (1 << 20).min(pixels as usize)];
    let mut left = pixels;
    while left > 0 {
        let n = chunk.len().min(left as usize);
        for pair in chunk[..n].chunks_exact_mut(2) {
            state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            pair.copy_from_slice(&((state >> 20) as u16 & 0x0FFF).to_le_bytes());
        }
        out.write_all(&chunk[..n])?;
        left -= n as u64;
    }
    Ok(head.len() as u64 + pixels)
}

/// The specs of a corpus of `patients` × `studies` × `series` × `instances` single-frame images.
pub fn corpus(patients: u32, studies: u32, series: u32, instances: u32, size: u16) -> Vec<InstanceSpec> {
    let modalities = ["CT", "MR", "CR", "US"];
    let mut out = Vec::new();
    let (mut st, mut se, mut inst) = (0, 0, 0);
    for p in 0..patients {
        for _ in 0..studies {
            st += 1;
            for _ in 0..series {
                se += 1;
                for _ in 0..instances {
                    inst += 1;
                    out.push(InstanceSpec { patient: p, study: st, series: se, instance: inst, size, frames: 1, modality: modalities[se as usize % 4] });
                }
            }
        }
    }
    out
}

/// An index record for instance `n` of a synthetic archive of `studies_per_patient` studies per
/// patient, 4 series per study and 25 instances per series, without any file behind it: for
/// filling an index directly.
pub fn record(n: u64) -> InstanceRecord {
    let series = n / 25;
    let study = series / 4;
    let patient = study / 3;
    let uid = |kind: u32, v: u64| Uid::new(&format!("{ROOT}.{kind}.{v}")).unwrap_or_else(|_| unreachable!("generated UIDs are valid"));
    let mut attributes = QueryRow::new();
    attributes.insert(Attribute::PatientId, format!("PID{patient:07}"));
    attributes.insert(Attribute::PatientName, format!("DOE^PATIENT{patient}"));
    attributes.insert(Attribute::PatientBirthDate, "19700101".into());
    attributes.insert(Attribute::PatientSex, "O".into());
    attributes.insert(Attribute::StudyDate, date_of(study as u32));
    attributes.insert(Attribute::StudyTime, "101010.000000".into());
    attributes.insert(Attribute::AccessionNumber, format!("ACC{study}"));
    attributes.insert(Attribute::StudyDescription, "Synthetic study".into());
    attributes.insert(Attribute::Modality, ["CT", "MR", "CR", "US"][series as usize % 4].into());
    attributes.insert(Attribute::SeriesNumber, (series % 4 + 1).to_string());
    attributes.insert(Attribute::InstanceNumber, (n % 25 + 1).to_string());
    attributes.insert(Attribute::Rows, "512".into());
    attributes.insert(Attribute::Columns, "512".into());
    let record = InstanceRecord {
        sop_instance_uid: uid(3, n),
        sop_class_uid: uid(9, 2),
        series_instance_uid: uid(2, series),
        study_instance_uid: uid(1, study),
        transfer_syntax_uid: uid(9, 1),
        attributes,
        pixel: PixelLayout::Native { offset: 1024, length: 512 * 512 * 2 },
        frame_size: Some(512 * 512 * 2),
        size: 512 * 512 * 2 + 1024,
        checksum: format!("{n:064x}"),
        blob: BlobKey::for_id(u128::from(n)),
        original: None,
    };
    let mut record = record;
    for (a, v) in [
        (Attribute::SopInstanceUid, record.sop_instance_uid.to_string()),
        (Attribute::SopClassUid, record.sop_class_uid.to_string()),
        (Attribute::SeriesInstanceUid, record.series_instance_uid.to_string()),
        (Attribute::StudyInstanceUid, record.study_instance_uid.to_string()),
        (Attribute::TransferSyntaxUid, record.transfer_syntax_uid.to_string()),
    ] {
        record.attributes.insert(a, v);
    }
    record
}

#[cfg(test)]
mod tests {
    use super::*;
    use pacs_core::extract;
    use pacs_core::scan::{ScanLimits, scan};

    #[test]
    fn generated_objects_scan_and_extract() {
        let spec = InstanceSpec { patient: 1, study: 2, series: 3, instance: 4, size: 64, frames: 3, modality: "MR" };
        let mut bytes = Vec::new();
        let written = write_instance(&mut bytes, &spec).expect("write");
        assert_eq!(written, bytes.len() as u64);
        let scanned = scan(&mut &bytes[..], &extract::wanted, ScanLimits::default()).expect("scan");
        let stored = extract::Stored { blob: BlobKey::for_id(1), size: written, checksum: String::new() };
        let (record, warnings) = extract::extract(&scanned, stored).expect("extract");
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(record.sop_instance_uid.to_string(), spec.sop_uid());
        assert_eq!(record.get(Attribute::Modality), Some("MR"));
        let frames = record.frame_ranges().expect("frames");
        assert_eq!(frames.len(), 3);
        assert_eq!(frames[2][0].0 + frames[2][0].1, written);
    }
}
