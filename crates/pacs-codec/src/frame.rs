//! One native frame handed to our own encoders (JPEG Lossless, JPEG 2000, colour JPEG-LS).

use crate::rle::FrameLayout;

/// One native frame to encode, with what the encoders need of the image pixel module.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Frame<'a> {
    /// The frame's samples, little endian, pixel-interleaved (`planar == false`) or by plane.
    pub samples: &'a [u8],
    /// Rows.
    pub rows: u32,
    /// Columns.
    pub columns: u32,
    /// Samples per pixel (1 or 3).
    pub samples_per_pixel: u32,
    /// Bits Allocated: 8 or 16 for the encoders.
    pub bits_allocated: u32,
    /// Bits Stored (read by the encoders of the `codecs` feature).
    #[cfg_attr(not(feature = "codecs"), allow(dead_code))]
    pub bits_stored: u32,
    /// Pixel Representation 1: two's complement samples (read by the JPEG 2000 encoder).
    #[cfg_attr(not(feature = "codecs"), allow(dead_code))]
    pub signed: bool,
    /// Planar Configuration 1: the samples are stored plane by plane.
    pub planar: bool,
}

impl<'a> Frame<'a> {
    /// The frame `samples` of an object of `layout`, `bits_stored` and signedness `signed`.
    pub(crate) fn new(samples: &'a [u8], layout: FrameLayout, bits_stored: u32, signed: bool) -> Frame<'a> {
        Frame {
            samples,
            rows: layout.rows as u32,
            columns: layout.columns as u32,
            samples_per_pixel: layout.samples_per_pixel as u32,
            bits_allocated: layout.bytes_per_sample as u32 * 8,
            bits_stored,
            signed,
            planar: layout.planar,
        }
    }
}

/// What the image pixel module says of the frames of an object: what our decoders check a
/// compressed stream against and produce.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PixelModule {
    /// Rows.
    pub rows: u32,
    /// Columns.
    pub columns: u32,
    /// Samples per Pixel.
    pub samples_per_pixel: u32,
    /// Bits Allocated.
    pub bits_allocated: u32,
    /// Bits Stored.
    pub bits_stored: u32,
    /// Pixel Representation 1: two's complement samples.
    pub signed: bool,
    /// Photometric Interpretation, e.g. `MONOCHROME2`, `YBR_FULL_422`.
    pub photometric: String,
}

impl PixelModule {
    /// The size of one decoded frame: every sample of every pixel (a YBR_FULL_422 frame decodes
    /// to three full samples per pixel), pixel-interleaved, Bits Allocated / 8 bytes each.
    pub(crate) fn frame_len(&self) -> usize {
        self.rows as usize * self.columns as usize * self.samples_per_pixel as usize * (self.bits_allocated as usize / 8)
    }

    /// Whether our decoders can write a frame of this module into a buffer of `out_len` bytes:
    /// 1 or 3 samples per pixel, 8 or 16 bits allocated, and a buffer of exactly one frame. The
    /// error says what is not.
    #[cfg_attr(not(feature = "codecs"), allow(dead_code))]
    pub(crate) fn check_decode_target(&self, out_len: usize) -> Result<(), String> {
        if self.samples_per_pixel != 1 && self.samples_per_pixel != 3 {
            return Err(format!("decoding {} samples per pixel", self.samples_per_pixel));
        }
        if self.bits_allocated != 8 && self.bits_allocated != 16 {
            return Err(format!("decoding into Bits Allocated {}", self.bits_allocated));
        }
        if out_len != self.frame_len() {
            return Err(format!("a frame buffer of {out_len} bytes for a frame of {}", self.frame_len()));
        }
        Ok(())
    }

    /// The number of pixels of one frame.
    #[cfg_attr(not(feature = "codecs"), allow(dead_code))]
    pub(crate) fn pixels(&self) -> usize {
        self.rows as usize * self.columns as usize
    }
}
