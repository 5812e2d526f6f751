//! Our JPEG Lossless encoder (ITU-T T.81 Annex H, Process 14), first-order prediction: dicom-rs
//! decodes JPEG Lossless but has no encoder.
//!
//! One frame becomes one JPEG stream: SOI, SOF3, one DHT, one SOS (all components interleaved in
//! one scan), the entropy-coded differences, EOI. The predictor is selection value 1 (Ra, the
//! sample to the left), which both JPEG Lossless transfer syntaxes allow, with no point transform:
//! the first sample of the frame is predicted by 2^(P-1), the rest of the first line by Ra, the
//! first sample of every other line by Rb (the sample above). Differences are taken modulo 2^16
//! (H.1.2.1); the Huffman table of their categories is the optimal one for the frame (Annex K.2,
//! limited to 16 bits by K.3), shared by the components.
//!
//! The samples are coded as their bit patterns: signed pixel data (two's complement) is coded as
//! unsigned, which is what DICOM decoders expect (PS3.5 8.2.1). The sample precision P is Bits
//! Stored when every sample fits in it, and Bits Allocated otherwise (signed samples sign-extended
//! above Bits Stored, or other bits set there), so that decoding gives back the stored bytes.

/// The number of Huffman symbols: the difference categories 0 to 16.
const CATEGORIES: usize = 17;

use crate::frame::Frame;

/// The sample precision for pixel data of `bits_allocated` (8 or 16) and `bits_stored`: Bits
/// Stored when every sample of `samples` (all frames, little endian) fits in it, else Bits
/// Allocated. A precision below 9 with 16 bits allocated (or below 8 with 8) would make decoders
/// give back samples of another size, so those get Bits Allocated too.
pub(crate) fn precision(samples: &[u8], bits_allocated: u32, bits_stored: u32) -> Result<u32, String> {
    if bits_allocated != 8 && bits_allocated != 16 {
        return Err(format!("JPEG Lossless encoding needs Bits Allocated 8 or 16, not {bits_allocated}"));
    }
    if bits_stored < 2 || bits_stored > bits_allocated {
        return Err(format!("JPEG Lossless encoding of Bits Stored {bits_stored} with Bits Allocated {bits_allocated}"));
    }
    if bits_allocated == 8 || bits_stored == 16 || bits_stored <= 8 {
        return Ok(bits_allocated);
    }
    let limit = 1u16 << bits_stored;
    let fits = samples.chunks_exact(2).all(|s| u16::from_le_bytes([s[0], s[1]]) < limit);
    Ok(if fits { bits_stored } else { bits_allocated })
}

/// Encodes one frame into a JPEG Lossless stream of sample precision `precision` (from
/// [`precision`]; the frame's Bits Stored is not used), selection value 1, no point transform,
/// padded with a zero byte to an even length.
pub(crate) fn encode_frame(frame: &Frame<'_>, precision: u32) -> Result<Vec<u8>, String> {
    if frame.bits_allocated != 8 && frame.bits_allocated != 16 {
        return Err(format!("JPEG Lossless encoding needs Bits Allocated 8 or 16, not {}", frame.bits_allocated));
    }
    if precision < 2 || precision > frame.bits_allocated {
        return Err(format!("JPEG Lossless precision {} with Bits Allocated {}", precision, frame.bits_allocated));
    }
    if frame.samples_per_pixel != 1 && frame.samples_per_pixel != 3 {
        return Err(format!("JPEG Lossless encoding of {} samples per pixel", frame.samples_per_pixel));
    }
    let (rows, columns) = match (u16::try_from(frame.rows), u16::try_from(frame.columns)) {
        (Ok(rows), Ok(columns)) if rows > 0 && columns > 0 => (rows, columns),
        _ => return Err(format!("JPEG Lossless encoding of a {}x{} frame", frame.columns, frame.rows)),
    };
    let components = frame.samples_per_pixel as usize;
    let bytes = frame.bits_allocated as usize / 8;
    let width = usize::from(columns);
    let pixels = usize::from(rows) * width;
    let len = pixels * components * bytes;
    if frame.samples.len() < len {
        return Err(format!("a frame of {} bytes, {len} expected", frame.samples.len()));
    }
    let sample = |pixel: usize, component: usize| -> u16 {
        let index = if frame.planar { component * pixels + pixel } else { pixel * components + component };
        if bytes == 1 { u16::from(frame.samples[index]) } else { u16::from_le_bytes([frame.samples[2 * index], frame.samples[2 * index + 1]]) }
    };
    let mask = if precision == 16 { u16::MAX } else { (1u16 << precision) - 1 };
    if (0..pixels * components).any(|i| sample(i / components, i % components) & !mask != 0) {
        return Err(format!("a sample above the JPEG Lossless precision of {} bits", precision));
    }

    // The differences, in the order they are coded (pixel by pixel, component by component).
    let first = 1u16 << (precision - 1);
    let mut differences = Vec::with_capacity(pixels * components);
    for pixel in 0..pixels {
        for component in 0..components {
            let prediction = match (pixel / width, pixel % width) {
                (0, 0) => first,
                (_, 0) => sample(pixel - width, component),
                _ => sample(pixel - 1, component),
            };
            differences.push(sample(pixel, component).wrapping_sub(prediction));
        }
    }
    let mut frequencies = [0u32; CATEGORIES];
    for &difference in &differences {
        frequencies[category(difference)] += 1;
    }
    let table = HuffmanTable::optimal(&frequencies);

    let mut out = Vec::with_capacity(len / 2 + 128);
    out.extend_from_slice(&[0xFF, 0xD8]);
    // SOF3: Lf, P, Y, X, Nf, then per component Ci, Hi/Vi, Tqi.
    out.extend_from_slice(&[0xFF, 0xC3]);
    out.extend_from_slice(&(8 + 3 * components as u16).to_be_bytes());
    out.push(precision as u8);
    out.extend_from_slice(&rows.to_be_bytes());
    out.extend_from_slice(&columns.to_be_bytes());
    out.push(components as u8);
    for id in 1..=components as u8 {
        out.extend_from_slice(&[id, 0x11, 0]);
    }
    // DHT: Lh, Tc/Th (class 0, table 0), BITS, HUFFVAL.
    out.extend_from_slice(&[0xFF, 0xC4]);
    out.extend_from_slice(&(2 + 1 + 16 + table.values.len() as u16).to_be_bytes());
    out.push(0x00);
    out.extend_from_slice(&table.bits);
    out.extend_from_slice(&table.values);
    // SOS: Ls, Ns, per component Cs and Td/Ta, Ss (predictor 1), Se 0, Ah/Al 0.
    out.extend_from_slice(&[0xFF, 0xDA]);
    out.extend_from_slice(&(6 + 2 * components as u16).to_be_bytes());
    out.push(components as u8);
    for id in 1..=components as u8 {
        out.extend_from_slice(&[id, 0x00]);
    }
    out.extend_from_slice(&[1, 0, 0]);
    let mut writer = BitWriter { out, bits: 0, count: 0 };
    for &difference in &differences {
        let category = category(difference);
        writer.put(u32::from(table.codes[category]), u32::from(table.lengths[category]));
        if (1..16).contains(&category) {
            // H.1.2.2 / F.1.2.1: the low bits of the difference, minus one when it is negative.
            let value = if difference & 0x8000 == 0 { difference } else { difference.wrapping_sub(1) };
            writer.put(u32::from(value) & ((1 << category) - 1), category as u32);
        }
    }
    let mut out = writer.finish();
    out.extend_from_slice(&[0xFF, 0xD9]);
    if out.len() % 2 == 1 {
        out.push(0);
    }
    Ok(out)
}

/// The category (SSSS, Table H.2) of a difference taken modulo 2^16: 16 for 32768 alone.
fn category(difference: u16) -> usize {
    let magnitude = (difference as i16).unsigned_abs();
    if difference == 0x8000 { 16 } else { (16 - magnitude.leading_zeros()) as usize }
}

/// A Huffman table of the difference categories: what DHT carries, and the code of each category.
#[derive(Debug)]
struct HuffmanTable {
    /// BITS: the number of codes of each length, 1 to 16.
    bits: [u8; 16],
    /// HUFFVAL: the categories, by increasing code length.
    values: Vec<u8>,
    /// The code of each category (C.2).
    codes: [u16; CATEGORIES],
    /// The code length of each category, 0 when it does not occur.
    lengths: [u8; CATEGORIES],
}

impl HuffmanTable {
    /// The optimal table for these frequencies (K.2), no code longer than 16 bits (K.3) and none
    /// of all ones. Categories that never occur have no code.
    fn optimal(frequencies: &[u32; CATEGORIES]) -> Self {
        // One more symbol, of frequency 1, reserves the all-ones code (K.2).
        const RESERVED: usize = CATEGORIES;
        let mut freq = [0u64; CATEGORIES + 1];
        for (f, &n) in freq.iter_mut().zip(frequencies) {
            *f = u64::from(n);
        }
        freq[RESERVED] = 1;
        let mut size = [0usize; CATEGORIES + 1];
        let mut others = [usize::MAX; CATEGORIES + 1];
        loop {
            // The two least frequent symbols, the later one first on a tie (as libjpeg does).
            let mut v1 = None;
            for v in 0..freq.len() {
                if freq[v] > 0 && v1.is_none_or(|w: usize| freq[v] <= freq[w]) {
                    v1 = Some(v);
                }
            }
            let mut v2 = None;
            for v in 0..freq.len() {
                if freq[v] > 0 && Some(v) != v1 && v2.is_none_or(|w: usize| freq[v] <= freq[w]) {
                    v2 = Some(v);
                }
            }
            let (Some(mut v1), Some(mut v2)) = (v1, v2) else { break };
            freq[v1] += freq[v2];
            freq[v2] = 0;
            size[v1] += 1;
            while others[v1] != usize::MAX {
                v1 = others[v1];
                size[v1] += 1;
            }
            others[v1] = v2;
            size[v2] += 1;
            while others[v2] != usize::MAX {
                v2 = others[v2];
                size[v2] += 1;
            }
        }
        // Counts by length; at most 18 symbols, so no length over 32.
        let mut bits = [0u8; 33];
        for &s in &size {
            if s > 0 {
                bits[s] += 1;
            }
        }
        // K.3: move codes longer than 16 bits up the tree.
        for i in (17..=32).rev() {
            while bits[i] > 0 {
                let mut j = i - 2;
                while bits[j] == 0 {
                    j -= 1;
                }
                bits[i] -= 2;
                bits[i - 1] += 1;
                bits[j + 1] += 2;
                bits[j] -= 1;
            }
        }
        // Drop the reserved code: the longest one.
        if let Some(longest) = (1..=16).rev().find(|&i| bits[i] > 0) {
            bits[longest] -= 1;
        }
        let mut values: Vec<u8> = (0..CATEGORIES).filter(|&v| size[v] > 0).map(|v| v as u8).collect();
        values.sort_by_key(|&v| size[usize::from(v)]);
        let mut table = HuffmanTable { bits: [0; 16], values, codes: [0; CATEGORIES], lengths: [0; CATEGORIES] };
        table.bits.copy_from_slice(&bits[1..=16]);
        // C.2: canonical codes, length by length.
        let mut code = 0u16;
        let mut k = 0;
        for length in 1..=16u8 {
            for _ in 0..table.bits[usize::from(length) - 1] {
                let value = usize::from(table.values[k]);
                table.codes[value] = code;
                table.lengths[value] = length;
                code = code.wrapping_add(1);
                k += 1;
            }
            code = code.wrapping_shl(1);
        }
        table
    }
}

/// Entropy-coded data: bits most significant first, a zero byte stuffed after every 0xFF.
struct BitWriter {
    out: Vec<u8>,
    bits: u32,
    count: u32,
}

impl BitWriter {
    /// Appends the `length` (at most 16) low bits of `value`.
    fn put(&mut self, value: u32, length: u32) {
        self.bits = (self.bits << length) | (value & ((1 << length) - 1));
        self.count += length;
        while self.count >= 8 {
            let byte = (self.bits >> (self.count - 8)) as u8;
            self.out.push(byte);
            if byte == 0xFF {
                self.out.push(0);
            }
            self.count -= 8;
        }
        self.bits &= (1 << self.count) - 1;
    }

    /// Pads the last byte with ones (F.1.2.3) and returns the bytes.
    fn finish(mut self) -> Vec<u8> {
        if self.count > 0 {
            self.put(0x7F, 8 - self.count);
        }
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal decoder of what `encode_frame` writes (one scan, one table, predictor 1), to
    /// check the streams without another codec.
    fn decode(stream: &[u8]) -> (u32, usize, usize, usize, Vec<u16>) {
        assert_eq!(&stream[..2], &[0xFF, 0xD8], "SOI");
        let mut pos = 2;
        let (mut precision, mut rows, mut columns, mut components) = (0, 0, 0, 0);
        let mut lookup = Vec::new();
        loop {
            assert_eq!(stream[pos], 0xFF);
            let marker = stream[pos + 1];
            let len = usize::from(u16::from_be_bytes([stream[pos + 2], stream[pos + 3]]));
            let body = &stream[pos + 4..pos + 2 + len];
            pos += 2 + len;
            match marker {
                0xC3 => {
                    precision = u32::from(body[0]);
                    rows = usize::from(u16::from_be_bytes([body[1], body[2]]));
                    columns = usize::from(u16::from_be_bytes([body[3], body[4]]));
                    components = usize::from(body[5]);
                }
                0xC4 => {
                    assert_eq!(body[0], 0);
                    let mut code = 0u32;
                    let mut k = 17;
                    for length in 1..=16 {
                        for _ in 0..body[length] {
                            lookup.push((length as u32, code, body[k]));
                            code += 1;
                            k += 1;
                        }
                        code <<= 1;
                    }
                }
                0xDA => {
                    assert_eq!(&body[body.len() - 3..], &[1, 0, 0], "Ss = 1, Se = 0, Ah/Al = 0");
                    break;
                }
                other => panic!("unexpected marker {other:02X}"),
            }
        }
        // Unstuff the entropy-coded segment up to EOI.
        let mut data = Vec::new();
        let mut i = pos;
        loop {
            if stream[i] == 0xFF {
                if stream[i + 1] == 0 {
                    data.push(0xFF);
                    i += 2;
                    continue;
                }
                assert_eq!(stream[i + 1], 0xD9, "EOI");
                break;
            }
            data.push(stream[i]);
            i += 1;
        }
        assert!(stream.len() - (i + 2) <= 1, "at most one padding byte");
        let mut bit = 0usize;
        let mut read = |n: u32| -> u32 {
            let mut v = 0;
            for _ in 0..n {
                v = (v << 1) | u32::from((data[bit / 8] >> (7 - bit % 8)) & 1);
                bit += 1;
            }
            v
        };
        let mut samples = vec![0u16; rows * columns * components];
        for pixel in 0..rows * columns {
            for c in 0..components {
                let (mut length, mut code) = (0, 0);
                let category = loop {
                    code = (code << 1) | read(1);
                    length += 1;
                    if let Some(&(_, _, v)) = lookup.iter().find(|&&(l, k, _)| l == length && k == code) {
                        break u32::from(v);
                    }
                    assert!(length < 16, "a valid code");
                };
                let difference: i32 = match category {
                    0 => 0,
                    16 => 32768,
                    t => {
                        let v = read(t) as i32;
                        if v < 1 << (t - 1) { v - (1 << t) + 1 } else { v }
                    }
                };
                let prediction = match (pixel / columns, pixel % columns) {
                    (0, 0) => 1i32 << (precision - 1),
                    (_, 0) => i32::from(samples[(pixel - columns) * components + c]),
                    _ => i32::from(samples[(pixel - 1) * components + c]),
                };
                samples[pixel * components + c] = ((prediction + difference) & 0xFFFF) as u16;
            }
        }
        (precision, rows, columns, components, samples)
    }

    fn frame(samples: &[u8], rows: u32, columns: u32, samples_per_pixel: u32, bits_allocated: u32) -> Frame<'_> {
        Frame { samples, rows, columns, samples_per_pixel, bits_allocated, bits_stored: bits_allocated, signed: false, planar: false }
    }

    fn check(samples: &[u16], rows: u32, columns: u32, samples_per_pixel: u32, bits_allocated: u32, precision: u32) {
        let bytes: Vec<u8> =
            if bits_allocated == 8 { samples.iter().map(|&s| s as u8).collect() } else { samples.iter().flat_map(|s| s.to_le_bytes()).collect() };
        let stream = encode_frame(&frame(&bytes, rows, columns, samples_per_pixel, bits_allocated), precision).expect("encodes");
        assert_eq!(stream.len() % 2, 0, "even length");
        let (p, r, c, n, decoded) = decode(&stream);
        assert_eq!((p, r as u32, c as u32, n as u32), (precision, rows, columns, samples_per_pixel));
        assert!(decoded == samples, "{rows}x{columns}x{samples_per_pixel}, P {precision}: decoded samples differ");
    }

    fn noise(n: usize, bits: u32, seed: u64) -> Vec<u16> {
        pacs_testkit::noise(n, bits, seed).into_iter().map(|v| v as u16).collect()
    }

    #[test]
    fn frames_decode_to_their_samples() {
        check(&[0; 64], 8, 8, 1, 16, 16);
        check(&[0; 64], 8, 8, 1, 8, 8);
        check(&[0xFFFF; 30], 5, 6, 1, 16, 16);
        check(&[1234], 1, 1, 1, 16, 12);
        check(&[0, 255, 0], 1, 1, 3, 8, 8);
        check(&noise(7 * 13, 16, 1), 7, 13, 1, 16, 16);
        check(&noise(7 * 13, 12, 2), 13, 7, 1, 16, 12);
        check(&noise(5 * 9 * 3, 8, 3), 5, 9, 3, 8, 8);
        check(&noise(4 * 4 * 3, 16, 4), 4, 4, 3, 16, 16);
        check(&noise(1000, 2, 5), 10, 100, 1, 8, 8);
        // Alternating extremes: differences of ±65535 modulo 2^16, and of exactly 32768.
        check(&[0, 0xFFFF, 0, 0xFFFF, 0x8000, 0, 0x8000, 0xFFFF], 2, 4, 1, 16, 16);
        check(&[0x8000, 0, 0x8000, 0], 1, 4, 1, 16, 16);
    }

    #[test]
    fn planar_samples_are_interleaved_in_the_scan() {
        let planes = [1u8, 2, 3, 4, 10, 20, 30, 40, 100, 200, 250, 255];
        let stream = encode_frame(&Frame { planar: true, ..frame(&planes, 2, 2, 3, 8) }, 8).expect("encodes");
        assert_eq!(decode(&stream).4, [1, 10, 100, 2, 20, 200, 3, 30, 250, 4, 40, 255]);
    }

    #[test]
    fn category_sixteen_has_no_extra_bits() {
        assert_eq!(category(0), 0);
        assert_eq!(category(1), 1);
        assert_eq!(category(0xFFFF), 1);
        assert_eq!(category(0x7FFF), 15);
        assert_eq!(category(0x8001), 15);
        assert_eq!(category(0x8000), 16);
    }

    #[test]
    fn the_table_is_a_valid_limited_prefix_code() {
        let mut skewed = [0u32; CATEGORIES];
        for (i, f) in skewed.iter_mut().enumerate() {
            *f = 1 << (2 * i).min(31);
        }
        for frequencies in [[0; CATEGORIES], [1; CATEGORIES], skewed, [5, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]] {
            let table = HuffmanTable::optimal(&frequencies);
            let total: usize = table.bits.iter().map(|&b| usize::from(b)).sum();
            assert_eq!(total, table.values.len());
            // Kraft: the lengths leave room for the reserved all-ones code.
            let kraft: u64 = table.values.iter().map(|&v| 1u64 << (16 - table.lengths[usize::from(v)])).sum();
            assert!(kraft < 1 << 16, "{frequencies:?}");
            for (v, &f) in frequencies.iter().enumerate() {
                assert_eq!(f > 0, table.lengths[v] > 0, "category {v} of {frequencies:?}");
                if table.lengths[v] > 0 {
                    assert_ne!(u32::from(table.codes[v]), (1u32 << table.lengths[v]) - 1, "no all-ones code");
                }
            }
        }
    }

    #[test]
    fn ff_bytes_are_stuffed() {
        let mut writer = BitWriter { out: Vec::new(), bits: 0, count: 0 };
        writer.put(0xFFFF, 16);
        writer.put(0b101, 3);
        assert_eq!(writer.finish(), [0xFF, 0, 0xFF, 0, 0b1011_1111]);
    }

    #[test]
    fn precision_is_bits_stored_when_the_samples_fit() {
        let fits = 0x0FFFu16.to_le_bytes();
        let sign_extended = 0xFFFFu16.to_le_bytes();
        assert_eq!(precision(&fits, 16, 12), Ok(12));
        assert_eq!(precision(&sign_extended, 16, 12), Ok(16));
        assert_eq!(precision(&sign_extended, 16, 16), Ok(16));
        assert_eq!(precision(&[0x7F], 8, 7), Ok(8));
        assert_eq!(precision(&fits, 16, 8), Ok(16));
        assert!(precision(&fits, 32, 32).is_err());
        assert!(precision(&fits, 16, 1).is_err());
        assert!(precision(&fits, 16, 17).is_err());
    }

    #[test]
    fn impossible_frames_are_errors() {
        let samples = [0u8; 16];
        assert!(encode_frame(&frame(&samples, 2, 2, 1, 32), 16).is_err());
        assert!(encode_frame(&frame(&samples, 0, 2, 1, 8), 8).is_err());
        assert!(encode_frame(&frame(&samples, 70000, 1, 1, 8), 8).is_err());
        assert!(encode_frame(&frame(&samples, 4, 4, 1, 16), 16).is_err(), "too few bytes");
        assert!(encode_frame(&frame(&samples, 2, 2, 2, 8), 8).is_err(), "two samples per pixel");
        assert!(encode_frame(&frame(&[0xFF, 0xFF], 1, 1, 1, 16), 12).is_err(), "a sample above the precision");
    }
}
