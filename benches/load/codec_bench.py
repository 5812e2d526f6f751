#!/usr/bin/env python3
"""Codec benchmark driver of benches/load/codec.sh (see there for how to run it).

Every tool is a process run on the same files in the same run:

  encode  Explicit VR LE -> JPEG-LS lossless / JPEG 2000 lossless / RLE lossless / JPEG Extended
          (12-bit lossy, quality 85)
          pacs transcode | dcmcjpls, dcmcrle, dcmcjpeg +ee +q 85 +rm (DCMTK rescales the values to
          the 12-bit range; +rm records that in Rescale Intercept for every SOP class, not only CT;
          DCMTK has no JPEG 2000) |
          gdcmconv --jpegls/--j2k/--rle (not JPEG Extended: gdcmconv --jpeg --lossy writes a
          16-bit-precision DCT stream for 12-bit input, which no decoder reads)
  decode  back to Explicit VR LE, all decoders reading the same compressed files (pacs's output)
          pacs transcode | dcmdjpls, dcmdrle, dcmdjpeg | gdcmconv --raw
  render  a 512x512 CT slice: pacs render (PNG 128x128, JPEG full size) | dcm2pnm, dcmj2pnm,
          dcml2pnm (JPEG-LS input)

on two inputs: a set of single-frame 512x512 16-bit CT slices (one process per file, start-up
included) and one multi-frame object (one process, where using both cores matters). Wall time is
the median of the repetitions; CPU time (user + system of the children) over wall time says how
many cores a tool kept busy. Outputs are verified: every decoded object has the original's pixel
bytes, and every compressed output of every encoder is decoded by every decoder (and pydicom) to
the original pixels; for lossy JPEG, to within LOSSY's bounds of the original in modality units
(DCMTK's lossy encoder rescales the stored values and Rescale Intercept).

The inputs are CT-like phantoms (body, lungs, bone, soft tissue, noise) so that compression
ratios resemble real CT; the uniform noise of gen-corpus does not compress.
"""
import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import time

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian

EXPLICIT = "1.2.840.10008.1.2.1"
SYNTAX = {"jls": "1.2.840.10008.1.2.4.80", "j2k": "1.2.840.10008.1.2.4.90", "rle": "1.2.840.10008.1.2.5", "jpx": "1.2.840.10008.1.2.4.51"}
CODEC_NAME = {"jls": "JPEG-LS lossless", "j2k": "JPEG 2000 lossless", "rle": "RLE lossless", "jpx": "JPEG Extended 12-bit q85"}
# Lossy codecs: the largest and the mean absolute difference from the original, in modality units (HU).
LOSSY = {"jpx": (64, 4.0)}
QUALITY = "85"
ROOT = "1.2.826.0.1.3680043.10.543.77"
TOOLS = ("pacs", "dcmtk", "gdcm")
TIMEOUT = 900  # seconds, per process


# ---------------------------------------------------------------------------------------------
# Inputs


def phantom(z, rng, size=512):
    """A CT-like slice: stored values = HU + 1024, 12 bits stored, unsigned."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    c = size / 2
    s = 1.0 + 0.08 * np.sin(z / 9.0)
    img = np.zeros((size, size), np.float32)  # air outside the body: -1024 HU
    body = ((x - c) / (0.42 * size * s)) ** 2 + ((y - c) / (0.33 * size * s)) ** 2 <= 1
    img[body] = 1024 + 40  # soft tissue
    for side in (-1, 1):
        lung = ((x - c - side * 0.17 * size) / (0.12 * size * s)) ** 2 + ((y - c + 0.02 * size) / (0.2 * size * s)) ** 2 <= 1
        img[lung] = 1024 - 850 + 30 * np.sin(x[lung] / 7.0) * np.cos(y[lung] / 5.0)
    spine = ((x - c) / (0.05 * size)) ** 2 + ((y - c - 0.22 * size) / (0.05 * size)) ** 2 <= 1
    img[spine] = 1024 + 900
    ring = body & ~(((x - c) / (0.40 * size * s)) ** 2 + ((y - c) / (0.31 * size * s)) ** 2 <= 1)
    img[ring] = 1024 + 600
    heart = ((x - c + 0.03 * size) / (0.09 * size)) ** 2 + ((y - c) / (0.08 * size)) ** 2 <= 1
    img[heart] = 1024 + 45 + 20 * np.cos(z / 4.0)
    noise = rng.normal(0.0, 12.0, (size, size)).astype(np.float32)
    img[body] += noise[body]
    return np.clip(np.rint(img), 0, 4095).astype(np.uint16)


def write_object(path, frames, sop_class, sop, series, number):
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = ROOT + ".1"
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop
    ds.StudyInstanceUID = ROOT + ".2"
    ds.SeriesInstanceUID = series
    ds.Modality = "CT" if sop_class.endswith(".1.2") else "OT"
    ds.PatientName = "CODEC^BENCH"
    ds.PatientID = "CODEC1"
    ds.StudyDate = "20240101"
    ds.InstanceNumber = number
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = frames.shape[-2:]
    if frames.ndim == 3:
        ds.NumberOfFrames = frames.shape[0]
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.RescaleIntercept = -1024
    ds.RescaleSlope = 1
    ds.WindowCenter = 40
    ds.WindowWidth = 400
    ds.PixelData = frames.astype("<u2").tobytes()
    ds["PixelData"].VR = "OW"
    ds.save_as(path, enforce_file_format=True)


def generate(work, slices, frames):
    """CT slices in work/ct and one multi-frame object in work/mf (regenerated when incomplete)."""
    stamp = os.path.join(work, f"inputs-{slices}-{frames}.done")
    ct, mf = os.path.join(work, "ct"), os.path.join(work, "mf")
    if os.path.exists(stamp):
        return
    for d in (ct, mf):
        shutil.rmtree(d, ignore_errors=True)
        os.makedirs(d)
    rng = np.random.default_rng(20240101)
    for i in range(slices):
        write_object(os.path.join(ct, f"ct{i:03d}.dcm"), phantom(i, rng), "1.2.840.10008.5.1.4.1.1.2", f"{ROOT}.3.{i + 1}", ROOT + ".4.1", i + 1)
    stack = np.stack([phantom(i, rng) for i in range(frames)])
    # Multi-frame Grayscale Word Secondary Capture.
    write_object(os.path.join(mf, "mf.dcm"), stack, "1.2.840.10008.5.1.4.1.1.7.3", f"{ROOT}.5.1", ROOT + ".4.2", 1)
    open(stamp, "w").close()


# ---------------------------------------------------------------------------------------------
# Tools


def encode_cmd(tool, codec, pacs, src, dst):
    if tool == "pacs":
        return [pacs, "transcode", src, dst, "--transfer-syntax", SYNTAX[codec]] + (["--quality", QUALITY] if codec in LOSSY else [])
    if tool == "dcmtk":
        return {"jls": ["/usr/bin/dcmcjpls", src, dst], "rle": ["/usr/bin/dcmcrle", src, dst], "jpx": ["/usr/bin/dcmcjpeg", "+ee", "+q", QUALITY, "+rm", src, dst]}.get(codec)
    if tool == "gdcm":
        flag = {"jls": "--jpegls", "j2k": "--j2k", "rle": "--rle"}.get(codec)
        return ["gdcmconv", flag, src, dst] if flag else None
    return None


def decode_cmd(tool, codec, pacs, src, dst):
    if tool == "pacs":
        return [pacs, "transcode", src, dst, "--transfer-syntax", EXPLICIT]
    if tool == "dcmtk":
        return {"jls": ["/usr/bin/dcmdjpls", src, dst], "rle": ["/usr/bin/dcmdrle", src, dst], "jpx": ["/usr/bin/dcmdjpeg", src, dst]}.get(codec)
    if tool == "gdcm":
        return ["gdcmconv", "--raw", src, dst]
    return None


def children_cpu():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


class Failure(Exception):
    pass


def run_all(cmds):
    """Runs the commands one after the other; returns (wall seconds, CPU seconds)."""
    cpu0, t0 = children_cpu(), time.perf_counter()
    for cmd in cmds:
        p = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=TIMEOUT)
        if p.returncode != 0:
            raise Failure(f"`{' '.join(os.path.basename(c) if i == 0 else c for i, c in enumerate(cmd))}` exited {p.returncode}: {p.stderr.decode(errors='replace').strip()[:400]}")
    return time.perf_counter() - t0, children_cpu() - cpu0


def measure(make_cmds, reps):
    walls, cpus = [], []
    for _ in range(reps):
        wall, cpu = run_all(make_cmds())
        walls.append(wall)
        cpus.append(cpu)
    return {"wall": statistics.median(walls), "cpu": statistics.median(cpus), "walls": walls}


# ---------------------------------------------------------------------------------------------
# Verification


def pixel_bytes(path):
    ds = pydicom.dcmread(path)
    return ds, bytes(ds.PixelData)


def original_pixels(path):
    ds = pydicom.dcmread(path)
    n = int(ds.Rows) * int(ds.Columns) * 2 * int(getattr(ds, "NumberOfFrames", 1) or 1)
    return bytes(ds.PixelData)[:n]


def modality(ds, stored):
    """Stored values (uint16 array) in modality units."""
    return stored.astype(np.float64) * float(ds.get("RescaleSlope", 1) or 1) + float(ds.get("RescaleIntercept", 0) or 0)


def lossy_ok(ds, decoded, original, codec, label, problems):
    """The decoded values are within LOSSY[codec] of the original (RescaleIntercept -1024), in HU."""
    if decoded.size != len(original) // 2:
        problems.append(f"{label}: {decoded.size} samples for {len(original) // 2}")
        return False
    diff = np.abs(modality(ds, decoded.ravel()) - (np.frombuffer(original, "<u2").astype(np.float64) - 1024))
    max_err, mean_err = LOSSY[codec]
    if diff.max() > max_err or diff.mean() > mean_err:
        problems.append(f"{label}: decoded values off by {diff.max():.0f} HU at most (bound {max_err}), {diff.mean():.2f} on average (bound {mean_err})")
        return False
    return True


def check_native(path, original, label, problems, codec=None):
    try:
        ds, data = pixel_bytes(path)
    except Exception as e:  # noqa: BLE001 - any read error is a problem to report
        problems.append(f"{label}: unreadable ({e})")
        return False
    ts = str(ds.file_meta.TransferSyntaxUID)
    if ts not in (EXPLICIT, "1.2.840.10008.1.2"):
        problems.append(f"{label}: transfer syntax {ts}, not native")
        return False
    if codec in LOSSY:
        return lossy_ok(ds, np.frombuffer(data[: len(original)], "<u2"), original, codec, label, problems)
    if data[: len(original)] != original or len(data) < len(original):
        diff = np.frombuffer(data[: len(original)], "<u2") if len(data) >= len(original) else None
        detail = f"{len(data)} bytes for {len(original)}"
        if diff is not None:
            a, b = diff.astype(np.int32), np.frombuffer(original, "<u2").astype(np.int32)
            detail = f"{int((a != b).sum())} of {a.size} samples differ, max |diff| {int(abs(a - b).max())}"
        problems.append(f"{label}: decoded pixels differ from the original ({detail})")
        return False
    return True


def check_compressed_pydicom(path, original, codec, label, problems):
    """The compressed output is in the expected syntax and pydicom (pylibjpeg) decodes it to the original."""
    try:
        ds = pydicom.dcmread(path)
        ts = str(ds.file_meta.TransferSyntaxUID)
        if ts != SYNTAX[codec]:
            problems.append(f"{label}: written as {ts}, not {SYNTAX[codec]}")
            return
        arr = ds.pixel_array
        if codec in LOSSY:
            lossy_ok(ds, arr.astype(np.uint16), original, codec, label, problems)
        elif arr.astype("<u2").tobytes() != original:
            a, b = arr.astype(np.int32).ravel(), np.frombuffer(original, "<u2").astype(np.int32)
            problems.append(f"{label}: pydicom decodes pixels differing from the original ({int((a != b).sum())} samples)")
    except Exception as e:  # noqa: BLE001
        problems.append(f"{label}: pydicom cannot decode it ({type(e).__name__}: {str(e)[:200]})")


def ratio_of(path, original_len):
    return original_len / max(1, os.path.getsize(path))


# ---------------------------------------------------------------------------------------------
# Main


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pacs", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--scratch", required=True)
    ap.add_argument("--slices", type=int, default=50)
    ap.add_argument("--frames", type=int, default=100)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--render-reps", type=int, default=30)
    ap.add_argument("--mode", default="full")
    ap.add_argument("--revision", default="unknown")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()

    generate(a.work, a.slices, a.frames)
    ct_files = sorted(os.path.join(a.work, "ct", f) for f in os.listdir(os.path.join(a.work, "ct")))[: a.slices]
    mf_files = [os.path.join(a.work, "mf", "mf.dcm")]
    sets = {"ct": ct_files, "mf": mf_files}
    originals = {f: original_pixels(f) for f in ct_files + mf_files}
    set_bytes = {k: sum(len(originals[f]) for f in v) for k, v in sets.items()}
    problems = []
    results = {}  # (op, codec, tool, set) -> measurement
    ratios = {}  # (codec, tool, set) -> compression ratio

    def out_dir(*parts):
        d = os.path.join(a.scratch, *parts)
        os.makedirs(d, exist_ok=True)
        return d

    def outputs(files, d):
        return [os.path.join(d, os.path.basename(f)) for f in files]

    # Encode: every tool, every codec, both sets; the outputs of the last repetition stay.
    for codec in SYNTAX:
        for tool in TOOLS:
            for set_name, files in sets.items():
                if encode_cmd(tool, codec, a.pacs, "x", "y") is None:
                    continue
                dst = outputs(files, out_dir("enc", codec, tool, set_name))
                label = f"encode {CODEC_NAME[codec]} by {tool} ({set_name})"
                print(f"codec_bench: {label}", file=sys.stderr, flush=True)
                try:
                    results[("enc", codec, tool, set_name)] = measure(lambda: [encode_cmd(tool, codec, a.pacs, s, o) for s, o in zip(files, dst)], a.reps)
                    ratios[(codec, tool, set_name)] = set_bytes[set_name] / sum(os.path.getsize(o) for o in dst)
                except (Failure, subprocess.TimeoutExpired) as e:
                    problems.append(f"{label}: {e}")

    # Decode: every decoder reads the same compressed files, pacs's output (or another encoder's
    # when pacs's failed); decoded pixels checked against the original.
    decode_source = {}
    for codec in SYNTAX:
        for set_name, files in sets.items():
            src_tool = next((t for t in TOOLS if ("enc", codec, t, set_name) in results), None)
            if src_tool is None:
                continue
            decode_source[(codec, set_name)] = src_tool
            src = outputs(files, os.path.join(a.scratch, "enc", codec, src_tool, set_name))
            for tool in TOOLS:
                if decode_cmd(tool, codec, a.pacs, "x", "y") is None:
                    continue
                dst = outputs(files, out_dir("dec", codec, tool, set_name))
                label = f"decode {CODEC_NAME[codec]} by {tool} ({set_name})"
                print(f"codec_bench: {label}", file=sys.stderr, flush=True)
                try:
                    results[("dec", codec, tool, set_name)] = measure(lambda: [decode_cmd(tool, codec, a.pacs, s, o) for s, o in zip(src, dst)], a.reps)
                except (Failure, subprocess.TimeoutExpired) as e:
                    problems.append(f"{label}: {e}")
                    continue
                for f, o in zip(files, dst):
                    if not check_native(o, originals[f], f"{label}, {os.path.basename(f)}", problems, codec):
                        break

    # Cross-check: every encoder's output decoded by every other decoder and by pydicom (a few
    # slices and the multi-frame object), pixels compared with the original.
    print("codec_bench: cross-decoding every encoder's output", file=sys.stderr, flush=True)
    cross = {}  # (codec, encoder, decoder) -> "ok" / "FAIL"
    for codec in SYNTAX:
        for enc in TOOLS:
            for set_name, files in sets.items():
                if ("enc", codec, enc, set_name) not in results:
                    continue
                sample = files if set_name == "mf" else files[:: max(1, len(files) // 5)]
                src_dir = os.path.join(a.scratch, "enc", codec, enc, set_name)
                for f in sample:
                    s = os.path.join(src_dir, os.path.basename(f))
                    n0 = len(problems)
                    check_compressed_pydicom(s, originals[f], codec, f"{CODEC_NAME[codec]} by {enc}, {os.path.basename(f)}", problems)
                    cross[(codec, enc, "pydicom")] = cross.get((codec, enc, "pydicom"), "ok") if len(problems) == n0 else "FAIL"
                    for dec in TOOLS:
                        cmd = decode_cmd(dec, codec, a.pacs, s, os.path.join(a.scratch, "cross.dcm"))
                        if cmd is None:
                            continue
                        n0 = len(problems)
                        label = f"{CODEC_NAME[codec]} by {enc} decoded by {dec}, {os.path.basename(f)}"
                        try:
                            run_all([cmd])
                            check_native(os.path.join(a.scratch, "cross.dcm"), originals[f], label, problems, codec)
                        except (Failure, subprocess.TimeoutExpired) as e:
                            problems.append(f"{label}: {e}")
                        cross[(codec, enc, dec)] = cross.get((codec, enc, dec), "ok") if len(problems) == n0 else "FAIL"
    if os.path.exists(os.path.join(a.scratch, "cross.dcm")):
        os.remove(os.path.join(a.scratch, "cross.dcm"))

    # Rendering of one 512x512 slice (the middle one), native and JPEG-LS.
    print("codec_bench: rendering", file=sys.stderr, flush=True)
    render = {}
    mid = ct_files[len(ct_files) // 2]
    jls_mid = os.path.join(a.scratch, "enc", "jls", decode_source.get(("jls", "ct"), "pacs"), "ct", os.path.basename(mid))
    rd = out_dir("render")
    cases = [
        ("native", "PNG 128x128", "pacs", [a.pacs, "render", mid, f"{rd}/p.png", "--size", "128x128"]),
        ("native", "PNG 128x128", "dcmtk", ["/usr/bin/dcm2pnm", "--write-png", "+Wi", "1", "--scale-x-size", "128", mid, f"{rd}/d.png"]),
        ("native", "JPEG 512x512", "pacs", [a.pacs, "render", mid, f"{rd}/p.jpg"]),
        ("native", "JPEG 512x512", "dcmtk", ["/usr/bin/dcmj2pnm", "--write-jpeg", "+Wi", "1", mid, f"{rd}/d.jpg"]),
        ("JPEG-LS", "PNG 128x128", "pacs", [a.pacs, "render", jls_mid, f"{rd}/pl.png", "--size", "128x128"]),
        ("JPEG-LS", "PNG 128x128", "dcmtk", ["/usr/bin/dcml2pnm", "--write-png", "+Wi", "1", "--scale-x-size", "128", jls_mid, f"{rd}/dl.png"]),
    ]
    for src_kind, fmt, tool, cmd in cases:
        if not os.path.exists(cmd[0]) or (src_kind == "JPEG-LS" and not os.path.exists(jls_mid)):
            continue
        label = f"render {src_kind} slice to {fmt} by {tool}"
        try:
            lat = []
            for _ in range(a.render_reps):
                lat.append(run_all([cmd])[0])
            render[(src_kind, fmt, tool)] = {"median": statistics.median(lat), "p95": sorted(lat)[int(0.95 * (len(lat) - 1))], "out": cmd[3] if tool == "pacs" else cmd[-1]}
        except (Failure, subprocess.TimeoutExpired) as e:
            problems.append(f"{label}: {e}")
    # The thumbnails agree: the same size, pixels within a few grey levels.
    try:
        from PIL import Image

        for src_kind in ("native", "JPEG-LS"):
            p, d = render.get((src_kind, "PNG 128x128", "pacs")), render.get((src_kind, "PNG 128x128", "dcmtk"))
            if p and d:
                ip, idd = np.asarray(Image.open(p["out"]).convert("L"), np.int32), np.asarray(Image.open(d["out"]).convert("L"), np.int32)
                if ip.shape != idd.shape:
                    problems.append(f"render {src_kind}: pacs thumbnail {ip.shape[::-1]}, dcm2pnm {idd.shape[::-1]}")
                else:
                    render[(src_kind, "PNG 128x128", "pacs")]["agree"] = f"{ip.shape[1]}x{ip.shape[0]}, mean |diff| {abs(ip - idd).mean():.2f}, max {abs(ip - idd).max()} grey levels vs dcm2pnm"
    except ImportError:
        pass

    write_report(a, sets, set_bytes, results, ratios, decode_source, cross, render, problems)
    print(f"codec_bench: report written to {a.out}", file=sys.stderr)
    return 2 if problems else 0


def versions():
    def first_line(cmd):
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
            return (out.stdout or out.stderr).strip().splitlines()[0]
        except Exception:  # noqa: BLE001
            return "?"

    dcmtk = first_line(["/usr/bin/dcmcjpls", "--version"]).lstrip("$").strip(" $")
    gdcm = first_line(["gdcmconv", "--version"]).replace("$Date$", "").strip()
    return dcmtk, gdcm


def write_report(a, sets, set_bytes, results, ratios, decode_source, cross, render, problems):
    dcmtk, gdcm = versions()
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    n_ct, n_frames = len(sets["ct"]), a.frames
    L = []
    L.append(f"# Codec benchmark, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} ({a.mode} run)\n")
    L.append("`benches/load/codec.sh`: pacs against DCMTK and GDCM, each a process run on the same files in the same run.\n")
    L.append(f"- Host: {os.cpu_count()} cores ({cpu}), {mem:.0f} GiB, {platform.system()} {platform.release()}; a shared VM, so compare the ratios within this file, not absolute figures across files.")
    L.append(f"- pacs: release build of {a.revision}; {dcmtk}; {gdcm}; Python {platform.python_version()}, pydicom {pydicom.__version__}.")
    L.append(f"- Inputs (Explicit VR Little Endian, 16 bits allocated, 12 stored, unsigned, CT-like phantom with noise): **ct** = {n_ct} single-frame 512x512 slices, {set_bytes['ct'] / 1e6:.1f} MB of pixel data, one process per file; **mf** = one multi-frame object of {n_frames} frames of 512x512, {set_bytes['mf'] / 1e6:.1f} MB, one process.")
    L.append(f"- Wall time: median of {a.reps} repetitions of the whole set (process start-up included). MB/s = MB of uncompressed pixel data / wall time. `cores` = CPU time (user + system) / wall time: 2.0 would be both cores busy.")
    L.append("- Ratios: **tool time ÷ pacs time**, so above 1 means pacs is faster; the target is ≥ 1 against both DCMTK and GDCM.\n")

    def fmt_ms(s):
        return f"{s * 1000:.0f} ms" if s < 10 else f"{s:.1f} s"

    for op, title in (("enc", "Encode (Explicit VR LE → compressed)"), ("dec", "Decode (compressed → Explicit VR LE)")):
        L.append(f"## {title}\n")
        if op == "dec":
            srcs = ", ".join(f"{CODEC_NAME[c]} {s}: {t}" for (c, s), t in sorted(decode_source.items()))
            L.append(f"All decoders read the same compressed files, written by ({srcs}).\n")
        L.append("| codec | input | tool | wall | per file | MB/s | cores | " + ("ratio (compressed) | " if op == "enc" else "") + "tool ÷ pacs |")
        L.append("|---|---|---|---:|---:|---:|---:|" + ("---:|" if op == "enc" else "") + "---:|")
        for codec in SYNTAX:
            for set_name in ("ct", "mf"):
                pacs_r = results.get((op, codec, "pacs", set_name))
                for tool in TOOLS:
                    r = results.get((op, codec, tool, set_name))
                    if r is None:
                        continue
                    n = len(sets[set_name])
                    mbs = set_bytes[set_name] / 1e6 / r["wall"]
                    rel = "—" if tool == "pacs" else (f"{r['wall'] / pacs_r['wall']:.2f}" if pacs_r else "pacs failed")
                    per = fmt_ms(r["wall"] / n) if set_name == "ct" else "—"
                    row = f"| {CODEC_NAME[codec]} | {set_name} | {tool} | {fmt_ms(r['wall'])} | {per} | {mbs:.1f} | {r['cpu'] / r['wall']:.2f} | "
                    if op == "enc":
                        row += f"{ratios[(codec, tool, set_name)]:.2f} | "
                    L.append(row + f"{rel} |")
        L.append("")

    L.append("## Interoperability\n")
    L.append(f"Each encoder's output (one slice in {max(1, n_ct // 5)} and the multi-frame object) decoded by each decoder and by pydicom (pylibjpeg), pixels compared with the original (lossy JPEG: within {LOSSY['jpx'][0]} HU at most and {LOSSY['jpx'][1]} on average):\n")
    decs = ["pacs", "dcmtk", "gdcm", "pydicom"]
    L.append("| codec | encoded by | " + " | ".join(f"decoded by {d}" for d in decs) + " |")
    L.append("|---|---|" + "---|" * len(decs))
    for codec in SYNTAX:
        for enc in TOOLS:
            if not any(k[0] == codec and k[1] == enc for k in cross):
                continue
            L.append(f"| {CODEC_NAME[codec]} | {enc} | " + " | ".join(cross.get((codec, enc, d), "—") for d in decs) + " |")
    L.append("")

    L.append("## Rendering a 512x512 CT slice\n")
    L.append(f"One process per image, median and p95 of {a.render_reps} runs. pacs: `pacs render IN OUT.png --size 128x128`, `pacs render IN OUT.jpg`; DCMTK: `dcm2pnm --write-png +Wi 1 --scale-x-size 128`, `dcmj2pnm --write-jpeg +Wi 1`, `dcml2pnm` for JPEG-LS input. Both use the object's window (40/400).\n")
    L.append("| input | output | tool | median | p95 | tool ÷ pacs |")
    L.append("|---|---|---|---:|---:|---:|")
    for (src_kind, fmt, tool), r in render.items():
        p = render.get((src_kind, fmt, "pacs"))
        rel = "—" if tool == "pacs" else (f"{r['median'] / p['median']:.2f}" if p else "?")
        L.append(f"| {src_kind} | {fmt} | {tool} | {r['median'] * 1000:.1f} ms | {r['p95'] * 1000:.1f} ms | {rel} |")
    agree = [f"{k[0]}: {v['agree']}" for k, v in render.items() if "agree" in v]
    if agree:
        L.append("\nThumbnails compared: " + "; ".join(agree) + ".")
    L.append("")
    L.append("## Problems\n")
    L.extend([f"- {p}" for p in problems] or ["None: every output decoded to the original pixels."])
    L.append("")
    with open(a.out, "w") as f:
        f.write("\n".join(L))
    with open(os.path.join(a.work, "last-results.json"), "w") as f:
        json.dump({"|".join(k): v for k, v in results.items()}, f, indent=1)


if __name__ == "__main__":
    sys.exit(main())
