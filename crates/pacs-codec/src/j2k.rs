//! Our JPEG 2000 encoder and decoder on OpenJPEG: one J2K codestream (not a JP2 file) per frame
//! written; J2K codestreams and JP2 files read.
//!
//! dicom-rs decodes JPEG 2000 (through the `jpeg2k` crate) but has no encoder, and the `jpeg2k`
//! crate writes to files only, so this module drives OpenJPEG's C API itself. Like `jpeg.rs`, it
//! calls C: the codec, the image and the streams are created and destroyed here (Drop guards),
//! the streams are in memory, fed through OpenJPEG's user-data callbacks, and every unsafe block
//! says why it is sound.
//!
//! What is written follows PS3.5 A.4.4 and 8.2.4: the component precision is Bits Stored, the
//! signedness is Pixel Representation, one component per sample, no multiple component
//! transform (the Photometric Interpretation stays as it was: `MONOCHROME1`, `MONOCHROME2`,
//! `PALETTE COLOR`, `RGB` or `YBR_FULL`), the reversible 5/3 wavelet for lossless and the
//! irreversible 9/7 wavelet with a target compression ratio for lossy.
//!
//! What is read must match the image pixel module (columns, rows, one component per sample, no
//! subsampled component, a precision within Bits Allocated); OpenJPEG decodes in its default
//! strict mode, so a truncated codestream is an error. The frame comes back little endian, samples interleaved,
//! each component's value in Bits Allocated bits (signed components two's complement). OpenJPEG
//! undoes a multiple component transform, so YBR_RCT and YBR_ICT frames come back as RGB.
#![allow(unsafe_code)]

use std::ffi::{CStr, c_char, c_void};
use std::ptr::{self, NonNull};

use openjpeg_sys as opj;

use crate::error::{Error, Result as CodecResult};
use crate::frame::{Frame, PixelModule};

/// How to compress.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Mode {
    /// Reversible 5/3 wavelet, every bit kept.
    Lossless,
    /// Irreversible 9/7 wavelet aiming at this compression ratio (uncompressed size over
    /// compressed size, at least 1).
    Lossy {
        /// The target ratio.
        ratio: f32,
    },
}

/// The compression ratio of JPEG 2000 (lossy) for a quality from 0 to 100: 85 (the default) is
/// about 8.5:1, 50 about 26:1, 0 about 51:1.
pub(crate) fn ratio_for_quality(quality: Option<u8>) -> f32 {
    let quality = f32::from(quality.unwrap_or(85).min(100));
    1.0 + (100.0 - quality) / 2.0
}

/// Encodes one frame into a JPEG 2000 codestream.
pub(crate) fn encode_frame(frame: &Frame<'_>, mode: Mode) -> Result<Vec<u8>, String> {
    let components = component_samples(frame)?;
    let (width, height) = (frame.columns, frame.rows);
    let mut messages = Messages::default();
    let codec = Codec::new()?;
    // SAFETY: `codec` is a live compressor; the handlers receive `messages`, which outlives the
    // codec (declared before it, dropped after it), and only read the C string they are given.
    unsafe {
        let data = (&raw mut messages).cast::<c_void>();
        opj::opj_set_error_handler(codec.0.as_ptr(), Some(on_error), data);
        opj::opj_set_warning_handler(codec.0.as_ptr(), Some(on_warning), data);
    }
    let image = Image::new(frame, &components)?;
    let mut params = parameters(width, height, mode);
    // SAFETY: all three pointers are live and exclusively ours; OpenJPEG copies what it needs from
    // the parameters and the image header.
    let set_up = unsafe { opj::opj_setup_encoder(codec.0.as_ptr(), &raw mut *params, image.0.as_ptr()) };
    if set_up == 0 {
        return Err(messages.failure("setting up the JPEG 2000 encoder"));
    }
    let mut sink = Sink::default();
    let stream = Stream::new(&mut sink)?;
    // SAFETY: codec, image and stream are live; the stream writes into `sink`, which outlives it
    // and is not touched by us until the stream is dropped below.
    let encoded = unsafe {
        opj::opj_start_compress(codec.0.as_ptr(), image.0.as_ptr(), stream.0.as_ptr()) != 0
            && opj::opj_encode(codec.0.as_ptr(), stream.0.as_ptr()) != 0
            && opj::opj_end_compress(codec.0.as_ptr(), stream.0.as_ptr()) != 0
    };
    // The stream flushes what it buffered into the sink when destroyed.
    drop(stream);
    drop(codec);
    if !encoded || sink.failed {
        return Err(messages.failure("JPEG 2000 encoding"));
    }
    let mut out = sink.data;
    // PS3.5 A.4: fragments have an even length; the codestream ends with EOC, padding follows.
    if out.len() % 2 == 1 {
        out.push(0);
    }
    Ok(out)
}

/// The samples of each component as OpenJPEG wants them: one `i32` per pixel, in the range of a
/// `bits_stored`-bit (un)signed integer (bits above Bits Stored are dropped, signed values sign
/// extended).
fn component_samples(frame: &Frame<'_>) -> Result<Vec<Vec<i32>>, String> {
    if frame.bits_allocated != 8 && frame.bits_allocated != 16 {
        return Err(format!("JPEG 2000 encoding needs Bits Allocated 8 or 16, not {}", frame.bits_allocated));
    }
    if frame.bits_stored == 0 || frame.bits_stored > frame.bits_allocated {
        return Err(format!("Bits Stored {} with Bits Allocated {}", frame.bits_stored, frame.bits_allocated));
    }
    if frame.samples_per_pixel != 1 && frame.samples_per_pixel != 3 {
        return Err(format!("JPEG 2000 encoding of {} samples per pixel", frame.samples_per_pixel));
    }
    if frame.rows == 0 || frame.columns == 0 {
        return Err("an empty frame".into());
    }
    let pixels = frame.rows as usize * frame.columns as usize;
    let spp = frame.samples_per_pixel as usize;
    let bytes = frame.bits_allocated as usize / 8;
    if frame.samples.len() < pixels * spp * bytes {
        return Err(format!("a frame of {} bytes, {} expected", frame.samples.len(), pixels * spp * bytes));
    }
    let shift = 32 - frame.bits_stored;
    let value = |index: usize| -> i32 {
        let at = index * bytes;
        let raw = if bytes == 1 { u32::from(frame.samples[at]) } else { u32::from(u16::from_le_bytes([frame.samples[at], frame.samples[at + 1]])) };
        if frame.signed { ((raw << shift) as i32) >> shift } else { ((raw << shift) >> shift) as i32 }
    };
    Ok((0..spp).map(|c| (0..pixels).map(|p| if frame.planar { value(c * pixels + p) } else { value(p * spp + c) }).collect()).collect())
}

/// Encoder parameters: one quality layer, no component transform, as many resolution levels as
/// the frame's size allows (OpenJPEG's default of 6 at most).
fn parameters(width: u32, height: u32, mode: Mode) -> Box<opj::opj_cparameters_t> {
    // SAFETY: opj_cparameters_t is plain C data; all-zero bytes are a valid value of every field
    // (null pointers, zero numbers, enum variants with discriminant 0), and
    // opj_set_default_encoder_parameters then sets the defaults.
    let mut params: Box<opj::opj_cparameters_t> = Box::new(unsafe { std::mem::zeroed() });
    // SAFETY: `params` is a valid, exclusively borrowed parameter block.
    unsafe { opj::opj_set_default_encoder_parameters(&raw mut *params) };
    let mut resolutions = 6;
    while resolutions > 1 && (1u32 << (resolutions - 1)) > width.min(height) {
        resolutions -= 1;
    }
    params.numresolution = resolutions;
    params.tcp_numlayers = 1;
    params.cp_disto_alloc = 1;
    params.tcp_mct = 0;
    match mode {
        Mode::Lossless => {
            params.irreversible = 0;
            params.tcp_rates[0] = 0.0;
        }
        Mode::Lossy { ratio } => {
            params.irreversible = 1;
            params.tcp_rates[0] = ratio.max(1.0);
        }
    }
    params
}

/// Error and warning messages of one encoding.
#[derive(Default)]
struct Messages {
    errors: Vec<String>,
}

impl Messages {
    fn failure(&self, what: &str) -> String {
        if self.errors.is_empty() { format!("{what} failed") } else { format!("{what} failed: {}", self.errors.join("; ")) }
    }
}

fn message(msg: *const c_char) -> String {
    if msg.is_null() {
        return String::new();
    }
    // SAFETY: OpenJPEG passes a NUL-terminated string that lives for the duration of the call.
    unsafe { CStr::from_ptr(msg) }.to_string_lossy().trim().to_owned()
}

unsafe extern "C" fn on_error(msg: *const c_char, data: *mut c_void) {
    let text = message(msg);
    tracing::debug!(message = %text, "OpenJPEG error");
    // SAFETY: `data` is the `Messages` registered in `encode_frame`, alive and not otherwise
    // borrowed while OpenJPEG runs.
    if let Some(messages) = unsafe { data.cast::<Messages>().as_mut() } {
        messages.errors.push(text);
    }
}

unsafe extern "C" fn on_warning(msg: *const c_char, _data: *mut c_void) {
    tracing::debug!(message = %message(msg), "OpenJPEG warning");
}

/// An OpenJPEG compressor or decompressor, destroyed on drop.
struct Codec(NonNull<opj::opj_codec_t>);

impl Codec {
    /// A J2K compressor.
    fn new() -> Result<Self, String> {
        // SAFETY: creating a compressor has no preconditions; a null result is handled.
        let codec = unsafe { opj::opj_create_compress(opj::CODEC_FORMAT::OPJ_CODEC_J2K) };
        NonNull::new(codec).map(Self).ok_or_else(|| "OpenJPEG could not create a compressor".to_owned())
    }

    /// A decompressor of `format` (J2K codestream or JP2 file).
    fn decompressor(format: opj::CODEC_FORMAT) -> Result<Self, String> {
        // SAFETY: creating a decompressor has no preconditions; a null result is handled.
        let codec = unsafe { opj::opj_create_decompress(format) };
        NonNull::new(codec).map(Self).ok_or_else(|| "OpenJPEG could not create a decompressor".to_owned())
    }
}

impl Drop for Codec {
    fn drop(&mut self) {
        // SAFETY: the codec was created by opj_create_compress and is destroyed once.
        unsafe { opj::opj_destroy_codec(self.0.as_ptr()) }
    }
}

/// An OpenJPEG image holding one frame's components, destroyed on drop.
struct Image(NonNull<opj::opj_image_t>);

impl Image {
    fn new(frame: &Frame<'_>, components: &[Vec<i32>]) -> Result<Self, String> {
        let (w, h) = (frame.columns, frame.rows);
        let mut parameters: Vec<opj::opj_image_cmptparm_t> = components
            .iter()
            .map(|_| opj::opj_image_cmptparm_t {
                dx: 1,
                dy: 1,
                w,
                h,
                x0: 0,
                y0: 0,
                prec: frame.bits_stored,
                bpp: frame.bits_stored,
                sgnd: u32::from(frame.signed),
            })
            .collect();
        let space = if components.len() == 1 { opj::COLOR_SPACE::OPJ_CLRSPC_GRAY } else { opj::COLOR_SPACE::OPJ_CLRSPC_SRGB };
        let count = u32::try_from(components.len()).map_err(|_| "too many components".to_owned())?;
        // SAFETY: `parameters` holds `count` initialised component descriptions; OpenJPEG copies
        // them and allocates (zeroed) data buffers of w × h samples for each.
        let image = unsafe { opj::opj_image_create(count, parameters.as_mut_ptr(), space) };
        let image = NonNull::new(image).map(Self).ok_or_else(|| "OpenJPEG could not allocate the image".to_owned())?;
        // SAFETY: `image` is live and ours; its `comps` array has `count` entries, each with a data
        // buffer of w × h `i32`s (checked non-null), and `components[c]` has w × h values.
        unsafe {
            let img = &mut *image.0.as_ptr();
            img.x0 = 0;
            img.y0 = 0;
            img.x1 = w;
            img.y1 = h;
            let comps = std::slice::from_raw_parts_mut(img.comps, components.len());
            for (comp, samples) in comps.iter_mut().zip(components) {
                if comp.data.is_null() {
                    return Err("OpenJPEG could not allocate a component".into());
                }
                let len = w as usize * h as usize;
                if samples.len() != len {
                    return Err("component size mismatch".into());
                }
                ptr::copy_nonoverlapping(samples.as_ptr(), comp.data, len);
            }
        }
        Ok(image)
    }
}

impl Drop for Image {
    fn drop(&mut self) {
        // SAFETY: the image was created by opj_image_create and is destroyed once.
        unsafe { opj::opj_image_destroy(self.0.as_ptr()) }
    }
}

/// The bytes written by OpenJPEG: a growable buffer with a write position (the encoder may seek
/// back to patch marker lengths).
#[derive(Default)]
struct Sink {
    data: Vec<u8>,
    position: usize,
    failed: bool,
}

/// An OpenJPEG output stream writing into a [`Sink`], destroyed on drop.
struct Stream<'a>(NonNull<opj::opj_stream_t>, std::marker::PhantomData<&'a mut Sink>);

impl<'a> Stream<'a> {
    fn new(sink: &'a mut Sink) -> Result<Self, String> {
        // SAFETY: creating an output stream (p_is_input = 0) has no preconditions; null is handled.
        let stream = unsafe { opj::opj_stream_create(opj::OPJ_J2K_STREAM_CHUNK_SIZE as usize, 0) };
        let stream = NonNull::new(stream).ok_or_else(|| "OpenJPEG could not create a stream".to_owned())?;
        // SAFETY: the stream is live; the user data is `sink`, exclusively borrowed for the
        // stream's lifetime 'a (no free function: the sink is owned by the caller).
        unsafe {
            opj::opj_stream_set_write_function(stream.as_ptr(), Some(sink_write));
            opj::opj_stream_set_skip_function(stream.as_ptr(), Some(sink_skip));
            opj::opj_stream_set_seek_function(stream.as_ptr(), Some(sink_seek));
            opj::opj_stream_set_user_data(stream.as_ptr(), (sink as *mut Sink).cast::<c_void>(), None);
        }
        Ok(Self(stream, std::marker::PhantomData))
    }
}

impl Drop for Stream<'_> {
    fn drop(&mut self) {
        // SAFETY: the stream was created by opj_stream_create and is destroyed once; the sink it
        // writes to is still borrowed by `self`, so it is alive.
        unsafe { opj::opj_stream_destroy(self.0.as_ptr()) }
    }
}

/// OpenJPEG's "write failed" answer.
const WRITE_FAILED: usize = usize::MAX;

unsafe extern "C" fn sink_write(buffer: *mut c_void, len: usize, data: *mut c_void) -> usize {
    // SAFETY: `data` is the `Sink` registered in `Stream::new`, exclusively ours while OpenJPEG
    // runs.
    let Some(sink) = (unsafe { data.cast::<Sink>().as_mut() }) else { return WRITE_FAILED };
    if len == 0 {
        return 0;
    }
    if buffer.is_null() {
        sink.failed = true;
        return WRITE_FAILED;
    }
    // SAFETY: OpenJPEG hands us `len` readable bytes at `buffer`.
    let bytes = unsafe { std::slice::from_raw_parts(buffer.cast::<u8>(), len) };
    let Some(end) = sink.position.checked_add(len) else {
        sink.failed = true;
        return WRITE_FAILED;
    };
    if sink.data.len() < end {
        sink.data.resize(end, 0);
    }
    if let Some(target) = sink.data.get_mut(sink.position..end) {
        target.copy_from_slice(bytes);
    }
    sink.position = end;
    len
}

unsafe extern "C" fn sink_skip(len: opj::OPJ_OFF_T, data: *mut c_void) -> opj::OPJ_OFF_T {
    // SAFETY: as in `sink_write`.
    let Some(sink) = (unsafe { data.cast::<Sink>().as_mut() }) else { return -1 };
    match i64::try_from(sink.position).ok().and_then(|p| p.checked_add(len)).and_then(|p| usize::try_from(p).ok()) {
        Some(position) => {
            sink.position = position;
            len
        }
        None => {
            sink.failed = true;
            -1
        }
    }
}

unsafe extern "C" fn sink_seek(position: opj::OPJ_OFF_T, data: *mut c_void) -> opj::OPJ_BOOL {
    // SAFETY: as in `sink_write`.
    let Some(sink) = (unsafe { data.cast::<Sink>().as_mut() }) else { return 0 };
    match usize::try_from(position) {
        Ok(position) => {
            sink.position = position;
            1
        }
        Err(_) => {
            sink.failed = true;
            0
        }
    }
}

/// The codec named in errors.
const CODEC: &str = "JPEG 2000";

fn decode_error(reason: impl Into<String>) -> Error {
    Error::Codec { codec: CODEC, reason: reason.into() }
}

/// The first 12 bytes of a JP2 file: its signature box.
const JP2_SIGNATURE: [u8; 12] = [0x00, 0x00, 0x00, 0x0C, 0x6A, 0x50, 0x20, 0x20, 0x0D, 0x0A, 0x87, 0x0A];

/// Decodes one JPEG 2000 frame (a J2K codestream, or a JP2 file) into `out`, which holds exactly
/// one native frame of `pixel` ([`PixelModule::frame_len`]). Returns the Photometric
/// Interpretation the decoded samples have when it is not `pixel.photometric` any more (`RGB` for
/// YBR_RCT and YBR_ICT, whose transform OpenJPEG undoes).
pub(crate) fn decode_frame(stream: &[u8], pixel: &PixelModule, out: &mut [u8]) -> CodecResult<Option<&'static str>> {
    pixel.check_decode_target(out.len()).map_err(decode_error)?;
    let format = if stream.starts_with(&[0xFF, 0x4F, 0xFF, 0x51]) {
        opj::CODEC_FORMAT::OPJ_CODEC_J2K
    } else if stream.starts_with(&JP2_SIGNATURE) {
        opj::CODEC_FORMAT::OPJ_CODEC_JP2
    } else {
        return Err(decode_error("neither a J2K codestream (SOC, SIZ) nor a JP2 file"));
    };
    let mut messages = Messages::default();
    let mut source = Source { data: stream, position: 0 };
    let codec = Codec::decompressor(format).map_err(decode_error)?;
    // SAFETY: as in `encode_frame`: `messages` outlives the codec.
    unsafe {
        let data = (&raw mut messages).cast::<c_void>();
        opj::opj_set_error_handler(codec.0.as_ptr(), Some(on_error), data);
        opj::opj_set_warning_handler(codec.0.as_ptr(), Some(on_warning), data);
    }
    // SAFETY: opj_dparameters_t is plain C data; all-zero bytes are a valid value of every field,
    // and opj_set_default_decoder_parameters then sets the defaults.
    let mut params: Box<opj::opj_dparameters_t> = Box::new(unsafe { std::mem::zeroed() });
    // SAFETY: `params` is a valid, exclusively borrowed parameter block; the codec is live and
    // copies what it needs from it. The decoder stays in OpenJPEG's default mode: strict (a
    // truncated codestream is an error) and still correcting a wrong tile-part count, which some
    // writers leave (calling opj_decoder_set_strict_mode would turn that correction off).
    let set_up = unsafe {
        opj::opj_set_default_decoder_parameters(&raw mut *params);
        opj::opj_setup_decoder(codec.0.as_ptr(), &raw mut *params) != 0
    };
    if !set_up {
        return Err(decode_error(messages.failure("setting up the JPEG 2000 decoder")));
    }
    let input = InputStream::new(&mut source).map_err(decode_error)?;
    let mut image: *mut opj::opj_image_t = ptr::null_mut();
    // SAFETY: codec and stream are live; OpenJPEG sets `image` to an image it allocated (or
    // leaves it null), which the guard below destroys.
    let read = unsafe { opj::opj_read_header(input.0.as_ptr(), codec.0.as_ptr(), &raw mut image) } != 0;
    let image = NonNull::new(image).map(Image);
    let Some(image) = image.filter(|_| read) else {
        return Err(decode_error(messages.failure("reading the JPEG 2000 header")));
    };
    check_header(&image, pixel)?;
    // SAFETY: codec, stream and image are live, and the image is the one the header was read into.
    let decoded = unsafe {
        opj::opj_decode(codec.0.as_ptr(), input.0.as_ptr(), image.0.as_ptr()) != 0 && opj::opj_end_decompress(codec.0.as_ptr(), input.0.as_ptr()) != 0
    };
    drop(input);
    drop(codec);
    if !decoded {
        return Err(decode_error(messages.failure("JPEG 2000 decoding")));
    }
    let components = pixel.samples_per_pixel as usize;
    let pixels = pixel.pixels();
    let bytes = pixel.bits_allocated as usize / 8;
    for c in 0..components {
        // SAFETY: `check_header` found `components` components of `pixels` samples each; after a
        // successful decode each has a data buffer of that many `i32`s (checked non-null here),
        // owned by the image, which outlives this borrow.
        let data = unsafe {
            let comp = &*(*image.0.as_ptr()).comps.add(c);
            if comp.data.is_null() {
                return Err(decode_error("OpenJPEG decoded no data for a component"));
            }
            std::slice::from_raw_parts(comp.data, pixels)
        };
        for (p, &value) in data.iter().enumerate() {
            let at = (p * components + c) * bytes;
            out[at..at + bytes].copy_from_slice(&value.to_le_bytes()[..bytes]);
        }
    }
    let transformed = components == 3 && matches!(pixel.photometric.as_str(), "YBR_RCT" | "YBR_ICT");
    Ok(transformed.then_some("RGB"))
}

/// Checks the header of a JPEG 2000 image against the image pixel module, before anything is
/// decoded (so that a corrupt header never makes OpenJPEG allocate what it says).
fn check_header(image: &Image, pixel: &PixelModule) -> CodecResult<()> {
    // SAFETY: the image is live; after a successful opj_read_header its `comps` array has
    // `numcomps` entries (checked non-null).
    let (img, comps) = unsafe {
        let img = &*image.0.as_ptr();
        if img.comps.is_null() && img.numcomps > 0 {
            return Err(decode_error("OpenJPEG read no components"));
        }
        let comps = if img.numcomps == 0 { &[][..] } else { std::slice::from_raw_parts(img.comps, img.numcomps as usize) };
        (img, comps)
    };
    let (width, height) = (img.x1.saturating_sub(img.x0), img.y1.saturating_sub(img.y0));
    if (width, height) != (pixel.columns, pixel.rows) {
        return Err(decode_error(format!("a {width}x{height} image for a frame of {}x{} (Columns x Rows)", pixel.columns, pixel.rows)));
    }
    if comps.len() != pixel.samples_per_pixel as usize {
        return Err(decode_error(format!("{} components for {} samples per pixel", comps.len(), pixel.samples_per_pixel)));
    }
    for comp in comps {
        if (comp.dx, comp.dy, comp.w, comp.h) != (1, 1, width, height) {
            return Err(decode_error(format!("a subsampled component ({}x{} every {}x{} pixels)", comp.w, comp.h, comp.dx, comp.dy)));
        }
        if comp.prec == 0 || comp.prec > pixel.bits_allocated {
            return Err(decode_error(format!("components of {} bits for Bits Allocated {}", comp.prec, pixel.bits_allocated)));
        }
    }
    Ok(())
}

/// The bytes OpenJPEG reads: a borrowed buffer with a read position.
struct Source<'a> {
    data: &'a [u8],
    position: usize,
}

/// An OpenJPEG input stream reading from a [`Source`], destroyed on drop.
struct InputStream<'a, 'b>(NonNull<opj::opj_stream_t>, std::marker::PhantomData<&'a mut Source<'b>>);

impl<'a, 'b> InputStream<'a, 'b> {
    fn new(source: &'a mut Source<'b>) -> Result<Self, String> {
        // SAFETY: creating an input stream (p_is_input = 1) has no preconditions; null is handled.
        let stream = unsafe { opj::opj_stream_create(opj::OPJ_J2K_STREAM_CHUNK_SIZE as usize, 1) };
        let stream = NonNull::new(stream).ok_or_else(|| "OpenJPEG could not create a stream".to_owned())?;
        let len = source.data.len() as u64;
        // SAFETY: the stream is live; the user data is `source`, exclusively borrowed for the
        // stream's lifetime 'a (no free function: the source is owned by the caller).
        unsafe {
            opj::opj_stream_set_read_function(stream.as_ptr(), Some(source_read));
            opj::opj_stream_set_skip_function(stream.as_ptr(), Some(source_skip));
            opj::opj_stream_set_seek_function(stream.as_ptr(), Some(source_seek));
            opj::opj_stream_set_user_data(stream.as_ptr(), (source as *mut Source<'b>).cast::<c_void>(), None);
            opj::opj_stream_set_user_data_length(stream.as_ptr(), len);
        }
        Ok(Self(stream, std::marker::PhantomData))
    }
}

impl Drop for InputStream<'_, '_> {
    fn drop(&mut self) {
        // SAFETY: the stream was created by opj_stream_create and is destroyed once; the source it
        // reads is still borrowed by `self`, so it is alive.
        unsafe { opj::opj_stream_destroy(self.0.as_ptr()) }
    }
}

/// OpenJPEG's "end of stream" answer to a read.
const END_OF_STREAM: usize = usize::MAX;

unsafe extern "C" fn source_read(buffer: *mut c_void, len: usize, data: *mut c_void) -> usize {
    // SAFETY: `data` is the `Source` registered in `InputStream::new`, exclusively ours while
    // OpenJPEG runs.
    let Some(source) = (unsafe { data.cast::<Source<'_>>().as_mut() }) else { return END_OF_STREAM };
    let remaining = source.data.get(source.position..).unwrap_or_default();
    if remaining.is_empty() || buffer.is_null() {
        return END_OF_STREAM;
    }
    let n = len.min(remaining.len());
    // SAFETY: OpenJPEG hands us a buffer of at least `len` writable bytes, and `n <= len`; the
    // source is a separate Rust slice, so the two do not overlap.
    unsafe { ptr::copy_nonoverlapping(remaining.as_ptr(), buffer.cast::<u8>(), n) };
    source.position += n;
    n
}

unsafe extern "C" fn source_skip(len: opj::OPJ_OFF_T, data: *mut c_void) -> opj::OPJ_OFF_T {
    // SAFETY: as in `source_read`.
    let Some(source) = (unsafe { data.cast::<Source<'_>>().as_mut() }) else { return -1 };
    let position = source.position as i64;
    let target = position.saturating_add(len).clamp(0, source.data.len() as i64);
    if len > 0 && target == position {
        return -1;
    }
    source.position = target as usize;
    target - position
}

unsafe extern "C" fn source_seek(position: opj::OPJ_OFF_T, data: *mut c_void) -> opj::OPJ_BOOL {
    // SAFETY: as in `source_read`.
    let Some(source) = (unsafe { data.cast::<Source<'_>>().as_mut() }) else { return 0 };
    match usize::try_from(position) {
        Ok(position) if position <= source.data.len() => {
            source.position = position;
            1
        }
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(samples: &[u8], rows: u32, columns: u32, spp: u32, bits: u32, signed: bool) -> Frame<'_> {
        Frame { samples, rows, columns, samples_per_pixel: spp, bits_allocated: bits, bits_stored: bits, signed, planar: false }
    }

    #[test]
    fn a_lossless_frame_is_a_j2k_codestream_that_decodes_to_the_same_samples() {
        let samples: Vec<u8> = (0..64u16 * 48).flat_map(|i| (i.wrapping_mul(37) as i16).wrapping_sub(1000).to_le_bytes()).collect();
        let out = encode_frame(&frame(&samples, 48, 64, 1, 16, true), Mode::Lossless).expect("encodes");
        assert_eq!(&out[..4], &[0xFF, 0x4F, 0xFF, 0x51], "SOC then SIZ: a raw codestream, not JP2");
        assert_eq!(out.len() % 2, 0);
        let image = jpeg2k::Image::from_bytes(&out).expect("decodes");
        let comps = image.components();
        assert_eq!(comps.len(), 1);
        assert_eq!((comps[0].precision(), comps[0].is_signed()), (16, true));
        let decoded: Vec<u8> = comps[0].data().iter().flat_map(|&v| (v as i16).to_le_bytes()).collect();
        assert!(decoded == samples);
    }

    #[test]
    fn tiny_and_odd_frames_encode() {
        for (rows, columns) in [(1, 1), (1, 7), (3, 2), (33, 17)] {
            let samples: Vec<u8> = (0..rows * columns * 3).map(|i| (i * 7) as u8).collect();
            let out = encode_frame(&frame(&samples, rows, columns, 3, 8, false), Mode::Lossless).unwrap_or_else(|e| panic!("{rows}x{columns}: {e}"));
            let image = jpeg2k::Image::from_bytes(&out).expect("decodes");
            let comps = image.components();
            for (c, comp) in comps.iter().enumerate() {
                let expected: Vec<i32> = samples.iter().skip(c).step_by(3).map(|&b| i32::from(b)).collect();
                assert_eq!(comp.data(), &expected[..], "{rows}x{columns} component {c}");
            }
        }
    }

    #[test]
    fn bits_above_bits_stored_are_dropped_and_signed_values_extended() {
        // 12 bits stored, signed: 0xF800 carries garbage above bit 11 and is -2048 in 12 bits.
        let samples = [0x00, 0xF8, 0xFF, 0x07, 0x01, 0x00, 0xFF, 0xFF];
        let f = Frame { bits_stored: 12, ..frame(&samples, 2, 2, 1, 16, true) };
        assert_eq!(component_samples(&f).expect("valid"), vec![vec![-2048, 2047, 1, -1]]);
        let f = Frame { bits_stored: 12, signed: false, ..f };
        assert_eq!(component_samples(&f).expect("valid"), vec![vec![0x800, 0x7FF, 1, 0xFFF]]);
    }

    #[test]
    fn lossy_frames_are_smaller_and_close() {
        // A textured image (a smooth ramp plus a pseudo-random ripple) that does not compress 10:1 losslessly.
        let samples: Vec<u8> = (0..128u32 * 128).map(|i| ((i % 128) + (i / 128) + (i.wrapping_mul(2_654_435_761) >> 27)) as u8).collect();
        let lossless = encode_frame(&frame(&samples, 128, 128, 1, 8, false), Mode::Lossless).expect("encodes");
        let lossy = encode_frame(&frame(&samples, 128, 128, 1, 8, false), Mode::Lossy { ratio: 10.0 }).expect("encodes");
        assert!(lossy.len() < lossless.len(), "{} < {}", lossy.len(), lossless.len());
        let image = jpeg2k::Image::from_bytes(&lossy).expect("decodes");
        let errors: Vec<i32> = image.components()[0].data().iter().zip(&samples).map(|(&a, &b)| (a - i32::from(b)).abs()).collect();
        assert_eq!(errors.len(), samples.len());
        let mean = errors.iter().sum::<i32>() as f64 / errors.len() as f64;
        assert!(mean > 0.0 && mean < 8.0, "mean error {mean}");
    }

    fn module(rows: u32, columns: u32, spp: u32, bits: u32, photometric: &str) -> PixelModule {
        PixelModule { rows, columns, samples_per_pixel: spp, bits_allocated: bits, bits_stored: bits, signed: false, photometric: photometric.into() }
    }

    #[test]
    fn our_decoder_reads_what_we_write() {
        let signed: Vec<u8> = (0..64u16 * 48).flat_map(|i| (i.wrapping_mul(37) as i16).wrapping_sub(1000).to_le_bytes()).collect();
        let stream = encode_frame(&frame(&signed, 48, 64, 1, 16, true), Mode::Lossless).expect("encodes");
        let mut out = vec![0; signed.len()];
        assert_eq!(decode_frame(&stream, &module(48, 64, 1, 16, "MONOCHROME2"), &mut out).expect("decodes"), None);
        assert!(out == signed);
        let rgb: Vec<u8> = (0..33u32 * 17 * 3).map(|i| (i * 7) as u8).collect();
        let stream = encode_frame(&frame(&rgb, 17, 33, 3, 8, false), Mode::Lossless).expect("encodes");
        let mut out = vec![0; rgb.len()];
        assert_eq!(decode_frame(&stream, &module(17, 33, 3, 8, "RGB"), &mut out).expect("decodes"), None);
        assert!(out == rgb);
        // 8-bit components into 16 bits allocated.
        let mut wide = vec![0; rgb.len() * 2];
        decode_frame(&stream, &module(17, 33, 3, 16, "RGB"), &mut wide).expect("decodes");
        assert!(wide.chunks_exact(2).map(|s| s[0]).eq(rgb.iter().copied()) && wide.chunks_exact(2).all(|s| s[1] == 0));
    }

    #[test]
    fn corrupt_codestreams_are_errors() {
        let samples: Vec<u8> = (0..32u32 * 32).map(|i| (i * 5 + i / 32) as u8).collect();
        let stream = encode_frame(&frame(&samples, 32, 32, 1, 8, false), Mode::Lossless).expect("encodes");
        let pixel = module(32, 32, 1, 8, "MONOCHROME2");
        let mut out = vec![0; 32 * 32];
        for bad in [&stream[..stream.len() / 2], &stream[..6], &[0xFF, 0x4F, 0xFF, 0x51, 0, 0][..], &[0u8; 100][..], &[][..]] {
            assert!(decode_frame(bad, &pixel, &mut out).is_err(), "{} bytes", bad.len());
        }
        let mut scrambled = stream.clone();
        let start = scrambled.len() / 3;
        for (i, b) in scrambled[start..].iter_mut().enumerate() {
            *b = (i as u8).wrapping_mul(151).wrapping_add(7);
        }
        let _ = decode_frame(&scrambled, &pixel, &mut out);
        assert!(decode_frame(&stream, &module(32, 33, 1, 8, "MONOCHROME2"), &mut vec![0; 32 * 33]).is_err(), "another size");
        assert!(decode_frame(&stream, &module(32, 32, 3, 8, "RGB"), &mut vec![0; 32 * 32 * 3]).is_err(), "another component count");
    }

    #[test]
    fn impossible_frames_are_errors() {
        assert!(encode_frame(&frame(&[0; 8], 2, 2, 1, 32, false), Mode::Lossless).is_err());
        assert!(encode_frame(&frame(&[0; 3], 2, 2, 1, 8, false), Mode::Lossless).is_err());
        assert!(encode_frame(&frame(&[], 0, 0, 1, 8, false), Mode::Lossless).is_err());
        assert!(encode_frame(&frame(&[0; 8], 2, 2, 2, 8, false), Mode::Lossless).is_err());
    }
}
