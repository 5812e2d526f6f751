#!/usr/bin/env python3
"""Writes a corpus of small, valid DICOM objects and prints a JSON manifest.

Usage: make_corpus.py OUT_DIR COUNT

COUNT objects of 64x64 16-bit pixels (Secondary Capture, Explicit VR Little Endian), spread
over 3 patients, 6 studies and 12 series, with unique, deterministic UIDs, written to
OUT_DIR/<series>/IM<n>.dcm. The manifest lists every file with its UIDs.
"""

import json
import os
import random
import sys
import warnings

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

warnings.simplefilter("ignore")

SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"


def uid(*parts):
    return generate_uid(entropy_srcs=["pacs-cli crash corpus", *map(str, parts)])


def main():
    out, count = sys.argv[1], int(sys.argv[2])
    rng = random.Random(20240131)
    files = []
    for n in range(count):
        series_index = n % 12
        study_index = series_index // 2
        patient_index = study_index // 2
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = SECONDARY_CAPTURE
        meta.MediaStorageSOPInstanceUID = uid("instance", n)
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.preamble = b"\0" * 128
        ds.SpecificCharacterSet = "ISO_IR 100"
        ds.SOPClassUID = SECONDARY_CAPTURE
        ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID = uid("study", study_index)
        ds.SeriesInstanceUID = uid("series", series_index)
        ds.PatientID = f"CRASH{patient_index}"
        ds.PatientName = f"Crash^Patient{patient_index}"
        ds.StudyDate = f"202401{study_index + 10:02d}"
        ds.StudyTime = "101500"
        ds.AccessionNumber = f"ACC{study_index}"
        ds.Modality = "OT"
        ds.SeriesNumber = series_index + 1
        ds.InstanceNumber = n // 12 + 1
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows = 64
        ds.Columns = 64
        ds.BitsAllocated = 16
        ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 0
        ds.PixelData = bytes(rng.getrandbits(8) for _ in range(64 * 64 * 2))
        folder = os.path.join(out, f"series{series_index:02d}")
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, f"IM{n:04d}.dcm")
        ds.save_as(path, enforce_file_format=True)
        files.append(
            {
                "path": path,
                "SOPInstanceUID": str(ds.SOPInstanceUID),
                "StudyInstanceUID": str(ds.StudyInstanceUID),
                "SeriesInstanceUID": str(ds.SeriesInstanceUID),
                "PatientID": ds.PatientID,
            }
        )
    json.dump({"files": files}, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
