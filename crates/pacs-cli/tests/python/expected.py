#!/usr/bin/env python3
"""What pydicom makes of every file under the given folders, as JSON on standard output.

Usage: expected.py ROOT [ROOT...]

For each regular file (recursively, sorted by path) one entry:
  path        absolute path (as os.walk gives it under the ROOT given)
  size        bytes
  sha256      lowercase hexadecimal SHA-256 of the whole file
  status      "ok"          a Part 10 file pydicom reads whole, with the four required UIDs
              "not_part10"  pydicom refuses it (no preamble/DICM) or the File Meta Information
                            has no Transfer Syntax UID
              "truncated"   pydicom reads it, but a value is shorter than its length says
              "missing"     a required UID is absent or empty (detail: the first one, in the
                            order the archive checks them)
              "invalid_uid" a required UID is not digits and dots (detail: its keyword)
              "unreadable"  pydicom raised another error (detail: the message)
  detail      see above
  attributes  (status ok) the indexed attributes, normalised as the archive promises to
              return them: text decoded with the file's Specific Character Set and stripped of
              padding (leading/trailing spaces and NULs), dates YYYYMMDD, times HHMMSS.FFFFFF,
              integers in decimal, multiple values joined with a backslash, Person Names as
              pydicom decodes them (str(PersonName)); absent or empty values are omitted.

The attributes are read with dcmread(path, stop_before_pixels=True); the status with a full
read, because truncation is usually in the pixel data.
"""

import datetime
import hashlib
import json
import os
import re
import sys
import warnings

import pydicom
from pydicom.errors import InvalidDicomError
from pydicom.multival import MultiValue

warnings.simplefilter("ignore")

REQUIRED = ["SOPInstanceUID", "SOPClassUID", "StudyInstanceUID", "SeriesInstanceUID"]

TEXT = [
    "PatientID",
    "IssuerOfPatientID",
    "PatientSex",
    "AccessionNumber",
    "StudyID",
    "StudyDescription",
    "Modality",
    "SeriesDescription",
    "BodyPartExamined",
]
PERSON_NAMES = ["PatientName", "ReferringPhysicianName"]
DATES = ["PatientBirthDate", "StudyDate", "SeriesDate"]
TIMES = ["StudyTime"]
INTEGERS = ["SeriesNumber", "InstanceNumber", "NumberOfFrames", "Rows", "Columns"]
UIDS = ["StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID"]

UID_RE = re.compile(r"^[0-9]+(\.[0-9]+)*$")


def values(value):
    if value is None:
        return []
    if isinstance(value, (MultiValue, list, tuple)):
        return list(value)
    return [value]


def strip(text):
    return str(text).strip(" \0")


def join(parts):
    if all(p == "" for p in parts):
        return None
    return "\\".join(parts)


def norm_pn(text):
    """Empty trailing components (^) and component groups (=) are insignificant (PS3.5 6.2.1)."""
    groups = [g.rstrip(" ^") for g in text.split("=")]
    while groups and groups[-1] == "":
        groups.pop()
    return "=".join(groups)


def norm_date(text):
    text = strip(text).replace(".", "")
    try:
        datetime.datetime.strptime(text, "%Y%m%d")
    except ValueError:
        return None
    return text if len(text) == 8 else None


def norm_time(text):
    text = strip(text).replace(":", "")
    whole, _, frac = text.partition(".")
    if not whole or len(whole) > 6 or len(whole) % 2 or not whole.isdigit():
        return None
    if "." in text and (len(whole) != 6 or not frac or len(frac) > 6 or not frac.isdigit()):
        return None
    if int(whole[0:2]) > 23:
        return None
    return whole.ljust(6, "0") + "." + frac.ljust(6, "0")


def norm_int(value):
    try:
        return str(int(strip(value)))
    except (TypeError, ValueError):
        return None


def normalised(ds, keyword, normalise):
    """The normalised value, or None when absent/empty, or "!invalid" when not normalisable."""
    if keyword not in ds:
        return None
    raw = ds[keyword].value
    parts = [strip(v) if v is not None else "" for v in values(raw)]
    if all(p == "" for p in parts):
        return None
    out = []
    for v in values(raw):
        n = normalise(v)
        if n is None:
            return "!invalid"
        out.append(n)
    return "\\".join(out)


def attributes(ds):
    attrs = {}
    for kw in TEXT + UIDS:
        if kw in ds:
            v = join([strip(v) for v in values(ds[kw].value)])
            if v is not None:
                attrs[kw] = v
    for kw in PERSON_NAMES:
        if kw in ds:
            v = join([norm_pn(strip(str(v))) for v in values(ds[kw].value)])
            if v is not None:
                attrs[kw] = v
    for kw, f in [(k, norm_date) for k in DATES] + [(k, norm_time) for k in TIMES] + [(k, norm_int) for k in INTEGERS]:
        v = normalised(ds, kw, f)
        if v is not None and v != "!invalid":
            attrs[kw] = v
        elif v == "!invalid":
            attrs.setdefault("_invalid", []).append(kw)
    attrs["TransferSyntaxUID"] = strip(ds.file_meta.TransferSyntaxUID)
    return attrs


def truncated(ds):
    """A raw value shorter than its declared length: what pydicom silently accepts at EOF."""
    for raw in ds._dict.values():
        v = getattr(raw, "value", None)
        length = getattr(raw, "length", None)
        if isinstance(v, (bytes, bytearray)) and length is not None and length != 0xFFFFFFFF and len(v) < length:
            return f"({raw.tag.group:04X},{raw.tag.element:04X}) has {len(v)} of {length} bytes"
        if isinstance(v, list):
            for item in v:
                if isinstance(item, pydicom.Dataset):
                    t = truncated(item)
                    if t:
                        return t
    return None


def classify(path):
    try:
        ds = pydicom.dcmread(path)
    except InvalidDicomError as e:
        return "not_part10", str(e), None
    except Exception as e:  # noqa: BLE001 - anything pydicom cannot read
        return "unreadable", f"{type(e).__name__}: {e}", None
    meta = getattr(ds, "file_meta", None)
    if meta is None or not strip(meta.get("TransferSyntaxUID", "") or ""):
        return "not_part10", "no Transfer Syntax UID in the File Meta Information", None
    t = truncated(ds)
    if t:
        return "truncated", t, None
    for kw in REQUIRED:
        if not strip(ds.get(kw, "") or ""):
            return "missing", kw, None
    for kw in REQUIRED:
        if not UID_RE.match(strip(ds[kw].value)) or len(strip(ds[kw].value)) > 64:
            return "invalid_uid", kw, None
    try:
        head = pydicom.dcmread(path, stop_before_pixels=True)
        return "ok", "", attributes(head)
    except Exception as e:  # noqa: BLE001
        return "unreadable", f"{type(e).__name__}: {e}", None


def main():
    entries = []
    for root in sys.argv[1:]:
        for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
            dirnames.sort()
            for name in sorted(filenames):
                path = os.path.join(dirpath, name)
                if not os.path.isfile(path):  # as the archive: symbolic links followed
                    continue
                with open(path, "rb") as f:
                    data = f.read()
                status, detail, attrs = classify(path)
                entry = {
                    "path": path,
                    "size": len(data),
                    "sha256": hashlib.sha256(data).hexdigest(),
                    "status": status,
                    "detail": detail,
                }
                if attrs is not None:
                    entry["attributes"] = attrs
                entries.append(entry)
    json.dump({"pydicom": pydicom.__version__, "files": entries}, sys.stdout, ensure_ascii=False, indent=1)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
