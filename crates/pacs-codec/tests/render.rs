//! Rendering against DCMTK: each of pydicom's test files, of several transfer syntaxes and
//! photometric interpretations, rendered by us and by `dcm2pnm` (native and RLE), `dcmj2pnm`
//! (JPEG, 8 and 12 bits) or `dcml2pnm` (JPEG-LS) with the same window and frame; the two PNGs
//! must agree within a grey level or two. DCMTK does not read JPEG 2000: that file is compared with pydicom's
//! decoding (pylibjpeg) windowed by the PS3.3 linear function.
//!
//!
//! The lookup tables and 1-bit pixels, which pydicom's test files lack, are rendered from
//! synthetic objects that `tests/render_luts.py` writes with pydicom (see it for each one):
//!
//! - the Modality LUT Sequence (16-bit entries, signed input, pixels past both ends) against
//!   `dcm2pnm --set-window`, within a grey level;
//! - the VOI LUT Sequence (8-bit entries packed and one to a word, 16-bit entries, a first value
//!   mapped below 0) against `dcm2pnm +Wl n`, exactly; with a window in the object as well, our
//!   default (the window) against `+Wi 1` and the LUT asked for against `+Wl 1`;
//! - SIGMOID against `dcm2pnm +Wi 1` (DCMTK 3.6.7 reads the VOI LUT Function and applies it to
//!   the object's window; it truncates where we round: within a grey level) and against the
//!   PS3.3 C.11.2.1.3.1 formula computed with numpy; LINEAR_EXACT, which DCMTK 3.6.7 ignores
//!   ("unknown value for 'VOILUTFunction'", it renders LINEAR), against the C.11.2.1.3.2 formula
//!   computed with numpy, within a grey level (numpy rounds halves to even);
//! - segmented palettes, which DCMTK 3.6.7 does not read ("segmented palettes not yet
//!   supported"): against pydicom's `apply_color_lut`, and against `dcm2pnm` rendering the same
//!   palette expanded by pydicom into ordinary Palette Color Lookup Table Data, within a level
//!   (the rounding of linear segments);
//! - 1-bit MONOCHROME2 and MONOCHROME1, one frame and three frames starting mid-byte, against
//!   `dcm2pnm +Wm` (without a VOI option it shows a 1 as 128) and pydicom's `pixel_array`,
//!   exactly.
//!
//! DCMTK, and Python 3 with pydicom, numpy and pylibjpeg, are required: `scripts/test.sh`
//! installs them. Missing tools fail the tests, they never skip them.

#![allow(missing_docs, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use dicom_core::value::DataSetSequence;
use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;
use pacs_codec::render::{self, Image, ImageFormat, RenderOptions, VoiChoice};

fn pydicom_test_file(name: &str) -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    let dir = DIR.get_or_init(|| {
        let out = Command::new("python3")
            .args(["-c", "import pydicom.data, os; print(os.path.dirname(pydicom.data.__file__))"])
            .output()
            .unwrap_or_else(|e| panic!("cannot run python3 ({e}): scripts/test.sh installs Python 3 and pydicom"));
        assert!(out.status.success(), "pydicom cannot be imported: scripts/test.sh installs it");
        PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()).join("test_files")
    });
    let path = dir.join(name);
    assert!(path.is_file(), "pydicom test file {} is missing", path.display());
    path
}

/// Decodes an 8-bit PNG (gray or RGB).
fn read_png(bytes: &[u8]) -> Image {
    let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    let mut reader = decoder.read_info().unwrap();
    let mut pixels = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut pixels).unwrap();
    assert_eq!(info.bit_depth, png::BitDepth::Eight, "an 8-bit PNG");
    let channels = match info.color_type {
        png::ColorType::Grayscale => 1,
        png::ColorType::Rgb => 3,
        other => panic!("unexpected PNG colour type {other:?}"),
    };
    pixels.truncate(info.buffer_size());
    Image { width: info.width, height: info.height, channels, pixels }
}

/// DCMTK's rendering of `path` as a PNG: `tool` (dcm2pnm, dcmj2pnm or dcml2pnm), with the window
/// and frame given.
fn dcmtk(tool: &str, path: &Path, window: Option<(f64, f64)>, frame: u32) -> Image {
    let window = window.map(|(center, width)| [center.to_string(), width.to_string()]);
    let mut args = vec!["--frame".to_owned(), frame.to_string()];
    if let Some([center, width]) = window {
        args.extend(["--set-window".to_owned(), center, width]);
    }
    dcmtk_with(tool, path, &args.iter().map(String::as_str).collect::<Vec<_>>())
}

/// DCMTK's rendering of `path` as a PNG by `tool`, with these options.
fn dcmtk_with(tool: &str, path: &Path, args: &[&str]) -> Image {
    let out = tempfile::Builder::new().suffix(".png").tempfile().unwrap();
    let mut command = Command::new(format!("/usr/bin/{tool}"));
    command.arg("--write-png").args(args);
    let output = command
        .arg(path)
        .arg(out.path())
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run /usr/bin/{tool} ({e}): scripts/test.sh installs DCMTK"));
    assert!(output.status.success(), "{tool} {}: {}", path.display(), String::from_utf8_lossy(&output.stderr));
    read_png(&std::fs::read(out.path()).unwrap())
}

/// Our rendering, through the PNG encoder and back.
fn ours(path: &Path, window: Option<(f64, f64)>, frame: u32) -> Image {
    ours_with(path, window, frame, VoiChoice::Auto)
}

/// Our rendering with a VOI choice, through the PNG encoder and back.
fn ours_with(path: &Path, window: Option<(f64, f64)>, frame: u32, voi: VoiChoice) -> Image {
    let options = RenderOptions { frame, window, ..RenderOptions::default() };
    let image = render::render_with(&mut std::fs::File::open(path).unwrap(), &options, voi).unwrap_or_else(|e| panic!("render {}: {e}", path.display()));
    read_png(&render::encode(&image, ImageFormat::Png, 90).unwrap())
}

/// Asserts that two images have the same shape and differ by at most `mean` on average and
/// `max` anywhere.
fn assert_close(name: &str, ours: &Image, theirs: &Image, mean: f64, max: u8) {
    assert_eq!((ours.width, ours.height, ours.channels), (theirs.width, theirs.height, theirs.channels), "{name}: shape");
    let diffs: Vec<u8> = ours.pixels.iter().zip(&theirs.pixels).map(|(a, b)| a.abs_diff(*b)).collect();
    let mean_diff = diffs.iter().map(|d| f64::from(*d)).sum::<f64>() / diffs.len() as f64;
    let max_diff = diffs.iter().copied().max().unwrap_or(0);
    assert!(mean_diff <= mean && max_diff <= max, "{name}: mean difference {mean_diff:.3} (at most {mean}), max {max_diff} (at most {max})");
    // Not a blank image on both sides.
    assert!(ours.pixels.iter().any(|p| *p != ours.pixels[0]), "{name}: a uniform image");
}

fn check(name: &str, tool: &str, window: Option<(f64, f64)>, frame: u32, mean: f64, max: u8) {
    let path = pydicom_test_file(name);
    assert_close(name, &ours(&path, window, frame), &dcmtk(tool, &path, window, frame), mean, max);
}

#[test]
fn grayscale_native_big_endian_and_rle_match_dcm2pnm() {
    check("CT_small.dcm", "dcm2pnm", Some((40.0, 400.0)), 1, 1.0, 2);
    check("CT_small.dcm", "dcm2pnm", Some((1000.0, 300.0)), 1, 1.0, 2);
    check("MR_small_bigendian.dcm", "dcm2pnm", Some((600.0, 1600.0)), 1, 1.0, 2);
    check("MR_small_RLE.dcm", "dcm2pnm", Some((600.0, 1600.0)), 1, 1.0, 2);
}

#[test]
fn jpeg_ls_matches_dcml2pnm() {
    check("MR_small_jpeg_ls_lossless.dcm", "dcml2pnm", Some((600.0, 1600.0)), 1, 1.0, 2);
}

#[test]
fn twelve_bit_jpeg_extended_matches_dcmj2pnm() {
    // 12-bit lossy JPEG, which dicom-rs's decoder refuses: decoded by libjpeg-turbo here and by
    // DCMTK's IJG code there, the same integer IDCT.
    check("JPEG-lossy.dcm", "dcmj2pnm", Some((132.0, 265.0)), 1, 0.5, 1);
    check("JPGExtended.dcm", "dcmj2pnm", Some((100.0, 200.0)), 1, 0.5, 1);
}

#[test]
fn monochrome1_is_inverted_like_dcm2pnm() {
    // pydicom bundles no MONOCHROME1 file: CT_small relabelled.
    let object = dicom_object::open_file(pydicom_test_file("CT_small.dcm")).unwrap();
    let mut object = object;
    object.put(dicom_core::DataElement::new(dicom_dictionary_std::tags::PHOTOMETRIC_INTERPRETATION, dicom_core::VR::CS, "MONOCHROME1"));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mono1.dcm");
    object.write_to_file(&path).unwrap();
    let window = Some((40.0, 400.0));
    let (mono1, theirs) = (ours(&path, window, 1), dcmtk("dcm2pnm", &path, window, 1));
    assert_close("MONOCHROME1", &mono1, &theirs, 1.0, 2);
    let mono2 = ours(&pydicom_test_file("CT_small.dcm"), window, 1);
    assert!(mono1.pixels.iter().zip(&mono2.pixels).all(|(a, b)| *a == 255 - *b), "MONOCHROME1 is MONOCHROME2 inverted");
}

#[test]
fn colour_rgb_ybr_and_palette_match_dcmtk() {
    check("SC_rgb_rle.dcm", "dcm2pnm", None, 1, 0.0, 0);
    check("SC_rgb_rle_2frame.dcm", "dcm2pnm", None, 2, 0.0, 0);
    check("SC_rgb_rle_16bit.dcm", "dcm2pnm", None, 1, 1.0, 1);
    check("SC_rgb_small_odd.dcm", "dcm2pnm", None, 1, 0.0, 0);
    check("SC_rgb_small_odd_big_endian.dcm", "dcm2pnm", None, 1, 0.0, 0);
    check("SC_ybr_full_422_uncompressed.dcm", "dcm2pnm", None, 1, 1.0, 2);
    check("examples_palette.dcm", "dcm2pnm", None, 1, 1.0, 1);
    // JPEG: libjpeg-turbo and DCMTK's IJG code share the IDCT and the chroma upsampling.
    check("SC_rgb_jpeg_dcmtk.dcm", "dcmj2pnm", None, 1, 0.0, 0);
    check("SC_rgb_dcmtk_+eb+cr.dcm", "dcmj2pnm", None, 1, 0.0, 0);
    check("examples_ybr_color.dcm", "dcmj2pnm", None, 5, 0.0, 0);
}

#[test]
fn jpeg_2000_matches_pydicom() {
    // DCMTK does not read JPEG 2000: pydicom (with pylibjpeg) decodes, numpy windows.
    let path = pydicom_test_file("JPEG2000.dcm");
    let script = "import sys, numpy, pydicom\n\
ds = pydicom.dcmread(sys.argv[1])\n\
a = ds.pixel_array.astype(numpy.float64) * float(ds.get('RescaleSlope', 1)) + float(ds.get('RescaleIntercept', 0))\n\
c, w = float(sys.argv[2]), float(sys.argv[3])\n\
lo, hi = c - 0.5 - (w - 1) / 2, c - 0.5 + (w - 1) / 2\n\
o = numpy.where(a <= lo, 0.0, numpy.where(a > hi, 255.0, ((a - (c - 0.5)) / (w - 1) + 0.5) * 255))\n\
sys.stdout.buffer.write(numpy.clip(numpy.round(o), 0, 255).astype(numpy.uint8).tobytes())\n";
    let pixels = pacs_testkit::python3(&["-c".as_ref(), script.as_ref(), path.as_os_str(), "1000".as_ref(), "2000".as_ref()], "pydicom, numpy and pylibjpeg");
    let image = ours(&path, Some((1000.0, 2000.0)), 1);
    let theirs = Image { width: image.width, height: image.height, channels: 1, pixels };
    assert_close("JPEG2000.dcm", &image, &theirs, 0.0, 0);
}

#[test]
fn frames_viewports_and_errors() {
    let path = pydicom_test_file("examples_ybr_color.dcm");
    let options = RenderOptions { frame: 30, viewport: Some((64, 64)), ..RenderOptions::default() };
    let image = render::render(&mut std::fs::File::open(&path).unwrap(), &options).unwrap();
    assert_eq!((image.width, image.height, image.channels), (64, 48, 3), "320x240 fits 64x64 as 64x48");
    let options = RenderOptions { frame: 31, ..RenderOptions::default() };
    let error = render::render(&mut std::fs::File::open(&path).unwrap(), &options).unwrap_err();
    assert!(error.to_string().contains("frame 31"), "{error}");
    let error = render::render(&mut &b"not DICOM"[..], &RenderOptions::default()).unwrap_err();
    assert!(matches!(error, pacs_codec::Error::Invalid { .. }), "{error}");
    // The object's own window when none is given: MR_small_RLE has 600/1600.
    let rle = pydicom_test_file("MR_small_RLE.dcm");
    assert_eq!(ours(&rle, None, 1), ours(&rle, Some((600.0, 1600.0)), 1));
    // JPEG output decodes to the same size.
    let image = render::render(&mut std::fs::File::open(&rle).unwrap(), &RenderOptions::default()).unwrap();
    let jpeg = render::encode(&image, ImageFormat::Jpeg, 90).unwrap();
    assert_eq!(&jpeg[..2], &[0xFF, 0xD8]);
}

/// The folder of the synthetic objects and references `tests/render_luts.py` writes (once).
fn fixtures() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/render_luts.py");
        pacs_testkit::python3(&[script.as_os_str(), dir.path().as_os_str()], "pydicom and numpy");
        dir
    })
    .path()
}

fn fixture(name: &str) -> PathBuf {
    fixtures().join(name)
}

/// A reference image `tests/render_luts.py` computed: `name.raw`, 8-bit samples, rows of `width`.
fn reference(name: &str, width: u32, channels: u8) -> Image {
    let pixels = std::fs::read(fixture(&format!("{name}.raw"))).unwrap();
    let height = (pixels.len() / (width as usize * usize::from(channels))) as u32;
    Image { width, height, channels, pixels }
}

#[test]
fn modality_lut_sequence_matches_dcm2pnm() {
    // Signed stored values -2560 to 2558 through a 4096-entry LUT from -2048: both ends clamp.
    let path = fixture("mlut_signed.dcm");
    for window in [(32768.0, 65536.0), (20000.0, 30000.0), (60000.0, 9000.0)] {
        assert_close(&format!("Modality LUT, window {window:?}"), &ours(&path, Some(window), 1), &dcmtk("dcm2pnm", &path, Some(window), 1), 0.5, 1);
    }
}

#[test]
fn voi_lut_sequence_matches_dcm2pnm() {
    // No window in the object: its first VOI LUT (16-bit entries, first value mapped -1024).
    let voi16 = fixture("voi16.dcm");
    assert_close("VOI LUT 16 bits", &ours(&voi16, None, 1), &dcmtk_with("dcm2pnm", &voi16, &["+Wl", "1"]), 0.0, 0);
    // 8-bit entries packed two to a word, 16-bit entries, 8-bit entries one to a word from 20.
    let voi8 = fixture("voi8.dcm");
    for n in 1..=3 {
        let theirs = dcmtk_with("dcm2pnm", &voi8, &["+Wl", &n.to_string()]);
        assert_close(&format!("VOI LUT {n} of voi8"), &ours_with(&voi8, None, 1, VoiChoice::Lut(n)), &theirs, 0.0, 0);
    }
    assert_eq!(ours(&voi8, None, 1), ours_with(&voi8, None, 1, VoiChoice::Lut(1)), "the first VOI LUT by default");
    // A window as well: the window by default, the LUT when asked for, a given window always.
    let both = fixture("voi_and_window.dcm");
    assert_close("window before VOI LUT", &ours(&both, None, 1), &dcmtk_with("dcm2pnm", &both, &["+Wi", "1"]), 1.0, 2);
    assert_close("VOI LUT asked for", &ours_with(&both, None, 1, VoiChoice::Lut(1)), &dcmtk_with("dcm2pnm", &both, &["+Wl", "1"]), 0.0, 0);
    let window = Some((300.0, 1500.0));
    assert_close("given window", &ours_with(&both, window, 1, VoiChoice::Lut(1)), &dcmtk("dcm2pnm", &both, window, 1), 1.0, 2);
}

#[test]
fn sigmoid_and_linear_exact_match_dcm2pnm_and_the_standard() {
    let sigmoid = fixture("sigmoid.dcm");
    let image = ours(&sigmoid, None, 1);
    assert_close("SIGMOID", &image, &dcmtk_with("dcm2pnm", &sigmoid, &["+Wi", "1"]), 0.6, 1);
    assert_close("SIGMOID, formula", &image, &reference("sigmoid", image.width, 1), 0.01, 1);
    // A window given is linear, whatever the object's function.
    let window = Some((100.0, 500.0));
    let theirs = dcmtk_with("dcm2pnm", &sigmoid, &["--set-window", "100", "500", "+Wfl"]);
    assert_close("SIGMOID object, given window", &ours(&sigmoid, window, 1), &theirs, 1.0, 2);
    let exact = fixture("linear_exact.dcm");
    let image = ours(&exact, None, 1);
    assert_close("LINEAR_EXACT, formula", &image, &reference("linear_exact", image.width, 1), 0.05, 1);
}

#[test]
fn segmented_palettes_match_pydicom_and_dcm2pnm() {
    for name in ["segmented8", "segmented16", "segmented8_indirect"] {
        let image = ours(&fixture(&format!("{name}.dcm")), None, 1);
        assert_close(&format!("{name}, pydicom"), &image, &reference(name, image.width, 3), 0.1, 1);
        let expanded = fixture(&format!("{name}_expanded.dcm"));
        assert_close(&format!("{name}, dcm2pnm of its expansion"), &image, &dcmtk("dcm2pnm", &expanded, None, 1), 0.1, 1);
        assert_close(&format!("{name}, its expansion"), &image, &ours(&expanded, None, 1), 0.1, 1);
    }
}

#[test]
fn one_bit_pixels_match_dcm2pnm_and_pydicom() {
    for (name, frames) in [("bits1_mono2", 1), ("bits1_mono1", 1), ("bits1_mono2_3f", 3), ("bits1_mono1_3f", 3)] {
        let path = fixture(&format!("{name}.dcm"));
        let all = std::fs::read(fixture(&format!("{name}.raw"))).unwrap();
        let invert = name.contains("mono1");
        let per_frame = all.len() / frames as usize;
        for frame in 1..=frames {
            let image = ours(&path, None, frame);
            // Without a VOI option dcm2pnm scales 0..2^bits to 0..256: a 1 comes out 128. With
            // its min-max window (the two values here) it shows 0 and 1 as black and white.
            let theirs = dcmtk_with("dcm2pnm", &path, &["--frame", &frame.to_string(), "+Wm"]);
            assert_close(&format!("{name} frame {frame}"), &image, &theirs, 0.0, 0);
            let bits = &all[per_frame * (frame as usize - 1)..per_frame * frame as usize];
            let expected: Vec<u8> = bits.iter().map(|b| if (*b == 1) != invert { 255 } else { 0 }).collect();
            assert_eq!(image.pixels, expected, "{name} frame {frame}: 0 black, 1 white (MONOCHROME2)");
        }
    }
}

/// `path` with its `sequence` (one item) replaced by an item holding `descriptor` and `data`.
fn with_lut(path: &Path, sequence: dicom_core::Tag, descriptor: Option<Vec<u16>>, data: Option<Vec<u8>>) -> PathBuf {
    let mut object = dicom_object::open_file(path).unwrap();
    let mut item = InMemDicomObject::new_empty();
    if let Some(descriptor) = descriptor {
        item.put(DataElement::new(tags::LUT_DESCRIPTOR, VR::US, PrimitiveValue::U16(descriptor.into())));
    }
    if let Some(data) = data {
        item.put(DataElement::new(tags::LUT_DATA, VR::OW, PrimitiveValue::U8(data.into())));
    }
    object.put(DataElement::new(sequence, VR::SQ, DataSetSequence::from(vec![item])));
    let out = fixtures().join(format!("malformed-lut-{}.dcm", NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)));
    object.write_to_file(&out).unwrap();
    out
}

/// The number of the next malformed object written.
static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Renders `path` and expects an [`pacs_codec::Error::Invalid`] whose message has `expected`.
fn assert_invalid(path: &Path, voi: VoiChoice, expected: &str) {
    let result = render::render_with(&mut std::fs::File::open(path).unwrap(), &RenderOptions::default(), voi);
    match result {
        Err(error @ pacs_codec::Error::Invalid { .. }) => assert!(error.to_string().contains(expected), "{}: {error} (expected {expected:?})", path.display()),
        Err(other) => panic!("{}: {other}: not Invalid", path.display()),
        Ok(_) => panic!("{}: rendered, expected an error ({expected})", path.display()),
    }
}

#[test]
fn malformed_luts_are_errors() {
    let (voi, modality) = (fixture("voi16.dcm"), fixture("mlut_signed.dcm"));
    let words = |n: usize| vec![0u8; n * 2];
    for (sequence, path, what) in
        [(tags::VOILUT_SEQUENCE, &voi, "item 1 of the VOI LUT Sequence"), (tags::MODALITY_LUT_SEQUENCE, &modality, "the Modality LUT Sequence")]
    {
        let cases = [
            (Some(vec![4096, 0, 16]), Some(words(4095)), "8190 bytes, 8192 expected"),
            (Some(vec![0, 0, 16]), Some(words(4096)), "8192 bytes, 131072 expected"),
            (Some(vec![4096, 0, 16]), Some(Vec::new()), "the LUT Data is empty"),
            (Some(vec![4096, 0, 16]), None, "no LUT Data"),
            (Some(vec![4096, 0]), Some(words(4096)), "2 values, 3 expected"),
            (Some(vec![4096, 0, 0]), Some(words(4096)), "0 bits per entry"),
            (Some(vec![4096, 0, 17]), Some(words(4096)), "17 bits per entry"),
            (None, Some(words(4096)), "no LUT Descriptor"),
        ];
        for (descriptor, data, expected) in cases {
            let bad = with_lut(path, sequence, descriptor, data);
            assert_invalid(&bad, VoiChoice::Auto, what);
            assert_invalid(&bad, VoiChoice::Auto, expected);
        }
    }
    // A VOI LUT that is not there.
    assert_invalid(&fixture("voi8.dcm"), VoiChoice::Lut(4), "VOI LUT 4 asked for; the object has 3");
    assert_invalid(&fixture("voi8.dcm"), VoiChoice::Lut(0), "VOI LUT 0 asked for");
    // Segmented palettes: a linear first segment, an unknown opcode, too few entries.
    for (i, (data, expected)) in
        [(vec![1u16, 4, 60], "linear but has no entry"), (vec![0, 2, 1, 2, 7, 1], "opcode 7"), (vec![0, 2, 1, 2], "expand to 2 entries")]
            .into_iter()
            .enumerate()
    {
        let mut object = dicom_object::open_file(fixture("segmented16.dcm")).unwrap();
        let bytes: Vec<u8> = data.iter().flat_map(|v| v.to_le_bytes()).collect();
        object.put(DataElement::new(tags::SEGMENTED_GREEN_PALETTE_COLOR_LOOKUP_TABLE_DATA, VR::OW, PrimitiveValue::U8(bytes.into())));
        let bad = fixtures().join(format!("malformed-segmented-{i}.dcm"));
        object.write_to_file(&bad).unwrap();
        assert_invalid(&bad, VoiChoice::Auto, "the Green Palette Color Lookup Table: segmented data");
        assert_invalid(&bad, VoiChoice::Auto, expected);
    }
    // 1-bit pixel data shorter than its frames.
    let mut object = dicom_object::open_file(fixture("bits1_mono2_3f.dcm")).unwrap();
    object.put(DataElement::new(tags::PIXEL_DATA, VR::OB, PrimitiveValue::U8(vec![0xAA; 12].into())));
    let bad = fixtures().join("malformed-bits1.dcm");
    object.write_to_file(&bad).unwrap();
    let options = RenderOptions { frame: 3, ..RenderOptions::default() };
    let error = render::render(&mut std::fs::File::open(&bad).unwrap(), &options).unwrap_err();
    assert!(error.to_string().contains("frame 3 ends at bit 105"), "{error}");
    assert!(render::render(&mut std::fs::File::open(&bad).unwrap(), &RenderOptions { frame: 2, ..options }).is_ok(), "frame 2 is whole");
}
