//! DICOMweb rendering and transcoding of compressed objects: `/rendered`, `/thumbnail` and
//! WADO-URI of an object stored compressed give the same image as a native copy of the same
//! pixels; WADO-RS honours the `transfer-syntax` parameter of `Accept`, and what it sends decodes
//! (with pydicom) to the stored pixels.
//!
//! Python 3 with pydicom, numpy and pylibjpeg, dicomweb-client, and curl are required:
//! `scripts/test.sh` installs them. Missing tools fail the tests, they never skip them.

#![allow(missing_docs, clippy::unwrap_used)]

mod common;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use pacs_codec::syntax::{EXPLICIT_VR_LITTLE_ENDIAN, JPEG_BASELINE, JPEG_LS_LOSSLESS, RLE_LOSSLESS};
use pacs_net::web::WebConfig;
use serde_json::Value;

use common::*;

/// pydicom's reading of `path`: its UIDs, transfer syntax and a hash of its decoded pixels.
fn pydicom(path: &Path) -> Value {
    let script = "import sys, json, hashlib, pydicom\n\
ds = pydicom.dcmread(sys.argv[1])\n\
a = ds.pixel_array\n\
print(json.dumps({'study': ds.StudyInstanceUID, 'series': ds.SeriesInstanceUID, 'sop': ds.SOPInstanceUID,\n\
 'ts': str(ds.file_meta.TransferSyntaxUID), 'shape': list(a.shape), 'pixels': hashlib.sha256(a.astype(a.dtype.newbyteorder('<')).tobytes()).hexdigest()}))\n";
    let output = pacs_testkit::python3(&["-c".as_ref(), script.as_ref(), path.as_os_str()], "pydicom, numpy and pylibjpeg");
    serde_json::from_slice(&output).unwrap_or_else(|e| panic!("pydicom's reading of {}: {e}", path.display()))
}

fn instance_path(info: &Value) -> String {
    format!("/studies/{}/series/{}/instances/{}", info["study"].as_str().unwrap(), info["series"].as_str().unwrap(), info["sop"].as_str().unwrap())
}

/// A native (Explicit VR Little Endian) copy of `path`, by pacs-codec.
fn native_copy(path: &Path, dir: &Path) -> PathBuf {
    let out = dir.join(format!("native-{}", path.file_name().unwrap().to_string_lossy()));
    let mut bytes = Vec::new();
    pacs_codec::transcode(&mut std::fs::File::open(path).unwrap(), EXPLICIT_VR_LITTLE_ENDIAN, &mut bytes).unwrap();
    std::fs::write(&out, bytes).unwrap();
    out
}

#[test]
fn compressed_objects_render_like_their_native_copy() {
    let scratch = tempfile::tempdir().unwrap();
    let names = ["MR_small_RLE.dcm", "MR_small_jpeg_ls_lossless.dcm", "JPEG2000.dcm", "SC_rgb_rle.dcm", "SC_rgb_rle_2frame.dcm", "MR_small_jp2klossless.dcm"];
    for name in names {
        let path = pydicom_test_file(name);
        let info = pydicom(&path);
        // pydicom's files share UIDs: a pair of archives for each.
        let (compressed, native) = (Web::start(WebConfig::default()), Web::start(WebConfig::default()));
        compressed.ingest(&path);
        native.ingest(&native_copy(&path, scratch.path()));
        let instance = instance_path(&info);
        let (study, series, sop) = (info["study"].as_str().unwrap(), info["series"].as_str().unwrap(), info["sop"].as_str().unwrap());
        let last_frame =
            if info["shape"].as_array().unwrap().len() == 4 || (info["shape"].as_array().unwrap().len() == 3 && name.contains("2frame")) { 2 } else { 1 };
        for (path, accept) in [
            (format!("{instance}/rendered"), "image/png"),
            (format!("{instance}/rendered?window=600,1600"), "image/png"),
            (format!("{instance}/rendered"), "image/jpeg"),
            (format!("{instance}/thumbnail?viewport=32,32"), "image/png"),
            (format!("{instance}/frames/{last_frame}/rendered"), "image/png"),
            (format!("/wado?requestType=WADO&studyUID={study}&seriesUID={series}&objectUID={sop}&contentType=image%2Fpng"), ""),
        ] {
            let args = ["-H", &format!("Accept: {accept}")];
            let args: &[&str] = if accept.is_empty() { &[] } else { &args };
            let (ours, reference) = (compressed.curl(&path, args), native.curl(&path, args));
            assert_eq!(ours.status, 200, "{name} {path}: {}", ours.text());
            assert_eq!(reference.status, 200, "{name} {path} (native copy): {}", reference.text());
            let media = if accept.is_empty() { "image/png" } else { accept };
            assert_eq!(ours.header("content-type").as_deref(), Some(media), "{name} {path}");
            assert!(ours.body == reference.body, "{name} {path}: the compressed object renders otherwise than its native copy");
            if path.contains("thumbnail") {
                let (w, h) = (u32::from_be_bytes(ours.body[16..20].try_into().unwrap()), u32::from_be_bytes(ours.body[20..24].try_into().unwrap()));
                assert!(w <= 32 && h <= 32 && (w == 32 || h == 32), "{name}: thumbnail {w}x{h} fits 32x32");
            }
        }
    }
}

#[test]
fn wado_rs_honours_the_transfer_syntax_parameter() {
    let web = Web::start(WebConfig::default());
    let scratch = tempfile::tempdir().unwrap();
    let ct = pydicom_test_file("CT_small.dcm");
    let rle = pydicom_test_file("MR_small_RLE.dcm");
    let j2k = pydicom_test_file("JPEG2000.dcm");
    for path in [&ct, &rle, &j2k] {
        web.ingest(path);
    }
    let retrieve = |original: &Path, accept: &str, expected_ts: &str| {
        let info = pydicom(original);
        let reply = web.curl(&instance_path(&info), &["-H", &format!("Accept: {accept}")]);
        assert_eq!(reply.status, 200, "{} as {accept}: {}", original.display(), reply.text());
        let parts = reply.parts();
        assert_eq!(parts.len(), 1);
        assert!(parts[0].0.contains(&format!("transfer-syntax={expected_ts}")), "{}: part headers {}", original.display(), parts[0].0);
        let got = scratch.path().join("got.dcm");
        std::fs::write(&got, &parts[0].1).unwrap();
        let got_info = pydicom(&got);
        assert_eq!(got_info["ts"], expected_ts, "{} as {accept}", original.display());
        assert_eq!((&got_info["shape"], &got_info["pixels"]), (&info["shape"], &info["pixels"]), "{} as {accept}: other pixels", original.display());
        parts[0].1.clone()
    };
    let dicom = |ts: &str| format!("multipart/related; type=\"application/dicom\"; transfer-syntax={ts}");
    // Compressed to native, native to compressed, compressed to compressed.
    retrieve(&rle, &dicom(EXPLICIT_VR_LITTLE_ENDIAN), EXPLICIT_VR_LITTLE_ENDIAN);
    retrieve(&j2k, &dicom(EXPLICIT_VR_LITTLE_ENDIAN), EXPLICIT_VR_LITTLE_ENDIAN);
    retrieve(&ct, &dicom(RLE_LOSSLESS), RLE_LOSSLESS);
    retrieve(&ct, &dicom(JPEG_LS_LOSSLESS), JPEG_LS_LOSSLESS);
    retrieve(&rle, &dicom(JPEG_LS_LOSSLESS), JPEG_LS_LOSSLESS);
    // No parameter: Explicit VR Little Endian (PS3.18); `*`: as stored, byte for byte.
    retrieve(&rle, "multipart/related; type=\"application/dicom\"", EXPLICIT_VR_LITTLE_ENDIAN);
    let stored = retrieve(&rle, &dicom("*"), RLE_LOSSLESS);
    assert_eq!(stored, std::fs::read(&rle).unwrap(), "transfer-syntax=* sends the stored bytes");
    // A second choice in the Accept header is taken when the first is impossible.
    retrieve(&ct, &format!("{}, {};q=0.5", dicom("1.2.3.4"), dicom(RLE_LOSSLESS)), RLE_LOSSLESS);

    // Impossible conversions: 406 with a message, never a corrupt object.
    let info = pydicom(&ct);
    for (ts, needle) in [(JPEG_BASELINE, "8-bit"), ("1.2.3.4", "1.2.3.4")] {
        let reply = web.curl(&instance_path(&info), &["-H", &format!("Accept: {}", dicom(ts))]);
        assert_eq!(reply.status, 406, "{ts}: {}", reply.text());
        assert!(reply.text().contains("transcoding") && reply.text().contains(needle), "{ts}: {}", reply.text());
    }
    // A whole study of mixed syntaxes, converted part by part.
    let study = info["study"].as_str().unwrap();
    let reply = web.curl(&format!("/studies/{study}"), &["-H", &format!("Accept: {}", dicom(EXPLICIT_VR_LITTLE_ENDIAN))]);
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert!(reply.parts().iter().all(|(h, _)| h.contains(EXPLICIT_VR_LITTLE_ENDIAN)));

    // WADO-URI: transferSyntax.
    let rle_info = pydicom(&rle);
    let uri = format!(
        "/wado?requestType=WADO&studyUID={}&seriesUID={}&objectUID={}&contentType=application%2Fdicom&transferSyntax={EXPLICIT_VR_LITTLE_ENDIAN}",
        rle_info["study"].as_str().unwrap(),
        rle_info["series"].as_str().unwrap(),
        rle_info["sop"].as_str().unwrap()
    );
    let reply = web.curl(&uri, &[]);
    assert_eq!(reply.status, 200, "{}", reply.text());
    let got = scratch.path().join("uri.dcm");
    std::fs::write(&got, &reply.body).unwrap();
    let got_info = pydicom(&got);
    assert_eq!((got_info["ts"].as_str(), &got_info["pixels"]), (Some(EXPLICIT_VR_LITTLE_ENDIAN), &rle_info["pixels"]));
    let reply = web.curl(&uri.replace(EXPLICIT_VR_LITTLE_ENDIAN, JPEG_BASELINE), &[]);
    assert_eq!(reply.status, 406, "{}", reply.text());
}

#[test]
fn dicomweb_client_retrieves_in_the_asked_transfer_syntax() {
    let web = Web::start(WebConfig::default());
    let rle = pydicom_test_file("MR_small_RLE.dcm");
    web.ingest(&rle);
    let info = pydicom(&rle);
    let script = r#"
import sys, json, hashlib, pydicom
from dicomweb_client.api import DICOMwebClient
c = DICOMwebClient(sys.argv[1])
out = {}
for ts in sys.argv[5:]:
    ds = c.retrieve_instance(sys.argv[2], sys.argv[3], sys.argv[4], media_types=(("application/dicom", ts),))
    a = ds.pixel_array
    out[ts] = [str(ds.file_meta.TransferSyntaxUID), hashlib.sha256(a.astype(a.dtype.newbyteorder("<")).tobytes()).hexdigest()]
print(json.dumps(out))
"#;
    let url = web.url();
    let args = ["-c", script, &url, info["study"].as_str().unwrap(), info["series"].as_str().unwrap(), info["sop"].as_str().unwrap()];
    let args: Vec<&OsStr> = args.iter().chain(&[EXPLICIT_VR_LITTLE_ENDIAN, JPEG_LS_LOSSLESS, "*"]).map(OsStr::new).collect();
    let got: Value = serde_json::from_slice(&pacs_testkit::python3(&args, "dicomweb-client")).unwrap();
    for (ts, expected) in [(EXPLICIT_VR_LITTLE_ENDIAN, EXPLICIT_VR_LITTLE_ENDIAN), (JPEG_LS_LOSSLESS, JPEG_LS_LOSSLESS), ("*", RLE_LOSSLESS)] {
        assert_eq!(got[ts][0], expected, "{got}");
        assert_eq!(got[ts][1], info["pixels"], "{ts}: other pixels");
    }
}

/// Native objects with lookup tables or a VOI LUT Function render as pacs-codec renders them:
/// the server's short path for native pixels must not skip what it does not apply.
#[test]
fn lookup_tables_of_native_objects_are_applied() {
    let scratch = tempfile::tempdir().unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../pacs-codec/tests/render_luts.py");
    pacs_testkit::python3(&[script.as_os_str(), scratch.path().as_os_str()], "pydicom and numpy");
    for name in ["mlut_signed.dcm", "voi16.dcm", "sigmoid.dcm", "bits1_mono1.dcm"] {
        let path = scratch.path().join(name);
        let info = pydicom(&path);
        let web = Web::start(WebConfig::default());
        web.ingest(&path);
        let reply = web.curl(&format!("{}/rendered", instance_path(&info)), &["-H", "Accept: image/png"]);
        assert_eq!(reply.status, 200, "{name}: {}", reply.text());
        let image = pacs_codec::render::render(&mut std::fs::File::open(&path).unwrap(), &pacs_codec::render::RenderOptions::default()).unwrap();
        let expected = pacs_codec::render::encode(&image, pacs_codec::render::ImageFormat::Png, 90).unwrap();
        assert!(reply.body == expected, "{name}: /rendered differs from pacs-codec's rendering of the file");
    }
}
