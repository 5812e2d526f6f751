//! `pacs render`: a frame of a DICOM file as PNG or JPEG, compared with DCMTK's `dcm2pnm` with
//! the same window (PIL and numpy read both PNGs).

mod common;

use std::path::Path;
use std::process::Command;

use common::*;

/// The mean and largest absolute differences of two 8-bit images, and their sizes.
const COMPARE: &str = r#"
import sys, json, numpy
from PIL import Image
a, b = (numpy.asarray(Image.open(p)).astype(numpy.int16) for p in sys.argv[1:3])
d = numpy.abs(a - b) if a.shape == b.shape else numpy.array([255])
print(json.dumps({"a": list(a.shape), "b": list(b.shape), "mean": float(d.mean()), "max": int(d.max()), "levels": int(len(numpy.unique(a)))}))
"#;

fn dcm2pnm(tool: &str, input: &Path, output: &Path, window: (&str, &str)) {
    let run = Command::new(format!("/usr/bin/{tool}"))
        .args(["--write-png", "--set-window", window.0, window.1])
        .arg(input)
        .arg(output)
        .output()
        .unwrap_or_else(|e| panic!("cannot run /usr/bin/{tool} ({e}): scripts/test.sh installs DCMTK"));
    assert!(run.status.success(), "{tool}: {}", String::from_utf8_lossy(&run.stderr));
}

#[test]
fn render_matches_dcm2pnm() {
    require_python();
    let pacs = Pacs::new();
    for (name, tool, center, width) in
        [("CT_small.dcm", "dcm2pnm", "40", "400"), ("MR_small_RLE.dcm", "dcm2pnm", "600", "1600"), ("MR_small_jpeg_ls_lossless.dcm", "dcml2pnm", "600", "1600")]
    {
        let source = pydicom_file(name);
        let (ours, theirs) = (pacs.scratch(&format!("{name}.png")), pacs.scratch(&format!("{name}.dcmtk.png")));
        let window = format!("{center},{width}");
        let run = pacs.run(&["render".as_ref(), source.as_os_str(), ours.as_os_str(), "--window".as_ref(), window.as_ref()]);
        assert_eq!(exit_code(&run), 0, "{}", describe(&run));
        dcm2pnm(tool, &source, &theirs, (center, width));
        let diff = python_inline(COMPARE, &[&ours, &theirs]);
        assert_eq!(diff["a"], diff["b"], "{name}: {diff}");
        assert!(diff["mean"].as_f64().unwrap_or(f64::MAX) <= 1.0 && diff["max"].as_u64().unwrap_or(u64::MAX) <= 2, "{name}: {diff}");
        assert!(diff["levels"].as_u64().unwrap_or(0) > 10, "{name}: not a real image: {diff}");
    }
}

#[test]
fn render_sizes_frames_formats_and_errors() {
    require_python();
    let pacs = Pacs::new();
    let colour = pydicom_file("examples_ybr_color.dcm");
    let jpeg = pacs.scratch("frame.jpg");
    let run = pacs.run(&["render".as_ref(), colour.as_os_str(), jpeg.as_os_str(), "--frame".as_ref(), "30".as_ref(), "--size".as_ref(), "640x640".as_ref()]);
    assert_eq!(exit_code(&run), 0, "{}", describe(&run));
    let bytes = std::fs::read(&jpeg).expect("the JPEG");
    assert_eq!(&bytes[..2], &[0xFF, 0xD8]);
    let size = python_inline("import sys, json\nfrom PIL import Image\nprint(json.dumps(list(Image.open(sys.argv[1]).size)))", &[&jpeg]);
    assert_eq!(size, serde_json::json!([640, 480]), "320x240 enlarged to fit 640x640");

    let out = pacs.scratch("bad.png");
    let run = pacs.run(&["render".as_ref(), colour.as_os_str(), out.as_os_str(), "--frame".as_ref(), "31".as_ref()]);
    assert_ne!(exit_code(&run), 0);
    assert_error(&run, &["frame 31"]);
    assert!(!out.exists(), "no output after a failure");
    let run = pacs.run(&["render".as_ref(), colour.as_os_str(), pacs.scratch("x.gif").as_os_str()]);
    assert_ne!(exit_code(&run), 0);
    assert_error(&run, &[".png"]);
    let run = pacs.run(&["render".as_ref(), colour.as_os_str(), out.as_os_str(), "--window".as_ref(), "40".as_ref()]);
    assert_ne!(exit_code(&run), 0);
    // A VOI LUT the file does not have (CT_small has a window, no VOI LUT Sequence).
    let ct = pydicom_file("CT_small.dcm");
    let run = pacs.run(&["render".as_ref(), ct.as_os_str(), out.as_os_str(), "--voi-lut".as_ref(), "2".as_ref()]);
    assert_ne!(exit_code(&run), 0);
    assert_error(&run, &["VOI LUT 2 asked for; the object has 0"]);
    assert!(!out.exists(), "no output after a failure");
    let run = pacs.run(&["render".as_ref(), ct.as_os_str(), out.as_os_str(), "--voi-lut".as_ref(), "0".as_ref()]);
    assert_ne!(exit_code(&run), 0);
}
