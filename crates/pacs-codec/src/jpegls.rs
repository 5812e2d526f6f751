//! JPEG-LS on CharLS: our encoder for colour frames, and our decoder of every frame.
//!
//! dicom-rs hands CharLS pixel-interleaved colour samples without setting an interleave mode, so
//! CharLS encodes them as if they were planes and other decoders read scrambled colours. Here the
//! interleave mode is set: sample-interleaved (ILV=2) from pixel-interleaved samples, one scan per
//! frame; frames stored plane by plane are interleaved first. Monochrome frames still go through
//! dicom-rs, whose encoder is right for them.
//!
//! Decoding checks that the stream ends with EOI (CharLS spends seconds reading past the end of a
//! truncated stream) and its header against the image pixel module before CharLS allocates
//! anything, and gives the native frame: little endian, samples interleaved whatever the
//! stream's interleave mode, Bits Allocated wide, Photometric Interpretation unchanged.

use charls::{CharLS, FrameInfo, InterleaveMode};

use crate::error::{Error, Result};
use crate::frame::{Frame, PixelModule};

/// The NEAR parameter (maximum error per sample) for a quality from 0 to 100, as dicom-rs
/// computes it: 100 (the default) is lossless.
pub(crate) fn near_for_quality(quality: Option<u8>, bits_stored: u32) -> i32 {
    let quality = i32::from(quality.unwrap_or(100).min(100));
    let scale = 1i32 << bits_stored.saturating_sub(4).min(16);
    (scale * (100 - quality) / 100).min(4096)
}

/// Encodes one colour frame into a JPEG-LS stream, sample-interleaved, with the given NEAR; or
/// one monochrome frame (one component, no interleaving: what the streaming path writes, the
/// in-memory path leaving monochrome frames to dicom-rs).
pub(crate) fn encode_frame(frame: &Frame<'_>, near: i32) -> Result<Vec<u8>, String> {
    if frame.bits_allocated != 8 && frame.bits_allocated != 16 {
        return Err(format!("JPEG-LS encoding needs Bits Allocated 8 or 16, not {}", frame.bits_allocated));
    }
    if frame.bits_stored < 2 || frame.bits_stored > frame.bits_allocated {
        return Err(format!("JPEG-LS encoding of Bits Stored {} with Bits Allocated {}", frame.bits_stored, frame.bits_allocated));
    }
    let components = frame.samples_per_pixel;
    if components != 3 && components != 1 {
        return Err(format!("JPEG-LS encoding of {components} samples per pixel"));
    }
    let bytes = frame.bits_allocated as usize / 8;
    let pixels = frame.rows as usize * frame.columns as usize;
    let len = pixels * components as usize * bytes;
    if pixels == 0 || frame.samples.len() < len {
        return Err(format!("a frame of {} bytes, {len} expected", frame.samples.len()));
    }
    let samples = &frame.samples[..len];
    let interleaved = if frame.planar && components == 3 { interleave(samples, pixels, bytes) } else { samples.to_vec() };
    if frame.bits_stored < frame.bits_allocated {
        // CharLS refuses samples above its precision: bits above Bits Stored are not pixel data.
        let mask = (1u32 << frame.bits_stored) - 1;
        let over = if bytes == 1 {
            interleaved.iter().any(|&b| u32::from(b) > mask)
        } else {
            interleaved.chunks_exact(2).any(|s| u32::from(u16::from_le_bytes([s[0], s[1]])) > mask)
        };
        if over {
            return Err(format!("samples above Bits Stored {}", frame.bits_stored));
        }
    }
    let mut charls = CharLS::default();
    if components == 3 {
        charls.set_interleave_mode(InterleaveMode::Sample).map_err(|e| format!("CharLS: {e}"))?;
    }
    let info = FrameInfo { width: frame.columns, height: frame.rows, bits_per_sample: frame.bits_stored as i32, component_count: components as i32 };
    let mut out = charls.encode(info, near, &interleaved).map_err(|e| format!("JPEG-LS encoding: {e}"))?;
    if out.len() % 2 == 1 {
        out.push(0);
    }
    Ok(out)
}

/// The codec named in errors.
const CODEC: &str = "JPEG-LS";

fn decode_error(reason: impl Into<String>) -> Error {
    Error::Codec { codec: CODEC, reason: reason.into() }
}

/// Decodes one JPEG-LS stream into `out`, which holds exactly one native frame of `pixel`
/// ([`PixelModule::frame_len`]). The Photometric Interpretation is unchanged (`None`).
pub(crate) fn decode_frame(stream: &[u8], pixel: &PixelModule, out: &mut [u8]) -> Result<Option<&'static str>> {
    pixel.check_decode_target(out.len()).map_err(decode_error)?;
    // CharLS reads past the end of a truncated stream for seconds before it gives up: a stream
    // must end with its EOI marker.
    if !crate::decode::ends_with_end_marker(stream) {
        return Err(decode_error("the stream is truncated: it does not end with an EOI marker"));
    }
    let info = CharLS::default().get_frame_info(stream).map_err(|e| decode_error(format!("reading the header: {e}")))?;
    if (info.width, info.height) != (pixel.columns, pixel.rows) {
        return Err(decode_error(format!("a {}x{} stream for a frame of {}x{} (Columns x Rows)", info.width, info.height, pixel.columns, pixel.rows)));
    }
    if u32::try_from(info.component_count) != Ok(pixel.samples_per_pixel) {
        return Err(decode_error(format!("a stream of {} components for {} samples per pixel", info.component_count, pixel.samples_per_pixel)));
    }
    let bits = u32::try_from(info.bits_per_sample).unwrap_or(0);
    if !(2..=16).contains(&bits) || bits > pixel.bits_allocated {
        return Err(decode_error(format!("a stream of {} bits per sample for Bits Allocated {}", info.bits_per_sample, pixel.bits_allocated)));
    }
    let decoded = CharLS::default().decode(stream).map_err(|e| decode_error(format!("decoding: {e}")))?;
    let components = pixel.samples_per_pixel as usize;
    let pixels = pixel.pixels();
    let from = if bits <= 8 { 1 } else { 2 };
    if decoded.len() < pixels * components * from {
        return Err(decode_error(format!("CharLS decoded {} bytes, {} expected", decoded.len(), pixels * components * from)));
    }
    // One component per scan (ILV=0): CharLS gives the planes one after the other.
    let planar = components > 1 && scan_components(stream) == Some(1);
    let to = pixel.bits_allocated as usize / 8;
    if !planar && (from == 1 || cfg!(target_endian = "little")) && from == to {
        // CharLS's samples are already ours: interleaved, little endian, as wide.
        out.copy_from_slice(&decoded[..out.len()]);
        return Ok(None);
    }
    for p in 0..pixels {
        for c in 0..components {
            let index = if planar { c * pixels + p } else { p * components + c };
            let value = if from == 1 { u16::from(decoded[index]) } else { u16::from_ne_bytes([decoded[2 * index], decoded[2 * index + 1]]) };
            let at = (p * components + c) * to;
            out[at..at + to].copy_from_slice(&value.to_le_bytes()[..to]);
        }
    }
    Ok(None)
}

/// The number of components of the first scan of a JPEG-LS stream (the marker segments are
/// walked from SOI to the first SOS).
fn scan_components(stream: &[u8]) -> Option<u8> {
    if stream.get(..2)? != [0xFF, 0xD8] {
        return None;
    }
    let mut at = 2;
    loop {
        if *stream.get(at)? != 0xFF {
            return None;
        }
        match *stream.get(at + 1)? {
            0xFF => at += 1,
            0xDA => return stream.get(at + 4).copied(),
            _ => at += 2 + usize::from(u16::from_be_bytes([*stream.get(at + 2)?, *stream.get(at + 3)?])),
        }
    }
}

/// Plane-by-plane samples (`RRR…GGG…BBB…`) to pixel-interleaved (`RGBRGB…`).
fn interleave(samples: &[u8], pixels: usize, bytes: usize) -> Vec<u8> {
    let plane = pixels * bytes;
    let mut out = Vec::with_capacity(samples.len());
    for p in 0..pixels {
        for c in 0..3 {
            let at = c * plane + p * bytes;
            out.extend_from_slice(&samples[at..at + bytes]);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The interleave mode (ILV) byte of the first start-of-scan marker segment.
    fn interleave_mode(stream: &[u8]) -> Option<u8> {
        let sos = stream.windows(2).position(|w| w == [0xFF, 0xDA])?;
        let components = usize::from(*stream.get(sos + 4)?);
        stream.get(sos + 5 + 2 * components + 1).copied()
    }

    #[test]
    fn colour_frames_are_sample_interleaved_and_decode_to_the_same_pixels() {
        let rgb: Vec<u8> = (0..16u32 * 12).flat_map(|i| [(i * 3) as u8, (255 - i) as u8, (i * 11 % 256) as u8]).collect();
        let frame = Frame { samples: &rgb, rows: 12, columns: 16, samples_per_pixel: 3, bits_allocated: 8, bits_stored: 8, signed: false, planar: false };
        let out = encode_frame(&frame, 0).expect("encodes");
        assert_eq!(interleave_mode(&out), Some(2), "ILV = sample");
        assert!(CharLS::default().decode(&out).expect("decodes") == rgb);
        // The same pixels stored plane by plane give the same stream.
        let planar: Vec<u8> = (0..3).flat_map(|c| rgb.iter().skip(c).step_by(3).copied().collect::<Vec<_>>()).collect();
        let from_planes = encode_frame(&Frame { samples: &planar, planar: true, ..frame }, 0).expect("encodes");
        assert!(from_planes == out);
    }

    fn module(rows: u32, columns: u32, spp: u32, bits: u32) -> PixelModule {
        PixelModule { rows, columns, samples_per_pixel: spp, bits_allocated: bits, bits_stored: bits, signed: false, photometric: "RGB".into() }
    }

    #[test]
    fn every_interleave_mode_decodes_to_interleaved_samples() {
        let rgb: Vec<u8> = (0..16u32 * 12).flat_map(|i| [(i * 3) as u8, (255 - i) as u8, (i * 11 % 256) as u8]).collect();
        let info = FrameInfo { width: 16, height: 12, bits_per_sample: 8, component_count: 3 };
        for mode in [InterleaveMode::None, InterleaveMode::Line, InterleaveMode::Sample] {
            let mut charls = CharLS::default();
            charls.set_interleave_mode(mode).expect("mode");
            // CharLS takes planes for ILV=0, pixel-interleaved samples otherwise.
            let source = if mode == InterleaveMode::None {
                (0..3).flat_map(|c| rgb.iter().skip(c).step_by(3).copied().collect::<Vec<_>>()).collect()
            } else {
                rgb.clone()
            };
            let stream = charls.encode(info.clone(), 0, &source).expect("encodes");
            let mut out = vec![0; rgb.len()];
            assert_eq!(decode_frame(&stream, &module(12, 16, 3, 8), &mut out).expect("decodes"), None);
            assert!(out == rgb, "{mode:?}");
        }
        // 12 bits into 16, and 8 bits widened into 16.
        let grey: Vec<u8> = (0..20u16 * 10).flat_map(|i| (i * 19 % 4096).to_le_bytes()).collect();
        let stream = CharLS::default().encode(FrameInfo { width: 20, height: 10, bits_per_sample: 12, component_count: 1 }, 0, &grey).expect("encodes");
        let mut out = vec![0; grey.len()];
        decode_frame(&stream, &module(10, 20, 1, 16), &mut out).expect("decodes");
        assert!(out == grey);
        assert!(decode_frame(&stream, &module(10, 20, 1, 8), &mut [0; 200]).is_err(), "12 bits into 8");
    }

    #[test]
    fn corrupt_streams_are_errors() {
        let grey: Vec<u8> = (0..32u32 * 32).map(|i| (i * 7 + i / 32) as u8).collect();
        let stream = CharLS::default().encode(FrameInfo { width: 32, height: 32, bits_per_sample: 8, component_count: 1 }, 0, &grey).expect("encodes");
        let mut out = vec![0; grey.len()];
        for bad in [&stream[..stream.len() / 2], &stream[..4], &[0u8; 64][..], &[][..]] {
            assert!(decode_frame(bad, &module(32, 32, 1, 8), &mut out).is_err(), "{} bytes", bad.len());
        }
        assert!(decode_frame(&stream, &module(32, 31, 1, 8), &mut vec![0; 32 * 31]).is_err(), "another size");
        assert!(decode_frame(&stream, &module(32, 32, 3, 8), &mut vec![0; 32 * 32 * 3]).is_err(), "another component count");
    }

    #[test]
    fn monochrome_frames_are_encoded_as_one_component() {
        let grey: Vec<u8> = (0..24u32 * 20).flat_map(|i| (((i * 13 + i / 24) % 4096) as u16).to_le_bytes()).collect();
        let frame = Frame { samples: &grey, rows: 20, columns: 24, samples_per_pixel: 1, bits_allocated: 16, bits_stored: 12, signed: false, planar: false };
        let stream = encode_frame(&frame, 0).expect("encodes");
        let mut out = vec![0; grey.len()];
        assert_eq!(decode_frame(&stream, &module(20, 24, 1, 16), &mut out).expect("decodes"), None);
        assert!(out == grey, "lossless");
    }

    #[test]
    fn near_follows_the_quality() {
        assert_eq!(near_for_quality(None, 8), 0);
        assert_eq!(near_for_quality(Some(100), 16), 0);
        assert_eq!(near_for_quality(Some(50), 8), 8);
        assert_eq!(near_for_quality(Some(0), 12), 256);
    }

    #[test]
    fn impossible_frames_are_errors() {
        let f = Frame { samples: &[0; 12], rows: 2, columns: 2, samples_per_pixel: 3, bits_allocated: 8, bits_stored: 8, signed: false, planar: false };
        assert!(encode_frame(&Frame { samples: &[0; 11], ..f }, 0).is_err());
        assert!(encode_frame(&Frame { samples_per_pixel: 2, ..f }, 0).is_err());
        assert!(encode_frame(&Frame { samples: &[0; 3], samples_per_pixel: 1, ..f }, 0).is_err(), "a short monochrome frame");
        assert!(encode_frame(&Frame { bits_allocated: 32, ..f }, 0).is_err());
        assert!(encode_frame(&Frame { samples: &[0xFF; 12], bits_stored: 6, ..f }, 0).is_err());
    }
}
