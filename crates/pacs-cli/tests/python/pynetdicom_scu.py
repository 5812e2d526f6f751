#!/usr/bin/env python3
"""Drives a DICOM node with pynetdicom as SCU and prints what happened as JSON.

Usage: pynetdicom_scu.py PORT CALLED_AE FILE... [--move-to AE --study UID --series UID]

Runs, each on an association of its own: C-ECHO; C-STORE of every FILE (in its own transfer
syntax); C-FIND at STUDY level (Study Root) and PATIENT level (Patient Root); a C-FIND cancelled
after its first match; C-GET of --series (received files are kept in memory and reported with a
SHA-256 of their data set bytes as received); a C-GET cancelled after its first sub-operation; and C-MOVE of
--study to --move-to.
"""

import argparse
import hashlib
import json
import sys

from pydicom import dcmread
from pydicom.dataset import Dataset
from pynetdicom import AE, build_role, evt
from pynetdicom.sop_class import (
    PatientRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
    Verification,
)


def associate(ae, port, called):
    assoc = ae.associate("127.0.0.1", port, ae_title=called)
    if not assoc.is_established:
        raise SystemExit(f"association with {called} on port {port} failed")
    return assoc


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("port", type=int)
    parser.add_argument("called")
    parser.add_argument("files", nargs="+")
    parser.add_argument("--move-to")
    parser.add_argument("--study")
    parser.add_argument("--series")
    args = parser.parse_args()
    result = {}

    # C-ECHO
    ae = AE(ae_title="PYSCU")
    ae.add_requested_context(Verification)
    assoc = associate(ae, args.port, args.called)
    result["echo"] = assoc.send_c_echo().Status
    assoc.release()

    # C-STORE, each file in its own transfer syntax.
    datasets = [dcmread(f) for f in args.files]
    ae = AE(ae_title="PYSCU")
    pairs = sorted({(str(ds.SOPClassUID), str(ds.file_meta.TransferSyntaxUID)) for ds in datasets})
    for sop_class, ts in pairs:
        ae.add_requested_context(sop_class, ts)
    assoc = associate(ae, args.port, args.called)
    result["store"] = [assoc.send_c_store(ds).Status for ds in datasets]
    assoc.release()

    # C-FIND, Study Root STUDY level and Patient Root PATIENT level.
    ae = AE(ae_title="PYSCU")
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
    ae.add_requested_context(PatientRootQueryRetrieveInformationModelFind)
    assoc = associate(ae, args.port, args.called)
    query = Dataset()
    query.QueryRetrieveLevel = "STUDY"
    query.StudyInstanceUID = ""
    query.PatientID = ""
    query.NumberOfStudyRelatedInstances = ""
    studies, statuses = [], []
    for status, identifier in assoc.send_c_find(query, StudyRootQueryRetrieveInformationModelFind):
        statuses.append(status.Status)
        if identifier is not None:
            studies.append({"StudyInstanceUID": identifier.StudyInstanceUID, "count": int(identifier.NumberOfStudyRelatedInstances)})
    result["find_studies"] = studies
    result["find_studies_final"] = statuses[-1]
    query = Dataset()
    query.QueryRetrieveLevel = "PATIENT"
    query.PatientID = "*"
    query.PatientName = ""
    patients = [ident.PatientID for status, ident in assoc.send_c_find(query, PatientRootQueryRetrieveInformationModelFind) if ident is not None]
    result["find_patients"] = sorted(patients)

    # C-FIND cancelled after the first match.
    query = Dataset()
    query.QueryRetrieveLevel = "IMAGE"
    query.SOPInstanceUID = ""
    responses = assoc.send_c_find(query, StudyRootQueryRetrieveInformationModelFind, msg_id=77)
    matches, final = 0, None
    for status, identifier in responses:
        if identifier is not None:
            matches += 1
            if matches == 1:
                context = [cx for cx in assoc.accepted_contexts if cx.abstract_syntax == StudyRootQueryRetrieveInformationModelFind][0]
                assoc.send_c_cancel(77, context.context_id)
        else:
            final = status.Status
    result["cancelled_find"] = {"matches": matches, "final": final}
    assoc.release()

    # C-GET of a series, receiving on the same association.
    received = {}

    def on_store(event):
        # The data set bytes exactly as they arrived.
        received[str(event.request.AffectedSOPInstanceUID)] = hashlib.sha256(event.request.DataSet.getvalue()).hexdigest()
        return 0x0000

    ae = AE(ae_title="PYSCU")
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelGet)
    roles = []
    for sop_class, ts in pairs:
        ae.add_requested_context(sop_class, ts)
        roles.append(build_role(sop_class, scp_role=True))
    assoc = ae.associate("127.0.0.1", args.port, ae_title=args.called, ext_neg=roles, evt_handlers=[(evt.EVT_C_STORE, on_store)])
    query = Dataset()
    query.QueryRetrieveLevel = "SERIES"
    query.StudyInstanceUID = args.study
    query.SeriesInstanceUID = args.series
    final = None
    for status, identifier in assoc.send_c_get(query, StudyRootQueryRetrieveInformationModelGet):
        final = {"status": status.Status, "completed": status.get("NumberOfCompletedSuboperations")}
    result["get"] = {"final": final, "received": dict(received)}

    # C-GET of the study, cancelled after the first sub-operation.
    got = []
    query = Dataset()
    query.QueryRetrieveLevel = "STUDY"
    query.StudyInstanceUID = args.study
    responses = assoc.send_c_get(query, StudyRootQueryRetrieveInformationModelGet, msg_id=91)
    final = None
    for status, identifier in responses:
        if status.Status == 0xFF00 and not got:
            got.append(1)
            context = [cx for cx in assoc.accepted_contexts if cx.abstract_syntax == StudyRootQueryRetrieveInformationModelGet][0]
            assoc.send_c_cancel(91, context.context_id)
        if status.Status != 0xFF00:
            final = {"status": status.Status, "remaining": status.get("NumberOfRemainingSuboperations"), "completed": status.get("NumberOfCompletedSuboperations")}
    result["cancelled_get"] = final
    assoc.release()

    # C-MOVE of the study.
    if args.move_to:
        ae = AE(ae_title="PYSCU")
        ae.add_requested_context(StudyRootQueryRetrieveInformationModelMove)
        assoc = associate(ae, args.port, args.called)
        query = Dataset()
        query.QueryRetrieveLevel = "STUDY"
        query.StudyInstanceUID = args.study
        final = None
        for status, identifier in assoc.send_c_move(query, args.move_to, StudyRootQueryRetrieveInformationModelMove):
            final = {"status": status.Status, "completed": status.get("NumberOfCompletedSuboperations"), "failed": status.get("NumberOfFailedSuboperations")}
        result["move"] = final
        assoc.release()

    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main()
