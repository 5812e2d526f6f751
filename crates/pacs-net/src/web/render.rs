//! `/rendered` and `/thumbnail`: a frame as a JPEG or PNG image, by [`pacs_codec::render`].
//!
//! Objects stored in any transfer syntax the build reads are rendered, compressed ones included:
//! grayscale (MONOCHROME1, MONOCHROME2) through the Modality LUT (rescale slope and intercept) and
//! a linear VOI window (the `window=center,width[,linear]` parameter, else the object's first
//! Window Center and Width, else the frame's range), MONOCHROME1 inverted; RGB, YBR_FULL,
//! YBR_FULL_422 and PALETTE COLOR. Other photometric interpretations are answered 501 with a
//! message.
//!
//! Native grayscale, RGB and YBR_FULL objects take a short path: only the rendered frame's bytes
//! are read ([`Archive::read_frame`](pacs_store::Archive::read_frame)), plus the object's header.
//! The others are read whole and decoded with the codecs, on the blocking pool.

use std::io::BufReader;
use std::sync::Arc;

use axum::extract::{Path, Query as UrlQuery, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use pacs_codec::render::{self as codec, FrameDescription, ImageFormat};
use pacs_core::InstanceRecord;

use super::json::{self, DataSet, ParseOptions};
use super::media::parse_accept;
use super::qido::Params;
use super::wado::{parse_frame_list, parse_record, records};
use super::{AppState, blocking, codec_error};
use crate::error::{Error, Result};

/// How to render one frame.
#[derive(Clone, Debug, PartialEq)]
pub struct RenderOptions {
    /// The output format.
    pub format: ImageFormat,
    /// The frame (1-based).
    pub frame: u32,
    /// VOI window (center, width) overriding the object's.
    pub window: Option<(f64, f64)>,
    /// Fit within (width, height) pixels, keeping the aspect ratio (never enlarging).
    pub viewport: Option<(u32, u32)>,
    /// JPEG quality, 1 to 100.
    pub quality: u8,
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

/// What the header of a native object says about its pixels, when the short path can render
/// them (grayscale, RGB or YBR_FULL); `None` sends the object through the codecs.
fn short_path(data_set: &DataSet, big_endian: bool) -> Result<Option<FrameDescription>> {
    let us = |tag| json::us(data_set, tag, big_endian);
    let missing = |name: &str| Error::NotImplemented { reason: format!("the object has no {name}: nothing to render") };
    let rows = us((0x0028, 0x0010)).ok_or_else(|| missing("Rows"))?;
    let columns = us((0x0028, 0x0011)).ok_or_else(|| missing("Columns"))?;
    let bits_allocated = us((0x0028, 0x0100)).ok_or_else(|| missing("Bits Allocated"))?;
    let bits_stored = us((0x0028, 0x0101)).unwrap_or(bits_allocated);
    let samples = us((0x0028, 0x0002)).unwrap_or(1);
    let photometric = json::text(data_set, (0x0028, 0x0004)).unwrap_or_else(|| "MONOCHROME2".into());
    let short = matches!((photometric.as_str(), samples), ("MONOCHROME1" | "MONOCHROME2", 1) | ("RGB" | "YBR_FULL", 3));
    // What the short path does not apply goes through the codecs: the Modality and VOI LUT
    // Sequences, a VOI LUT Function other than LINEAR, the functional groups of enhanced
    // multi-frame objects (which may carry the rescale and window per frame), and pixels of
    // fewer than 8 bits.
    let tables = [(0x0028, 0x3000), (0x0028, 0x3010), (0x5200, 0x9229), (0x5200, 0x9230)].into_iter().any(|tag| data_set.get(tag).is_some());
    let function = json::text(data_set, (0x0028, 0x1056)).is_some_and(|f| f.trim() != "LINEAR");
    if !short || tables || function || bits_allocated < 8 {
        return Ok(None);
    }
    let window = match (json::decimals(data_set, (0x0028, 0x1050)).first(), json::decimals(data_set, (0x0028, 0x1051)).first()) {
        (Some(c), Some(w)) if *w >= 1.0 => Some((*c, *w)),
        _ => None,
    };
    Ok(Some(FrameDescription {
        rows: u32::from(rows),
        columns: u32::from(columns),
        bits_allocated,
        bits_stored: bits_stored.clamp(1, bits_allocated.max(1)),
        signed: us((0x0028, 0x0103)) == Some(1),
        samples,
        planar: us((0x0028, 0x0006)) == Some(1),
        photometric,
        slope: json::decimals(data_set, (0x0028, 0x1053)).first().copied().unwrap_or(1.0),
        intercept: json::decimals(data_set, (0x0028, 0x1052)).first().copied().unwrap_or(0.0),
        window,
        big_endian,
        palette: None,
    }))
}

/// Renders one frame of `record` (blocking): the short path for native objects it covers, the
/// codecs for the others.
fn render_blocking(archive: &pacs_store::Archive, record: &InstanceRecord, options: &RenderOptions) -> Result<Vec<u8>> {
    let ts = record.transfer_syntax_uid.as_str();
    let native = matches!(ts, "1.2.840.10008.1.2" | "1.2.840.10008.1.2.1" | "1.2.840.10008.1.2.2");
    let mut image = None;
    if native && record.frame_ranges().is_some() {
        let parsed = parse_record(archive, record, &ParseOptions { inline_limit: 64, stop_at_pixel_data: true, capture: None })?;
        if let Some(description) = short_path(&parsed.data_set, parsed.big_endian)? {
            let frame = archive.read_frame(record, options.frame)?;
            image = Some(codec::frame_to_image(&description, &frame, options.window).map_err(codec_error)?);
        }
    }
    let image = match image {
        Some(image) => image,
        None => {
            if !pacs_codec::can_read(ts) {
                return Err(Error::NotImplemented { reason: format!("rendering objects stored in transfer syntax {ts} is not supported by this build") });
            }
            tracing::debug!(sop = %record.sop_instance_uid, ts, "rendering through the codecs");
            let reader = archive.read(record)?;
            let codec_options = codec::RenderOptions { frame: options.frame, window: options.window, viewport: None, enlarge: false };
            codec::render(&mut BufReader::new(reader), &codec_options).map_err(codec_error)?
        }
    };
    let image = match options.viewport {
        Some(viewport) => codec::fit(image, viewport, false),
        None => image,
    };
    codec::encode(&image, options.format, options.quality).map_err(codec_error)
}

/// Renders one frame of `record` as the response.
pub(crate) async fn render_record(state: &AppState, record: InstanceRecord, options: RenderOptions) -> Result<Response> {
    if options.frame == 0 || options.frame > record.frame_count() {
        return Err(
            pacs_core::Error::NotFound { what: format!("frame {} of {} ({} frames)", options.frame, record.sop_instance_uid, record.frame_count()) }.into()
        );
    }
    let archive = Arc::clone(&state.archive);
    let format = options.format;
    let bytes = blocking(move || Ok(render_blocking(&archive, &record, &options))).await??;
    Ok(([(header::CONTENT_TYPE, HeaderValue::from_static(format.media_type()))], bytes).into_response())
}

/// The output format the client accepts (JPEG unless only PNG is acceptable).
fn negotiate_format(headers: &HeaderMap, params: &Params) -> Result<ImageFormat> {
    let accept_param = params.iter().find(|(n, _)| n == "accept").map(|(_, v)| v.as_str());
    let header = accept_param.or_else(|| headers.get(header::ACCEPT).and_then(|h| h.to_str().ok()));
    for range in parse_accept(header) {
        if range.covers("image/jpeg") {
            return Ok(ImageFormat::Jpeg);
        }
        if range.covers("image/png") {
            return Ok(ImageFormat::Png);
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
    fn window_and_viewport_parameters() {
        assert_eq!(parse_window("40,400").ok(), Some((40.0, 400.0)));
        assert_eq!(parse_window("40, 400, LINEAR").ok(), Some((40.0, 400.0)));
        assert!(parse_window("40").is_err());
        assert!(parse_window("40,0").is_err());
        assert!(parse_window("40,400,sigmoid").is_err());
        assert_eq!(parse_viewport("64,32").ok(), Some((64, 32)));
        assert!(parse_viewport("64").is_err());
        assert!(parse_viewport("0,10").is_err());
    }
}
