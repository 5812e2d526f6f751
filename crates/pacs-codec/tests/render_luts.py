"""Synthetic objects for the lookup table rendering tests (tests/render.rs), and references
computed independently of the code under test.

    python3 render_luts.py DIR

writes into DIR:

- mlut_signed.dcm: signed 16-bit MONOCHROME2 with a Modality LUT Sequence (16-bit entries, first
  value mapped -2048 written as US 0xF800), pixels beyond both ends of the LUT;
- voi16.dcm: 12-bit CT-like MONOCHROME2 (rescale intercept -1024) with a VOI LUT Sequence of one
  16-bit LUT whose first value mapped is -1024 (no window);
- voi8.dcm: 8-bit MONOCHROME2 with three VOI LUTs: 8-bit entries packed two to a word (OW),
  16-bit entries (OW), 8-bit entries one to a word (US);
- voi_and_window.dcm: voi16.dcm with a Window Center and Width as well;
- sigmoid.dcm, linear_exact.dcm: the CT-like image with a window and that VOI LUT Function;
  sigmoid.raw, linear_exact.raw: the PS3.3 C.11.2.1.3 functions of its modality values (numpy);
- segmented8.dcm: 8-bit PALETTE COLOR with pydicom's well-known SUMMER palette (segmented, 8-bit
  entries); segmented16.dcm: 16-bit entries with discrete, linear and indirect segments (pointing
  at the first segment: pydicom reads a 16-bit offset as a count of words, the standard as bytes);
  segmented8_indirect.dcm: 8-bit entries with an indirect segment pointing past the first; each also as *_expanded.dcm, the same palette expanded
  into ordinary Palette Color Lookup Table Data by pydicom (for DCMTK, which does not read
  segmented palettes), and *.raw, pydicom's apply_color_lut of the pixels;
- bits1_mono2.dcm, bits1_mono1.dcm: 1 bit allocated, one 13 x 11 frame; bits1_mono2_3f.dcm,
  bits1_mono1_3f.dcm: three 7 x 5 frames (35 bits each, so frames 2 and 3 start mid-byte);
  *.raw: pydicom's pixel_array of them, all frames.
"""

import os
import sys

import numpy
import pydicom
import pydicom.data
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.pixels import apply_color_lut
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

OUT = sys.argv[1]


def base(rows, columns, bits_allocated, bits_stored, signed=False, photometric="MONOCHROME2", frames=1):
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    uid = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = uid
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.SOPInstanceUID = uid
    # Study and series, so that the archive can store the objects too (pacs-net's rendering test).
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality = "OT"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.Rows = rows
    ds.Columns = columns
    if frames > 1:
        ds.NumberOfFrames = frames
    ds.BitsAllocated = bits_allocated
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = 1 if signed else 0
    return ds


def save(ds, name):
    ds.save_as(os.path.join(OUT, name), enforce_file_format=True)


def pixels16(ds, values, signed):
    ds.add_new(0x7FE00010, "OW", values.astype("<i2" if signed else "<u2").tobytes())


def lut_item(count, first, bits, data, vr):
    """A LUT item: descriptor [count (0 for 65536), first, bits] as US, data as `vr`."""
    item = Dataset()
    item.add_new(0x00283002, "US", [count % 65536, first % 65536, bits])
    if vr == "US":
        item.add_new(0x00283006, "US", [int(v) for v in data])
    else:
        item.add_new(0x00283006, "OW", data)
    return item


def ct_like(size):
    """HU + 1024 of a CT-like slice: air, a body of soft tissue, two lungs, a bone ring, a ramp."""
    y, x = numpy.mgrid[0:size, 0:size].astype(numpy.float64)
    c = size / 2
    hu = numpy.full((size, size), -1024.0)
    body = ((x - c) / (0.42 * size)) ** 2 + ((y - c) / (0.33 * size)) ** 2 <= 1
    hu[body] = 40 + 400 * numpy.sin(x[body] / 9) * numpy.cos(y[body] / 7)
    ring = body & (((x - c) / (0.40 * size)) ** 2 + ((y - c) / (0.31 * size)) ** 2 > 1)
    hu[ring] = 900
    for side in (-1, 1):
        lung = ((x - c - side * 0.17 * size) / (0.12 * size)) ** 2 + ((y - c) / (0.2 * size)) ** 2 <= 1
        hu[lung] = -850 + 30 * numpy.sin(x[lung] / 3)
    hu[:4, :] = numpy.linspace(-1024, 3071, size)
    return numpy.clip(numpy.round(hu + 1024), 0, 4095).astype(numpy.int64)


SIZE = 96
CT = ct_like(SIZE)
MODALITY = CT.astype(numpy.float64) - 1024  # rescale slope 1, intercept -1024


def ct_object():
    ds = base(SIZE, SIZE, 16, 12)
    ds.RescaleSlope = 1
    ds.RescaleIntercept = -1024
    ds.RescaleType = "HU"
    pixels16(ds, CT, False)
    return ds


# The Modality LUT Sequence: signed input, 16-bit entries, pixels below and above its range.
ds = base(SIZE, SIZE, 16, 16, signed=True)
stored = (CT - 2048) * 5 // 4  # -2560 .. 2558: past both ends of the LUT's -2048 .. 2047
pixels16(ds, stored, True)
inputs = numpy.arange(4096)
curve = numpy.round(65535 * (inputs / 4095.0) ** 0.6).astype("<u2")
item = lut_item(4096, -2048, 16, curve.tobytes(), "OW")
item.ModalityLUTType = "US"
ds.ModalityLUTSequence = Sequence([item])
save(ds, "mlut_signed.dcm")

# A 16-bit VOI LUT over the modality values -1024 .. 3071.
ds = ct_object()
voi = numpy.round(65535 / (1 + numpy.exp(-(numpy.arange(4096) - 1024 - 60) / 120.0))).astype("<u2")
ds.VOILUTSequence = Sequence([lut_item(4096, -1024, 16, voi.tobytes(), "OW")])
save(ds, "voi16.dcm")
ds.WindowCenter = 40
ds.WindowWidth = 400
save(ds, "voi_and_window.dcm")

# Three VOI LUTs on 8-bit pixels: 8-bit packed, 16-bit, 8-bit one to a word.
ds = base(SIZE, SIZE, 8, 8)
eight = (CT // 16).astype(numpy.uint8)
ds.add_new(0x7FE00010, "OB", eight.tobytes())
ramp = numpy.arange(256, dtype=numpy.float64)
packed = numpy.round(255 * (ramp / 255) ** 0.5).astype(numpy.uint8)
wide = numpy.round(65535 * (1 - numpy.cos(numpy.pi * ramp / 255)) / 2).astype("<u2")
steps = (numpy.arange(200) // 25 * 32).astype(numpy.uint8)  # 200 entries from 20: the rest clamp
ds.VOILUTSequence = Sequence(
    [lut_item(256, 0, 8, packed.tobytes(), "OW"), lut_item(256, 0, 16, wide.tobytes(), "OW"), lut_item(200, 20, 8, steps, "US")]
)
save(ds, "voi8.dcm")

# VOI LUT Functions (PS3.3 C.11.2.1.3).
for function, name in (("SIGMOID", "sigmoid"), ("LINEAR_EXACT", "linear_exact")):
    ds = ct_object()
    ds.WindowCenter = 40
    ds.WindowWidth = 350
    ds.VOILUTFunction = function
    save(ds, f"{name}.dcm")
    c, w, x = 40.0, 350.0, MODALITY
    if function == "SIGMOID":
        y = 255 / (1 + numpy.exp(-4 * (x - c) / w))
    else:
        y = numpy.where(x <= c - w / 2, 0.0, numpy.where(x > c + w / 2, 255.0, ((x - c) / w + 0.5) * 255))
    with open(os.path.join(OUT, f"{name}.raw"), "wb") as f:
        f.write(numpy.clip(numpy.round(y), 0, 255).astype(numpy.uint8).tobytes())


def palette_object(bits, red, green, blue, name):
    """8-bit PALETTE COLOR pixels 0..255 (a ramp with a pattern) through segmented palettes."""
    ds = base(64, 80, 8, 8, photometric="PALETTE COLOR")
    y, x = numpy.mgrid[0:64, 0:80]
    index = ((x * 3 + (y // 8) * 17 + (x * y) % 7) % 256).astype(numpy.uint8)
    ds.add_new(0x7FE00010, "OB", index.tobytes())
    for tag, data in ((0x00281101, red), (0x00281102, green), (0x00281103, blue)):
        ds.add_new(tag, "US", [256, 0, bits])
    for tag, data in ((0x00281221, red), (0x00281222, green), (0x00281223, blue)):
        ds.add_new(tag, "OW", data)
    save(ds, f"{name}.dcm")
    ds = pydicom.dcmread(os.path.join(OUT, f"{name}.dcm"))
    rgb = apply_color_lut(ds.pixel_array, ds)
    # Scaled to 8 bits as DCMTK and we show 16-bit entries: the high byte.
    rgb8 = (rgb >> 8).astype(numpy.uint8) if bits == 16 else rgb.astype(numpy.uint8)
    with open(os.path.join(OUT, f"{name}.raw"), "wb") as f:
        f.write(rgb8.tobytes())
    # The same palette, expanded by pydicom, as ordinary Palette Color Lookup Table Data.
    lut = apply_color_lut(numpy.arange(256, dtype=numpy.uint8), ds)
    for i, tag in enumerate((0x00281221, 0x00281222, 0x00281223)):
        del ds[tag]
        data = lut[:, i].astype("<u2").tobytes() if bits == 16 else lut[:, i].astype(numpy.uint8).tobytes()
        ds.add_new(0x00281201 + i, "OW", data)
    save(ds, f"{name}_expanded.dcm")


summer = pydicom.dcmread(os.path.join(os.path.dirname(pydicom.data.__file__), "palettes", "summer.dcm"))
palette_object(
    8,
    summer.SegmentedRedPaletteColorLookupTableData,
    summer.SegmentedGreenPaletteColorLookupTableData,
    summer.SegmentedBluePaletteColorLookupTableData,
    "segmented8",
)


def words(values):
    return numpy.array(values, dtype="<u2").tobytes()


# 16-bit entries: discrete, linear, then an indirect segment copying the first two (offset 0).
red = [0, 4, 0, 65535, 30000, 1000, 1, 100, 60000, 2, 2, 0, 0, 1, 48, 123]
# Two linear segments after a discrete one, an indirect copy of the discrete one, a linear one.
green = [0, 2, 500, 1000, 1, 120, 50000, 1, 60, 0, 2, 1, 0, 0, 1, 72, 9000]
blue = [0, 1, 65535, 1, 255, 0]
palette_object(16, words(red), words(green), words(blue), "segmented16")

# 8-bit entries: the offset of an indirect segment is in bytes (here 5, the linear segment).
red8 = bytes([0, 3, 10, 20, 30, 1, 100, 250, 2, 1, 5, 0, 0, 0, 1, 53, 0])
green8 = bytes([0, 1, 255, 1, 255, 0])
blue8 = bytes([0, 2, 0, 128, 1, 254, 255])
assert len(red8) % 2 == 1 and len(green8) % 2 == 0 and len(blue8) % 2 == 1
palette_object(8, red8 + b"\0", green8, blue8 + b"\0", "segmented8_indirect")


def one_bit(rows, columns, frames, photometric, name):
    count = rows * columns * frames
    bits = numpy.array([(i * 7 + i // 3 + (i * i) % 5) % 3 == 0 for i in range(count)], dtype=numpy.uint8)
    ds = base(rows, columns, 1, 1, photometric=photometric, frames=frames)
    ds.add_new(0x7FE00010, "OB", numpy.packbits(bits, bitorder="little").tobytes())
    save(ds, f"{name}.dcm")
    array = pydicom.dcmread(os.path.join(OUT, f"{name}.dcm")).pixel_array
    with open(os.path.join(OUT, f"{name}.raw"), "wb") as f:
        f.write(array.astype(numpy.uint8).tobytes())


one_bit(11, 13, 1, "MONOCHROME2", "bits1_mono2")
one_bit(11, 13, 1, "MONOCHROME1", "bits1_mono1")
one_bit(5, 7, 3, "MONOCHROME2", "bits1_mono2_3f")
one_bit(5, 7, 3, "MONOCHROME1", "bits1_mono1_3f")
