//! RLE Lossless (PS3.5 Annex G): dicom-rs reads this syntax (8 and 16 bits only) but does not
//! write it, so both directions are ours.
//!
//! A frame becomes one fragment: a 64-byte header (the number of segments and the offset of
//! each, as 32-bit little-endian integers) followed by one PackBits segment per byte plane, for
//! each sample from the most to the least significant byte. Each row is encoded on its own, and
//! each segment is padded to an even length with the no-op byte -128 (a zero would announce a
//! literal byte that is not there, which strict decoders refuse).

/// The layout of the native pixel data of one frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameLayout {
    /// Rows.
    pub rows: usize,
    /// Columns.
    pub columns: usize,
    /// Samples per pixel (1 or 3).
    pub samples_per_pixel: usize,
    /// Bytes per sample (Bits Allocated / 8).
    pub bytes_per_sample: usize,
    /// Planar Configuration 1: the samples of each plane are contiguous (colour-by-plane).
    pub planar: bool,
}

impl FrameLayout {
    /// The size in bytes of one native frame.
    pub fn frame_len(&self) -> usize {
        self.rows * self.columns * self.samples_per_pixel * self.bytes_per_sample
    }

    /// The number of RLE segments of one frame (at most 15).
    pub fn segments(&self) -> usize {
        self.samples_per_pixel * self.bytes_per_sample
    }
}

/// Encodes one native frame (little endian, `layout.frame_len()` bytes) as an RLE Lossless
/// fragment. `None` when the layout needs more than the 15 segments the header can address or
/// `frame` is not one frame long.
pub fn encode_frame(frame: &[u8], layout: FrameLayout) -> Option<Vec<u8>> {
    let segments = layout.segments();
    if segments == 0 || segments > 15 || frame.len() != layout.frame_len() {
        return None;
    }
    let pixels = layout.rows * layout.columns;
    let mut out = vec![0u8; 64];
    out[0..4].copy_from_slice(&(segments as u32).to_le_bytes());
    let mut plane = Vec::with_capacity(pixels);
    let mut row_buf = Vec::with_capacity(layout.columns);
    for sample in 0..layout.samples_per_pixel {
        for byte in (0..layout.bytes_per_sample).rev() {
            let segment = sample * layout.bytes_per_sample + (layout.bytes_per_sample - 1 - byte);
            let offset = out.len() as u32;
            out[4 + segment * 4..8 + segment * 4].copy_from_slice(&offset.to_le_bytes());
            plane.clear();
            for p in 0..pixels {
                let index = if layout.planar { sample * pixels + p } else { p * layout.samples_per_pixel + sample };
                plane.push(frame[index * layout.bytes_per_sample + byte]);
            }
            for row in plane.chunks(layout.columns.max(1)) {
                row_buf.clear();
                pack_bits(row, &mut row_buf);
                out.extend_from_slice(&row_buf);
            }
            if !out.len().is_multiple_of(2) {
                out.push(0x80);
            }
        }
    }
    Some(out)
}

/// Decodes one RLE Lossless fragment into a native frame (little endian, samples interleaved).
pub fn decode_frame(fragment: &[u8], layout: FrameLayout) -> Result<Vec<u8>, String> {
    let header = |i: usize| fragment.get(i * 4..i * 4 + 4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize);
    let count = header(0).ok_or("RLE fragment shorter than its header")?;
    if count != layout.segments() {
        return Err(format!("RLE fragment has {count} segments, {} expected", layout.segments()));
    }
    let pixels = layout.rows * layout.columns;
    let bps = layout.bytes_per_sample;
    let spp = layout.samples_per_pixel;
    let mut out = vec![0u8; layout.frame_len()];
    let mut plane = Vec::with_capacity(pixels);
    for segment in 0..count {
        let start = header(segment + 1).ok_or("RLE header cut short")?;
        let end = if segment + 1 < count { header(segment + 2).ok_or("RLE header cut short")? } else { fragment.len() };
        let data =
            fragment.get(start..end).ok_or_else(|| format!("RLE segment {segment} at {start}..{end} outside the fragment of {} bytes", fragment.len()))?;
        plane.clear();
        unpack_bits(data, pixels, &mut plane).map_err(|e| format!("RLE segment {segment}: {e}"))?;
        let (sample, byte) = (segment / bps, bps - 1 - segment % bps);
        for (p, value) in plane.iter().enumerate() {
            out[(p * spp + sample) * bps + byte] = *value;
        }
    }
    Ok(out)
}

/// Decodes PackBits until `len` bytes are out (what follows is padding).
fn unpack_bits(mut input: &[u8], len: usize, out: &mut Vec<u8>) -> Result<(), String> {
    while out.len() < len {
        let Some((&n, rest)) = input.split_first() else {
            return Err(format!("{} bytes decoded, {len} expected", out.len()));
        };
        input = rest;
        let n = n as i8;
        if n >= 0 {
            let count = n as usize + 1;
            let literal = input.get(..count).ok_or("literal run past the end of the segment")?;
            out.extend_from_slice(literal);
            input = &input[count..];
        } else if n != -128 {
            let (&value, rest) = input.split_first().ok_or("replicate run past the end of the segment")?;
            out.extend(std::iter::repeat_n(value, (1 - n as isize) as usize));
            input = rest;
        }
    }
    out.truncate(len);
    Ok(())
}

/// PackBits (PS3.5 G.3.1): a replicate run of 3 to 128 equal bytes is `1 - n` then the byte, a
/// literal run of 1 to 128 bytes is `n - 1` then the bytes.
fn pack_bits(input: &[u8], out: &mut Vec<u8>) {
    let mut i = 0;
    let mut literal_start = 0;
    while i < input.len() {
        let mut run = 1;
        while i + run < input.len() && run < 128 && input[i + run] == input[i] {
            run += 1;
        }
        if run >= 3 {
            flush_literal(&input[literal_start..i], out);
            out.push((1i16 - run as i16) as i8 as u8);
            out.push(input[i]);
            i += run;
            literal_start = i;
        } else {
            i += run;
        }
    }
    flush_literal(&input[literal_start..], out);
}

fn flush_literal(mut literal: &[u8], out: &mut Vec<u8>) {
    while !literal.is_empty() {
        let n = literal.len().min(128);
        out.push((n - 1) as u8);
        out.extend_from_slice(&literal[..n]);
        literal = &literal[n..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unpack(input: &[u8], len: usize) -> Vec<u8> {
        let mut out = Vec::new();
        unpack_bits(input, len, &mut out).expect("valid PackBits");
        out
    }

    fn check(row: &[u8], expected: &[u8]) {
        let mut out = Vec::new();
        pack_bits(row, &mut out);
        assert_eq!(out, expected);
        assert_eq!(unpack(&out, row.len()), row);
    }

    #[test]
    fn pack_bits_runs_and_literals() {
        check(&[], &[]);
        check(&[7], &[0, 7]);
        check(&[1, 2], &[1, 1, 2]);
        check(&[5, 5, 5], &[254, 5]);
        check(&[1, 2, 2, 2, 2, 3], &[0, 1, 253, 2, 0, 3]);
        check(&[9, 9, 1], &[2, 9, 9, 1]);
        let long = vec![4u8; 300];
        check(&long, &[129, 4, 129, 4, 213, 4]);
        let literal: Vec<u8> = (0..=255u8).chain(0..10).collect();
        let mut expected = vec![127];
        expected.extend(0..128u8);
        expected.push(127);
        expected.extend(128..=255u8);
        expected.push(9);
        expected.extend(0..10u8);
        check(&literal, &expected);
    }

    #[test]
    fn frame_segments_are_byte_planes_most_significant_first() {
        let layout = FrameLayout { rows: 1, columns: 2, samples_per_pixel: 1, bytes_per_sample: 2, planar: false };
        let fragment = encode_frame(&[0x01, 0x02, 0x03, 0x04], layout).expect("encodes");
        assert_eq!(&fragment[0..4], &2u32.to_le_bytes());
        assert_eq!(&fragment[4..8], &64u32.to_le_bytes());
        assert_eq!(&fragment[8..12], &68u32.to_le_bytes());
        assert_eq!(&fragment[64..], &[1, 0x02, 0x04, 0x80, 1, 0x01, 0x03, 0x80]);
        assert!(encode_frame(&[0; 3], layout).is_none());
        assert_eq!(decode_frame(&fragment, layout), Ok(vec![0x01, 0x02, 0x03, 0x04]));
    }

    #[test]
    fn colour_by_plane_and_interleaved_give_the_same_fragment() {
        let interleaved = [10u8, 20, 30, 11, 21, 31];
        let planar = [10u8, 11, 20, 21, 30, 31];
        let layout = FrameLayout { rows: 1, columns: 2, samples_per_pixel: 3, bytes_per_sample: 1, planar: false };
        let a = encode_frame(&interleaved, layout);
        let b = encode_frame(&planar, FrameLayout { planar: true, ..layout });
        assert!(a.is_some());
        assert_eq!(a, b);
        assert_eq!(a.and_then(|f| decode_frame(&f, layout).ok()), Some(interleaved.to_vec()));
    }

    #[test]
    fn corrupt_fragments_are_errors() {
        let layout = FrameLayout { rows: 2, columns: 2, samples_per_pixel: 1, bytes_per_sample: 1, planar: false };
        let good = encode_frame(&[1, 2, 3, 4], layout).expect("encodes");
        assert!(decode_frame(&good[..10], layout).is_err());
        assert!(decode_frame(&good[..good.len() - 3], layout).is_err());
        let mut bad_offset = good.clone();
        bad_offset[4] = 200;
        assert!(decode_frame(&bad_offset, layout).is_err());
        let mut bad_count = good;
        bad_count[0] = 3;
        assert!(decode_frame(&bad_count, layout).is_err());
        assert!(decode_frame(&[], layout).is_err());
    }
}
