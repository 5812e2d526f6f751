#!/usr/bin/env python3
"""The Python side of the DICOMweb tests: fixtures made with pydicom, and the dicomweb-client
package driving the server, with pydicom reading the same files as the reference. Prints JSON.

  web.py fixtures OUT              writes the test objects into OUT; lists them
  web.py store URL FILE...         STOW-RS with dicomweb-client; the response data set
  web.py search URL                QIDO-RS at every level with dicomweb-client; the results
  web.py retrieve URL FILE...      WADO-RS with dicomweb-client, checked against pydicom
  web.py metadata URL FILE...      /metadata against pydicom's Dataset.to_json_dict
  web.py frames FILE               the native frames of FILE as hexadecimal SHA-256s
  web.py uids FILE...              the study, series and SOP instance UIDs of each file
  web.py headers URL FILE...       QIDO-RS on attributes outside the index, against pydicom
  web.py decoded URL FILE...       /frames decoded to native samples, against pydicom's pixel_array
  web.py corrupt OUT               RLE objects whose pixel data cannot be decoded (one frame of two)
  web.py cut URL STUDY             a whole-study retrieve converted to Explicit VR Little Endian
"""

import base64
import datetime
import hashlib
import io
import json
import math
import os
import sys
import warnings

import numpy
import pydicom
import requests
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

warnings.simplefilter("ignore")

CT = "1.2.840.10008.5.1.4.1.1.2"
MR = "1.2.840.10008.5.1.4.1.1.4"
SC = "1.2.840.10008.5.1.4.1.1.7"
ROOT = "1.2.826.0.1.3680043.10.543.9"


def make(path, ts, sop_class, study, series, sop, patient, **attrs):
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop
    meta.TransferSyntaxUID = ts
    ds = Dataset()
    ds.file_meta = meta
    ds.preamble = b"\0" * 128
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop
    ds.StudyInstanceUID = study
    ds.SeriesInstanceUID = series
    ds.PatientID, ds.PatientName = patient
    for key, value in attrs.items():
        setattr(ds, key, value)
    ds.save_as(path, enforce_file_format=True)
    return path


def fixtures(out):
    os.makedirs(out, exist_ok=True)
    study_a, study_b, study_c = f"{ROOT}.1", f"{ROOT}.2", f"{ROOT}.3"
    files = []
    # Study A, series 1: three CT slices, 16-bit signed, rescaled, windowed, with sequences.
    rng = numpy.random.default_rng(7)
    for i in range(1, 4):
        pixels = (rng.integers(-1024, 2000, size=(8, 10))).astype(numpy.int16)
        ref = Dataset()
        ref.ReferencedSOPClassUID = CT
        ref.ReferencedSOPInstanceUID = f"{ROOT}.1.1.{i + 10}"
        code = Dataset()
        code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = "T-D3000", "SRT", "Chest"
        ref.PurposeOfReferenceCodeSequence = Sequence([code])
        files.append(
            make(
                f"{out}/a1_{i}.dcm", ExplicitVRLittleEndian, CT, study_a, f"{ROOT}.1.1", f"{ROOT}.1.1.{i}", ("PID-A", "Doe^John^^Dr"),
                StudyDate="20240115", StudyTime="103000", AccessionNumber="ACC-A", StudyDescription="Chest CT",
                # Instance numbers in the reverse order of the UIDs: the first instance of the
                # series by number is the last by UID.
                Modality="CT", SeriesNumber=1, InstanceNumber=4 - i, SliceThickness="1.25", PixelSpacing=["0.5", "0.5"],
                ContentDate=f"2024011{i}", Manufacturer="ACME", OperatorsName="Smith^Anna",
                AcquisitionDateTime=f"2024011{i}09300{i}.25+0100",
                **({"StationName": "CT01"} if i == 2 else {}),
                ImagePositionPatient=["0", "-12.5", str(i * 1.25)], ImageType=["ORIGINAL", "PRIMARY", "AXIAL"],
                WindowCenter="40", WindowWidth="400", RescaleSlope="1", RescaleIntercept="-1024",
                ReferencedImageSequence=Sequence([ref]), FrameIncrementPointer=0x00181063,
                OtherPatientNames=["Doe^J", "", "Roe^Jo"], PatientWeight=72.5,
                SamplesPerPixel=1, PhotometricInterpretation="MONOCHROME2", Rows=8, Columns=10,
                BitsAllocated=16, BitsStored=16, HighBit=15, PixelRepresentation=1, PixelData=pixels.tobytes(),
            )
        )
    # Study A, series 2: one MR image, implicit VR, 8-bit MONOCHROME1.
    pixels = numpy.arange(6 * 4, dtype=numpy.uint8).reshape(6, 4) * 10
    files.append(
        make(
            f"{out}/a2_1.dcm", ImplicitVRLittleEndian, MR, study_a, f"{ROOT}.1.2", f"{ROOT}.1.2.1", ("PID-A", "Doe^John^^Dr"),
            StudyDate="20240115", StudyTime="103000", AccessionNumber="ACC-A", StudyDescription="Chest CT",
            Modality="MR", SeriesNumber=2, InstanceNumber=1, EchoTime="12.5",
            ContentDate="20240120", Manufacturer="Other Corp", OperatorsName="smith^bob",
            AcquisitionDateTime="2024012008",
            SamplesPerPixel=1, PhotometricInterpretation="MONOCHROME1", Rows=6, Columns=4,
            BitsAllocated=8, BitsStored=8, HighBit=7, PixelRepresentation=0, PixelData=pixels.tobytes(),
        )
    )
    # Study B: a multi-frame object (4 frames) and an RGB one.
    frames = numpy.arange(4 * 5 * 6, dtype=numpy.uint8).reshape(4, 5, 6)
    files.append(
        make(
            f"{out}/b1_1.dcm", ExplicitVRLittleEndian, SC, study_b, f"{ROOT}.2.1", f"{ROOT}.2.1.1", ("PID-B", "roe^jane"),
            StudyDate="20231201", Modality="OT", SeriesNumber=1, InstanceNumber=1, NumberOfFrames=4,
            SamplesPerPixel=1, PhotometricInterpretation="MONOCHROME2", Rows=5, Columns=6,
            BitsAllocated=8, BitsStored=8, HighBit=7, PixelRepresentation=0, PixelData=frames.tobytes(),
        )
    )
    rgb = numpy.arange(3 * 4 * 3, dtype=numpy.uint8).reshape(3, 4, 3) * 7
    files.append(
        make(
            f"{out}/b2_1.dcm", ExplicitVRLittleEndian, SC, study_b, f"{ROOT}.2.2", f"{ROOT}.2.2.1", ("PID-B", "roe^jane"),
            StudyDate="20231201", Modality="XC", SeriesNumber=2, InstanceNumber=1,
            SamplesPerPixel=3, PhotometricInterpretation="RGB", PlanarConfiguration=0, Rows=3, Columns=4,
            BitsAllocated=8, BitsStored=8, HighBit=7, PixelRepresentation=0, PixelData=rgb.tobytes(),
        )
    )
    # Study C: names in three component groups, UTF-8.
    files.append(
        make(
            f"{out}/c1_1.dcm", ExplicitVRLittleEndian, SC, study_c, f"{ROOT}.3.1", f"{ROOT}.3.1.1", ("PID-C", "Yamada^Tarou=山田^太郎=やまだ^たろう"),
            SpecificCharacterSet="ISO_IR 192", StudyDate="20220301", Modality="OT", SeriesNumber=1, InstanceNumber=1,
            InstitutionName="Städtisches Klinikum", StudyDescription="",
        )
    )
    listing = []
    for path in files:
        ds = pydicom.dcmread(path)
        listing.append(
            {
                "path": path,
                "study": ds.StudyInstanceUID,
                "series": ds.SeriesInstanceUID,
                "sop": ds.SOPInstanceUID,
                "frames": int(ds.get("NumberOfFrames", 1) or 1),
                "modality": ds.Modality,
            }
        )
    return listing


def client(url):
    from dicomweb_client.api import DICOMwebClient

    return DICOMwebClient(url=url)


def uids(results, keyword):
    tag = pydicom.datadict.tag_for_keyword(keyword)
    key = f"{tag:08X}"
    return sorted(r[key]["Value"][0] for r in results if "Value" in r.get(key, {}))


def search(url):
    c = client(url)
    out = {}
    out["studies"] = uids(c.search_for_studies(), "StudyInstanceUID")
    out["studies_doe"] = uids(c.search_for_studies(search_filters={"PatientName": "Doe*"}), "StudyInstanceUID")
    out["studies_fuzzy"] = uids(c.search_for_studies(search_filters={"PatientName": "ROE*"}, fuzzymatching=True), "StudyInstanceUID")
    out["studies_not_fuzzy"] = uids(c.search_for_studies(search_filters={"PatientName": "ROE*"}), "StudyInstanceUID")
    out["studies_by_tag"] = uids(c.search_for_studies(search_filters={"00080020": "20240101-20241231"}), "StudyInstanceUID")
    out["studies_limit"] = len(c.search_for_studies(limit=2))
    studies = c.search_for_studies(fields=["NumberOfStudyRelatedInstances", "ModalitiesInStudy"])
    out["study_counts"] = {
        r["0020000D"]["Value"][0]: [r["00201208"]["Value"][0], sorted(r["00080061"].get("Value", []))] for r in studies
    }
    out["series_of"] = {s: uids(c.search_for_series(study_instance_uid=s), "SeriesInstanceUID") for s in out["studies"]}
    out["all_series"] = uids(c.search_for_series(), "SeriesInstanceUID")
    out["series_ct"] = uids(c.search_for_series(search_filters={"Modality": "CT"}), "SeriesInstanceUID")
    out["all_instances"] = uids(c.search_for_instances(), "SOPInstanceUID")
    out["study_instances"] = {s: uids(c.search_for_instances(study_instance_uid=s), "SOPInstanceUID") for s in out["studies"]}
    out["series_instances"] = {
        se: uids(c.search_for_instances(study_instance_uid=st, series_instance_uid=se), "SOPInstanceUID")
        for st, series in out["series_of"].items()
        for se in series
    }
    names = c.search_for_studies(search_filters={"StudyInstanceUID": f"{ROOT}.3"})
    out["name_c"] = names[0]["00100010"]["Value"][0] if names else None
    return out


def store(url, files):
    c = client(url)
    response = c.store_instances(datasets=[pydicom.dcmread(f) for f in files])
    return response.to_json_dict()


def expected_frames(path):
    ds = pydicom.dcmread(path)
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    size = len(ds.PixelData) // frames
    return [ds.PixelData[i * size : (i + 1) * size] for i in range(frames)]


def window(ds, center, width):
    """The linear VOI function of PS3.3 C.11.2.1.2.1 applied to the first frame, to 8 bits."""
    arr = ds.pixel_array.astype(numpy.float64)
    if int(ds.get("NumberOfFrames", 1) or 1) > 1:
        arr = arr[0]
    arr = arr * float(ds.get("RescaleSlope", 1)) + float(ds.get("RescaleIntercept", 0))
    lo = center - 0.5 - (width - 1) / 2
    hi = center - 0.5 + (width - 1) / 2
    out = numpy.where(arr <= lo, 0.0, numpy.where(arr > hi, 255.0, ((arr - (center - 0.5)) / (width - 1) + 0.5) * 255))
    out = numpy.clip(numpy.round(out), 0, 255).astype(numpy.uint8)
    if ds.PhotometricInterpretation == "MONOCHROME1":
        out = 255 - out
    return out


def retrieve(url, files):
    from PIL import Image

    c = client(url)
    problems = []
    checked = {"instances": 0, "series": 0, "studies": 0, "metadata": 0, "frames": 0, "rendered": 0}
    originals = {}
    for f in files:
        ds = pydicom.dcmread(f)
        originals[ds.SOPInstanceUID] = ds
    by_series, by_study = {}, {}
    for sop, ds in originals.items():
        by_series.setdefault((ds.StudyInstanceUID, ds.SeriesInstanceUID), set()).add(sop)
        by_study.setdefault(ds.StudyInstanceUID, set()).add(sop)
    for sop, ds in originals.items():
        got = c.retrieve_instance(ds.StudyInstanceUID, ds.SeriesInstanceUID, sop)
        if got != ds or got.file_meta.TransferSyntaxUID != ds.file_meta.TransferSyntaxUID:
            problems.append(f"instance {sop} differs from the stored file")
        checked["instances"] += 1
        meta = c.retrieve_instance_metadata(ds.StudyInstanceUID, ds.SeriesInstanceUID, sop)
        if meta.get("00080018", {}).get("Value") != [sop]:
            problems.append(f"metadata of {sop} has SOPInstanceUID {meta.get('00080018')}")
        pixel = meta.get("7FE00010")
        if "PixelData" in ds and (pixel is None or "BulkDataURI" not in pixel):
            problems.append(f"metadata of {sop} has no BulkDataURI for Pixel Data: {pixel}")
        checked["metadata"] += 1
        if "PixelData" in ds:
            expected = expected_frames(ds.filename)
            numbers = list(range(1, len(expected) + 1))[::-1]
            got_frames = c.retrieve_instance_frames(ds.StudyInstanceUID, ds.SeriesInstanceUID, sop, frame_numbers=numbers)
            if list(got_frames) != [expected[n - 1] for n in numbers]:
                problems.append(f"frames {numbers} of {sop} differ")
            checked["frames"] += len(numbers)
            if ds.SamplesPerPixel == 1:
                center, width = float(ds.get("WindowCenter", 100)), float(ds.get("WindowWidth", 200))
                png = c.retrieve_instance_rendered(
                    ds.StudyInstanceUID, ds.SeriesInstanceUID, sop, media_types=("image/png",), params={"window": f"{center},{width},linear"}
                )
                image = numpy.asarray(Image.open(io.BytesIO(png)))
                if not numpy.array_equal(image, window(ds, center, width)):
                    problems.append(f"rendered PNG of {sop} differs from the windowed pixels")
            else:
                png = c.retrieve_instance_rendered(ds.StudyInstanceUID, ds.SeriesInstanceUID, sop, media_types=("image/png",))
                image = numpy.asarray(Image.open(io.BytesIO(png)))
                if not numpy.array_equal(image, ds.pixel_array):
                    problems.append(f"rendered PNG of RGB {sop} differs from the pixels")
            jpeg = c.retrieve_instance_rendered(ds.StudyInstanceUID, ds.SeriesInstanceUID, sop, media_types=("image/jpeg",))
            image = Image.open(io.BytesIO(jpeg))
            if image.format != "JPEG" or image.size != (ds.Columns, ds.Rows):
                problems.append(f"rendered JPEG of {sop} is {image.format} {image.size}")
            checked["rendered"] += 2
    for (study, series), sops in by_series.items():
        got = {d.SOPInstanceUID: d for d in c.retrieve_series(study, series)}
        if set(got) != sops or any(got[s] != originals[s] for s in sops):
            problems.append(f"series {series}: got {sorted(got)}, expected {sorted(sops)}")
        checked["series"] += 1
    for study, sops in by_study.items():
        got = {d.SOPInstanceUID: d for d in c.retrieve_study(study)}
        if set(got) != sops or any(got[s] != originals[s] for s in sops):
            problems.append(f"study {study}: got {sorted(got)}, expected {sorted(sops)}")
        meta = c.retrieve_study_metadata(study)
        if sorted(m["00080018"]["Value"][0] for m in meta) != sorted(sops):
            problems.append(f"study metadata of {study} lists other instances")
        checked["studies"] += 1
    return {"problems": problems, "checked": checked}


def norm_value(vr, v):
    if v is None or v == "":
        return None
    if vr == "PN" and isinstance(v, dict):
        v = {k: g for k, g in v.items() if g != "" or k == "Alphabetic"}
        return None if v == {"Alphabetic": ""} else v
    return v


def same_number(a, b):
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b or (math.isfinite(a) and math.isfinite(b) and abs(a - b) <= 1e-9 * max(1.0, abs(a), abs(b)))
    return a == b


def compare(ours, theirs, path, problems):
    for tag in sorted(set(ours) | set(theirs)):
        where = f"{path}{tag}"
        a, b = ours.get(tag), theirs.get(tag)
        private = int(tag[:4], 16) % 2 == 1
        if b is None and tag == "FFFCFFFC":
            # pydicom drops Data Set Trailing Padding of implicit VR files (it keeps it in
            # explicit VR ones): we send it in both.
            continue
        if a is None or b is None:
            problems.append(f"{where}: only in {'ours' if b is None else 'pydicom'}: {a or b}")
            continue
        if "BulkDataURI" in a:
            if "InlineBinary" not in b and "Value" not in b:
                problems.append(f"{where}: BulkDataURI where pydicom has {b}")
            continue
        if a["vr"] != b["vr"]:
            if private and a["vr"] == "UN":
                continue
            problems.append(f"{where}: VR {a['vr']} != pydicom {b['vr']}")
            continue
        if a["vr"] == "SQ":
            items_a, items_b = a.get("Value", []), b.get("Value", [])
            if len(items_a) != len(items_b):
                problems.append(f"{where}: {len(items_a)} items != pydicom {len(items_b)}")
                continue
            for i, (x, y) in enumerate(zip(items_a, items_b)):
                compare(x, y, f"{where}/{i}/", problems)
            continue
        if "InlineBinary" in a or "InlineBinary" in b:
            if base64.b64decode(a.get("InlineBinary", "")) != base64.b64decode(b.get("InlineBinary", "")):
                problems.append(f"{where}: InlineBinary differs")
            continue
        va = [norm_value(a["vr"], v) for v in a.get("Value", [])]
        vb = [norm_value(b["vr"], v) for v in b.get("Value", [])]
        if len(va) != len(vb) or not all(same_number(x, y) for x, y in zip(va, vb)):
            problems.append(f"{where} ({a['vr']}): {va} != pydicom {vb}")


def reference_json(ds):
    """pydicom's to_json_dict; PN values with an empty item (which pydicom 3.0 cannot encode)
    are written by hand the way it writes the others."""
    theirs = ds.to_json_dict(suppress_invalid_tags=True)
    for elem in ds:
        key = f"{elem.tag:08X}"
        if key in theirs or elem.VR != "PN":
            continue
        values = elem.value if elem.VM > 1 else [elem.value]
        theirs[key] = {"vr": "PN", "Value": [dict(zip(("Alphabetic", "Ideographic", "Phonetic"), str(v).split("="))) if str(v) else None for v in values]}
    return theirs


def metadata(url, files):
    c = client(url)
    report = {}
    problems_checked = []
    for f in files:
        ds = pydicom.dcmread(f)
        ours = c.retrieve_instance_metadata(ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID)
        theirs = reference_json(ds)
        problems = []
        compare(ours, theirs, "", problems)
        # Bulk data other than Pixel Data: fetched by its BulkDataURI, the value pydicom reads.
        for key, elem in ours.items():
            if "BulkDataURI" in elem and key != "7FE00010":
                got = c.retrieve_bulkdata(elem["BulkDataURI"])
                expected = ds[int(key, 16)].value
                if got != [expected]:
                    problems.append(f"{key}: bulk data {[len(g) for g in got]} bytes != pydicom {len(expected)}")
                else:
                    problems_checked.append(f"{os.path.basename(f)}:{key}")
        report[os.path.basename(f)] = problems
    report["bulk data checked"] = problems_checked
    return report


def level_uid(ds, level):
    return {"study": ds.StudyInstanceUID, "series": ds.SeriesInstanceUID, "instance": ds.SOPInstanceUID}[level]


def representative_order(ds):
    number = lambda v: int(v) if v not in (None, "") else 2**63
    return (number(ds.get("SeriesNumber")), ds.SeriesInstanceUID, number(ds.get("InstanceNumber")), ds.SOPInstanceUID)


def reference_values(ds, keyword):
    """The values of an attribute as pydicom reads them, as strings; [] when absent or empty."""
    elem = ds.data_element(keyword) if keyword in ds else None
    if elem is None or elem.value is None or elem.value == "":
        return []
    values = list(elem.value) if elem.VM > 1 else [elem.value]
    return [str(v).strip() for v in values if str(v).strip() != ""]


def wildcard(pattern, value):
    import re

    return re.fullmatch("".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern), value, re.S) is not None


def dt_span(text):
    """The first and the last instant a DT value (possibly partial) denotes, in the local time it
    states (a UTC offset is dropped)."""
    text = text.strip()
    if len(text) > 9 and text[-5] in "+-":
        text = text[:-5]
    whole, _, frac = text.partition(".")
    formats = {4: "%Y", 6: "%Y%m", 8: "%Y%m%d", 10: "%Y%m%d%H", 12: "%Y%m%d%H%M", 14: "%Y%m%d%H%M%S"}
    start = datetime.datetime.strptime(whole, formats[len(whole)])
    if frac:
        start += datetime.timedelta(microseconds=int(frac.ljust(6, "0")))
        return start, start
    if len(whole) == 4:
        after = start.replace(year=start.year + 1)
    elif len(whole) == 6:
        after = start.replace(year=start.year + start.month // 12, month=start.month % 12 + 1)
    else:
        after = start + {8: datetime.timedelta(days=1), 10: datetime.timedelta(hours=1), 12: datetime.timedelta(minutes=1), 14: datetime.timedelta(seconds=1)}[len(whole)]
    return start, after - datetime.timedelta(microseconds=1)


def dt_key(key):
    """The bounds of a DT key: a range at the first `-` that leaves a date and time or nothing on
    both sides (not reversed), else the single value as both bounds."""
    def valid(text):
        try:
            return not text or (dt_span(text) and True)
        except (ValueError, KeyError):
            return False
    for at, c in enumerate(key):
        lo, hi = key[:at], key[at + 1:]
        if c == "-" and (lo or hi) and valid(lo) and valid(hi) and not (lo and hi and dt_span(lo)[0] > dt_span(hi)[1]):
            return lo, hi
    return key, key


def reference_match(ds, keyword, key, fuzzy):
    """An independent reading of PS3.4 C.2.2.2 for the keys of the cases below."""
    vr = pydicom.datadict.dictionary_VR(keyword)
    values = reference_values(ds, keyword)
    if key in ("", "*"):
        return True
    if key == '""':
        return not values
    for v in values:
        if vr == "DT":
            lo, hi = dt_key(key)
            at = dt_span(v)[0]
            if (not lo or dt_span(lo)[0] <= at) and (not hi or at <= dt_span(hi)[1]):
                return True
        elif vr == "DA" and "-" in key:
            lo, hi = key.split("-")
            if (not lo or lo <= v) and (not hi or v <= hi):
                return True
        elif vr == "PN":
            a, b = (key.lower(), v.lower()) if fuzzy else (key, v)
            if wildcard(a, b):
                return True
        elif vr in ("IS", "US", "SS", "UL", "SL"):
            if int(v) == int(key):
                return True
        elif wildcard(key, v):
            return True
    return False


def element_json(ds, keyword_or_tag):
    tag = pydicom.datadict.tag_for_keyword(keyword_or_tag) or int(keyword_or_tag, 16)
    key = f"{tag:08X}"
    if tag in ds:
        single = Dataset()
        single.add(ds[tag])
        return key, reference_json(single)[key]
    return key, {"vr": pydicom.datadict.dictionary_VR(tag)}


def headers(url, files):
    """QIDO-RS cases on attributes outside the index: the rows dicomweb-client gets, against
    those pydicom's reading of the files selects, and the values returned against those of the
    representative instance (the first, by series number then instance number, that matches)."""
    c = client(url)
    datasets = [pydicom.dcmread(f) for f in files]
    by_uid = {ds.SOPInstanceUID: ds for ds in datasets}
    study_a = next(ds for ds in datasets if ds.PatientID == "PID-A" and ds.Modality == "CT")
    cases = [
        ("instance", None, {"Manufacturer": "ACME"}, False, []),
        ("study", None, {"Manufacturer": "Other*"}, False, ["ContentDate"]),
        ("series", None, {"ContentDate": "20240112-20240131"}, False, ["OperatorsName"]),
        ("instance", None, {"ImageType": "AXIAL"}, False, []),
        ("study", None, {"InstitutionName": "Städt*"}, False, []),
        ("study", None, {"OperatorsName": "SMITH*"}, True, []),
        ("study", None, {"OperatorsName": "SMITH*"}, False, []),
        ("instance", None, {"Manufacturer": '""'}, False, []),
        ("instance", None, {"SliceThickness": "1.25", "PatientID": "PID-A"}, False, ["StationName"]),
        ("series", None, {"EchoTime": "12.5", "Modality": "MR"}, False, []),
        ("study", None, {"ContentDate": "20240112"}, False, ["ContentDate", "StationName"]),
        ("instance", (study_a.StudyInstanceUID, study_a.SeriesInstanceUID), {"ContentDate": "-20240112"}, False, ["ContentDate"]),
        ("series", (study_a.StudyInstanceUID,), {"StationName": "CT0?"}, False, []),
        ("study", None, {}, False, ["ContentDate", "Manufacturer", "00180050"]),
        ("series", None, {}, False, ["ContentDate", "OperatorsName"]),
        ("instance", None, {}, False, ["ContentDate", "ImageType", "WindowCenter"]),
        ("instance", None, {"AcquisitionDateTime": "20240112-20240113"}, False, ["AcquisitionDateTime"]),
        ("study", None, {"AcquisitionDateTime": "2024011209-"}, False, []),
        ("instance", None, {"AcquisitionDateTime": "202401"}, False, []),
        ("series", None, {"AcquisitionDateTime": "-202401120930"}, False, []),
        # Bounds with UTC offsets (a `-` that is a sign, not the separator), and a single value.
        ("instance", None, {"AcquisitionDateTime": "20240112093002-0500-20240120+0100"}, False, []),
        ("instance", None, {"AcquisitionDateTime": "20240113-0500"}, False, ["AcquisitionDateTime"]),
    ]
    problems, counts = [], []
    uid_key = {"study": "0020000D", "series": "0020000E", "instance": "00080018"}
    for level, scope, filters, fuzzy, fields in cases:
        name = f"{level} {filters} fuzzy={fuzzy} fields={fields}"
        kwargs = {"search_filters": filters, "fuzzymatching": fuzzy, "fields": fields or None}
        if level == "study":
            got = c.search_for_studies(**kwargs)
        elif level == "series":
            got = c.search_for_series(study_instance_uid=scope[0] if scope else None, **kwargs)
        else:
            got = c.search_for_instances(study_instance_uid=scope[0] if scope else None, series_instance_uid=scope[1] if scope else None, **kwargs)
        in_scope = [ds for ds in datasets if not scope or (ds.StudyInstanceUID, ds.SeriesInstanceUID)[: len(scope)] == tuple(scope)]
        matching = sorted((ds for ds in in_scope if all(reference_match(ds, k, v, fuzzy) for k, v in filters.items())), key=representative_order)
        expected = {}
        for ds in matching:
            expected.setdefault(level_uid(ds, level), ds)
        rows = {r[uid_key[level]]["Value"][0]: r for r in got}
        counts.append(len(rows))
        if set(rows) != set(expected):
            problems.append(f"{name}: got {sorted(rows)}, pydicom selects {sorted(expected)}")
            continue
        indexed = set()
        for uid, row in rows.items():
            representative = expected[uid]
            for field in list(fields) + [k for k in filters if k not in ("PatientID", "Modality")]:
                key, theirs = element_json(representative, field)
                if key not in row:
                    problems.append(f"{name}: {uid} has no {field}")
                    continue
                compare({key: row[key]}, {key: theirs}, f"{name} {uid} ", problems)
            indexed.add(uid)
    # includefield=all: every header element at instance level; the study and the series
    # attributes of the representative at study and series level, and no others.
    checked_all = 0
    for row in c.search_for_instances(fields=["all"]):
        ds = by_uid[row["00080018"]["Value"][0]]
        theirs = reference_json(ds)
        theirs.pop("7FE00010", None)
        ours = {k: v for k, v in row.items() if not k.startswith("0002") and k not in ("00081190", "00080061", "00201206", "00201208", "00201209")}
        # Indexed attributes that the file lacks are returned empty.
        ours = {k: v for k, v in ours.items() if k in theirs or set(v) != {"vr"}}
        compare(ours, theirs, f"instance {ds.SOPInstanceUID} includefield=all: ", problems)
        checked_all += 1
    study_row = c.search_for_studies(search_filters={"StudyInstanceUID": study_a.StudyInstanceUID}, fields=["all"])[0]
    rep = min((ds for ds in datasets if ds.StudyInstanceUID == study_a.StudyInstanceUID), key=representative_order)
    series_row = c.search_for_series(search_filters={"SeriesInstanceUID": study_a.SeriesInstanceUID}, fields=["all"])[0]
    # What includefield=all returns at each level (from the representative), and what it must not.
    for level, row, present, absent in (
        ("study", study_row, ("PatientWeight", "OtherPatientNames"), ("Manufacturer", "SliceThickness", "ContentDate")),
        ("series", series_row, ("Manufacturer", "OperatorsName"), ("PatientWeight", "SliceThickness", "ContentDate")),
    ):
        for keyword in present:
            key, theirs = element_json(rep, keyword)
            compare({key: row.get(key)}, {key: theirs}, f"{level} includefield=all: ", problems)
        for keyword in absent:
            if element_json(rep, keyword)[0] in row:
                problems.append(f"{level} includefield=all has the non-{level} attribute {keyword}")
    return {"problems": problems, "counts": counts, "includefield all": checked_all}


LOSSY = {"1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51", "1.2.840.10008.1.2.4.81", "1.2.840.10008.1.2.4.91"}
EXPLICIT = "1.2.840.10008.1.2.1"
LOSSY_TOLERANCE = 4


def decoded(url, files):
    """/frames of compressed (and big endian) objects asked as application/octet-stream: exactly
    the frames of the same object converted whole to Explicit VR Little Endian by WADO-RS, and
    the frames pydicom's pixel_array decodes (exactly for lossless syntaxes; lossy decoders
    differ a little, libjpeg's and jpeg-decoder's chroma upsampling: within LOSSY_TOLERANCE).
    Compressed frames asked in their own syntax: the bytes of pydicom's encapsulated frames."""
    from pydicom.encaps import generate_frames

    c = client(url)
    problems, checked = [], {"decoded": 0, "as stored": 0, "largest lossy difference": 0}
    for f in files:
        ds = pydicom.dcmread(f)
        name = os.path.basename(f)
        ts = ds.file_meta.TransferSyntaxUID
        count = int(ds.get("NumberOfFrames", 1) or 1)
        numbers = list(range(count, 0, -1)) if count <= 3 else [3, 1, count]
        uids = (ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID)
        got = c.retrieve_instance_frames(*uids, frame_numbers=numbers, media_types=(("application/octet-stream", EXPLICIT),))
        arr = ds.pixel_array
        if count == 1:
            arr = arr[None]
        whole = c.retrieve_instance(*uids, media_types=(("application/dicom", EXPLICIT),))
        size = whole.Rows * whole.Columns * whole.SamplesPerPixel * (whole.BitsAllocated // 8)
        for n, frame in zip(numbers, got):
            expected = numpy.ascontiguousarray(arr[n - 1]).astype(arr.dtype.newbyteorder("<")).tobytes()
            if frame != whole.PixelData[(n - 1) * size : n * size]:
                problems.append(f"{name} frame {n}: differs from the frame of the object converted to Explicit VR Little Endian")
            if len(frame) != len(expected):
                problems.append(f"{name} frame {n}: {len(frame)} bytes, pydicom {len(expected)}")
                continue
            ours = numpy.frombuffer(frame, dtype=arr.dtype.newbyteorder("<")).astype(numpy.int64)
            theirs = numpy.frombuffer(expected, dtype=arr.dtype.newbyteorder("<")).astype(numpy.int64)
            diff = int(numpy.abs(ours - theirs).max()) if len(ours) else 0
            if ts in LOSSY:
                checked["largest lossy difference"] = max(checked["largest lossy difference"], diff)
                if diff > LOSSY_TOLERANCE:
                    problems.append(f"{name} frame {n}: differs from pydicom's decoding by up to {diff}")
            elif diff:
                problems.append(f"{name} frame {n}: differs from pydicom's pixel_array (lossless {ts})")
            checked["decoded"] += 1
        if len(got) != len(numbers):
            problems.append(f"{name}: {len(got)} frames for {numbers}")
        if ds.file_meta.TransferSyntaxUID.is_compressed:
            stored = list(generate_frames(ds.PixelData, number_of_frames=count))
            try:
                got = c.retrieve_instance_frames(*uids, frame_numbers=numbers, media_types=((MEDIA_TYPES[ts], ts),))
            except requests.HTTPError as e:
                problems.append(f"{name}: frames asked as {e.request.headers.get('Accept')}: {e.response.status_code} {e.response.text}")
                continue
            if list(got) != [stored[n - 1] for n in numbers]:
                problems.append(f"{name}: frames asked in {ts} differ from the stored fragments")
            checked["as stored"] += len(numbers)
    return {"problems": problems, "checked": checked}


MEDIA_TYPES = {
    "1.2.840.10008.1.2.5": "image/dicom-rle",
    "1.2.840.10008.1.2.4.50": "image/jpeg",
    "1.2.840.10008.1.2.4.70": "image/jpeg",
    "1.2.840.10008.1.2.4.80": "image/jls",
    "1.2.840.10008.1.2.4.81": "image/jls",
    "1.2.840.10008.1.2.4.90": "image/jp2",
    "1.2.840.10008.1.2.4.91": "image/jp2",
}


def corrupt(out):
    """Three RLE objects of one series: a good one, one whose only fragment cannot be decoded (it
    claims 7 segments for 1), and a two-frame one whose second frame cannot be decoded."""
    from pydicom.encaps import encapsulate, generate_frames
    from pydicom.uid import RLELossless

    os.makedirs(out, exist_ok=True)
    study, series = f"{ROOT}.9", f"{ROOT}.9.1"
    bad = b"\x07\x00\x00\x00" + b"\x00" * 60
    listing = []
    for n, frames, broken in [(1, 1, []), (2, 1, [0]), (3, 2, [1])]:
        pixels = (numpy.arange(frames * 4 * 6, dtype=numpy.uint8).reshape(frames, 4, 6) * (n + 3)).squeeze()
        path = make(
            f"{out}/cut_{n}.dcm", ExplicitVRLittleEndian, SC, study, series, f"{series}.{n}", ("PID-CUT", "Cut^Short"),
            Modality="OT", SeriesNumber=1, InstanceNumber=n, SamplesPerPixel=1, PhotometricInterpretation="MONOCHROME2",
            Rows=4, Columns=6, BitsAllocated=8, BitsStored=8, HighBit=7, PixelRepresentation=0, PixelData=pixels.tobytes(),
            **({"NumberOfFrames": frames} if frames > 1 else {}),
        )
        ds = pydicom.dcmread(path)
        ds.compress(RLELossless, encoding_plugin="pydicom", generate_instance_uid=False)
        fragments = list(generate_frames(ds.PixelData, number_of_frames=frames))
        ds.PixelData = encapsulate([bad if i in broken else f for i, f in enumerate(fragments)])
        ds.save_as(path, enforce_file_format=True)
        listing.append({"path": path, "study": study, "series": series, "sop": ds.SOPInstanceUID})
    return listing


def cut(url, study):
    """What dicomweb-client makes of a whole-study retrieve in Explicit VR Little Endian (without
    its retries, which would ask four times over half a minute before raising the same)."""
    c = client(url)
    c.set_http_retry_params(retry=False)
    try:
        got = c.retrieve_study(study, media_types=(("application/dicom", EXPLICIT),))
        return {"error": None, "instances": len(got)}
    except Exception as e:  # noqa: BLE001 - the type is the answer
        return {"error": f"{type(e).__name__}: {e}"}


def main():
    command, args = sys.argv[1], sys.argv[2:]
    if command == "fixtures":
        result = fixtures(args[0])
    elif command == "store":
        result = store(args[0], args[1:])
    elif command == "search":
        result = search(args[0])
    elif command == "retrieve":
        result = retrieve(args[0], args[1:])
    elif command == "metadata":
        result = metadata(args[0], args[1:])
    elif command == "frames":
        result = [hashlib.sha256(f).hexdigest() for f in expected_frames(args[0])]
    elif command == "headers":
        result = headers(args[0], args[1:])
    elif command == "decoded":
        result = decoded(args[0], args[1:])
    elif command == "corrupt":
        result = corrupt(args[0])
    elif command == "cut":
        result = cut(args[0], args[1])
    elif command == "uids":
        result = []
        for f in args:
            ds = pydicom.dcmread(f, stop_before_pixels=True)
            result.append({"path": f, "study": ds.StudyInstanceUID, "series": ds.SeriesInstanceUID, "sop": ds.SOPInstanceUID})
    else:
        raise SystemExit(f"unknown command {command}")
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main()
