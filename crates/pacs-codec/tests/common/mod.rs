//! What the codec tests share: pydicom's test files, our conversion and decoding, DCMTK's and
//! pydicom's decoding as references, and synthetic objects.
//!
//! DCMTK, and Python 3 with pydicom, numpy and pylibjpeg (with its libjpeg and openjpeg
//! plugins), are required: `scripts/test.sh` installs them. Missing tools fail the tests, they
//! never skip them.

#![allow(dead_code, missing_docs, clippy::unwrap_used)]

/// `n` pseudo-random values of `bits` bits, the same for the same seed.
pub use pacs_testkit::noise;
use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::process::Command;

use dicom_core::value::PixelFragmentSequence;
use dicom_core::{DataElement, Length, PrimitiveValue, VR};
use dicom_dictionary_std::tags;
use dicom_object::file::ReadPreamble;
use dicom_object::meta::FileMetaTableBuilder;
use dicom_object::{DefaultDicomObject, InMemDicomObject, OpenFileOptions};
use dicom_pixeldata::PixelDecoder;
use pacs_codec::syntax::EXPLICIT_VR_LITTLE_ENDIAN;
use pacs_codec::{TranscodeOptions, transcode, transcode_with};

/// pydicom's folder of test files.
pub fn test_files() -> PathBuf {
    let out = Command::new("python3").args(["-c", "import pydicom.data, os; print(os.path.dirname(pydicom.data.__file__))"]).output().expect("python3 runs");
    assert!(out.status.success(), "pydicom is installed: {}", String::from_utf8_lossy(&out.stderr));
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()).join("test_files")
}

/// One of pydicom's test files, read.
pub fn pydicom_file(name: &str) -> Vec<u8> {
    std::fs::read(test_files().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

pub fn open(bytes: &[u8]) -> DefaultDicomObject {
    OpenFileOptions::new().read_preamble(ReadPreamble::Auto).from_reader(Cursor::new(bytes)).expect("readable object")
}

pub fn convert(source: &[u8], target: &str) -> pacs_codec::Result<Vec<u8>> {
    let mut out = Vec::new();
    transcode(&mut Cursor::new(source), target, &mut out)?;
    Ok(out)
}

pub fn convert_with(source: &[u8], target: &str, quality: Option<u8>) -> pacs_codec::Result<Vec<u8>> {
    let mut out = Vec::new();
    let options = TranscodeOptions { quality, ..TranscodeOptions::default() };
    transcode_with(&mut Cursor::new(source), target, &options, &mut out)?;
    Ok(out)
}

/// The transfer syntax and the pixel data (interleaved, little endian) of a Part 10 object,
/// converted to Explicit VR Little Endian by us, then read by dicom-rs.
pub fn decode(bytes: &[u8]) -> (String, Vec<u8>) {
    let ts = open(bytes).meta().transfer_syntax().trim_end_matches('\0').to_owned();
    let native = convert(bytes, EXPLICIT_VR_LITTLE_ENDIAN).unwrap_or_else(|e| panic!("decodable pixel data in {ts}: {e}"));
    let object = open(&native);
    let pixels = object.decode_pixel_data().unwrap_or_else(|e| panic!("decodable pixel data in {ts}: {e}"));
    (ts, pixels.data().to_vec())
}

/// An attribute of a Part 10 object, as text.
pub fn text(bytes: &[u8], tag: dicom_core::Tag) -> String {
    open(bytes).element(tag).unwrap_or_else(|_| panic!("{tag} present")).to_str().expect("text").trim_end_matches('\0').trim().to_owned()
}

/// An attribute of a Part 10 object, as a number.
pub fn number(bytes: &[u8], tag: dicom_core::Tag) -> i64 {
    open(bytes).element(tag).unwrap_or_else(|_| panic!("{tag} present")).to_int().expect("a number")
}

/// pydicom's decoded pixels of a file (`pixel_array`, so signed samples are sign-extended), as
/// little-endian bytes, with numpy's name of their type.
pub fn pydicom_pixels(path: &Path) -> (String, Vec<u8>) {
    let script = "import sys, pydicom\nds = pydicom.dcmread(sys.argv[1])\na = ds.pixel_array\nprint(a.dtype.str, file=sys.stderr)\nsys.stdout.buffer.write(a.astype(a.dtype.newbyteorder('<')).tobytes())";
    let out = Command::new("python3").arg("-c").arg(script).arg(path).output().expect("python3 runs");
    assert!(out.status.success(), "pydicom decodes {}: {}", path.display(), String::from_utf8_lossy(&out.stderr));
    (String::from_utf8_lossy(&out.stderr).trim().lines().last().unwrap_or_default().to_owned(), out.stdout)
}

/// DCMTK's decoding of a compressed file: `tool` (dcmdjpeg, dcmdjpls, dcmdrle) to Explicit VR
/// Little Endian, then its raw pixels.
pub fn dcmtk_pixels(tool: &str, path: &Path) -> Vec<u8> {
    let plain = path.with_extension(format!("{tool}.dcm"));
    let out =
        Command::new(format!("/usr/bin/{tool}")).arg(path).arg(&plain).output().unwrap_or_else(|e| panic!("{tool} runs ({e}): scripts/test.sh installs DCMTK"));
    assert!(out.status.success(), "{tool} {}: {}", path.display(), String::from_utf8_lossy(&out.stderr));
    let (ts, pixels) = decode(&std::fs::read(&plain).unwrap());
    assert_eq!(ts, EXPLICIT_VR_LITTLE_ENDIAN);
    pixels
}

/// The fragments of the encapsulated Pixel Data of a Part 10 object.
pub fn fragments(bytes: &[u8]) -> Vec<Vec<u8>> {
    let object = open(bytes);
    object.element(tags::PIXEL_DATA).unwrap().value().fragments().expect("encapsulated").to_vec()
}

/// The first fragment of the encapsulated Pixel Data of a Part 10 object.
pub fn first_fragment(bytes: &[u8]) -> Vec<u8> {
    fragments(bytes).into_iter().next().expect("a fragment")
}

/// The object `bytes` with its encapsulated Pixel Data replaced by `fragments`, with `offsets` as
/// the Basic Offset Table.
pub fn with_fragments(bytes: &[u8], offsets: Vec<u32>, fragments: Vec<Vec<u8>>) -> Vec<u8> {
    let mut object = open(bytes);
    object.put(DataElement::new_with_len(tags::PIXEL_DATA, VR::OB, Length::UNDEFINED, PixelFragmentSequence::new(offsets, fragments)));
    let mut out = Vec::new();
    object.write_all(&mut out).unwrap();
    out
}

/// The object `bytes` with every fragment cut into three (the cuts at even offsets), with a Basic
/// Offset Table of the new fragments when `table`, without one otherwise.
pub fn split_fragments(bytes: &[u8], table: bool) -> Vec<u8> {
    let (mut pieces, mut offsets, mut offset) = (Vec::new(), Vec::new(), 0u32);
    for fragment in fragments(bytes) {
        offsets.push(offset);
        let third = (fragment.len() / 3) & !1;
        for piece in [&fragment[..third], &fragment[third..2 * third], &fragment[2 * third..]] {
            offset += 8 + piece.len() as u32;
            pieces.push(piece.to_vec());
        }
    }
    with_fragments(bytes, if table { offsets } else { Vec::new() }, pieces)
}

/// Samples as little-endian unsigned 16-bit values.
pub fn words(bytes: &[u8]) -> Vec<u16> {
    bytes.chunks_exact(2).map(|s| u16::from_le_bytes([s[0], s[1]])).collect()
}

/// The largest and the mean absolute difference of two sample sequences.
pub fn errors(a: &[i64], b: &[i64]) -> (i64, f64) {
    assert_eq!(a.len(), b.len(), "sample counts");
    let max = a.iter().zip(b).map(|(x, y)| (x - y).abs()).max().unwrap_or(0);
    let mean = a.iter().zip(b).map(|(x, y)| (x - y).abs() as f64).sum::<f64>() / a.len().max(1) as f64;
    (max, mean)
}

/// A Part 10 object in Explicit VR Little Endian with these pixels.
#[derive(Clone, Debug)]
pub struct Synthetic {
    pub rows: u16,
    pub columns: u16,
    pub samples_per_pixel: u16,
    pub bits_allocated: u16,
    pub bits_stored: u16,
    pub signed: bool,
    pub frames: u16,
    /// Samples, interleaved; written as bytes or little-endian words after Bits Allocated.
    pub samples: Vec<u32>,
}

impl Synthetic {
    pub fn mono(rows: u16, columns: u16, bits_allocated: u16, bits_stored: u16, samples: Vec<u32>) -> Self {
        Synthetic { rows, columns, samples_per_pixel: 1, bits_allocated, bits_stored, signed: false, frames: 1, samples }
    }

    pub fn bytes(&self) -> Vec<u8> {
        let pixels: Vec<u8> = match self.bits_allocated {
            8 => self.samples.iter().map(|&s| s as u8).collect(),
            16 => self.samples.iter().flat_map(|&s| (s as u16).to_le_bytes()).collect(),
            _ => self.samples.iter().flat_map(|&s| s.to_le_bytes()).collect(),
        };
        let mut pixels = pixels;
        if pixels.len() % 2 == 1 {
            pixels.push(0);
        }
        let photometric = if self.samples_per_pixel == 3 { "RGB" } else { "MONOCHROME2" };
        let mut object = InMemDicomObject::new_empty();
        object.put(DataElement::new(tags::SOP_CLASS_UID, VR::UI, "1.2.840.10008.5.1.4.1.1.7"));
        object.put(DataElement::new(tags::SOP_INSTANCE_UID, VR::UI, "2.25.1234"));
        object.put(DataElement::new(tags::SAMPLES_PER_PIXEL, VR::US, PrimitiveValue::from(self.samples_per_pixel)));
        object.put(DataElement::new(tags::PHOTOMETRIC_INTERPRETATION, VR::CS, photometric));
        if self.samples_per_pixel > 1 {
            object.put(DataElement::new(tags::PLANAR_CONFIGURATION, VR::US, PrimitiveValue::from(0u16)));
        }
        if self.frames > 1 {
            object.put(DataElement::new(tags::NUMBER_OF_FRAMES, VR::IS, self.frames.to_string()));
        }
        object.put(DataElement::new(tags::ROWS, VR::US, PrimitiveValue::from(self.rows)));
        object.put(DataElement::new(tags::COLUMNS, VR::US, PrimitiveValue::from(self.columns)));
        object.put(DataElement::new(tags::BITS_ALLOCATED, VR::US, PrimitiveValue::from(self.bits_allocated)));
        object.put(DataElement::new(tags::BITS_STORED, VR::US, PrimitiveValue::from(self.bits_stored)));
        object.put(DataElement::new(tags::HIGH_BIT, VR::US, PrimitiveValue::from(self.bits_stored - 1)));
        object.put(DataElement::new(tags::PIXEL_REPRESENTATION, VR::US, PrimitiveValue::from(u16::from(self.signed))));
        let vr = if self.bits_allocated == 8 { VR::OB } else { VR::OW };
        object.put(DataElement::new(tags::PIXEL_DATA, vr, PrimitiveValue::from(pixels)));
        let meta = FileMetaTableBuilder::new()
            .transfer_syntax(EXPLICIT_VR_LITTLE_ENDIAN)
            .media_storage_sop_class_uid("1.2.840.10008.5.1.4.1.1.7")
            .media_storage_sop_instance_uid("2.25.1234");
        let mut out = Vec::new();
        object.with_meta(meta).unwrap().write_all(&mut out).unwrap();
        out
    }
}

/// A CT-like slice of `size` x `size` stored values (HU + 1024, 12 bits, unsigned): air, an
/// elliptic body of soft tissue with two lungs, a spine and a rib ring, and noise; `slice` moves
/// the anatomy a little from one frame to the next.
pub fn ct_phantom(size: usize, slice: usize, seed: u64) -> Vec<u32> {
    let c = size as f64 / 2.0;
    let s = 1.0 + 0.08 * (slice as f64 / 9.0).sin();
    let noise = noise(size * size, 5, seed + slice as u64);
    let inside = |x: f64, y: f64, cx: f64, cy: f64, rx: f64, ry: f64| ((x - cx) / rx).powi(2) + ((y - cy) / ry).powi(2) <= 1.0;
    let size_f = size as f64;
    (0..size * size)
        .map(|i| {
            let (x, y) = ((i % size) as f64, (i / size) as f64);
            let body = inside(x, y, c, c, 0.42 * size_f * s, 0.33 * size_f * s);
            let mut hu = -1024.0;
            if body {
                hu = 40.0;
                if !inside(x, y, c, c, 0.40 * size_f * s, 0.31 * size_f * s) {
                    hu = 600.0;
                }
                for side in [-1.0, 1.0] {
                    if inside(x, y, c + side * 0.17 * size_f, c - 0.02 * size_f, 0.12 * size_f * s, 0.2 * size_f * s) {
                        hu = -850.0 + 30.0 * (x / 7.0).sin() * (y / 5.0).cos();
                    }
                }
                if inside(x, y, c, c + 0.22 * size_f, 0.05 * size_f, 0.05 * size_f) {
                    hu = 900.0;
                }
                hu += f64::from(noise[i]) - 16.0;
            }
            (hu + 1024.0).round().clamp(0.0, 4095.0) as u32
        })
        .collect()
}
