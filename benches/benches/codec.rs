//! In-process codec throughput and rendering latency on a 512x512 16-bit CT slice, without the
//! process start-up that `benches/load/codec.sh` counts: `pacs_codec::transcode` from Explicit VR
//! Little Endian to JPEG-LS lossless, JPEG 2000 lossless and RLE lossless and back, and
//! `pacs_codec::render` of a 128x128 PNG thumbnail and of a full-size JPEG, from native and from
//! JPEG-LS pixel data.
//!
//! Run: `cargo bench -p pacs-benches --bench codec`. The slice is a CT-like phantom (body, lungs,
//! bone, noise; 12 bits stored), generated in memory, so compression ratios resemble real CT.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use pacs_codec::render::{self, ImageFormat, RenderOptions};
use pacs_codec::syntax::EXPLICIT_VR_LITTLE_ENDIAN;
use pacs_testkit::push_element as element;

const SIZE: usize = 512;
const TARGETS: [(&str, &str); 3] = [("jpeg_ls", "1.2.840.10008.1.2.4.80"), ("jpeg_2000", "1.2.840.10008.1.2.4.90"), ("rle", "1.2.840.10008.1.2.5")];

/// Stored values (HU + 1024) of a CT-like slice.
fn phantom() -> Vec<u16> {
    let mut state = 0x2545_f491_u32;
    let mut noise = move || {
        // Sum of four uniform draws: roughly Gaussian, standard deviation about 12.
        let mut s = 0i32;
        for _ in 0..4 {
            state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            s += (state >> 24) as i32;
        }
        (s - 510) as f64 * 0.16
    };
    let c = SIZE as f64 / 2.0;
    let inside = |x: f64, y: f64, cx: f64, cy: f64, rx: f64, ry: f64| ((x - cx) / rx).powi(2) + ((y - cy) / ry).powi(2) <= 1.0;
    let s = SIZE as f64;
    let mut out = Vec::with_capacity(SIZE * SIZE);
    for row in 0..SIZE {
        for col in 0..SIZE {
            let (x, y) = (col as f64, row as f64);
            let v = if !inside(x, y, c, c, 0.42 * s, 0.33 * s) {
                0.0
            } else {
                let base = if inside(x, y, c, c + 0.22 * s, 0.05 * s, 0.05 * s) {
                    1924.0
                } else if !inside(x, y, c, c, 0.40 * s, 0.31 * s) {
                    1624.0
                } else if inside(x, y, c - 0.17 * s, c - 0.02 * s, 0.12 * s, 0.2 * s) || inside(x, y, c + 0.17 * s, c - 0.02 * s, 0.12 * s, 0.2 * s) {
                    174.0 + 30.0 * (x / 7.0).sin() * (y / 5.0).cos()
                } else {
                    1064.0
                };
                base + noise()
            };
            out.push(v.round().clamp(0.0, 4095.0) as u16);
        }
    }
    out
}

/// A Part 10 CT slice in Explicit VR Little Endian.
fn ct_slice() -> Vec<u8> {
    let sop = b"1.2.826.0.1.3680043.10.543.77.3.1\0";
    let mut meta = Vec::new();
    element(&mut meta, 0x0002, 0x0001, b"OB", &[0, 1]);
    element(&mut meta, 0x0002, 0x0002, b"UI", b"1.2.840.10008.5.1.4.1.1.2\0");
    element(&mut meta, 0x0002, 0x0003, b"UI", sop);
    element(&mut meta, 0x0002, 0x0010, b"UI", b"1.2.840.10008.1.2.1\0");
    element(&mut meta, 0x0002, 0x0012, b"UI", b"1.2.826.0.1.3680043.10.543\0");
    let mut f = vec![0u8; 128];
    f.extend_from_slice(b"DICM");
    element(&mut f, 0x0002, 0x0000, b"UL", &(meta.len() as u32).to_le_bytes());
    f.extend_from_slice(&meta);
    element(&mut f, 0x0008, 0x0016, b"UI", b"1.2.840.10008.5.1.4.1.1.2\0");
    element(&mut f, 0x0008, 0x0018, b"UI", sop);
    element(&mut f, 0x0008, 0x0060, b"CS", b"CT");
    element(&mut f, 0x0010, 0x0020, b"LO", b"CODEC1");
    element(&mut f, 0x0020, 0x000D, b"UI", b"1.2.826.0.1.3680043.10.543.77.2\0");
    element(&mut f, 0x0020, 0x000E, b"UI", b"1.2.826.0.1.3680043.10.543.77.4.1\0");
    element(&mut f, 0x0028, 0x0002, b"US", &1u16.to_le_bytes());
    element(&mut f, 0x0028, 0x0004, b"CS", b"MONOCHROME2 ");
    element(&mut f, 0x0028, 0x0010, b"US", &(SIZE as u16).to_le_bytes());
    element(&mut f, 0x0028, 0x0011, b"US", &(SIZE as u16).to_le_bytes());
    element(&mut f, 0x0028, 0x0100, b"US", &16u16.to_le_bytes());
    element(&mut f, 0x0028, 0x0101, b"US", &12u16.to_le_bytes());
    element(&mut f, 0x0028, 0x0102, b"US", &11u16.to_le_bytes());
    element(&mut f, 0x0028, 0x0103, b"US", &0u16.to_le_bytes());
    element(&mut f, 0x0028, 0x1050, b"DS", b"40");
    element(&mut f, 0x0028, 0x1051, b"DS", b"400 ");
    element(&mut f, 0x0028, 0x1052, b"DS", b"-1024 ");
    element(&mut f, 0x0028, 0x1053, b"DS", b"1 ");
    let pixels: Vec<u8> = phantom().iter().flat_map(|v| v.to_le_bytes()).collect();
    element(&mut f, 0x7FE0, 0x0010, b"OW", &pixels);
    f
}

fn transcode(input: &[u8], target: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len());
    pacs_codec::transcode(&mut &input[..], target, &mut out).expect("transcode");
    out
}

fn codec(c: &mut Criterion) {
    let native = ct_slice();
    let pixel_bytes = (SIZE * SIZE * 2) as u64;
    let mut group = c.benchmark_group("transcode_ct_512");
    group.throughput(Throughput::Bytes(pixel_bytes));
    for (name, uid) in TARGETS {
        let compressed = transcode(&native, uid);
        // The round trip is lossless: the decoded object ends with the original Pixel Data.
        let back = transcode(&compressed, EXPLICIT_VR_LITTLE_ENDIAN);
        assert!(back.ends_with(&native[native.len() - pixel_bytes as usize..]), "{name}: decoded pixels differ");
        eprintln!("{name}: {} bytes of pixel data in {} bytes (ratio {:.2})", pixel_bytes, compressed.len(), pixel_bytes as f64 / compressed.len() as f64);
        group.bench_with_input(BenchmarkId::new("encode", name), &native, |b, input| b.iter(|| black_box(transcode(input, uid))));
        group.bench_with_input(BenchmarkId::new("decode", name), &compressed, |b, input| b.iter(|| black_box(transcode(input, EXPLICIT_VR_LITTLE_ENDIAN))));
    }
    group.finish();

    let jpeg_ls = transcode(&native, TARGETS[0].1);
    let mut group = c.benchmark_group("render_ct_512");
    let thumbnail = RenderOptions { viewport: Some((128, 128)), ..RenderOptions::default() };
    for (input_name, input) in [("native", &native), ("jpeg_ls", &jpeg_ls)] {
        group.bench_with_input(BenchmarkId::new("png_128", input_name), input, |b, input| {
            b.iter(|| {
                let image = render::render(&mut &input[..], &thumbnail).expect("render");
                black_box(render::encode(&image, ImageFormat::Png, 90).expect("png"))
            })
        });
        group.bench_with_input(BenchmarkId::new("jpeg_512", input_name), input, |b, input| {
            b.iter(|| {
                let image = render::render(&mut &input[..], &RenderOptions::default()).expect("render");
                black_box(render::encode(&image, ImageFormat::Jpeg, 90).expect("jpeg"))
            })
        });
    }
    group.finish();
}

criterion_group!(benches, codec);
criterion_main!(benches);
