#!/usr/bin/env python3
"""Makes the bad and borderline inputs of the integration tests with pydicom. Prints JSON.

  fixtures.py without KEYWORD SRC OUT   SRC without the attribute KEYWORD, written to OUT
  fixtures.py variant SRC OUT NAME      SRC with PatientName NAME (same SOP Instance UID)
  fixtures.py pixel SRC                 {"offset": .., "length": ..} of SRC's Pixel Data value
  fixtures.py big OUT MEBIBYTES         a new valid object with about MEBIBYTES of pixel data
  fixtures.py uids SRC                  {"SOPInstanceUID": .., "StudyInstanceUID": .., ...}
"""

import json
import sys
import warnings

import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

warnings.simplefilter("ignore")


def save(ds, out):
    # Keep the preamble and File Meta Information as read (pydicom 3 API).
    ds.save_as(out, enforce_file_format=False)


def main():
    command, args = sys.argv[1], sys.argv[2:]
    if command == "without":
        keyword, src, out = args
        ds = pydicom.dcmread(src)
        delattr(ds, keyword)
        save(ds, out)
        result = {"path": out}
    elif command == "variant":
        src, out, name = args
        ds = pydicom.dcmread(src)
        ds.PatientName = name
        save(ds, out)
        result = {"path": out, "SOPInstanceUID": str(ds.SOPInstanceUID)}
    elif command == "pixel":
        (src,) = args
        ds = pydicom.dcmread(src, defer_size=None)
        raw = ds._dict[pydicom.tag.Tag(0x7FE0, 0x0010)]
        result = {"offset": raw.value_tell, "length": raw.length}
    elif command == "big":
        out, mebibytes = args
        side = 1024
        frames = max(1, (int(mebibytes) + 1) // 2)
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.preamble = b"\0" * 128
        ds.SOPClassUID = meta.MediaStorageSOPClassUID
        ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID = generate_uid()
        ds.SeriesInstanceUID = generate_uid()
        ds.PatientID = "BIG"
        ds.PatientName = "Big^Object"
        ds.Modality = "OT"
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows = side
        ds.Columns = side
        ds.NumberOfFrames = frames
        ds.BitsAllocated = 16
        ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 0
        ds.PixelData = bytes(range(256)) * (side * side * 2 * frames // 256)
        ds.save_as(out, enforce_file_format=True)
        result = {"path": out, "SOPInstanceUID": str(ds.SOPInstanceUID)}
    elif command == "uids":
        (src,) = args
        ds = pydicom.dcmread(src, stop_before_pixels=True)
        result = {k: str(ds.get(k, "")) for k in ("SOPInstanceUID", "SOPClassUID", "StudyInstanceUID", "SeriesInstanceUID", "PatientID")}
    else:
        raise SystemExit(f"unknown command {command!r}")
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
