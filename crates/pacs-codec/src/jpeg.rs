//! JPEG through libjpeg-turbo's TurboJPEG API: our encoder of JPEG Baseline (Process 1, 8 bits)
//! and JPEG Extended (Process 2 & 4, 8 and 12 bits), and our decoder of the JPEG transfer
//! syntaxes (Baseline, Extended, and Lossless Process 14 of 2 to 16 bits), one frame at a time.
//!
//! dicom-rs reads JPEG with jpeg-decoder, which refuses 12-bit DCT streams, and writes it with
//! jpeg-encoder, 8 bits only; libjpeg-turbo descends from the IJG reference code that DCMTK uses
//! too. Like `j2k.rs`, this module calls a C API: the TurboJPEG instance and the buffers it
//! allocates are freed by Drop guards, and every unsafe block says why it is sound. Corrupt data
//! is an [`Error::Codec`], never a panic: libjpeg's fatal errors come back from the TurboJPEG call
//! (it catches them with `setjmp` inside the C code).
//!
//! Encoding (PS3.5 8.2.1, A.4.1): one frame becomes one JPEG stream, padded with a zero byte to
//! an even length.
//! - The sample precision is 8 for Bits Allocated 8 (SOF0, which both syntaxes accept) and 12 for
//!   Bits Allocated 16 (SOF1, with the optimal Huffman tables libjpeg-turbo computes for 12
//!   bits). Samples are coded as their bit patterns of that precision, the way JPEG Lossless
//!   codes signed pixel data: unsigned values must be below 2^P, signed ones (two's complement,
//!   Bits Stored wide) within -2^(P-1) and 2^(P-1) - 1. [`lossy_precision`] gives P; the caller
//!   sets Bits Stored to it and High Bit to P - 1, so that decoders read the values back. (Where
//!   signed values cross zero the bit pattern jumps from all ones to zero, so the error of lossy
//!   coding grows at those edges.)
//! - MONOCHROME1 and MONOCHROME2 are one component. Colour (RGB; YBR_FULL is turned into RGB
//!   first) is coded as YCbCr with 4:2:2 chrominance subsampling, as DCMTK does by default: the
//!   object becomes [`COLOUR_PHOTOMETRIC`] (YBR_FULL_422, PS3.3 C.7.6.3.1.2), Planar
//!   Configuration 0.
//! - The quality, 1 to 100, scales the standard quantization tables (libjpeg's scale).
//!
//! Decoding gives the native frame: little endian, samples interleaved, Bits Allocated wide
//! (streams of 8 or fewer bits widened when Bits Allocated is 16), sample bit patterns as the
//! stream holds them (no sign extension). Colour:
//! - lossy streams come back as RGB (libjpeg converts YCbCr, whatever the Photometric
//!   Interpretation said: YBR_FULL_422 and YBR_FULL become RGB); a stream without a JFIF or Adobe
//!   marker whose Photometric Interpretation is RGB is read as RGB, not as YCbCr as libjpeg
//!   would guess from its component identifiers (DCMTK and pydicom read these the same way);
//! - lossless streams come back as coded, and keep their Photometric Interpretation.
#![allow(unsafe_code)]

use std::borrow::Cow;
use std::ffi::{CStr, c_int, c_void};
use std::ptr::{self, NonNull};

use turbojpeg_sys as tj;

use crate::error::{Error, Result};
use crate::frame::{Frame, PixelModule};

/// The codec named in errors.
const CODEC: &str = "JPEG";

/// The Photometric Interpretation of the colour frames we encode: YCbCr, chrominance subsampled
/// 2:1 horizontally.
pub(crate) const COLOUR_PHOTOMETRIC: &str = "YBR_FULL_422";

/// The highest number of progressive scans we decode (a guard against crafted streams; DICOM
/// uses no progressive process).
const SCAN_LIMIT: c_int = 512;

fn error(reason: impl Into<String>) -> Error {
    Error::Codec { codec: CODEC, reason: reason.into() }
}

/// The sample precision of lossy JPEG for pixel data of `bits_allocated`: 8 bits for 8, 12 for
/// 16 (JPEG Extended, Process 4).
pub(crate) fn lossy_precision(bits_allocated: u32) -> Result<u32> {
    match bits_allocated {
        8 => Ok(8),
        16 => Ok(12),
        other => Err(error(format!("lossy JPEG holds samples of 8 or 12 bits, in Bits Allocated 8 or 16, not {other}"))),
    }
}

/// Encodes one native frame as a lossy JPEG stream of precision [`lossy_precision`] and
/// `quality` (1 to 100), padded to an even length. `photometric` is the frame's Photometric
/// Interpretation: MONOCHROME1, MONOCHROME2, RGB or YBR_FULL.
pub(crate) fn encode_frame(frame: &Frame<'_>, photometric: &str, quality: u8) -> Result<Vec<u8>> {
    let precision = lossy_precision(frame.bits_allocated)?;
    if frame.bits_stored == 0 || frame.bits_stored > frame.bits_allocated {
        return Err(error(format!("Bits Stored {} with Bits Allocated {}", frame.bits_stored, frame.bits_allocated)));
    }
    let colour = match (frame.samples_per_pixel, photometric) {
        (1, "MONOCHROME1" | "MONOCHROME2") => false,
        (3, "RGB" | "YBR_FULL") => true,
        (samples, other) => return Err(error(format!("lossy JPEG encoding of {other} pixel data with {samples} samples per pixel"))),
    };
    let (width, height) = match (u16::try_from(frame.columns), u16::try_from(frame.rows)) {
        (Ok(w), Ok(h)) if w > 0 && h > 0 => (c_int::from(w), c_int::from(h)),
        _ => return Err(error(format!("JPEG holds 1 to 65535 pixels a side, not {}x{}", frame.columns, frame.rows))),
    };
    let mut values = patterns(frame, precision)?;
    if photometric == "YBR_FULL" {
        ybr_full_to_rgb(&mut values, precision);
    }
    let handle = Handle::new(tj::TJINIT_TJINIT_COMPRESS)?;
    handle.set(tj::TJPARAM_TJPARAM_QUALITY, c_int::from(quality.clamp(1, 100)))?;
    handle.set(tj::TJPARAM_TJPARAM_SUBSAMP, if colour { tj::TJSAMP_TJSAMP_422 } else { tj::TJSAMP_TJSAMP_GRAY })?;
    handle.set(tj::TJPARAM_TJPARAM_PRECISION, precision as c_int)?;
    let format = if colour { tj::TJPF_TJPF_RGB } else { tj::TJPF_TJPF_GRAY };
    let mut out = Buffer::default();
    let status = if precision == 8 {
        let samples: Vec<u8> = values.iter().map(|&v| v as u8).collect();
        // SAFETY: the handle is a live compressor; `samples` holds width × height × components
        // 8-bit samples (checked by `patterns`), read with the default pitch; `out` is an empty
        // buffer (null pointer) that TurboJPEG allocates and `Buffer` frees.
        unsafe { tj::tj3Compress8(handle.as_ptr(), samples.as_ptr(), width, 0, height, format, &raw mut out.data, &raw mut out.len) }
    } else {
        let samples: Vec<i16> = values.iter().map(|&v| v as i16).collect();
        // SAFETY: as above, with 12-bit samples (0 to 4095) in `i16`s.
        unsafe { tj::tj3Compress12(handle.as_ptr(), samples.as_ptr(), width, 0, height, format, &raw mut out.data, &raw mut out.len) }
    };
    if status != 0 {
        return Err(error(format!("encoding: {}", handle.message())));
    }
    let mut stream = out.to_vec();
    if stream.len() % 2 == 1 {
        stream.push(0);
    }
    Ok(stream)
}

/// The frame's samples as bit patterns of `precision` bits, pixel-interleaved: unsigned values
/// masked to Bits Stored, signed ones sign-extended from Bits Stored; either must fit in
/// `precision` bits.
fn patterns(frame: &Frame<'_>, precision: u32) -> Result<Vec<u16>> {
    let components = frame.samples_per_pixel as usize;
    let bytes = frame.bits_allocated as usize / 8;
    let pixels = frame.rows as usize * frame.columns as usize;
    let len = pixels * components * bytes;
    if frame.samples.len() < len {
        return Err(error(format!("a frame of {} bytes, {len} expected", frame.samples.len())));
    }
    let stored = frame.bits_stored;
    let (low, high) = if frame.signed { (-(1i32 << (precision - 1)), (1i32 << (precision - 1)) - 1) } else { (0, (1i32 << precision) - 1) };
    let mask = (1i32 << precision) - 1;
    let mut out = Vec::with_capacity(pixels * components);
    for pixel in 0..pixels {
        for component in 0..components {
            let index = if frame.planar { component * pixels + pixel } else { pixel * components + component };
            let at = index * bytes;
            let raw = if bytes == 1 { u32::from(frame.samples[at]) } else { u32::from(u16::from_le_bytes([frame.samples[at], frame.samples[at + 1]])) };
            let shift = 32 - stored;
            let value = if frame.signed { ((raw << shift) as i32) >> shift } else { ((raw << shift) >> shift) as i32 };
            if value < low || value > high {
                return Err(error(format!(
                    "a sample of {value} does not fit in the {precision} bits of lossy JPEG ({}, Bits Stored {stored})",
                    if frame.signed { "signed" } else { "unsigned" }
                )));
            }
            out.push((value & mask) as u16);
        }
    }
    Ok(out)
}

/// YBR_FULL samples (Y, Cb, Cr, pixel-interleaved) to RGB in place, with the equations of PS3.3
/// C.7.6.3.1.2 scaled to `precision` bits.
fn ybr_full_to_rgb(samples: &mut [u16], precision: u32) {
    let max = f64::from((1u32 << precision) - 1);
    let half = f64::from(1u32 << (precision - 1));
    for pixel in samples.chunks_exact_mut(3) {
        let (y, cb, cr) = (f64::from(pixel[0]), f64::from(pixel[1]) - half, f64::from(pixel[2]) - half);
        let clamp = |v: f64| v.round().clamp(0.0, max) as u16;
        pixel[0] = clamp(y + 1.402 * cr);
        pixel[1] = clamp(y - 0.344_136 * cb - 0.714_136 * cr);
        pixel[2] = clamp(y + 1.772 * cb);
    }
}

/// Decodes one JPEG stream (lossy or lossless) into `out`, which holds exactly one native frame
/// of `pixel` ([`PixelModule::frame_len`]). Returns the Photometric Interpretation the decoded
/// samples have when it is not `pixel.photometric` any more (`RGB` for colour lossy streams).
pub(crate) fn decode_frame(stream: &[u8], pixel: &PixelModule, out: &mut [u8]) -> Result<Option<&'static str>> {
    pixel.check_decode_target(out.len()).map_err(error)?;
    if !crate::decode::ends_with_end_marker(stream) {
        return Err(error("the stream is truncated: it does not end with an EOI marker"));
    }
    let (width, height) = (c_int::try_from(pixel.columns), c_int::try_from(pixel.rows));
    let (Ok(width), Ok(height)) = (width, height) else {
        return Err(error(format!("a {}x{} frame", pixel.columns, pixel.rows)));
    };
    let handle = Handle::new(tj::TJINIT_TJINIT_DECOMPRESS)?;
    if let Ok(limit) = c_int::try_from(pixel.pixels()) {
        handle.set(tj::TJPARAM_TJPARAM_MAXPIXELS, limit.max(1))?;
    }
    handle.set(tj::TJPARAM_TJPARAM_SCANLIMIT, SCAN_LIMIT)?;
    handle.run("reading the header", |h| {
        // SAFETY: the handle is a live decompressor and `stream` is readable for its length.
        unsafe { tj::tj3DecompressHeader(h, stream.as_ptr(), stream.len() as tj::size_t) }
    })?;
    let (w, h) = (handle.get(tj::TJPARAM_TJPARAM_JPEGWIDTH), handle.get(tj::TJPARAM_TJPARAM_JPEGHEIGHT));
    if (w, h) != (width, height) {
        return Err(error(format!("a {w}x{h} stream for a frame of {width}x{height} (Columns x Rows)")));
    }
    let precision = handle.get(tj::TJPARAM_TJPARAM_PRECISION);
    let lossless = handle.get(tj::TJPARAM_TJPARAM_LOSSLESS) == 1;
    let colour_space = handle.get(tj::TJPARAM_TJPARAM_COLORSPACE);
    let components = match u32::try_from(colour_space) {
        Ok(tj::TJCS_TJCS_GRAY) => 1,
        Ok(tj::TJCS_TJCS_RGB | tj::TJCS_TJCS_YCbCr) => 3,
        _ => 4,
    };
    if components != pixel.samples_per_pixel {
        return Err(error(format!("a stream of {components} components for {} samples per pixel", pixel.samples_per_pixel)));
    }
    if !(2..=16).contains(&precision) || precision as u32 > pixel.bits_allocated {
        return Err(error(format!("a stream of {precision}-bit samples for Bits Allocated {}", pixel.bits_allocated)));
    }
    let ycbcr = u32::try_from(colour_space) == Ok(tj::TJCS_TJCS_YCbCr);
    let mut stream = Cow::Borrowed(stream);
    let mut converted = components == 3 && (!lossless || ycbcr);
    if components == 3 && !lossless && ycbcr && pixel.photometric == "RGB" {
        let markers = colour_markers(&stream);
        if !markers.jfif && !markers.adobe {
            // libjpeg guessed YCbCr from the component identifiers; DICOM says RGB.
            stream = Cow::Owned(with_adobe_rgb_marker(&stream));
            converted = false;
        }
    }
    let format = if components == 3 { tj::TJPF_TJPF_RGB } else { tj::TJPF_TJPF_GRAY };
    let samples = pixel.pixels() * components as usize;
    let what = "decoding";
    // Samples of more than 8 bits go straight into `out` when it can hold them as they are.
    let in_place = cfg!(target_endian = "little") && pixel.bits_allocated == 16 && out.as_ptr().align_offset(2) == 0;
    match (precision, pixel.bits_allocated) {
        (2..=8, 8) => handle.run(what, |h| {
            // SAFETY: the handle is a live decompressor whose header matched `out`: width ×
            // height pixels of `components` 8-bit samples, which is `out.len()` bytes, written
            // with the default pitch; `stream` is readable for its length.
            unsafe { tj::tj3Decompress8(h, stream.as_ptr(), stream.len() as tj::size_t, out.as_mut_ptr(), 0, format) }
        })?,
        (2..=8, _) => {
            let mut decoded = vec![0u8; samples];
            handle.run(what, |h| {
                // SAFETY: as above, into `decoded`, which holds `samples` bytes.
                unsafe { tj::tj3Decompress8(h, stream.as_ptr(), stream.len() as tj::size_t, decoded.as_mut_ptr(), 0, format) }
            })?;
            for (target, value) in out.chunks_exact_mut(2).zip(decoded) {
                target.copy_from_slice(&u16::from(value).to_le_bytes());
            }
        }
        (9..=12, _) if in_place => handle.run(what, |h| {
            // SAFETY: as above; `out` holds `samples` 16-bit samples (out.len() is
            // 2 × samples, Bits Allocated 16) at a 2-aligned address (checked), any bit pattern
            // is a valid `i16`, and on a little-endian host an `i16` of 0 to 4095 is its
            // little-endian bytes.
            unsafe { tj::tj3Decompress12(h, stream.as_ptr(), stream.len() as tj::size_t, out.as_mut_ptr().cast::<i16>(), 0, format) }
        })?,
        (13..=16, _) if in_place => handle.run(what, |h| {
            // SAFETY: as for 12 bits, with `u16`s.
            unsafe { tj::tj3Decompress16(h, stream.as_ptr(), stream.len() as tj::size_t, out.as_mut_ptr().cast::<u16>(), 0, format) }
        })?,
        (9..=12, _) => {
            let mut decoded = vec![0i16; samples];
            handle.run(what, |h| {
                // SAFETY: as above, into `decoded`, which holds `samples` 12-bit samples.
                unsafe { tj::tj3Decompress12(h, stream.as_ptr(), stream.len() as tj::size_t, decoded.as_mut_ptr(), 0, format) }
            })?;
            for (target, value) in out.chunks_exact_mut(2).zip(decoded) {
                target.copy_from_slice(&(value as u16).to_le_bytes());
            }
        }
        _ => {
            let mut decoded = vec![0u16; samples];
            handle.run(what, |h| {
                // SAFETY: as above, into `decoded`, which holds `samples` 16-bit samples.
                unsafe { tj::tj3Decompress16(h, stream.as_ptr(), stream.len() as tj::size_t, decoded.as_mut_ptr(), 0, format) }
            })?;
            for (target, value) in out.chunks_exact_mut(2).zip(decoded) {
                target.copy_from_slice(&value.to_le_bytes());
            }
        }
    }
    Ok(converted.then_some("RGB"))
}

/// The colour markers of a stream's header.
#[derive(Debug, Default, PartialEq)]
struct ColourMarkers {
    /// An APP0 JFIF marker: YCbCr.
    jfif: bool,
    /// An APP14 Adobe marker: its transform says RGB or YCbCr.
    adobe: bool,
}

/// Looks for JFIF and Adobe markers among the marker segments before the first scan.
fn colour_markers(stream: &[u8]) -> ColourMarkers {
    let mut markers = ColourMarkers::default();
    let mut at = 2;
    if stream.get(..2) != Some(&[0xFF, 0xD8]) {
        return markers;
    }
    while let (Some(&0xFF), Some(&marker)) = (stream.get(at), stream.get(at + 1)) {
        match marker {
            0xFF => at += 1,
            0x01 | 0xD0..=0xD8 => at += 2,
            0xDA | 0xD9 => break,
            _ => {
                let Some(len) = stream.get(at + 2..at + 4).map(|b| usize::from(u16::from_be_bytes([b[0], b[1]]))) else { break };
                let body = stream.get(at + 4..(at + 2 + len).min(stream.len())).unwrap_or_default();
                markers.jfif |= marker == 0xE0 && body.starts_with(b"JFIF\0");
                markers.adobe |= marker == 0xEE && body.starts_with(b"Adobe");
                at += 2 + len;
            }
        }
    }
    markers
}

/// The stream with an APP14 Adobe marker saying "no transform" (RGB) after its SOI.
fn with_adobe_rgb_marker(stream: &[u8]) -> Vec<u8> {
    // FF EE, length 14, "Adobe", version 100, flags 0 and 0, transform 0.
    const ADOBE_RGB: [u8; 16] = [0xFF, 0xEE, 0x00, 0x0E, b'A', b'd', b'o', b'b', b'e', 0x00, 0x64, 0x00, 0x00, 0x00, 0x00, 0x00];
    let mut out = Vec::with_capacity(stream.len() + ADOBE_RGB.len());
    out.extend_from_slice(&stream[..2]);
    out.extend_from_slice(&ADOBE_RGB);
    out.extend_from_slice(&stream[2..]);
    out
}

/// Whether a libjpeg warning means that the pixels are damaged (data missing or undecodable),
/// rather than that the stream bends the standard harmlessly.
fn damaged(message: &str) -> bool {
    message.contains("Premature end of JPEG file") || (message.contains("Corrupt JPEG data") && !message.contains("extraneous bytes"))
}

/// A TurboJPEG instance, destroyed on drop.
struct Handle(NonNull<c_void>);

impl Handle {
    fn new(kind: tj::TJINIT) -> Result<Self> {
        // SAFETY: tj3Init has no preconditions; a null handle (out of memory) is handled.
        let handle = unsafe { tj::tj3Init(kind as c_int) };
        NonNull::new(handle).map(Self).ok_or_else(|| error("libjpeg-turbo could not create an instance"))
    }

    fn as_ptr(&self) -> tj::tjhandle {
        self.0.as_ptr()
    }

    fn set(&self, parameter: tj::TJPARAM, value: c_int) -> Result<()> {
        // SAFETY: the handle is live; tj3Set checks the parameter and its value.
        if unsafe { tj::tj3Set(self.as_ptr(), parameter as c_int, value) } == 0 {
            Ok(())
        } else {
            Err(error(format!("setting parameter {parameter} to {value}: {}", self.message())))
        }
    }

    fn get(&self, parameter: tj::TJPARAM) -> c_int {
        // SAFETY: the handle is live; an unknown parameter gives -1.
        unsafe { tj::tj3Get(self.as_ptr(), parameter as c_int) }
    }

    /// The message of the last error or warning (the instance's, or libjpeg's of this thread).
    fn message(&self) -> String {
        // SAFETY: the handle is live; the result is null or a NUL-terminated string owned by
        // libjpeg-turbo that stays valid until its next call on this thread, and is copied here.
        let text = unsafe { tj::tj3GetErrorStr(self.as_ptr()) };
        if text.is_null() {
            return "unknown error".into();
        }
        // SAFETY: see above: non-null and NUL-terminated.
        unsafe { CStr::from_ptr(text) }.to_string_lossy().trim().to_owned()
    }

    fn warned(&self) -> bool {
        // SAFETY: the handle is live.
        let code = unsafe { tj::tj3GetErrorCode(self.as_ptr()) };
        code == tj::TJERR_TJERR_WARNING as c_int
    }

    /// Runs a decompression call: stopping at the first warning, then, when that warning is
    /// harmless, once more to the end. A warning that says the data is damaged, and any fatal
    /// error, is an [`Error::Codec`].
    fn run(&self, what: &str, mut call: impl FnMut(tj::tjhandle) -> c_int) -> Result<()> {
        self.set(tj::TJPARAM_TJPARAM_STOPONWARNING, 1)?;
        if call(self.as_ptr()) == 0 {
            return Ok(());
        }
        let first = self.message();
        if !self.warned() || damaged(&first) {
            return Err(error(format!("{what}: {first}")));
        }
        // Later warnings are not reported; a fatal error replaces the message.
        self.set(tj::TJPARAM_TJPARAM_STOPONWARNING, 0)?;
        if call(self.as_ptr()) != 0 {
            let message = self.message();
            if message != first {
                return Err(error(format!("{what}: {message}")));
            }
        }
        tracing::debug!(warning = %first, "libjpeg-turbo warning while {what}");
        Ok(())
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        // SAFETY: the handle was created by tj3Init and is destroyed once.
        unsafe { tj::tj3Destroy(self.as_ptr()) }
    }
}

/// A buffer that TurboJPEG allocates for a compressed stream, freed on drop.
struct Buffer {
    data: *mut u8,
    len: tj::size_t,
}

impl Default for Buffer {
    fn default() -> Self {
        Buffer { data: ptr::null_mut(), len: 0 }
    }
}

impl Buffer {
    fn to_vec(&self) -> Vec<u8> {
        if self.data.is_null() {
            return Vec::new();
        }
        // SAFETY: TurboJPEG set `data` to a buffer of which the first `len` bytes are the stream.
        unsafe { std::slice::from_raw_parts(self.data, self.len as usize) }.to_vec()
    }
}

impl Drop for Buffer {
    fn drop(&mut self) {
        if !self.data.is_null() {
            // SAFETY: the buffer was allocated by TurboJPEG (tj3Alloc) and is freed once.
            unsafe { tj::tj3Free(self.data.cast::<c_void>()) }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(samples: &[u8], rows: u32, columns: u32, spp: u32, bits: u32, stored: u32, signed: bool) -> Frame<'_> {
        Frame { samples, rows, columns, samples_per_pixel: spp, bits_allocated: bits, bits_stored: stored, signed, planar: false }
    }

    fn module(rows: u32, columns: u32, spp: u32, bits: u32, photometric: &str) -> PixelModule {
        PixelModule { rows, columns, samples_per_pixel: spp, bits_allocated: bits, bits_stored: bits, signed: false, photometric: photometric.into() }
    }

    /// A smooth 12-bit gradient with a little texture, as little-endian 16-bit samples.
    fn gradient12(rows: u32, columns: u32) -> Vec<u8> {
        (0..rows * columns).flat_map(|i| (((i % columns) * 4000 / columns + (i / columns) * 7 + (i * 13 % 5)) as u16 & 0xFFF).to_le_bytes()).collect()
    }

    fn decode(stream: &[u8], pixel: &PixelModule) -> (Vec<u8>, Option<&'static str>) {
        let mut out = vec![0; pixel.frame_len()];
        let photometric = decode_frame(stream, pixel, &mut out).expect("decodes");
        (out, photometric)
    }

    #[test]
    fn twelve_bit_frames_are_sof1_and_decode_close() {
        let samples = gradient12(40, 56);
        let stream = encode_frame(&frame(&samples, 40, 56, 1, 16, 12, false), "MONOCHROME2", 90).expect("encodes");
        assert_eq!(&stream[..2], &[0xFF, 0xD8]);
        let sof = stream.windows(2).position(|w| w == [0xFF, 0xC1]).expect("SOF1");
        assert_eq!(stream[sof + 4], 12, "precision");
        assert_eq!(stream.len() % 2, 0);
        let (decoded, photometric) = decode(&stream, &module(40, 56, 1, 16, "MONOCHROME2"));
        assert_eq!(photometric, None);
        // Into a buffer at an odd address: through a copy, the same samples.
        let mut unaligned = vec![0u8; decoded.len() + 1];
        let start = usize::from(unaligned.as_ptr().align_offset(2) == 0);
        decode_frame(&stream, &module(40, 56, 1, 16, "MONOCHROME2"), &mut unaligned[start..start + decoded.len()]).expect("decodes");
        assert!(unaligned[start..start + decoded.len()] == decoded[..]);
        let errors: Vec<i32> = decoded
            .chunks_exact(2)
            .zip(samples.chunks_exact(2))
            .map(|(a, b)| (i32::from(u16::from_le_bytes([a[0], a[1]])) - i32::from(u16::from_le_bytes([b[0], b[1]]))).abs())
            .collect();
        let max = errors.iter().copied().max().unwrap_or(0);
        assert!(max <= 40, "max error {max}");
    }

    #[test]
    fn eight_bit_colour_is_ybr_422_baseline_and_decodes_to_rgb() {
        let rgb: Vec<u8> = (0..24u32 * 32).flat_map(|i| [(i % 32 * 8) as u8, (i / 32 * 10) as u8, 128]).collect();
        let stream = encode_frame(&frame(&rgb, 24, 32, 3, 8, 8, false), "RGB", 95).expect("encodes");
        let sof = stream.windows(2).position(|w| w == [0xFF, 0xC0]).expect("SOF0: baseline");
        assert_eq!((stream[sof + 4], stream[sof + 9]), (8, 3));
        assert_eq!(stream[sof + 11], 0x21, "luminance sampled 2x1: 4:2:2");
        let (decoded, photometric) = decode(&stream, &module(24, 32, 3, 8, COLOUR_PHOTOMETRIC));
        assert_eq!(photometric, Some("RGB"));
        let max = decoded.iter().zip(&rgb).map(|(a, b)| a.abs_diff(*b)).max().unwrap_or(0);
        assert!(max <= 16, "max error {max}");
    }

    #[test]
    fn signed_samples_are_coded_as_their_bit_patterns() {
        // -2048, -1, 0, 2047 in 12 bits stored, sign-extended in 16 bits: flat 4x4 blocks.
        let values: [i16; 4] = [-2048, -1, 0, 2047];
        let samples: Vec<u8> = (0..16 * 16).flat_map(|i| values[(i % 16) / 4].to_le_bytes()).collect();
        let stream = encode_frame(&frame(&samples, 16, 16, 1, 16, 12, true), "MONOCHROME2", 100).expect("encodes");
        let (decoded, _) = decode(&stream, &module(16, 16, 1, 16, "MONOCHROME2"));
        let first: Vec<u16> = decoded.chunks_exact(2).take(16).map(|s| u16::from_le_bytes([s[0], s[1]])).collect();
        // Patterns 0x800, 0xFFF, 0x000, 0x7FF, within the error of quality 100.
        for (i, expected) in [0x800u16, 0xFFF, 0x000, 0x7FF].iter().enumerate() {
            for value in &first[i * 4..i * 4 + 4] {
                assert!(value.abs_diff(*expected) <= 64, "{value:#x} for {expected:#x}");
            }
        }
        // 16 bits stored whose values do not fit in 12 are refused.
        let wide: Vec<u8> = (0..16u16).flat_map(|i| (i * 1000).to_le_bytes()).collect();
        assert!(encode_frame(&frame(&wide, 4, 4, 1, 16, 16, false), "MONOCHROME2", 85).is_err());
        let fits: Vec<u8> = (0..16u16).flat_map(|i| (i * 200).to_le_bytes()).collect();
        assert!(encode_frame(&frame(&fits, 4, 4, 1, 16, 16, false), "MONOCHROME2", 85).is_ok());
    }

    #[test]
    fn corrupt_streams_are_errors() {
        let samples = gradient12(32, 32);
        let stream = encode_frame(&frame(&samples, 32, 32, 1, 16, 12, false), "MONOCHROME2", 85).expect("encodes");
        let pixel = module(32, 32, 1, 16, "MONOCHROME2");
        let mut out = vec![0; pixel.frame_len()];
        for bad in [&stream[..stream.len() / 2], &stream[..10], &[0u8; 64][..], b"garbage that is not JPEG at all\xFF\xD9", &[][..]] {
            assert!(decode_frame(bad, &pixel, &mut out).is_err(), "{} bytes", bad.len());
        }
        // Scrambled entropy-coded data keeping SOI, the tables and EOI.
        let sos = stream.windows(2).position(|w| w == [0xFF, 0xDA]).expect("SOS");
        let mut scrambled = stream.clone();
        let end = scrambled.len() - 4;
        for (i, b) in scrambled[sos + 20..end].iter_mut().enumerate() {
            *b = (i as u8).wrapping_mul(151).wrapping_add(7);
        }
        let _ = decode_frame(&scrambled, &pixel, &mut out);
        // The stream of another size or sample count than the attributes say.
        assert!(decode_frame(&stream, &module(32, 31, 1, 16, "MONOCHROME2"), &mut vec![0; 32 * 31 * 2]).is_err());
        assert!(decode_frame(&stream, &module(32, 32, 1, 8, "MONOCHROME2"), &mut vec![0; 32 * 32]).is_err(), "12 bits into 8");
        assert!(decode_frame(&stream, &module(32, 32, 3, 16, "RGB"), &mut vec![0; 32 * 32 * 6]).is_err());
    }

    #[test]
    fn colour_markers_are_found() {
        let rgb = vec![100u8; 8 * 8 * 3];
        let stream = encode_frame(&frame(&rgb, 8, 8, 3, 8, 8, false), "RGB", 85).expect("encodes");
        assert!(colour_markers(&stream).jfif, "TurboJPEG writes JFIF for YCbCr");
        assert!(colour_markers(&with_adobe_rgb_marker(&stream)).adobe);
        assert!(crate::decode::ends_with_end_marker(&stream));
        assert!(crate::decode::ends_with_end_marker(&[&stream[..], &[0xFF]].concat()), "padded with FF");
        assert!(!crate::decode::ends_with_end_marker(&stream[..stream.len() - 3]));
    }

    #[test]
    fn impossible_frames_are_errors() {
        let f = frame(&[0; 8], 2, 2, 1, 16, 12, false);
        assert!(encode_frame(&Frame { bits_allocated: 32, ..f }, "MONOCHROME2", 85).is_err());
        assert!(encode_frame(&Frame { samples: &[0; 7], ..f }, "MONOCHROME2", 85).is_err());
        assert!(encode_frame(&Frame { rows: 0, ..f }, "MONOCHROME2", 85).is_err());
        assert!(encode_frame(&f, "PALETTE COLOR", 85).is_err());
        assert!(encode_frame(&Frame { samples_per_pixel: 3, samples: &[0; 24], ..f }, "YBR_FULL_422", 85).is_err());
    }
}
