//! Our JPEG Lossless encoder (Process 14, selection value 1) against three decoders: dicom-rs
//! (our own conversion back to Explicit VR Little Endian), DCMTK's `dcmdjpeg` and pydicom with
//! pylibjpeg-libjpeg. On pydicom's bundled test files and on synthetic frames: all zeros,
//! full-range noise, 1x1, odd widths, 12 bits stored in 16 (unsigned and sign-extended signed),
//! colour and several frames.
//!
//! DCMTK, and Python 3 with pydicom, numpy and pylibjpeg-libjpeg, are required: `scripts/test.sh`
//! installs them. Missing tools fail the tests, they never skip them.

#![allow(missing_docs, clippy::unwrap_used)]

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::process::Command;

use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::tags;
use dicom_object::file::ReadPreamble;
use dicom_object::meta::FileMetaTableBuilder;
use dicom_object::{InMemDicomObject, OpenFileOptions};
use dicom_pixeldata::PixelDecoder;
use pacs_codec::syntax::*;
use pacs_codec::{Error, transcode};

fn test_files() -> PathBuf {
    let out = Command::new("python3").args(["-c", "import pydicom.data, os; print(os.path.dirname(pydicom.data.__file__))"]).output().expect("python3 runs");
    assert!(out.status.success(), "pydicom is installed: {}", String::from_utf8_lossy(&out.stderr));
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()).join("test_files")
}

fn convert(source: &[u8], target: &str) -> pacs_codec::Result<Vec<u8>> {
    let mut out = Vec::new();
    transcode(&mut Cursor::new(source), target, &mut out)?;
    Ok(out)
}

fn open(bytes: &[u8]) -> dicom_object::DefaultDicomObject {
    OpenFileOptions::new().read_preamble(ReadPreamble::Auto).from_reader(Cursor::new(bytes)).expect("readable object")
}

/// The transfer syntax and the pixel data (interleaved, little endian) of a Part 10 object,
/// converted to Explicit VR Little Endian by us, then read by dicom-rs.
fn decode(bytes: &[u8]) -> (String, Vec<u8>) {
    let ts = open(bytes).meta().transfer_syntax().trim_end_matches('\0').to_owned();
    let native = convert(bytes, EXPLICIT_VR_LITTLE_ENDIAN).unwrap_or_else(|e| panic!("decodable pixel data in {ts}: {e}"));
    let object = open(&native);
    let pixels = object.decode_pixel_data().unwrap_or_else(|e| panic!("decodable pixel data in {ts}: {e}"));
    (ts, pixels.data().to_vec())
}

/// pydicom's decoded pixels of a file (`pixel_array`, so signed samples are sign-extended), as
/// little-endian bytes, after its dtype.
fn pydicom_pixels(path: &Path) -> (String, Vec<u8>) {
    let script = "import sys, pydicom\nds = pydicom.dcmread(sys.argv[1])\na = ds.pixel_array\nprint(a.dtype.str, file=sys.stderr)\nsys.stdout.buffer.write(a.astype(a.dtype.newbyteorder('<')).tobytes())";
    let out = Command::new("python3").arg("-c").arg(script).arg(path).output().expect("python3 runs");
    assert!(out.status.success(), "pydicom decodes {}: {}", path.display(), String::from_utf8_lossy(&out.stderr));
    (String::from_utf8_lossy(&out.stderr).trim().to_owned(), out.stdout)
}

/// DCMTK's decoding of a JPEG file: `dcmdjpeg` to Explicit VR Little Endian, then its raw pixels.
fn dcmtk_pixels(path: &Path) -> Vec<u8> {
    let plain = path.with_extension("dcmdjpeg.dcm");
    let out = Command::new("/usr/bin/dcmdjpeg").arg(path).arg(&plain).output().expect("dcmdjpeg runs: scripts/test.sh installs DCMTK");
    assert!(out.status.success(), "dcmdjpeg {}: {}", path.display(), String::from_utf8_lossy(&out.stderr));
    let (ts, pixels) = decode(&std::fs::read(&plain).unwrap());
    assert_eq!(ts, EXPLICIT_VR_LITTLE_ENDIAN);
    pixels
}

/// The first fragment of the encapsulated Pixel Data of a Part 10 object.
fn first_fragment(bytes: &[u8]) -> Vec<u8> {
    let object = open(bytes);
    object.element(tags::PIXEL_DATA).unwrap().value().fragments().and_then(|f| f.first().cloned()).expect("a fragment")
}

/// The SOF3 precision and component count, and SOS Ss, Se and Ah/Al, of a JPEG stream.
fn header(stream: &[u8]) -> (u8, u8, [u8; 3]) {
    assert_eq!(&stream[..2], &[0xFF, 0xD8], "SOI");
    let sof = stream.windows(2).position(|w| w == [0xFF, 0xC3]).expect("SOF3");
    let sos = stream.windows(2).position(|w| w == [0xFF, 0xDA]).expect("SOS");
    let ls = usize::from(u16::from_be_bytes([stream[sos + 2], stream[sos + 3]]));
    let end = sos + 2 + ls;
    (stream[sof + 4], stream[sof + 9], [stream[end - 3], stream[end - 2], stream[end - 1]])
}

/// Writes `bytes` as JPEG Lossless in `target`, and checks that dicom-rs, DCMTK and pydicom all
/// decode it to the pixels of the source; then that decoding it and encoding it again gives the
/// same pixels once more. Returns the converted object.
fn check(name: &str, source: &[u8], target: &str, dir: &Path) -> Vec<u8> {
    let (_, expected) = decode(source);
    let converted = convert(source, target).unwrap_or_else(|e| panic!("{name} to {target}: {e}"));
    let (ts, ours) = decode(&converted);
    assert_eq!(ts, target, "{name}");
    assert!(ours == expected, "{name} as {target}: dicom-rs decodes other pixels");
    let written = dir.join(format!("{name}.{target}.dcm"));
    std::fs::write(&written, &converted).unwrap();
    assert!(dcmtk_pixels(&written) == expected, "{name} as {target}: DCMTK decodes other pixels");
    let original = dir.join(format!("{name}.source.dcm"));
    std::fs::write(&original, source).unwrap();
    assert_eq!(pydicom_pixels(&written), pydicom_pixels(&original), "{name} as {target}: pydicom decodes other pixels");
    // Decode, encode again, decode: the same pixels.
    let native = convert(&converted, EXPLICIT_VR_LITTLE_ENDIAN).unwrap();
    let again = convert(&native, JPEG_LOSSLESS_SV1).unwrap();
    assert!(decode(&again).1 == expected, "{name}: the second round trip changed the pixels");
    converted
}

#[test]
fn pydicom_files_decode_alike_in_dicom_rs_dcmtk_and_pydicom() {
    let files = test_files();
    let tmp = tempfile::tempdir().unwrap();
    // 16-bit signed (CT, MR), decoded from RLE and JPEG-LS first, 12 bits stored in 16, 8-bit
    // monochrome (deflated) and PALETTE COLOR, RGB (3x3, from RLE, two
    // frames, 16 bits): the expected SOF3 precision and number of components.
    for (name, precision, components) in [
        ("CT_small.dcm", 16, 1),
        ("MR_small.dcm", 16, 1),
        ("MR_small_RLE.dcm", 16, 1),
        ("MR_small_jpeg_ls_lossless.dcm", 16, 1),
        ("examples_overlay.dcm", 12, 1),
        ("image_dfl.dcm", 8, 1),
        ("examples_palette.dcm", 8, 1),
        ("SC_rgb_small_odd.dcm", 8, 3),
        ("examples_rgb_color.dcm", 8, 3),
        ("SC_rgb_rle.dcm", 8, 3),
        ("SC_rgb_rle_2frame.dcm", 8, 3),
        ("SC_rgb_rle_16bit_2frame.dcm", 16, 3),
    ] {
        let source = std::fs::read(files.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        for target in [JPEG_LOSSLESS_SV1, JPEG_LOSSLESS] {
            let converted = check(name, &source, target, tmp.path());
            let (p, nf, scan) = header(&first_fragment(&converted));
            assert_eq!((p, nf), (precision, components), "{name}: SOF3 precision and components");
            assert_eq!(scan, [1, 0, 0], "{name}: predictor 1, Se 0, no point transform");
        }
    }
}

/// A Part 10 object in Explicit VR Little Endian with these pixels.
struct Synthetic {
    rows: u16,
    columns: u16,
    samples_per_pixel: u16,
    bits_allocated: u16,
    bits_stored: u16,
    signed: bool,
    frames: u16,
    /// Samples, interleaved; written as bytes or little-endian words after Bits Allocated.
    samples: Vec<u32>,
}

impl Synthetic {
    fn mono(rows: u16, columns: u16, bits_allocated: u16, bits_stored: u16, samples: Vec<u32>) -> Self {
        Synthetic { rows, columns, samples_per_pixel: 1, bits_allocated, bits_stored, signed: false, frames: 1, samples }
    }

    fn bytes(&self) -> Vec<u8> {
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

fn noise(n: usize, bits: u32, seed: u64) -> Vec<u32> {
    let mut x = seed;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 20) as u32 & ((1u64 << bits) - 1) as u32
        })
        .collect()
}

#[test]
fn synthetic_edge_cases_decode_alike() {
    let tmp = tempfile::tempdir().unwrap();
    // Sign-extended 12-bit samples in 16 bits: -2048 to 2047.
    let signed12: Vec<u32> = noise(31 * 17, 12, 9).into_iter().map(|s| (((s as i32) << 20 >> 20) as u16).into()).collect();
    let cases = [
        ("zeros16", Synthetic::mono(16, 16, 16, 16, vec![0; 256]), 16),
        ("zeros8", Synthetic::mono(9, 7, 8, 8, vec![0; 63]), 8),
        ("noise16", Synthetic::mono(33, 47, 16, 16, noise(33 * 47, 16, 1)), 16),
        ("extremes16", Synthetic::mono(8, 8, 16, 16, (0..64).map(|i| if (i + i / 8) % 2 == 0 { 0 } else { 0xFFFF }).collect()), 16),
        ("noise8", Synthetic::mono(21, 13, 8, 8, noise(21 * 13, 8, 2)), 8),
        ("one8", Synthetic::mono(1, 1, 8, 8, vec![200]), 8),
        ("one16", Synthetic::mono(1, 1, 16, 16, vec![0xFFFF]), 16),
        ("odd16", Synthetic::mono(3, 7, 16, 12, noise(21, 12, 3)), 12),
        ("twelve", Synthetic::mono(64, 63, 16, 12, noise(64 * 63, 12, 4)), 12),
        ("signed12", Synthetic { signed: true, ..Synthetic::mono(31, 17, 16, 12, signed12) }, 16),
        ("signed8", Synthetic { signed: true, ..Synthetic::mono(5, 5, 8, 8, noise(25, 8, 5)) }, 8),
        ("rgb_odd", Synthetic { samples_per_pixel: 3, ..Synthetic::mono(5, 3, 8, 8, noise(45, 8, 6)) }, 8),
        ("rgb_1x1", Synthetic { samples_per_pixel: 3, ..Synthetic::mono(1, 1, 8, 8, vec![255, 0, 255]) }, 8),
        ("frames16", Synthetic { frames: 3, ..Synthetic::mono(7, 5, 16, 16, noise(105, 16, 7)) }, 16),
    ];
    for (name, synthetic, precision) in cases {
        let converted = check(name, &synthetic.bytes(), JPEG_LOSSLESS_SV1, tmp.path());
        assert_eq!(header(&first_fragment(&converted)).0, precision, "{name}: SOF3 precision");
        let fragments = open(&converted).element(tags::PIXEL_DATA).unwrap().value().fragments().unwrap().len();
        assert_eq!(fragments, usize::from(synthetic.frames), "{name}: one fragment per frame");
    }
}

#[test]
fn what_cannot_be_coded_is_a_clear_error() {
    let files = test_files();
    for name in ["rtdose.dcm", "SC_rgb_rle_32bit_2frame.dcm"] {
        let source = std::fs::read(files.join(name)).unwrap();
        let result = convert(&source, JPEG_LOSSLESS_SV1);
        assert!(matches!(result, Err(Error::PixelData { ref reason, .. }) if reason.contains("not 32")), "{name}: {result:?}");
    }
    let bits32 = Synthetic::mono(2, 2, 32, 32, vec![1, 2, 3, 4]).bytes();
    assert!(matches!(convert(&bits32, JPEG_LOSSLESS), Err(Error::PixelData { .. })));
    let one_bit = Synthetic::mono(4, 4, 8, 1, vec![1; 16]).bytes();
    assert!(matches!(convert(&one_bit, JPEG_LOSSLESS_SV1), Err(Error::PixelData { .. })), "1 bit stored");
    // Pixel Data shorter than Rows x Columns says.
    let mut short = Synthetic::mono(8, 8, 16, 16, vec![7; 64]);
    short.rows = 64;
    let result = convert(&short.bytes(), JPEG_LOSSLESS_SV1);
    assert!(matches!(result, Err(Error::PixelData { .. })), "{result:?}");
}
