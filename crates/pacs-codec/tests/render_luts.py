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
  sigmoid.raw, linear_exact.raw: the PS3.3 C.11.2.1.3 functions of its modality values (numpy).
"""

import os
import sys

import numpy
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
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

