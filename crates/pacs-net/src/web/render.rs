//! `/rendered` and `/thumbnail`: a frame as a JPEG or PNG image.
//!
//! Native (uncompressed) pixel data only, for now: grayscale (MONOCHROME1 and MONOCHROME2, 8 to 16
//! bits, signed or not) through the Modality LUT (rescale slope and intercept) and a linear VOI
//! window (the `window=center,width[,linear]` parameter, else the object's first Window Center and
//! Width, else the frame's range), MONOCHROME1 inverted; RGB and YBR_FULL (8 bits, either planar
//! configuration). Objects stored compressed, or in another photometric interpretation, are
//! answered 501 with a message: the codecs come later.
//!
//! Only the rendered frame's bytes are read ([`Archive::read_frame`](pacs_store::Archive::read_frame)), plus the object's header.

use std::sync::Arc;

use axum::extract::{Path, Query as UrlQuery, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use pacs_core::InstanceRecord;

use super::json::{self, DataSet, ParseOptions};
use super::media::parse_accept;
use super::qido::Params;
use super::wado::{parse_frame_list, parse_record, records};
use super::{AppState, blocking};
use crate::error::{Error, Result};

/// The output image format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `image/jpeg` (baseline, 8 bits).
    Jpeg,
    /// `image/png` (8 bits).
    Png,
}

impl Format {
    /// The media type.
    pub fn media_type(self) -> &'static str {
        match self {
            Format::Jpeg => "image/jpeg",
            Format::Png => "image/png",
        }
    }
}

/// How to render one frame.
#[derive(Clone, Debug, PartialEq)]
pub struct RenderOptions {
    /// The output format.
    pub format: Format,
    /// The frame (1-based).
    pub frame: u32,
    /// VOI window (center, width) overriding the object's.
    pub window: Option<(f64, f64)>,
    /// Fit within (width, height) pixels, keeping the aspect ratio.
    pub viewport: Option<(u32, u32)>,
    /// JPEG quality, 1 to 100.
    pub quality: u8,
}

/// An 8-bit image ready to encode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Image {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Samples per pixel: 1 (gray) or 3 (RGB).
    pub channels: u8,
    /// The pixels, row by row, channels interleaved.
    pub pixels: Vec<u8>,
}

/// Parses `center,width[,function]` (PS3.18 8.3.5.1.3; only the linear function).
pub fn parse_window(text: &str) -> Result<(f64, f64)> {
    let bad = |why: &str| Error::BadRequest { reason: format!("parameter window: {why}: {text:?}") };
    let parts: Vec<&str> = text.split(',').map(str::trim).collect();
    if parts.len() < 2 || parts.len() > 3 {
        return Err(bad("expected center,width[,function]"));
    }
    let center: f64 = parts[0].parse().map_err(|_| bad("center is not a number"))?;
    let width: f64 = parts[1].parse().map_err(|_| bad("width is not a number"))?;
    if width < 1.0 || !center.is_finite() || !width.is_finite() {
        return Err(bad("width must be at least 1"));
    }
    if let Some(function) = parts.get(2)
        && !function.eq_ignore_ascii_case("linear")
    {
        return Err(bad("only the linear function is supported"));
    }
    Ok((center, width))
}

fn parse_viewport(text: &str) -> Result<(u32, u32)> {
    let bad = || Error::BadRequest { reason: format!("parameter viewport: expected width,height in pixels: {text:?}") };
    let (w, h) = text.split_once(',').ok_or_else(bad)?;
    let (w, h): (u32, u32) = (w.trim().parse().map_err(|_| bad())?, h.trim().parse().map_err(|_| bad())?);
    if w == 0 || h == 0 || w > 8192 || h > 8192 {
        return Err(bad());
    }
    Ok((w, h))
}

/// The linear VOI function of PS3.3 C.11.2.1.2.1, to 0..=255.
fn window_value(x: f64, center: f64, width: f64) -> u8 {
    let lo = center - 0.5 - (width - 1.0) / 2.0;
    let hi = center - 0.5 + (width - 1.0) / 2.0;
    if x <= lo {
        0
    } else if x > hi || width <= 1.0 {
        255
    } else {
        (((x - (center - 0.5)) / (width - 1.0) + 0.5) * 255.0).round().clamp(0.0, 255.0) as u8
    }
}

/// What the header says about the pixels.
struct Pixels {
    rows: u32,
    columns: u32,
    bits_allocated: u16,
    bits_stored: u16,
    signed: bool,
    samples: u16,
    planar: bool,
    photometric: String,
    slope: f64,
    intercept: f64,
    window: Option<(f64, f64)>,
    big_endian: bool,
}

fn pixels_of(data_set: &DataSet, big_endian: bool) -> Result<Pixels> {
    let us = |tag| json::us(data_set, tag, big_endian);
    let missing = |name: &str| Error::NotImplemented { reason: format!("the object has no {name}: nothing to render") };
    let rows = us((0x0028, 0x0010)).ok_or_else(|| missing("Rows"))?;
    let columns = us((0x0028, 0x0011)).ok_or_else(|| missing("Columns"))?;
    let bits_allocated = us((0x0028, 0x0100)).ok_or_else(|| missing("Bits Allocated"))?;
    let bits_stored = us((0x0028, 0x0101)).unwrap_or(bits_allocated);
    let window = match (json::decimals(data_set, (0x0028, 0x1050)).first(), json::decimals(data_set, (0x0028, 0x1051)).first()) {
        (Some(c), Some(w)) if *w >= 1.0 => Some((*c, *w)),
        _ => None,
    };
    Ok(Pixels {
        rows: u32::from(rows),
        columns: u32::from(columns),
        bits_allocated,
        bits_stored: bits_stored.clamp(1, bits_allocated.max(1)),
        signed: us((0x0028, 0x0103)) == Some(1),
        samples: us((0x0028, 0x0002)).unwrap_or(1),
        planar: us((0x0028, 0x0006)) == Some(1),
        photometric: json::text(data_set, (0x0028, 0x0004)).unwrap_or_else(|| "MONOCHROME2".into()),
        slope: json::decimals(data_set, (0x0028, 0x1053)).first().copied().unwrap_or(1.0),
        intercept: json::decimals(data_set, (0x0028, 0x1052)).first().copied().unwrap_or(0.0),
        window,
        big_endian,
    })
}

/// Turns one frame of native pixel data into an 8-bit image.
fn to_image(p: &Pixels, frame: &[u8], window: Option<(f64, f64)>) -> Result<Image> {
    let count = (p.rows as usize) * (p.columns as usize);
    let unsupported = |why: String| Error::NotImplemented { reason: why };
    match (p.photometric.as_str(), p.samples) {
        ("MONOCHROME1" | "MONOCHROME2", 1) => {
            let bytes_per = match p.bits_allocated {
                8 => 1,
                16 => 2,
                32 => 4,
                other => return Err(unsupported(format!("rendering {other}-bit pixels is not supported"))),
            };
            if frame.len() < count * bytes_per {
                return Err(pacs_core::Error::Corrupt { what: format!("frame has {} bytes, {} expected", frame.len(), count * bytes_per) }.into());
            }
            let stored = u32::from(p.bits_stored.min(32));
            let mask: u64 = if stored >= 32 { u64::from(u32::MAX) } else { (1u64 << stored) - 1 };
            let values: Vec<f64> = frame
                .chunks_exact(bytes_per)
                .take(count)
                .map(|c| {
                    let raw: u64 = match (bytes_per, p.big_endian) {
                        (1, _) => u64::from(c[0]),
                        (2, false) => u64::from(u16::from_le_bytes([c[0], c[1]])),
                        (2, true) => u64::from(u16::from_be_bytes([c[0], c[1]])),
                        (_, false) => u64::from(u32::from_le_bytes([c[0], c[1], c[2], c[3]])),
                        (_, true) => u64::from(u32::from_be_bytes([c[0], c[1], c[2], c[3]])),
                    } & mask;
                    let value = if p.signed && stored > 0 && raw & (1 << (stored - 1)) != 0 { raw as i64 - (1i64 << stored) } else { raw as i64 };
                    value as f64 * p.slope + p.intercept
                })
                .collect();
            let (center, width) = match window.or(p.window) {
                Some(w) => w,
                None => {
                    let (lo, hi) = values.iter().fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(*v), hi.max(*v)));
                    if values.is_empty() { (0.0, 1.0) } else { ((lo + hi + 1.0) / 2.0, (hi - lo + 1.0).max(1.0)) }
                }
            };
            let invert = p.photometric == "MONOCHROME1";
            let pixels = values
                .iter()
                .map(|v| {
                    let g = window_value(*v, center, width);
                    if invert { 255 - g } else { g }
                })
                .collect();
            Ok(Image { width: p.columns, height: p.rows, channels: 1, pixels })
        }
        ("RGB" | "YBR_FULL", 3) if p.bits_allocated == 8 => {
            if frame.len() < count * 3 {
                return Err(pacs_core::Error::Corrupt { what: format!("frame has {} bytes, {} expected", frame.len(), count * 3) }.into());
            }
            let mut pixels = Vec::with_capacity(count * 3);
            for i in 0..count {
                let (a, b, c) = if p.planar { (frame[i], frame[count + i], frame[2 * count + i]) } else { (frame[3 * i], frame[3 * i + 1], frame[3 * i + 2]) };
                if p.photometric == "YBR_FULL" {
                    let (y, cb, cr) = (f64::from(a), f64::from(b) - 128.0, f64::from(c) - 128.0);
                    let clamp = |v: f64| v.round().clamp(0.0, 255.0) as u8;
                    pixels.extend_from_slice(&[clamp(y + 1.402 * cr), clamp(y - 0.344_136 * cb - 0.714_136 * cr), clamp(y + 1.772 * cb)]);
                } else {
                    pixels.extend_from_slice(&[a, b, c]);
                }
            }
            Ok(Image { width: p.columns, height: p.rows, channels: 3, pixels })
        }
        (other, samples) => {
            Err(unsupported(format!("rendering {other} with {samples} samples per pixel and {} bits allocated is not supported yet", p.bits_allocated)))
        }
    }
}

/// Scales an image down (nearest neighbour) to fit within `(width, height)`.
pub fn fit(image: Image, (max_w, max_h): (u32, u32)) -> Image {
    if image.width <= max_w && image.height <= max_h {
        return image;
    }
    let scale = f64::min(f64::from(max_w) / f64::from(image.width), f64::from(max_h) / f64::from(image.height));
    let w = ((f64::from(image.width) * scale).round() as u32).max(1);
    let h = ((f64::from(image.height) * scale).round() as u32).max(1);
    let ch = usize::from(image.channels);
    let mut pixels = Vec::with_capacity(w as usize * h as usize * ch);
    for y in 0..h {
        let sy = ((u64::from(y) * u64::from(image.height)) / u64::from(h)) as usize;
        for x in 0..w {
            let sx = ((u64::from(x) * u64::from(image.width)) / u64::from(w)) as usize;
            let at = (sy * image.width as usize + sx) * ch;
            pixels.extend_from_slice(&image.pixels[at..at + ch]);
        }
    }
    Image { width: w, height: h, channels: image.channels, pixels }
}

/// Encodes an image as JPEG or PNG.
pub fn encode(image: &Image, format: Format, quality: u8) -> Result<Vec<u8>> {
    let failed = |e: String| Error::Io { action: "encoding an image".into(), source: std::io::Error::other(e) };
    let mut out = Vec::new();
    match format {
        Format::Jpeg => {
            let (w, h) = (u16::try_from(image.width), u16::try_from(image.height));
            let (Ok(w), Ok(h)) = (w, h) else {
                return Err(Error::NotImplemented { reason: "JPEG output is limited to 65535 pixels a side; ask for a viewport".into() });
            };
            let color = if image.channels == 3 { jpeg_encoder::ColorType::Rgb } else { jpeg_encoder::ColorType::Luma };
            jpeg_encoder::Encoder::new(&mut out, quality.clamp(1, 100)).encode(&image.pixels, w, h, color).map_err(|e| failed(e.to_string()))?;
        }
        Format::Png => {
            let mut encoder = png::Encoder::new(&mut out, image.width, image.height);
            encoder.set_color(if image.channels == 3 { png::ColorType::Rgb } else { png::ColorType::Grayscale });
            encoder.set_depth(png::BitDepth::Eight);
            let mut writer = encoder.write_header().map_err(|e| failed(e.to_string()))?;
            writer.write_image_data(&image.pixels).map_err(|e| failed(e.to_string()))?;
            writer.finish().map_err(|e| failed(e.to_string()))?;
        }
    }
    Ok(out)
}

/// Renders one frame of `record` as the response.
pub(crate) async fn render_record(state: &AppState, record: InstanceRecord, options: RenderOptions) -> Result<Response> {
    let ts = record.transfer_syntax_uid.to_string();
    if !matches!(ts.as_str(), "1.2.840.10008.1.2" | "1.2.840.10008.1.2.1" | "1.2.840.10008.1.2.2") {
        return Err(Error::NotImplemented {
            reason: format!("rendering objects stored in transfer syntax {ts} (compressed or deflated) is not supported yet"),
        });
    }
    if options.frame == 0 || options.frame > record.frame_count() {
        return Err(
            pacs_core::Error::NotFound { what: format!("frame {} of {} ({} frames)", options.frame, record.sop_instance_uid, record.frame_count()) }.into()
        );
    }
    let archive = Arc::clone(&state.archive);
    let format = options.format;
    let bytes = blocking(move || {
        let parsed = parse_record(&archive, &record, &ParseOptions { inline_limit: 64, stop_at_pixel_data: true, capture: None })?;
        let frame = archive.read_frame(&record, options.frame)?;
        Ok((parsed, frame))
    })
    .await
    .and_then(|(parsed, frame)| {
        let pixels = pixels_of(&parsed.data_set, parsed.big_endian)?;
        let mut image = to_image(&pixels, &frame, options.window)?;
        if let Some(viewport) = options.viewport {
            image = fit(image, viewport);
        }
        encode(&image, format, options.quality)
    })?;
    Ok(([(header::CONTENT_TYPE, HeaderValue::from_static(format.media_type()))], bytes).into_response())
}

/// The output format the client accepts (JPEG unless only PNG is acceptable).
fn negotiate_format(headers: &HeaderMap, params: &Params) -> Result<Format> {
    let accept_param = params.iter().find(|(n, _)| n == "accept").map(|(_, v)| v.as_str());
    let header = accept_param.or_else(|| headers.get(header::ACCEPT).and_then(|h| h.to_str().ok()));
    for range in parse_accept(header) {
        if range.covers("image/jpeg") {
            return Ok(Format::Jpeg);
        }
        if range.covers("image/png") {
            return Ok(Format::Png);
        }
    }
    Err(Error::NotAcceptable { reason: "rendered images are sent as image/jpeg or image/png".into() })
}

fn options_of(headers: &HeaderMap, params: &Params, frame: u32, thumbnail: bool) -> Result<RenderOptions> {
    let format = negotiate_format(headers, params)?;
    let mut options = RenderOptions { format, frame, window: None, viewport: thumbnail.then_some((128, 128)), quality: 90 };
    for (name, value) in params {
        match name.as_str() {
            "window" => options.window = Some(parse_window(value)?),
            "viewport" => options.viewport = Some(parse_viewport(value)?),
            "quality" => {
                options.quality = value
                    .trim()
                    .parse()
                    .ok()
                    .filter(|q| (1..=100).contains(q))
                    .ok_or_else(|| Error::BadRequest { reason: format!("parameter quality: expected 1 to 100, got {value:?}") })?
            }
            "accept" | "annotation" | "charset" => {}
            other => return Err(Error::BadRequest { reason: format!("parameter {other}: unknown for rendered resources") }),
        }
    }
    Ok(options)
}

/// The instance that stands for a study or series: the middle one.
fn representative(mut found: Vec<InstanceRecord>) -> InstanceRecord {
    let middle = found.len() / 2;
    found.swap_remove(middle)
}

/// `GET .../instances/{instance}/rendered`: the first frame.
pub(crate) async fn instance_rendered(
    State(state): State<AppState>,
    Path((study, series, instance)): Path<(String, String, String)>,
    headers: HeaderMap,
    UrlQuery(params): UrlQuery<Params>,
) -> Result<Response> {
    let options = options_of(&headers, &params, 1, false)?;
    let record = records(&state, &study, Some(&series), Some(&instance)).await?.remove(0);
    render_record(&state, record, options).await
}

/// `GET .../instances/{instance}/thumbnail`.
pub(crate) async fn instance_thumbnail(
    State(state): State<AppState>,
    Path((study, series, instance)): Path<(String, String, String)>,
    headers: HeaderMap,
    UrlQuery(params): UrlQuery<Params>,
) -> Result<Response> {
    let options = options_of(&headers, &params, 1, true)?;
    let record = records(&state, &study, Some(&series), Some(&instance)).await?.remove(0);
    render_record(&state, record, options).await
}

async fn one_frame(state: AppState, path: (String, String, String, String), headers: HeaderMap, params: Params, thumbnail: bool) -> Result<Response> {
    let (study, series, instance, list) = path;
    let record = records(&state, &study, Some(&series), Some(&instance)).await?.remove(0);
    let frames = parse_frame_list(&list, record.frame_count(), &instance)?;
    let [frame] = frames[..] else {
        return Err(Error::BadRequest { reason: "frame list: a rendered frame resource takes exactly one frame".into() });
    };
    let options = options_of(&headers, &params, frame, thumbnail)?;
    render_record(&state, record, options).await
}

/// `GET .../frames/{n}/rendered`.
pub(crate) async fn frame_rendered(
    State(state): State<AppState>,
    Path(path): Path<(String, String, String, String)>,
    headers: HeaderMap,
    UrlQuery(params): UrlQuery<Params>,
) -> Result<Response> {
    one_frame(state, path, headers, params, false).await
}

/// `GET .../frames/{n}/thumbnail`.
pub(crate) async fn frame_thumbnail(
    State(state): State<AppState>,
    Path(path): Path<(String, String, String, String)>,
    headers: HeaderMap,
    UrlQuery(params): UrlQuery<Params>,
) -> Result<Response> {
    one_frame(state, path, headers, params, true).await
}

/// `GET /studies/{study}/series/{series}/thumbnail`: the middle instance's first frame.
pub(crate) async fn series_thumbnail(
    State(state): State<AppState>,
    Path((study, series)): Path<(String, String)>,
    headers: HeaderMap,
    UrlQuery(params): UrlQuery<Params>,
) -> Result<Response> {
    let options = options_of(&headers, &params, 1, true)?;
    let record = representative(records(&state, &study, Some(&series), None).await?);
    render_record(&state, record, options).await
}

/// `GET /studies/{study}/thumbnail`: the middle instance's first frame.
pub(crate) async fn study_thumbnail(
    State(state): State<AppState>,
    Path(study): Path<String>,
    headers: HeaderMap,
    UrlQuery(params): UrlQuery<Params>,
) -> Result<Response> {
    let options = options_of(&headers, &params, 1, true)?;
    let record = representative(records(&state, &study, None, None).await?);
    render_record(&state, record, options).await
}

/// `GET /studies/{study}/series/{series}/rendered`: not yet (it is one image per instance).
pub(crate) async fn series_rendered() -> Error {
    Error::NotImplemented { reason: "rendering a whole series is not supported yet; render its instances or ask for its thumbnail".into() }
}

/// `GET /studies/{study}/rendered`: not yet (it is one image per instance).
pub(crate) async fn study_rendered() -> Error {
    Error::NotImplemented { reason: "rendering a whole study is not supported yet; render its instances or ask for its thumbnail".into() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linear_window() {
        assert_eq!(window_value(-1000.0, 40.0, 400.0), 0);
        assert_eq!(window_value(1000.0, 40.0, 400.0), 255);
        assert_eq!(window_value(40.0, 40.0, 400.0), 128);
        assert_eq!(parse_window("40,400").ok(), Some((40.0, 400.0)));
        assert!(parse_window("40").is_err());
        assert!(parse_window("40,400,sigmoid").is_err());
    }

    #[test]
    fn monochrome1_is_inverted_and_signed_values_extended() {
        let p = Pixels {
            rows: 1,
            columns: 2,
            bits_allocated: 16,
            bits_stored: 12,
            signed: true,
            samples: 1,
            planar: false,
            photometric: "MONOCHROME1".into(),
            slope: 1.0,
            intercept: 0.0,
            window: Some((0.0, 100.0)),
            big_endian: false,
        };
        // 0xFFF is -1 in 12 bits; 0x032 is 50.
        let image = to_image(&p, &[0xFF, 0x0F, 0x32, 0x00], None).expect("render");
        assert_eq!(image.pixels, vec![255 - window_value(-1.0, 0.0, 100.0), 0]);
    }

    #[test]
    fn fit_keeps_the_aspect_ratio() {
        let image = Image { width: 400, height: 200, channels: 1, pixels: vec![7; 400 * 200] };
        let small = fit(image, (128, 128));
        assert_eq!((small.width, small.height), (128, 64));
        assert_eq!(small.pixels.len(), 128 * 64);
    }
}
