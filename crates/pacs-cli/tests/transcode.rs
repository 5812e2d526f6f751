//! `pacs transcode`, and transcoding on egress: a C-GET peer that accepts only Implicit VR Little
//! Endian receives compressed stored instances converted, with the same pixels. Large
//! multi-frame objects are converted frame by frame, in bounded memory.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a test failure with its location

mod common;

use std::path::Path;

use pacs_testkit::{element, monochrome16, padded};

use common::*;

/// pydicom's view of a file: transfer syntax, SOP Instance UID and a digest of the decoded pixels.
const DESCRIBE: &str = r#"
import sys, json, hashlib, pydicom
out = []
for path in sys.argv[1:]:
    ds = pydicom.dcmread(path)
    a = ds.pixel_array
    out.append({"ts": str(ds.file_meta.TransferSyntaxUID), "uid": str(ds.SOPInstanceUID), "shape": list(a.shape),
                "pixels": hashlib.sha256(a.astype(a.dtype.newbyteorder("<")).tobytes()).hexdigest()})
print(json.dumps(out))
"#;

fn describe_files(paths: &[&Path]) -> Vec<serde_json::Value> {
    python_inline(DESCRIBE, paths).as_array().expect("a list").clone()
}

#[test]
fn transcode_converts_and_refuses_the_impossible() {
    require_python();
    let pacs = Pacs::new();
    let source = pydicom_file("MR_small_jpeg_ls_lossless.dcm");
    let out = pacs.scratch("mr_rle.dcm");
    let run = pacs.run(&["transcode".as_ref(), source.as_os_str(), out.as_os_str(), "--transfer-syntax".as_ref(), "1.2.840.10008.1.2.5".as_ref()]);
    assert_eq!(exit_code(&run), 0, "{}", describe(&run));
    let both = describe_files(&[&source, &out]);
    assert_eq!(both[1]["ts"], "1.2.840.10008.1.2.5");
    assert_eq!(both[0]["pixels"], both[1]["pixels"]);
    assert_eq!(both[0]["uid"], both[1]["uid"]);

    // JPEG Extended, 12 bits (16 allocated, 12 stored): a new, lossy instance that pydicom reads.
    let twelve = pydicom_file("examples_overlay.dcm");
    let extended = pacs.scratch("extended.dcm");
    let run = pacs.run(&["transcode".as_ref(), twelve.as_os_str(), extended.as_os_str(), "-t".as_ref(), "1.2.840.10008.1.2.4.51".as_ref()]);
    assert_eq!(exit_code(&run), 0, "{}", describe(&run));
    let both = describe_files(&[&twelve, &extended]);
    assert_eq!(both[1]["ts"], "1.2.840.10008.1.2.4.51");
    assert_eq!(both[0]["shape"], both[1]["shape"]);
    assert_ne!(both[0]["uid"], both[1]["uid"], "a lossy conversion makes a new instance");

    // Signed samples beyond 12 bits do not fit in JPEG Extended: refused, nothing written.
    let refused = pacs.scratch("refused.dcm");
    let run = pacs.run(&["transcode".as_ref(), source.as_os_str(), refused.as_os_str(), "-t".as_ref(), "1.2.840.10008.1.2.4.51".as_ref()]);
    assert_error(&run, &["does not fit in the 12 bits of lossy JPEG"]);
    assert!(!refused.exists(), "no output after a refused conversion");

    // A syntax this build does not write (Explicit VR Big Endian, retired): refused up front.
    let run = pacs.run(&["transcode".as_ref(), source.as_os_str(), refused.as_os_str(), "-t".as_ref(), "1.2.840.10008.1.2.2".as_ref()]);
    assert_error(&run, &["cannot transcode", "1.2.840.10008.1.2.2", "cannot be encoded by this build"]);
    assert!(!refused.exists(), "no output after a refused conversion");
}

#[test]
fn get_into_implicit_only_peer_converts_compressed_instances() {
    require_python();
    let pacs = Pacs::new();
    let sources = [pydicom_file("MR_small_jp2klossless.dcm"), pydicom_file("SC_rgb_rle_2frame.dcm"), pydicom_file("rtdose_rle_1frame.dcm")];
    let (code, report) = pacs.import(&sources, &[]);
    assert_eq!(code, 0, "{report:#}");
    let server = Server::start(&pacs, &["--no-web"]);
    let expected = describe_files(&sources.iter().map(|p| p.as_path()).collect::<Vec<_>>());
    let received = pacs.scratch("got");
    std::fs::create_dir_all(&received).expect("mkdir");
    let received_text = received.to_string_lossy().to_string();
    for source in &expected {
        let uid = source["uid"].as_str().expect("uid");
        let key = format!("SOPInstanceUID={uid}");
        let out =
            server.dcmtk("getscu", &["-aet", "TESTSCU", "-aec", "PACS", "-P", "+xi", "-od", &received_text, "-k", "QueryRetrieveLevel=IMAGE", "-k", &key], &[]);
        let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "getscu failed: {said}");
    }
    let mut files: Vec<_> = std::fs::read_dir(&received).expect("listing").map(|e| e.expect("entry").path()).collect();
    files.sort();
    assert_eq!(files.len(), expected.len(), "one file per instance: {files:?}");
    let got = describe_files(&files.iter().map(|p| p.as_path()).collect::<Vec<_>>());
    for source in &expected {
        let arrived = got.iter().find(|g| g["uid"] == source["uid"]).unwrap_or_else(|| panic!("{} not received", source["uid"]));
        // getscu accepted Implicit VR Little Endian only (+xi) and writes files in Explicit VR
        // Little Endian: arriving at all means the instance was converted.
        assert!(arrived["ts"] == "1.2.840.10008.1.2.1" || arrived["ts"] == "1.2.840.10008.1.2", "{arrived}");
        assert_eq!(arrived["shape"], source["shape"]);
        assert_eq!(arrived["pixels"], source["pixels"], "pixels of {}", source["uid"]);
    }
}

#[test]
fn the_ingest_policy_of_pacs_toml_compresses_what_it_matches() {
    require_python();
    let pacs = Pacs::new();
    std::fs::create_dir_all(pacs.data_dir()).expect("mkdir");
    std::fs::write(pacs.data_dir().join("pacs.toml"), "[[ingest.compress]]\nmodality = \"CT\"\ntransfer_syntax = \"1.2.840.10008.1.2.4.80\"\n")
        .expect("write pacs.toml");
    let ct = pydicom_file("CT_small.dcm");
    let mr = pydicom_file("MR_small.dcm");
    let (code, report) = pacs.import(&[&ct, &mr], &[]);
    assert_eq!(code, 0, "{report}");
    let rows = pacs.json(&["query", "-l", "instance", "-k", "TransferSyntaxUID", "-k", "Modality", "--format", "json"]);
    let syntax_of = |modality: &str| {
        let row = rows.as_array().expect("rows").iter().find(|r| text(r, "Modality") == modality).unwrap_or_else(|| panic!("no {modality} in {rows}"));
        (text(row, "TransferSyntaxUID").to_owned(), text(row, "SOPInstanceUID").to_owned())
    };
    let (ct_syntax, ct_uid) = syntax_of("CT");
    let (mr_syntax, mr_uid) = syntax_of("MR");
    assert_eq!(ct_syntax, "1.2.840.10008.1.2.4.80", "the CT matches the rule");
    assert_eq!(mr_syntax, "1.2.840.10008.1.2.1", "the MR matches none and is kept as received");
    // The stored CT has the pixels of the original; the MR is the received bytes.
    let ct_out = pacs.scratch("ct.dcm");
    std::fs::write(&ct_out, pacs.export_instance(&ct_uid)).expect("write");
    let described = describe_files(&[&ct, &ct_out]);
    assert_eq!(described[0]["pixels"], described[1]["pixels"], "{described:?}");
    assert_eq!(described[1]["ts"], "1.2.840.10008.1.2.4.80");
    assert_eq!(pacs.export_instance(&mr_uid), std::fs::read(&mr).expect("read"));
    pacs.assert_verify_clean();

    // A lossy target without allow_lossy is refused before anything runs.
    std::fs::write(pacs.data_dir().join("pacs.toml"), "[[ingest.compress]]\nmodality = \"CT\"\ntransfer_syntax = \"1.2.840.10008.1.2.4.50\"\n")
        .expect("write pacs.toml");
    assert_error(&pacs.run(&["stats"]), &["allow_lossy"]);
}

/// Writes a native multi-frame object of `frames` frames of 512 × 512 16-bit samples (12 stored)
/// to `path` a frame at a time, without holding it in memory; returns the size of its pixel data.
fn write_large_native(path: &Path, frames: u32) -> u64 {
    use std::io::Write;
    let (rows, columns) = (512u16, 512u16);
    let ts = "1.2.840.10008.1.2.1";
    let (class, instance) = ("1.2.840.10008.5.1.4.1.1.7", "2.25.4242");
    let meta: Vec<u8> = [
        element(2, 1, b"OB", &[0, 1]),
        element(2, 2, b"UI", &padded(class, 0)),
        element(2, 3, b"UI", &padded(instance, 0)),
        element(2, 0x10, b"UI", &padded(ts, 0)),
        element(2, 0x12, b"UI", &padded("2.25.1", 0)),
    ]
    .concat();
    let frame_len = u64::from(rows) * u64::from(columns) * 2;
    let header: Vec<u8> = [
        vec![0u8; 128],
        b"DICM".to_vec(),
        element(2, 0, b"UL", &(meta.len() as u32).to_le_bytes()),
        meta,
        element(8, 0x16, b"UI", &padded(class, 0)),
        element(8, 0x18, b"UI", &padded(instance, 0)),
        monochrome16(rows, columns, frames, 12),
    ]
    .concat();
    let mut file = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    file.write_all(&header).unwrap();
    let pixel_len = frame_len * u64::from(frames);
    file.write_all(&element(0x7FE0, 0x10, b"OW", &[])[..8]).unwrap();
    file.write_all(&(pixel_len as u32).to_le_bytes()).unwrap();
    let mut frame = vec![0u8; frame_len as usize];
    for f in 0..frames {
        // A ramp, another per frame, with a block of noise-like values: not all runs.
        for (i, sample) in frame.chunks_exact_mut(2).enumerate() {
            let (x, y) = (i as u32 % u32::from(columns), i as u32 / u32::from(columns));
            let v = if x < 64 { (x * 7919 + y * 104_729 + f * 31) % 4096 } else { (x + y + f) % 4096 };
            sample.copy_from_slice(&(v as u16).to_le_bytes());
        }
        file.write_all(&frame).unwrap();
    }
    file.flush().unwrap();
    pixel_len
}

/// Runs `pacs transcode INPUT OUTPUT -t TS --json` under `/usr/bin/time`: the output and the
/// peak resident set size of `pacs`, in bytes.
fn transcode_measured(pacs: &Pacs, input: &Path, output: &Path, ts: &str) -> (std::process::Output, u64) {
    let mut command = std::process::Command::new("/usr/bin/time");
    command.arg("-f").arg("peak-rss-kb=%M").arg(PACS).arg("--data-dir").arg(pacs.data_dir());
    command.arg("transcode").arg(input).arg(output).arg("-t").arg(ts).arg("--json").stdin(std::process::Stdio::null());
    command.env_remove("RUST_LOG");
    let run = command.output().expect("/usr/bin/time runs pacs");
    let err = stderr(&run);
    let kb: u64 = err
        .lines()
        .find_map(|l| l.strip_prefix("peak-rss-kb="))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no peak RSS from /usr/bin/time:\n{}", describe(&run)));
    (run, kb * 1024)
}

/// The SHA-256 of the last `len` bytes of a file, read a piece at a time.
fn tail_digest(path: &Path, len: u64) -> Vec<u8> {
    use sha2::Digest;
    use std::io::{Read, Seek, SeekFrom};
    let mut file = std::fs::File::open(path).unwrap();
    let size = file.metadata().unwrap().len();
    file.seek(SeekFrom::Start(size - len)).unwrap();
    let mut hasher = sha2::Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buffer).unwrap();
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
    }
    hasher.finalize().to_vec()
}

/// The file offsets of the fragments of the encapsulated Pixel Data of a file (after the Basic
/// Offset Table), found by walking its items.
fn fragment_offsets(path: &Path) -> Vec<u64> {
    let bytes = std::fs::read(path).unwrap();
    let start = bytes.windows(12).position(|w| w == [0xE0, 0x7F, 0x10, 0x00, b'O', b'B', 0, 0, 0xFF, 0xFF, 0xFF, 0xFF]).expect("encapsulated Pixel Data");
    let mut at = start + 12;
    let mut offsets = Vec::new();
    let mut first = true;
    while bytes[at..at + 4] == [0xFE, 0xFF, 0x00, 0xE0] {
        let len = u32::from_le_bytes([bytes[at + 4], bytes[at + 5], bytes[at + 6], bytes[at + 7]]) as usize;
        if !first {
            offsets.push(at as u64 + 8);
        }
        first = false;
        at += 8 + len;
    }
    assert_eq!(bytes[at..at + 4], [0xFE, 0xFF, 0xDD, 0xE0], "a sequence delimiter after the items");
    offsets
}

#[test]
fn transcode_streams_large_multi_frame_objects_in_bounded_memory() {
    let pacs = Pacs::new();
    let native = pacs.scratch("large.dcm");
    let frames = 256;
    let pixel_len = write_large_native(&native, frames);
    assert_eq!(pixel_len, 128 * 1024 * 1024);

    // Native to RLE, then back: frame by frame, the memory a small part of the object.
    let rle = pacs.scratch("large_rle.dcm");
    let (run, peak) = transcode_measured(&pacs, &native, &rle, "1.2.840.10008.1.2.5");
    assert_eq!(exit_code(&run), 0, "{}", describe(&run));
    let report: serde_json::Value = serde_json::from_str(stdout(&run).trim()).unwrap();
    assert_eq!(report["streamed"], true, "{report}");
    assert_eq!(report["frames"], frames);
    eprintln!("native to RLE, {pixel_len} bytes of pixel data: peak RSS {peak} bytes");
    assert!(peak < pixel_len / 3, "peak RSS {peak} bytes for {pixel_len} bytes of pixel data");
    assert_eq!(fragment_offsets(&rle).len(), frames as usize, "one fragment per frame");

    let back = pacs.scratch("large_back.dcm");
    let (run, peak) = transcode_measured(&pacs, &rle, &back, "1.2.840.10008.1.2.1");
    assert_eq!(exit_code(&run), 0, "{}", describe(&run));
    eprintln!("RLE to native: peak RSS {peak} bytes");
    assert!(peak < pixel_len / 3, "peak RSS {peak} bytes for {pixel_len} bytes of pixel data");
    // The pixel data ends both files: the same bytes.
    assert_eq!(tail_digest(&back, pixel_len), tail_digest(&native, pixel_len), "the same pixels after RLE and back");
    std::fs::remove_file(&native).unwrap();
    std::fs::remove_file(&back).unwrap();

    // A corrupt frame in the middle: an error on one line, and no output file.
    use std::io::{Seek, SeekFrom, Write};
    let middle = fragment_offsets(&rle)[frames as usize / 2];
    let mut file = std::fs::OpenOptions::new().write(true).open(&rle).unwrap();
    file.seek(SeekFrom::Start(middle)).unwrap();
    file.write_all(&[0xAB; 64]).unwrap(); // The RLE header: 0xABABABAB segments.
    drop(file);
    let out = pacs.scratch("corrupt_out.dcm");
    let run = pacs.run(&["transcode".as_ref(), rle.as_os_str(), out.as_os_str(), "-t".as_ref(), "1.2.840.10008.1.2.1".as_ref()]);
    assert_error(&run, &[&format!("frame {}", frames / 2 + 1), "incomplete"]);
    assert!(!out.exists(), "no output file after a failed conversion");
    let left: Vec<_> = std::fs::read_dir(pacs.dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(left.len(), 1, "no temporary file left: {left:?}");
}

#[test]
fn lossy_transcode_streams_large_multi_frame_objects_in_bounded_memory() {
    require_python();
    let pacs = Pacs::new();
    let native = pacs.scratch("large.dcm");
    let frames = 256;
    let pixel_len = write_large_native(&native, frames);
    assert_eq!(pixel_len, 128 * 1024 * 1024);

    // Native to JPEG Extended (12 bits): frame by frame, the fragments waiting for the header (and
    // its compression ratio) in an unnamed temporary file beside the output.
    let jpeg = pacs.scratch("large_jpeg.dcm");
    let (run, peak) = transcode_measured(&pacs, &native, &jpeg, "1.2.840.10008.1.2.4.51");
    assert_eq!(exit_code(&run), 0, "{}", describe(&run));
    let report: serde_json::Value = serde_json::from_str(stdout(&run).trim()).unwrap();
    assert_eq!(report["streamed"], true, "{report}");
    assert_eq!(report["frames"], frames);
    assert_eq!(report["new_sop_instance_uid"]["old"], "2.25.4242", "{report}");
    eprintln!("native to JPEG Extended, {pixel_len} bytes of pixel data: peak RSS {peak} bytes");
    assert!(peak < pixel_len / 3, "peak RSS {peak} bytes for {pixel_len} bytes of pixel data");
    let left: Vec<_> = std::fs::read_dir(pacs.dir.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert_eq!(left.len(), 2, "no temporary file left: {left:?}");
    assert_eq!(fragment_offsets(&jpeg).len(), frames as usize, "one fragment per frame");

    // pydicom: the lossy attributes, the ratio of the whole pixel data, and the first and last
    // frames within JPEG's loss of the original (on the ramp; the noise-like block at x < 64 is
    // what JPEG loses most of).
    let script = r#"
import sys, json, os, numpy, pydicom
from pydicom.pixels import pixel_array
native, jpeg = sys.argv[1], sys.argv[2]
ds = pydicom.dcmread(jpeg, stop_before_pixels=True)
out = {"uid": str(ds.SOPInstanceUID), "meta_uid": str(ds.file_meta.MediaStorageSOPInstanceUID), "lossy": ds.LossyImageCompression,
       "method": ds.LossyImageCompressionMethod, "ratio": float(ds.LossyImageCompressionRatio), "bits_stored": int(ds.BitsStored), "size": os.path.getsize(jpeg)}
errors = []
for index in (0, int(ds.NumberOfFrames) - 1):
    a = pixel_array(native, index=index).astype(numpy.int64)
    b = pixel_array(jpeg, index=index).astype(numpy.int64)
    errors.append({"ramp_max": int(numpy.abs(a - b)[:, 72:].max()), "mean": float(numpy.abs(a - b).mean())})
out["errors"] = errors
print(json.dumps(out))
"#;
    let read = python_inline(script, &[&native, &jpeg]);
    let new = report["new_sop_instance_uid"]["new"].as_str().unwrap();
    assert_eq!((read["uid"].as_str(), read["meta_uid"].as_str()), (Some(new), Some(new)), "{read}");
    assert_eq!((read["lossy"].as_str(), read["method"].as_str(), read["bits_stored"].as_i64()), (Some("01"), Some("ISO_10918_1"), Some(12)), "{read}");
    let ratio = read["ratio"].as_f64().unwrap();
    let compressed = read["size"].as_f64().unwrap();
    assert!(ratio > 2.0 && ratio < pixel_len as f64 / compressed * 1.01 && ratio > pixel_len as f64 / compressed * 0.99, "ratio {ratio}: {read}");
    for error in read["errors"].as_array().unwrap() {
        assert!(error["ramp_max"].as_i64().unwrap() <= 8 && error["mean"].as_f64().unwrap() < 150.0, "{read}");
    }
}
