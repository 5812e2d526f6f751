//! `pacs transcode`: converts one DICOM file to another transfer syntax.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

/// Arguments of `pacs transcode`.
#[derive(Args)]
pub struct TranscodeArgs {
    /// The DICOM file to read.
    input: PathBuf,
    /// The file to write (replaced only once the conversion succeeded).
    output: PathBuf,
    /// The transfer syntax UID to write, e.g. 1.2.840.10008.1.2.1 (Explicit VR Little Endian),
    /// 1.2.840.10008.1.2.5 (RLE Lossless), 1.2.840.10008.1.2.4.80 (JPEG-LS Lossless).
    #[arg(long = "transfer-syntax", short = 't')]
    transfer_syntax: String,
    /// Quality of a lossy encoder, 0 to 100.
    #[arg(long, value_parser = clap::value_parser!(u8).range(0..=100))]
    quality: Option<u8>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

/// Converts `args.input` into `args.output`; a failure leaves no output file.
///
/// The object is converted into a temporary file next to the output, renamed over it only once
/// the conversion succeeded (a temporary file left by a failure is removed). A large multi-frame
/// object is converted frame by frame straight into that file, in memory bounded by a few frames
/// (see `pacs_codec::transcode_with`); into a lossy syntax its encoded frames wait for the header
/// in a second, unnamed, temporary file in the same folder.
pub fn run(args: &TranscodeArgs) -> anyhow::Result<ExitCode> {
    let input = std::fs::File::open(&args.input).with_context(|| format!("opening {}", args.input.display()))?;
    let mut input = std::io::BufReader::with_capacity(1 << 20, input);
    let dir = args.output.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or_else(|| std::path::Path::new("."));
    let options = pacs_codec::TranscodeOptions { quality: args.quality, temp_dir: Some(dir.to_owned()), ..Default::default() };
    let mut temp = tempfile::NamedTempFile::new_in(dir).with_context(|| format!("creating a temporary file in {}", dir.display()))?;
    let report = {
        let mut writer = std::io::BufWriter::with_capacity(1 << 20, temp.as_file_mut());
        let report = match pacs_codec::transcode_with(&mut input, &args.transfer_syntax, &options, &mut writer) {
            Ok(report) => report,
            Err(pacs_codec::Error::Write { source }) => return Err(anyhow::Error::new(source).context(format!("writing {}", args.output.display()))),
            Err(e) => return Err(anyhow::Error::new(e).context(format!("transcoding {} to {}", args.input.display(), args.transfer_syntax))),
        };
        writer.flush().with_context(|| format!("writing {}", args.output.display()))?;
        report
    };
    temp.as_file().sync_all().with_context(|| format!("writing {}", args.output.display()))?;
    temp.persist(&args.output).with_context(|| format!("writing {}", args.output.display()))?;
    if args.json {
        let new_uid = report.new_sop_instance_uid.as_ref().map(|(old, new)| serde_json::json!({"old": old, "new": new}));
        println!(
            "{}",
            serde_json::json!({
                "source_transfer_syntax": report.source_transfer_syntax,
                "target_transfer_syntax": report.target_transfer_syntax,
                "frames": report.frames,
                "pixel_data_reencoded": report.pixel_data_reencoded,
                "new_sop_instance_uid": new_uid,
                "streamed": report.streamed,
            })
        );
    } else {
        println!(
            "{} -> {} ({} frames)",
            pacs_codec::syntax::name(&report.source_transfer_syntax),
            pacs_codec::syntax::name(&report.target_transfer_syntax),
            report.frames
        );
        if let Some((old, new)) = &report.new_sop_instance_uid {
            println!("lossy: new SOP Instance UID {new} (was {old})");
        }
    }
    Ok(ExitCode::SUCCESS)
}
