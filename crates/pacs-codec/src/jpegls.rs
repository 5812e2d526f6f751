//! Our JPEG-LS encoder for colour frames, on CharLS.
//!
//! dicom-rs hands CharLS pixel-interleaved colour samples without setting an interleave mode, so
//! CharLS encodes them as if they were planes and other decoders read scrambled colours. Here the
//! interleave mode is set: sample-interleaved (ILV=2) from pixel-interleaved samples, one scan per
//! frame; frames stored plane by plane are interleaved first. Monochrome frames still go through
//! dicom-rs, whose encoder is right for them.

use charls::{CharLS, FrameInfo, InterleaveMode};

use crate::frame::Frame;

/// The NEAR parameter (maximum error per sample) for a quality from 0 to 100, as dicom-rs
/// computes it: 100 (the default) is lossless.
pub(crate) fn near_for_quality(quality: Option<u8>, bits_stored: u32) -> i32 {
    let quality = i32::from(quality.unwrap_or(100).min(100));
    let scale = 1i32 << bits_stored.saturating_sub(4).min(16);
    (scale * (100 - quality) / 100).min(4096)
}

/// Encodes one colour frame into a JPEG-LS stream, sample-interleaved, with the given NEAR.
pub(crate) fn encode_frame(frame: &Frame<'_>, near: i32) -> Result<Vec<u8>, String> {
    if frame.bits_allocated != 8 && frame.bits_allocated != 16 {
        return Err(format!("JPEG-LS encoding needs Bits Allocated 8 or 16, not {}", frame.bits_allocated));
    }
    if frame.bits_stored < 2 || frame.bits_stored > frame.bits_allocated {
        return Err(format!("JPEG-LS encoding of Bits Stored {} with Bits Allocated {}", frame.bits_stored, frame.bits_allocated));
    }
    if frame.samples_per_pixel != 3 {
        return Err(format!("colour JPEG-LS encoding of {} samples per pixel", frame.samples_per_pixel));
    }
    let bytes = frame.bits_allocated as usize / 8;
    let pixels = frame.rows as usize * frame.columns as usize;
    let len = pixels * 3 * bytes;
    if pixels == 0 || frame.samples.len() < len {
        return Err(format!("a frame of {} bytes, {len} expected", frame.samples.len()));
    }
    let samples = &frame.samples[..len];
    let interleaved = if frame.planar { interleave(samples, pixels, bytes) } else { samples.to_vec() };
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
    charls.set_interleave_mode(InterleaveMode::Sample).map_err(|e| format!("CharLS: {e}"))?;
    let info = FrameInfo { width: frame.columns, height: frame.rows, bits_per_sample: frame.bits_stored as i32, component_count: 3 };
    let mut out = charls.encode(info, near, &interleaved).map_err(|e| format!("JPEG-LS encoding: {e}"))?;
    if out.len() % 2 == 1 {
        out.push(0);
    }
    Ok(out)
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
        assert!(encode_frame(&Frame { samples_per_pixel: 1, ..f }, 0).is_err());
        assert!(encode_frame(&Frame { bits_allocated: 32, ..f }, 0).is_err());
        assert!(encode_frame(&Frame { samples: &[0xFF; 12], bits_stored: 6, ..f }, 0).is_err());
    }
}
