//! `pacs render`: one frame of a DICOM file as a PNG or JPEG image, by `pacs_codec::render`.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, anyhow};
use clap::Args;
use pacs_codec::render::{self, ImageFormat, RenderOptions, VoiChoice};

/// Arguments of `pacs render`.
#[derive(Args)]
pub struct RenderArgs {
    /// The DICOM file to read (any transfer syntax this build reads, compressed included).
    input: PathBuf,
    /// The image to write: `.png`, `.jpg` or `.jpeg` (replaced only once rendering succeeded).
    output: PathBuf,
    /// VOI window `center,width` in modality units, linear (default: the file's first window,
    /// else its first VOI LUT, else the frame's range).
    #[arg(long, value_parser = parse_window)]
    window: Option<(f64, f64)>,
    /// Render through the N-th table (from 1) of the file's VOI LUT Sequence, even when the file
    /// has a window (a `--window` given still wins).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    voi_lut: Option<u32>,
    /// The frame to render, from 1.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    frame: u32,
    /// Fit the image within `WIDTHxHEIGHT` pixels, keeping its aspect ratio.
    #[arg(long, value_parser = parse_size)]
    size: Option<(u32, u32)>,
    /// JPEG quality, 1 to 100.
    #[arg(long, default_value_t = 90, value_parser = clap::value_parser!(u8).range(1..=100))]
    quality: u8,
}

fn parse_window(text: &str) -> Result<(f64, f64), String> {
    let (center, width) = text.split_once(',').ok_or("expected CENTER,WIDTH, e.g. 40,400")?;
    let center: f64 = center.trim().parse().map_err(|_| format!("center {center:?} is not a number"))?;
    let width: f64 = width.trim().parse().map_err(|_| format!("width {width:?} is not a number"))?;
    if !center.is_finite() || !width.is_finite() || width < 1.0 {
        return Err("the width must be at least 1".into());
    }
    Ok((center, width))
}

fn parse_size(text: &str) -> Result<(u32, u32), String> {
    let (w, h) = text.split_once(['x', 'X']).ok_or("expected WIDTHxHEIGHT, e.g. 256x256")?;
    let (w, h): (u32, u32) =
        (w.trim().parse().map_err(|_| format!("width {w:?} is not a number"))?, h.trim().parse().map_err(|_| format!("height {h:?} is not a number"))?);
    if w == 0 || h == 0 || w > 16384 || h > 16384 {
        return Err("width and height must be 1 to 16384".into());
    }
    Ok((w, h))
}

/// Renders `args.input` into `args.output`; a failure leaves no output file.
pub fn run(args: &RenderArgs) -> anyhow::Result<ExitCode> {
    let format = ImageFormat::from_extension(&args.output).ok_or_else(|| anyhow!("{}: the output must end in .png, .jpg or .jpeg", args.output.display()))?;
    let mut input = std::io::BufReader::new(std::fs::File::open(&args.input).with_context(|| format!("opening {}", args.input.display()))?);
    let options = RenderOptions { frame: args.frame, window: args.window, viewport: args.size, enlarge: true };
    let voi = args.voi_lut.map_or(VoiChoice::Auto, VoiChoice::Lut);
    let image = render::render_with(&mut input, &options, voi).with_context(|| format!("rendering frame {} of {}", args.frame, args.input.display()))?;
    let bytes = render::encode(&image, format, args.quality).with_context(|| format!("encoding {}", args.output.display()))?;
    let dir = args.output.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or_else(|| std::path::Path::new("."));
    let mut temp = tempfile::NamedTempFile::new_in(dir).with_context(|| format!("creating a temporary file in {}", dir.display()))?;
    temp.write_all(&bytes).and_then(|()| temp.as_file().sync_all()).with_context(|| format!("writing {}", args.output.display()))?;
    temp.persist(&args.output).with_context(|| format!("writing {}", args.output.display()))?;
    tracing::info!(input = %args.input.display(), output = %args.output.display(), width = image.width, height = image.height, "rendered");
    println!("{} ({}x{}, {})", args.output.display(), image.width, image.height, format.media_type());
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_and_size_arguments() {
        assert_eq!(parse_window("40,400"), Ok((40.0, 400.0)));
        assert_eq!(parse_window("-600, 1500"), Ok((-600.0, 1500.0)));
        assert!(parse_window("40").is_err());
        assert!(parse_window("40,0").is_err());
        assert_eq!(parse_size("256x128"), Ok((256, 128)));
        assert!(parse_size("256").is_err());
        assert!(parse_size("0x10").is_err());
    }
}
