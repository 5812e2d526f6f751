#!/usr/bin/env python3
"""DIMSE load benchmark: `pacs serve` against Orthanc, same corpus, same clients, one run.

    python3 benches/load/dimse_bench.py --pacs target/release/pacs --small DIR --ct DIR --out FILE.md

Normally started by benches/load/dimse.sh, which installs DCMTK, Orthanc, pydicom and pynetdicom,
builds `pacs` and generates the corpus first. Everything runs on 127.0.0.1.

For each server (both are started by this script, in their own process group, each run with a
fresh, empty storage folder in a temp directory, and stopped again, also on errors):

  ingest     C-STORE of the small corpus with 1 and with 8 concurrent associations, and of the CT
             corpus (512x512) with 1 and 8: DCMTK storescu processes, one association each, on
             contiguous slices of the sorted file list; wall clock from the first spawn to the last
             exit. Every repetition starts from an empty archive; after each one the server's own
             count (pacs stats, Orthanc GET /statistics) must equal the corpus.
  C-FIND     study level, Study Root, by a random PatientID: one persistent pynetdicom association,
             warm-up queries, then --queries timed queries (association setup excluded); each
             answer's study count is checked. Before it, a STUDY > SERIES > IMAGE C-FIND walk must
             return exactly the corpus's SOP Instance UIDs. The client's figures include
             pynetdicom's own encoding and decoding (its C-ECHO alone is about 2 ms), so the series
             is also captured with tcpdump on loopback: the server's own time is that from the
             request's last packet to the final response's last packet.
  C-GET      getscu of one whole CT study (50 x 525 KB); MB/s of the study's file bytes.
  C-MOVE     movescu of the same study to a DCMTK storescp started by this script.
             Retrieved files are checked: same count and, after the File Meta group, byte-identical
             datasets (hence the same bytes) as the originals.
  hold       --hold associations (default 100) opened at once from one pynetdicom process: each
             associates, C-ECHOs, waits until all are up (or have failed), C-ECHOs again and
             releases. Successes = both echoes answered while all were held.
  RSS        peak resident set (VmHWM of /proc/<pid>/status, read just before each stop), max over
             every server process of the run.

Bounds, measured in the same run, for the targets a server alone may not reach on this machine:

  sink       the small-corpus ingest (1 and 8 associations) into DCMTK's storescp --ignore, which
             receives every data set and stores nothing: what storescu and the protocol allow.
  flush      what making one small instance durable costs at least: a new file written, flushed,
             renamed and its folder flushed (one file per instance), and a pwrite + fdatasync into a
             preallocated file (an append-only journal, the cheapest durable write there is).
  getscu     getscu's own CPU time (user + system) per retrieve of the CT study: each C-STORE
             sub-operation waits for getscu's response before the next starts, so no server can
             deliver the study faster than getscu processes it.

The pacs-vs-Orthanc ratios (pacs / Orthanc) and the targets are written as a Markdown table to
--out and to stdout.
"""
import argparse
import hashlib
import json
import logging
import os
import platform
import random
import resource
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request


from benchlib import STRACE, TCPDUMP, BenchError, LoopbackCapture, Proc, cpu_seconds, fmt, listening, med, proc_status, say, traced_sync_calls

HOST = "127.0.0.1"
SCU_AET = "BENCHSCU"  # the calling AE of every client and the AE of the C-MOVE storescp
PACS_AET, PACS_PORT = "PACS", 11190
ORTHANC_AET, ORTHANC_PORT, ORTHANC_HTTP = "ORTHANC", 14290, 18090
STORESCP_PORT = 11191
NO_SUCH_STUDY = "1.2.826.0.1.3680043.10.543.999.999"
# Log lines of a server answering a retrieve of NO_SUCH_STUDY (Orthanc logs them as errors).
EXPECTED_ERRORS = (NO_SUCH_STUDY, "Cannot determine what resources are requested by C-GET",
                   "C-MOVE request matching no resource", "IMoveRequestHandler Failed: Bad request")
DCMTK = os.environ.get("DCMTK_BIN", "/usr/bin")
ORTHANC_BIN = "/usr/sbin/Orthanc"
START_TIMEOUT_S = 30
STOP_TIMEOUT_S = 20
TOOL_TIMEOUT_S = 600
STUDY_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.2.1"
VERIFICATION = "1.2.840.10008.1.1"

# Environment of every DCMTK tool and of Orthanc: DCMTK 3.6.7 leaves Nagle's algorithm on unless
# TCP_NODELAY is set, which costs ~40 ms per round trip on loopback.
# Error lines: Orthanc's "E1123 ..." (its "W" level carries routine start-up messages), pacs's WARN
# and ERROR levels, panics.
LOG_PROBLEM = re.compile(r"^[EF]\d{4} |\b(WARN|ERROR)\b|panick")

TOOL_ENV = dict(os.environ, TCP_NODELAY="1")


# ---------------------------------------------------------------------------------------------
# corpus


def numeric_key(path):
    """Sort key: the numbers in the path, so s2/15.dcm comes before s10/1.dcm."""
    out, num = [], ""
    for ch in path:
        if ch.isdigit():
            num += ch
        else:
            if num:
                out.append(int(num))
                num = ""
    if num:
        out.append(int(num))
    return out, path


def dataset_digest(path):
    """SHA-256 of the bytes after the File Meta group (the dataset as stored and sent), and its length."""
    with open(path, "rb") as f:
        data = f.read()
    if data[128:132] != b"DICM" or data[132:136] != b"\x02\x00\x00\x00":
        raise BenchError(f"{path}: no Part 10 header with a group length first")
    meta_len = int.from_bytes(data[140:144], "little")
    body = data[144 + meta_len:]
    return hashlib.sha256(body).hexdigest(), len(body)


class Corpus:
    """The files of one corpus and their UIDs, read once with pydicom."""

    def __init__(self, folder, limit=None):
        import pydicom

        files = []
        for root, _dirs, names in os.walk(folder):
            files.extend(os.path.join(root, n) for n in names if n.endswith(".dcm"))
        files.sort(key=numeric_key)
        if limit:
            files = files[:limit]
        if not files:
            raise BenchError(f"no .dcm files under {folder}")
        self.folder = folder
        self.files = files
        self.size = {}
        self.sop = {}
        self.study_of = {}
        self.series_of = {}
        self.patient_studies = {}
        for p in files:
            ds = pydicom.dcmread(p, stop_before_pixels=True,
                                 specific_tags=["PatientID", "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"])
            self.size[p] = os.path.getsize(p)
            self.sop[p] = str(ds.SOPInstanceUID)
            self.study_of[p] = str(ds.StudyInstanceUID)
            self.series_of[p] = str(ds.SeriesInstanceUID)
            self.patient_studies.setdefault(str(ds.PatientID), set()).add(str(ds.StudyInstanceUID))
        self.bytes = sum(self.size.values())
        self.studies = sorted(set(self.study_of.values()), key=numeric_key)

    def study_files(self, study):
        return [p for p in self.files if self.study_of[p] == study]

    def describe(self):
        n = len(self.files)
        return (f"{n} files, {len(self.studies)} studies, {len(self.patient_studies)} patients, "
                f"{self.bytes / 1e6:.1f} MB ({self.bytes / n / 1e3:.1f} KB per file)")


# ---------------------------------------------------------------------------------------------
# processes


def run_tool(argv, timeout=TOOL_TIMEOUT_S):
    r = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, env=TOOL_ENV, timeout=timeout)
    return r.returncode, r.stdout.decode("utf-8", "replace") + r.stderr.decode("utf-8", "replace")


def echo_ok(aet, port):
    try:
        rc, _ = run_tool([f"{DCMTK}/echoscu", "-aet", SCU_AET, "-aec", aet, HOST, str(port)], timeout=20)
        return rc == 0
    except subprocess.TimeoutExpired:
        return False


# ---------------------------------------------------------------------------------------------
# servers


class Server:
    """Base: start() with an empty archive, count(), stop(); keeps peak RSS and problems."""

    name = aet = None
    port = None

    def __init__(self, work):
        self.work = work
        self.proc = None
        self.peak_rss_kb = {}  # phase -> max VmHWM
        self.problems = []
        self.client_notes = []
        self.logs = []
        # Storage of earlier repetitions, removed only at the end: ext4 searches long for a free
        # inode next to thousands of just-deleted ones, which would slow the next ingest.
        self.retired = []
        self.runs = 0

    def check_ports(self):
        for port in self.ports():
            if listening(port):
                raise BenchError(f"{HOST}:{port} already answers: refusing to measure a server this script did not start")

    def start(self):
        raise NotImplementedError

    def stop(self, phase):
        if self.proc is None:
            return
        if not self.proc.alive():
            self.problems.append(f"{self.name} exited by itself (status {self.proc.p.returncode}) during {phase}")
        hwm = proc_status(self.proc.pid, "VmHWM")
        if hwm:
            self.peak_rss_kb[phase] = max(self.peak_rss_kb.get(phase, 0), hwm)
        rc = self.proc.stop()
        if rc not in (0, -signal.SIGTERM, 128 + signal.SIGTERM):
            self.problems.append(f"{self.name} stopped with status {rc} after {phase}")
        self.proc = None

    def wait_ready(self):
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if not self.proc.alive():
                raise BenchError(f"{self.name} exited while starting; log: {self.proc.log_path}")
            if listening(self.port) and echo_ok(self.aet, self.port):
                return
            time.sleep(0.1)
        raise BenchError(f"{self.name} did not answer C-ECHO within {START_TIMEOUT_S} s")

    def fresh_dir(self):
        self.runs += 1
        d = os.path.join(self.work, f"{self.name}-{self.runs}")
        shutil.rmtree(d, ignore_errors=True)
        os.makedirs(d)
        return d


class Pacs(Server):
    name, aet, port = "pacs", PACS_AET, PACS_PORT

    def __init__(self, work, binary):
        super().__init__(work)
        self.binary = binary
        self.dir = None

    def ports(self):
        return [self.port]

    def version(self):
        return subprocess.run([self.binary, "--version"], capture_output=True, text=True).stdout.strip()

    def start(self):
        self.check_ports()
        if self.dir:
            self.retired.append(self.dir)
        self.dir = self.fresh_dir()
        empty_config = os.path.join(self.dir, "bench.toml")
        open(empty_config, "w").close()
        env = {k: v for k, v in os.environ.items() if not k.startswith("PACS_")}
        log = os.path.join(self.work, f"{self.name}.log")
        self.logs.append(log)
        self.proc = Proc(self.name, [self.binary, "serve", "--data-dir", os.path.join(self.dir, "data"),
                                     "--config", empty_config, "--ae-title", self.aet, "--bind", HOST,
                                     "--port", str(self.port), "--remote", f"{SCU_AET}={HOST}:{STORESCP_PORT}"],
                         log, env)
        self.wait_ready()

    def count(self):
        out = subprocess.run([self.binary, "stats", "--json", "--data-dir", os.path.join(self.dir, "data"),
                              "--config", os.path.join(self.dir, "bench.toml")],
                             capture_output=True, text=True, timeout=120)
        if out.returncode != 0:
            raise BenchError(f"pacs stats failed: {out.stderr.strip()}")
        s = json.loads(out.stdout)
        return int(s["instances"]), int(s["studies"])

    def cleanup(self):
        for d in self.retired + [self.dir]:
            if d:
                shutil.rmtree(d, ignore_errors=True)


class Orthanc(Server):
    name, aet, port = "orthanc", ORTHANC_AET, ORTHANC_PORT

    def __init__(self, work):
        super().__init__(work)
        self.dir = None
        self.system = {}

    def ports(self):
        return [self.port, ORTHANC_HTTP]

    def http(self, path, timeout=60):
        with urllib.request.urlopen(f"http://{HOST}:{ORTHANC_HTTP}{path}", timeout=timeout) as r:
            return json.loads(r.read())

    def start(self):
        self.check_ports()
        if self.dir:
            self.retired.append(self.dir)
        self.dir = self.fresh_dir()
        storage = os.path.join(self.dir, "storage")
        os.makedirs(storage)
        config = {
            "Name": "pacs-dimse-bench",
            "StorageDirectory": storage,
            "IndexDirectory": storage,          # default SQLite index, next to the files
            "StorageCompression": False,
            "Plugins": [],
            "HttpServerEnabled": True,          # only for GET /statistics and /system
            "HttpPort": ORTHANC_HTTP,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "DicomServerEnabled": True,
            "DicomAet": self.aet,
            "DicomPort": self.port,
            "DicomAlwaysAllowEcho": False,
            "DicomAlwaysAllowStore": False,
            "DicomModalities": {
                SCU_AET: {"AET": SCU_AET, "Host": HOST, "Port": STORESCP_PORT, "AllowEcho": True,
                          "AllowFind": True, "AllowGet": True, "AllowMove": True, "AllowStore": True},
            },
        }
        cfg = os.path.join(self.dir, "orthanc.json")
        with open(cfg, "w") as f:
            json.dump(config, f, indent=2)
        log = os.path.join(self.work, f"{self.name}.log")
        self.logs.append(log)
        self.proc = Proc(self.name, [ORTHANC_BIN, cfg], log, TOOL_ENV)
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if not self.proc.alive():
                raise BenchError(f"Orthanc exited while starting; log: {log}")
            try:
                self.system = self.http("/system", timeout=2)
                break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise BenchError("Orthanc did not answer GET /system in time")
            time.sleep(0.1)
        self.wait_ready()

    def version(self):
        return f"Orthanc {self.system.get('Version', '?')} (Debian package, SQLite index)"

    def count(self):
        s = self.http("/statistics", timeout=120)
        return int(s["CountInstances"]), int(s["CountStudies"])

    def cleanup(self):
        for d in self.retired + [self.dir]:
            if d:
                shutil.rmtree(d, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# measurements


def storescu(server, files, associations):
    """C-STORE files over `associations` concurrent storescu processes. Returns (seconds, errors)."""
    n = len(files)
    chunks = [files[i * n // associations:(i + 1) * n // associations] for i in range(associations)]
    logs = []
    procs = []
    t0 = time.perf_counter()
    for chunk in chunks:
        log = tempfile.TemporaryFile()
        logs.append(log)
        procs.append(subprocess.Popen([f"{DCMTK}/storescu", "-aet", SCU_AET, "-aec", server.aet, HOST,
                                       str(server.port), *chunk],
                                      stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=TOOL_ENV))
    errors = []
    for p, log in zip(procs, logs):
        try:
            rc = p.wait(timeout=TOOL_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
            rc = "timeout"
        log.seek(0)
        text = log.read().decode("utf-8", "replace")
        bad = [line for line in text.splitlines() if line.startswith(("E:", "F:"))]
        if rc != 0 or bad:
            errors.append(f"storescu exit {rc}: {' | '.join(bad[:3])}")
        log.close()
    return time.perf_counter() - t0, errors


class Sink:
    """DCMTK's storescp --ignore: receives every data set, stores nothing, answers success."""

    name, aet, port = "sink", "SINK", 11192

    def __init__(self, work):
        self.work = work

    def ingest(self, corpus, associations):
        if listening(self.port):
            raise BenchError(f"{HOST}:{self.port} already answers: the sink must be our storescp")
        proc = Proc("storescp-sink", [f"{DCMTK}/storescp", "--ignore", "-aet", self.aet, str(self.port)],
                    os.path.join(self.work, "sink.log"), TOOL_ENV)
        try:
            deadline = time.monotonic() + START_TIMEOUT_S
            while not listening(self.port):
                if not proc.alive() or time.monotonic() > deadline:
                    raise BenchError("storescp --ignore did not start")
                time.sleep(0.05)
            seconds, errors = storescu(self, corpus.files, associations)
            if errors:
                raise BenchError(f"storescu into storescp --ignore failed: {errors[:2]}")
            say(f"  sink     x{associations}: {seconds:.2f} s, {len(corpus.files) / seconds:.0f} inst/s")
            return seconds
        finally:
            proc.stop()


def flush_floor(work, size, n=300):
    """Median seconds to make one `size`-byte object durable: as a new file (write, fsync,
    rename, folder fsync), and as a pwrite + fdatasync into a preallocated journal."""
    folder = tempfile.mkdtemp(dir=work, prefix="flush-")
    data = os.urandom(size)
    new_file, journal = [], []
    try:
        for i in range(n):
            t0 = time.perf_counter()
            staged = os.path.join(folder, f"{i}.part")
            fd = os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            try:
                os.write(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.rename(staged, os.path.join(folder, str(i)))
            dfd = os.open(folder, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
            new_file.append(time.perf_counter() - t0)
        span = 64 << 20
        fd = os.open(os.path.join(folder, "journal"), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            os.write(fd, b"\0" * span)  # written once, so that later writes change no metadata
            os.fsync(fd)
            step = -(-size // 4096) * 4096
            for i in range(n):
                t0 = time.perf_counter()
                os.pwrite(fd, data, (i * step) % (span - step))
                os.fdatasync(fd)
                journal.append(time.perf_counter() - t0)
        finally:
            os.close(fd)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    result = {"new_file": statistics.median(new_file), "journal": statistics.median(journal)}
    say(f"  flush floor for {size} B: new file {result['new_file'] * 1e3:.3f} ms, journal {result['journal'] * 1e3:.3f} ms")
    return result


def ingest(server, corpus, associations, phase, keep=False):
    """One ingest into an empty archive; verified by the server's own count."""
    t0 = time.perf_counter()
    server.start()
    if time.perf_counter() - t0 > 3:
        say(f"  {server.name:8} took {time.perf_counter() - t0:.1f} s to clear its old storage and start")
    try:
        cpu0 = cpu_seconds(server.proc.pid)
        seconds, errors = storescu(server, corpus.files, associations)
        cpu = cpu_seconds(server.proc.pid) - cpu0
        instances, studies = server.count()
        ok = instances == len(corpus.files) and studies == len(corpus.studies) and not errors
        if not ok:
            server.problems.append(f"{phase}, {associations} assoc: stored {instances} instances / {studies} studies "
                                   f"of {len(corpus.files)} / {len(corpus.studies)}; {errors[:2]}")
        say(f"  {server.name:8} {phase} x{associations}: {seconds:.2f} s, {len(corpus.files) / seconds:.0f} inst/s, "
            f"{corpus.bytes / seconds / 1e6:.1f} MB/s, stored {instances}/{len(corpus.files)}, server CPU {cpu:.2f} s"
            + (f", ERRORS {errors[:2]}" if errors else ""))
        return {"s": seconds, "ok": ok, "cpu": cpu}
    finally:
        if not keep:
            t0 = time.perf_counter()
            server.stop(phase)
            if time.perf_counter() - t0 > 3:
                say(f"  {server.name:8} took {time.perf_counter() - t0:.1f} s to stop")


class PynetClient:
    """One pynetdicom association with TCP_NODELAY and a reactor that is really paused before
    every request (pynetdicom 3.0's own pause can let the reactor thread swallow the first
    response of the next request)."""

    def __init__(self, server, contexts, timeout=60):
        from pynetdicom import AE

        ae = AE(ae_title=SCU_AET)
        for c in contexts:
            ae.add_requested_context(c)
        ae.acse_timeout = timeout
        ae.dimse_timeout = timeout
        ae.network_timeout = timeout
        ae.connection_timeout = 10
        self.assoc = ae.associate(HOST, server.port, ae_title=server.aet)
        if not self.assoc.is_established:
            raise BenchError(f"{server.name}: association {'rejected' if self.assoc.is_rejected else 'failed'}")
        nodelay(self.assoc)
        self.msg_id = 0
        self.requeued = guard(self.assoc, lambda: self.msg_id)

    def pause(self):
        pause_reactor(self.assoc)

    def find(self, ds):
        """(matches, status) of one C-FIND; the caller has paused the reactor."""
        matches = []
        final = None
        self.msg_id = self.msg_id % 65535 + 1
        for status, ident in self.assoc.send_c_find(ds, STUDY_ROOT_FIND, msg_id=self.msg_id):
            if not status:
                raise BenchError("C-FIND: no response (timeout or aborted association)")
            if status.Status in (0xFF00, 0xFF01):
                matches.append(ident)
            else:
                final = status.Status
        return matches, final

    def release(self):
        if self.assoc.is_established:
            self.assoc.release()


def guard(assoc, in_flight=lambda: None):
    """pynetdicom 3.0 can still let the reactor thread take a response meant for a request in
    flight (and drop it, warning "Received unexpected C-FIND service message"), e.g. when the
    machine is loaded. Such a response is put back at the head of the queue instead; the Message
    IDs it answered and of the request then in flight are returned (a list, filled as it happens)
    so that the report can tell this client-side race (same IDs) from a server sending too many
    responses (the ID of an earlier request)."""
    taken = []
    q = assoc.dimse.msg_queue
    serve = assoc._serve_request

    def put_back(msg, context_id):
        answered = getattr(msg, "MessageIDBeingRespondedTo", None)
        if answered is None:
            return serve(msg, context_id)
        with q.mutex:
            q.queue.appendleft((context_id, msg))
            q.not_empty.notify()
        taken.append((answered, in_flight()))

    assoc._serve_request = put_back
    return taken


def pause_reactor(assoc):
    """Park the association's reactor thread before a request (outside any timed window)."""
    assoc._reactor_checkpoint.clear()
    time.sleep(0.003)  # the reactor loop turns every ms: after this it is parked in wait()
    while not assoc._is_paused:
        time.sleep(0.0005)


def nodelay(assoc):
    try:
        assoc.dul.socket.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except (AttributeError, OSError) as e:
        raise BenchError(f"cannot set TCP_NODELAY on the pynetdicom socket: {e}")


def query(level, **keys):
    from pydicom.dataset import Dataset

    ds = Dataset()
    ds.QueryRetrieveLevel = level
    for k, v in keys.items():
        setattr(ds, k, v)
    return ds


def sync_calls(server, corpus, n=100):
    """fsync-family system calls of the server while it stores n small instances over one
    association (strace attached after start-up), or None without strace."""
    if not os.access(STRACE, os.X_OK):
        return None
    files = corpus.files[:n]
    server.start()
    return traced_sync_calls(server, lambda: storescu(server, files, 1)[1], len(files), "")


def note_requeued(server, what, client):
    if client.requeued:
        stale = [a for a, f in client.requeued if a != f]
        server.client_notes.append(f"{what}: pynetdicom's reactor took {len(client.requeued)} responses and this "
                                   f"script put them back; {len(client.requeued) - len(stale)} answered the request "
                                   f"in flight (client race), {len(stale)} an earlier request")
        if stale:
            server.problems.append(f"{what}: {len(stale)} responses to an earlier C-FIND request arrived later "
                                   f"(Message IDs {sorted(set(stale))[:5]})")


def find_walk(server, corpus):
    """STUDY > SERIES > IMAGE C-FIND walk; returns the set of SOP Instance UIDs found."""
    client = PynetClient(server, [STUDY_ROOT_FIND])
    found = []
    try:
        client.pause()
        studies, _ = client.find(query("STUDY", StudyInstanceUID=""))
        for st in studies:
            client.pause()
            series, _ = client.find(query("SERIES", StudyInstanceUID=st.StudyInstanceUID, SeriesInstanceUID=""))
            for se in series:
                client.pause()
                images, _ = client.find(query("IMAGE", StudyInstanceUID=st.StudyInstanceUID,
                                              SeriesInstanceUID=se.SeriesInstanceUID, SOPInstanceUID=""))
                found.extend(str(i.SOPInstanceUID) for i in images)
    finally:
        client.release()
    note_requeued(server, "C-FIND walk", client)
    expected = set(corpus.sop.values())
    ok = len(found) == len(expected) and set(found) == expected
    if not ok:
        server.problems.append(f"C-FIND walk: {len(found)} instances ({len(set(found) & expected)} of the corpus) "
                               f"for {len(expected)} stored")
    say(f"  {server.name:8} C-FIND walk: {len(found)}/{len(expected)} SOP Instance UIDs")
    return ok


def find_latency(server, corpus, queries, seed):
    """Study-level C-FIND by PatientID on one association: latencies in ms and wrong answers."""
    rng = random.Random(seed)
    patients = sorted(corpus.patient_studies)
    client = PynetClient(server, [STUDY_ROOT_FIND, VERIFICATION])
    lat, echoes, wrong = [], [], 0
    capture = LoopbackCapture(server.work, server.port, f"{server.name}-find") if os.access(TCPDUMP, os.X_OK) else None
    try:
        if capture:
            capture.__enter__()
        for i in range(10 + queries):
            pid = rng.choice(patients)
            ds = query("STUDY", PatientID=pid, StudyInstanceUID="", PatientName="", StudyDate="", StudyTime="",
                       AccessionNumber="", StudyDescription="", ModalitiesInStudy="")
            client.pause()
            t0 = time.perf_counter()
            matches, final = client.find(ds)
            dt = time.perf_counter() - t0
            got = {str(m.StudyInstanceUID) for m in matches}
            if final != 0x0000 or got != corpus.patient_studies[pid] or len(matches) != len(got):
                wrong += 1
            if i >= 10:
                lat.append(dt * 1e3)
        # The floor: a C-ECHO round trip on the same association (client + protocol, no query).
        for _ in range(50):
            client.pause()
            t0 = time.perf_counter()
            s = client.assoc.send_c_echo()
            echoes.append((time.perf_counter() - t0) * 1e3)
            if not s or s.Status != 0:
                wrong += 1
    finally:
        if capture:
            capture.__exit__(None, None, None)
        client.release()
    # The server's own time per exchange, from the capture: without pynetdicom's encoding and
    # decoding, which dominate the client's figures (its C-ECHO alone takes about 2 ms).
    own = None
    if capture:
        xs = capture.exchanges()
        finds = sorted([ms for command, ms in xs if command == 0x0020][10:])
        echo_own = [ms for command, ms in xs if command == 0x0030]
        if len(finds) >= queries * 9 // 10 and echo_own:
            own = {"median": statistics.median(finds), "p95": finds[max(0, -(-95 * len(finds) // 100) - 1)],
                   "echo": statistics.median(echo_own), "seen": len(finds)}
        else:
            server.problems.append(f"C-FIND capture: {len(finds)} timed C-FIND and {len(echo_own)} C-ECHO exchanges seen "
                                   f"of {queries} and 50; not reported")
    note_requeued(server, "C-FIND latency series", client)
    if wrong:
        server.problems.append(f"C-FIND latency series: {wrong} answers with a wrong study set or status")
    lat.sort()
    p95 = lat[max(0, -(-95 * len(lat) // 100) - 1)]
    echo = statistics.median(echoes)
    say(f"  {server.name:8} C-FIND x{queries}: median {statistics.median(lat):.2f} ms, p95 {p95:.2f} ms, {wrong} wrong; "
        f"C-ECHO median {echo:.2f} ms" + (f"; server's own time: C-FIND median {own['median']:.3f} ms, p95 {own['p95']:.3f} ms, "
                                          f"C-ECHO {own['echo']:.3f} ms" if own else ""))
    return {"median": statistics.median(lat), "p95": p95, "wrong": wrong, "echo": echo, "own": own}


def check_received(folder, originals):
    """Received files vs originals: (count ok, bytes ok, message)."""
    got = sorted(os.path.join(folder, n) for n in os.listdir(folder))
    want = sorted(dataset_digest(p) for p in originals)
    have = sorted(dataset_digest(p) for p in got)
    same = want == have
    msg = f"{len(got)}/{len(originals)} files, datasets {'identical' if same else 'DIFFERENT'}"
    if not same and len(got) == len(originals):
        msg += f" ({sum(n for _, n in have)} vs {sum(n for _, n in want)} dataset bytes)"
    return len(got) == len(originals), same, msg


def retrieve(server, corpus, study, how, reps, scp_dir):
    """C-GET (getscu) or C-MOVE (movescu to our storescp) of one study, `reps` times; MB/s each."""
    originals = corpus.study_files(study)
    nbytes = sum(corpus.size[p] for p in originals)
    rates, oks, floors, cpus = [], [], [], []
    for rep in range(2 * reps):
        empty = rep % 2 == 1  # every other run asks for a study that does not exist: the fixed cost
        out = scp_dir if how == "move" else tempfile.mkdtemp(dir=server.work, prefix="getscu-")
        for n in os.listdir(out):
            os.unlink(os.path.join(out, n))
        keys = ["-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={NO_SUCH_STUDY if empty else study}"]
        if how == "get":
            argv = [f"{DCMTK}/getscu", "-S", "-aet", SCU_AET, "-aec", server.aet, *keys, "-od", out, HOST, str(server.port)]
        else:
            argv = [f"{DCMTK}/movescu", "-S", "-aet", SCU_AET, "-aec", server.aet, "-aem", SCU_AET, *keys,
                    HOST, str(server.port)]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        rc, text = run_tool(argv)
        dt = time.perf_counter() - t0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        client_cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        if empty:
            floors.append(dt)
            n = len(os.listdir(out))
            if n:
                server.problems.append(f"C-{how.upper()} of a study that does not exist: {n} files received")
            if how == "get":
                shutil.rmtree(out, ignore_errors=True)
            continue
        count_ok, bytes_ok, msg = check_received(out, originals)
        bad = [line for line in text.splitlines() if line.startswith(("E:", "F:"))]
        ok = rc == 0 and count_ok and bytes_ok and not bad
        if not ok:
            server.problems.append(f"C-{how.upper()}: exit {rc}, {msg}" + (f", {' | '.join(bad[:2])}" if bad else ""))
        rates.append(nbytes / dt / 1e6)
        cpus.append(client_cpu)
        oks.append(ok)
        say(f"  {server.name:8} C-{how.upper()} study: {dt:.3f} s, {nbytes / dt / 1e6:.1f} MB/s, {msg}")
        if how == "get":
            shutil.rmtree(out, ignore_errors=True)
    floor = statistics.median(floors)
    say(f"  {server.name:8} C-{how.upper()} of no study (association, request, final response): median {floor * 1e3:.1f} ms")
    return {"rates": rates, "mbps": statistics.median(rates), "ok": all(oks), "files": len(originals),
            "bytes": nbytes, "floor_ms": floor * 1e3, "client_cpu": statistics.median(cpus)}


def hold(server, n, wait_s=60):
    """Open n associations at once; count those that answer C-ECHO before and after all are up."""
    from pynetdicom import AE

    lock = threading.Lock()
    done = threading.Condition(lock)
    st = {"up": 0, "settled": 0, "peak": 0, "rejected": 0, "failed": 0, "echo1": 0, "echo2": 0, "released": 0,
          "errors": []}

    def settle():
        with lock:
            st["settled"] += 1
            done.notify_all()

    def worker():
        ae = AE(ae_title=SCU_AET)
        ae.add_requested_context(VERIFICATION)
        ae.acse_timeout = 30
        ae.dimse_timeout = 30
        ae.network_timeout = 90
        ae.connection_timeout = 10
        assoc = None
        settled = False
        try:
            assoc = ae.associate(HOST, server.port, ae_title=server.aet)
            if not assoc.is_established:
                with lock:
                    st["rejected" if assoc.is_rejected else "failed"] += 1
                return
            nodelay(assoc)
            guard(assoc)
            with lock:
                st["up"] += 1
                st["peak"] = max(st["peak"], st["up"])
            pause_reactor(assoc)
            s = assoc.send_c_echo()
            if s and s.Status == 0:
                with lock:
                    st["echo1"] += 1
            settle()
            settled = True
            deadline = time.monotonic() + wait_s
            with lock:
                while st["settled"] < n and time.monotonic() < deadline:
                    done.wait(timeout=0.5)
                all_up = st["settled"] >= n
            pause_reactor(assoc)
            s = assoc.send_c_echo()
            if s and s.Status == 0 and all_up:
                with lock:
                    st["echo2"] += 1
            assoc.release()
            if assoc.is_released:
                with lock:
                    st["released"] += 1
        except Exception as e:  # counted, the others go on
            with lock:
                st["failed"] += 1
                st["errors"].append(f"{type(e).__name__}: {e}")
        finally:
            if not settled:
                settle()
            if assoc is not None and assoc.is_established:
                assoc.abort()

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(n)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=wait_s + 120)
    dt = time.perf_counter() - t0
    alive_after = server.proc.alive() and echo_ok(server.aet, server.port)
    rss_kb = proc_status(server.proc.pid, "VmHWM")
    ok = st["echo2"] == n and alive_after
    if not ok:
        server.problems.append(f"hold {n}: {st['echo2']} held and answered, {st['rejected']} rejected, "
                               f"{st['failed']} failed; server answers C-ECHO afterwards: {alive_after}"
                               + (f"; first error: {st['errors'][0]}" if st["errors"] else ""))
    say(f"  {server.name:8} hold {n}: peak {st['peak']} up at once, echo before {st['echo1']}, after all up "
        f"{st['echo2']}, rejected {st['rejected']}, failed {st['failed']}, released {st['released']}, {dt:.1f} s")
    return dict(st, seconds=dt, alive_after=alive_after, ok=ok, rss_kb=rss_kb)


# ---------------------------------------------------------------------------------------------
# report


def host_info(work):
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = proc_meminfo()
    fs = subprocess.run(["df", "-T", work], capture_output=True, text=True).stdout.splitlines()[-1].split()
    return {"nproc": os.cpu_count(), "kernel": platform.release(), "cpu": cpu, "mem_gib": mem,
            "fs": f"{fs[1]} ({fs[0]})" if len(fs) > 1 else "?"}


def proc_meminfo():
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) / 1024 / 1024)
    except OSError:
        pass
    return "?"


def tool_version(argv):
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10).stdout.strip().splitlines()
        return out[0] if out else "?"
    except (OSError, subprocess.TimeoutExpired):
        return "?"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pacs", required=True, help="the pacs binary (release build)")
    ap.add_argument("--small", required=True, help="folder of the small-instance corpus")
    ap.add_argument("--ct", required=True, help="folder of the 512x512 CT corpus")
    ap.add_argument("--out", required=True, help="Markdown file to write")
    ap.add_argument("--work", default=None, help="scratch folder (default: a new temp folder, deleted at the end)")
    ap.add_argument("--reps", type=int, default=3, help="ingest repetitions, each into an empty archive (3)")
    ap.add_argument("--retrieve-reps", type=int, default=5, help="C-GET and C-MOVE repetitions (5)")
    ap.add_argument("--queries", type=int, default=200, help="timed C-FIND queries (200)")
    ap.add_argument("--small-limit", type=int, default=None, help="use only the first N small files (whole studies)")
    ap.add_argument("--hold", type=int, default=100, help="concurrent associations to hold (100)")
    ap.add_argument("--piddir", default=None, help="folder where running servers' pids are kept (for a shell trap)")
    ap.add_argument("--mode", default="full", help="label of the run in the report")
    ap.add_argument("--revision", default="unknown", help="source revision of the pacs binary, for the report")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    logging.getLogger("pynetdicom").setLevel(logging.ERROR)
    Proc.piddir = args.piddir

    for tool in ("storescu", "getscu", "movescu", "storescp", "echoscu"):
        if not os.access(f"{DCMTK}/{tool}", os.X_OK):
            raise BenchError(f"{DCMTK}/{tool} missing: install DCMTK")
    if not os.access(ORTHANC_BIN, os.X_OK):
        raise BenchError(f"{ORTHANC_BIN} missing: install Orthanc")
    own_work = args.work is None
    work = args.work or tempfile.mkdtemp(prefix="pacs-dimse-bench-")
    os.makedirs(work, exist_ok=True)
    started = time.time()

    say("reading the corpus headers")
    small = Corpus(args.small, args.small_limit)
    ct = Corpus(args.ct)
    say(f"small: {small.describe()}; CT: {ct.describe()}")

    pacs = Pacs(work, args.pacs)
    orthanc = Orthanc(work)
    sink = Sink(work)
    servers = [pacs, orthanc]
    R = {s.name: {} for s in servers}
    R["bounds"] = {}
    scp = None
    try:
        # Ingest, interleaved so that both servers see the same moments of a noisy machine.
        for corpus, label in ((small, "small"), (ct, "CT")):
            for rep in range(1, args.reps + 1):
                for assoc in (1, 8):
                    for s in servers:
                        say(f"ingest {label} rep {rep}/{args.reps}")
                        r = ingest(s, corpus, assoc, f"ingest {label}")
                        R[s.name].setdefault(f"{label}{assoc}", []).append(r)
                    if label == "small":
                        R["bounds"].setdefault(f"sink{assoc}", []).append(sink.ingest(corpus, assoc))
            if label == "small":
                R["bounds"]["flush"] = flush_floor(work, round(corpus.bytes / len(corpus.files)))

        # What each server flushes to disk per stored instance (optional: needs strace).
        for s in servers:
            R[s.name]["sync"] = sync_calls(s, small)

        # Small archive: C-FIND walk, then C-FIND latency.
        for s in servers:
            say(f"{s.name}: C-FIND on the small corpus")
            ingest(s, small, 8, "C-FIND", keep=True)
            try:
                R[s.name]["walk"] = find_walk(s, small)
                R[s.name]["find"] = find_latency(s, small, args.queries, args.seed)
            finally:
                s.stop("C-FIND")

        # CT archive: C-GET, C-MOVE, then the association hold.
        scp_dir = os.path.join(work, "storescp-in")
        os.makedirs(scp_dir, exist_ok=True)
        if listening(STORESCP_PORT):
            raise BenchError(f"{HOST}:{STORESCP_PORT} already answers: the C-MOVE destination must be our storescp")
        scp = Proc("storescp", [f"{DCMTK}/storescp", "-aet", SCU_AET, "-od", scp_dir, str(STORESCP_PORT)],
                   os.path.join(work, "storescp.log"), TOOL_ENV)
        deadline = time.monotonic() + START_TIMEOUT_S
        while not listening(STORESCP_PORT):
            if not scp.alive() or time.monotonic() > deadline:
                raise BenchError("storescp did not start")
            time.sleep(0.1)
        study = ct.studies[0]
        for s in servers:
            say(f"{s.name}: C-GET, C-MOVE, hold on the CT corpus")
            ingest(s, ct, 8, "retrieve + hold", keep=True)
            try:
                R[s.name]["get"] = retrieve(s, ct, study, "get", args.retrieve_reps, scp_dir)
                R[s.name]["move"] = retrieve(s, ct, study, "move", args.retrieve_reps, scp_dir)
                R[s.name]["hold"] = hold(s, args.hold)
                instances, _ = s.count()
                if instances != len(ct.files):
                    s.problems.append(f"after the retrieves and the hold: {instances} instances stored, {len(ct.files)} expected")
            finally:
                s.stop("retrieve + hold")
    finally:
        for s in servers:
            try:
                s.stop("cleanup")
            finally:
                s.cleanup()
        if scp is not None:
            scp.stop()

    # Warnings and errors in the servers' logs.
    log_lines, expected = {}, {}
    for s in servers:
        lines = []
        for log in sorted(set(s.logs)):
            try:
                with open(log, errors="replace") as f:
                    for l in f:
                        if not LOG_PROBLEM.search(l):
                            continue
                        if any(x in l for x in EXPECTED_ERRORS):
                            expected[s.name] = expected.get(s.name, 0) + 1
                        else:
                            lines.append(l.rstrip())
            except OSError:
                pass
        log_lines[s.name] = lines

    host = host_info(work)
    versions = {
        "pacs": pacs.version(),
        "orthanc": orthanc.version(),
        "dcmtk": tool_version([f"{DCMTK}/storescu", "--version"]).strip("$ ").replace("dcmtk: ", ""),
        "python": platform.python_version(),
    }
    import pydicom
    import pynetdicom

    versions["pydicom"], versions["pynetdicom"] = pydicom.__version__, pynetdicom.__version__
    report = render(args, R, pacs, orthanc, small, ct, host, versions, log_lines, expected, time.time() - started)
    with open(args.out, "w") as f:
        f.write(report)
    print(report)
    say(f"written to {args.out}")
    if own_work:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if not (pacs.problems or orthanc.problems) else 2


def render(args, R, pacs, orthanc, small, ct, host, versions, log_lines, expected, elapsed):
    P, O = R["pacs"], R["orthanc"]

    def rate(name, key, unit):
        corpus = small if key.startswith("small") else ct
        runs = R[name][key]
        secs = [r["s"] for r in runs]
        value = (len(corpus.files) if unit == "inst/s" else corpus.bytes / 1e6) / med(secs)
        every = ", ".join(fmt((len(corpus.files) if unit == "inst/s" else corpus.bytes / 1e6) / x) for x in secs)
        ok = all(r["ok"] for r in runs)
        return value, every, ok

    rows = []

    def row(measure, p, o, unit, ratio, target, met):
        rows.append(f"| {measure} | {p} | {o} | {unit} | {ratio} | {target} | {met} |")

    def verdict(ok):
        return "yes" if ok else "**no**"

    for key, label, unit in (("small1", "C-STORE small, 1 association", "inst/s"),
                             ("small8", "C-STORE small, 8 associations", "inst/s"),
                             ("CT1", "C-STORE CT 512x512, 1 association", "MB/s"),
                             ("CT8", "C-STORE CT 512x512, 8 associations", "MB/s")):
        pv, pe, pok = rate("pacs", key, unit)
        ov, oe, ook = rate("orthanc", key, unit)
        r = pv / ov
        row(label, f"{fmt(pv)} ({pe}){'' if pok else ' ⚠'}", f"{fmt(ov)} ({oe}){'' if ook else ' ⚠'}", unit,
            f"{r:.2f}", "≥ 3", verdict(r >= 3 and pok))
    for key, label in (("small1", "server CPU per 1,000 small instances, 1 association"),):
        pc = med([x["cpu"] for x in P[key]]) / len(small.files) * 1000
        oc = med([x["cpu"] for x in O[key]]) / len(small.files) * 1000
        row(label, fmt(pc), fmt(oc), "CPU s", f"{pc / oc:.2f}", "", "")
    pf, of = P["find"], O["find"]
    row(f"C-FIND study level by PatientID, median of {args.queries}", fmt(pf["median"]), fmt(of["median"]), "ms",
        f"{pf['median'] / of['median']:.2f}", "≤ 0.33", verdict(pf["median"] <= of["median"] / 3 and not pf["wrong"]))
    row("C-FIND, p95", fmt(pf["p95"]), fmt(of["p95"]), "ms", f"{pf['p95'] / of['p95']:.2f}", "", "")
    row("C-ECHO round trip on the same association (the client's and protocol's floor), median of 50",
        fmt(pf["echo"]), fmt(of["echo"]), "ms", f"{pf['echo'] / of['echo']:.2f}", "", "")
    pn, on = pf["median"] - pf["echo"], of["median"] - of["echo"]
    row("C-FIND median minus that C-ECHO median (the query's own cost, approximately)", fmt(pn), fmt(on), "ms",
        f"{pn / on:.2f}" if on > 0 else "", "", "")
    po, oo = pf.get("own"), of.get("own")
    if po and oo:
        row("C-FIND, the server's own time (loopback capture: the request's last packet to the final response's last), median",
            fmt(po["median"]), fmt(oo["median"]), "ms", f"{po['median'] / oo['median']:.2f}", "≤ 0.33", verdict(po["median"] <= oo["median"] / 3))
        row("C-FIND, the server's own time, p95", fmt(po["p95"]), fmt(oo["p95"]), "ms", f"{po['p95'] / oo['p95']:.2f}", "", "")
        row("C-ECHO, the server's own time, median", fmt(po["echo"]), fmt(oo["echo"]), "ms", f"{po['echo'] / oo['echo']:.2f}", "", "")
    for key, label, target in (("get", "C-GET whole CT study (getscu)", True), ("move", "C-MOVE whole CT study to storescp", False)):
        pg, og = P[key], O[key]
        r = pg["mbps"] / og["mbps"]
        row(f"{label}, {pg['files']} files, {pg['bytes'] / 1e6:.1f} MB", f"{fmt(pg['mbps'])} ({', '.join(fmt(x) for x in pg['rates'])}){'' if pg['ok'] else ' ⚠'}",
            f"{fmt(og['mbps'])} ({', '.join(fmt(x) for x in og['rates'])}){'' if og['ok'] else ' ⚠'}", "MB/s", f"{r:.2f}",
            "≥ 3" if target else "", verdict(r >= 3 and pg["ok"]) if target else "")
    for key, label in (("get", "getscu"), ("move", "movescu")):
        pg, og = P[key], O[key]
        row(f"{label} of a study that does not exist (fixed cost of one retrieve: process, association, final response)",
            fmt(pg["floor_ms"]), fmt(og["floor_ms"]), "ms", f"{pg['floor_ms'] / og['floor_ms']:.2f}", "", "")
    ph, oh = P["hold"], O["hold"]
    row(f"{args.hold} associations held at once, C-ECHO on each before and after all were up",
        f"{ph['echo2']}/{args.hold} ok, peak {ph['peak']} up, {ph['rejected']} rejected, {ph['failed']} failed",
        f"{oh['echo2']}/{args.hold} ok, peak {oh['peak']} up, {oh['rejected']} rejected, {oh['failed']} failed",
        "", "", f"{args.hold}/{args.hold}", verdict(ph["ok"]))
    if P.get("sync") and O.get("sync"):
        def per(x):
            total = sum(x["calls"].values())
            detail = ", ".join(f"{k} {v}" for k, v in sorted(x["calls"].items())) or "none"
            return total / x["n"], f"{total / x['n']:.2f} ({detail})"
        pv, pt = per(P["sync"])
        ov, ot = per(O["sync"])
        row(f"fsync-family system calls per stored instance (strace, {P['sync']['n']} small instances, 1 association)",
            pt, ot, "calls", f"{pv / ov:.2f}" if ov else "", "", "")
    prss = max(v for k, v in pacs.peak_rss_kb.items() if k != "strace") / 1024
    orss = max(v for k, v in orthanc.peak_rss_kb.items() if k != "strace") / 1024
    row("peak server RSS (VmHWM), max over every server process of the run", fmt(prss), fmt(orss), "MB",
        f"{prss / orss:.2f}", "", "")

    B = R["bounds"]
    bounds = []

    def bound(measure, value, unit, vs):
        bounds.append(f"| {measure} | {value} | {unit} | {vs} |")

    n_small = len(small.files)
    orthanc_small = {a: n_small / med([r["s"] for r in O[f"small{a}"]]) for a in (1, 8)}
    for a in (1, 8):
        sink_rate = n_small / med(B[f"sink{a}"])
        bound(f"storescu into storescp --ignore (stores nothing), small corpus, {a} association{'s' if a > 1 else ''}: "
              "the most any server can ingest with this client", fmt(sink_rate), "inst/s",
              f"{sink_rate / orthanc_small[a]:.2f} (3 × Orthanc = {fmt(3 * orthanc_small[a])})")
    fl = B["flush"]
    bound("one small instance made durable as a new file (write, fsync, rename, folder fsync), median", fmt(fl["new_file"] * 1e3),
          "ms", "")
    bound("one small instance made durable in a preallocated journal (pwrite + fdatasync), median", fmt(fl["journal"] * 1e3),
          "ms", "")
    sink1 = med(B["sink1"]) / n_small
    for what, key in (("a new file", "new_file"), ("a journal", "journal")):
        floor_rate = 1 / (sink1 + fl[key])
        bound(f"1 association, acknowledging each instance once it is durable in {what}: at most 1 ÷ (the client's and "
              "protocol's time per instance + that flush)", fmt(floor_rate), "inst/s", f"{floor_rate / orthanc_small[1]:.2f}")
    pg, og = P["get"], O["get"]
    best = pg["bytes"] / 1e6 / min(pg["client_cpu"], og["client_cpu"])
    bound("getscu's own CPU time (user + system) per C-GET of the CT study, with pacs / with Orthanc",
          f"{fmt(pg['client_cpu'] * 1e3)} / {fmt(og['client_cpu'] * 1e3)}", "ms", "")
    bound("C-GET with getscu: at most the study's bytes ÷ getscu's CPU time per retrieve", fmt(best), "MB/s",
          f"{best / og['mbps']:.2f} (3 × Orthanc = {fmt(3 * og['mbps'])})")

    def phases(s):
        return ", ".join(f"{k} {v / 1024:.0f}" for k, v in s.peak_rss_kb.items() if k not in ("cleanup", "strace"))

    verified = []
    for s, Rs in ((pacs, P), (orthanc, O)):
        verified.append(f"- {s.name}: every ingest stored exactly the corpus: "
                        f"{'yes' if all(r['ok'] for k in ('small1', 'small8', 'CT1', 'CT8') for r in Rs[k]) else 'NO'}; "
                        f"C-FIND walk returned exactly the corpus's {len(small.files)} SOP Instance UIDs: "
                        f"{'yes' if Rs['walk'] else 'NO'}; C-FIND answers with the wrong studies: {Rs['find']['wrong']}; "
                        f"C-GET and C-MOVE delivered all {Rs['get']['files']} files with byte-identical datasets: "
                        f"{'yes' if Rs['get']['ok'] and Rs['move']['ok'] else 'NO'}.")
    problems = [f"- {s.name}: {p}" for s in (pacs, orthanc) for p in s.problems] or ["- none"]
    problems += [f"- {s.name}, client side: {p}" for s in (pacs, orthanc) for p in s.client_notes]
    logs = []
    for name, lines in log_lines.items():
        logs.append(f"- {name}: {len(lines)} warning/error lines"
                    + (f" (besides {expected[name]} about the study that does not exist, asked for on purpose)"
                       if expected.get(name) else "")
                    + ("; first ones:" if lines else "."))
        for l in lines[:5]:
            logs.append(f"  `{l[:200].replace('`', '')}`")

    date = time.strftime("%Y-%m-%dT%H:%MZ", time.gmtime())
    return "\n".join([
        f"# pacs serve vs Orthanc over DIMSE, {date} ({args.mode} run)",
        "",
        f"Host: {host['nproc']} cores ({host['cpu']}), {host['mem_gib']} GiB, Linux {host['kernel']}, scratch on {host['fs']}. "
        f"Loopback only. Run time {elapsed / 60:.1f} min.",
        "",
        f"Versions: {versions['pacs']} (release build of {args.revision}); {versions['orthanc']}; DCMTK {versions['dcmtk']}; "
        f"Python {versions['python']}, pydicom {versions['pydicom']}, pynetdicom {versions['pynetdicom']}.",
        "",
        f"Corpus (benches' gen-corpus, Explicit VR Little Endian, CT Image Storage, 16-bit pixels): small = {small.describe()}; "
        f"CT = {ct.describe()}.",
        "",
        "Ratio = pacs ÷ Orthanc: above 1 is better for pacs for rates, below 1 for latency and memory. "
        f"Rates are medians of {args.reps} ingests (each value in parentheses), each into an empty archive, "
        f"and of {args.retrieve_reps} retrieves.",
        "",
        "| measure | pacs | Orthanc | unit | ratio | target | met |",
        "| --- | --- | --- | --- | --- | --- | --- |",
        *rows,
        "",
        "Bounds measured in the same run: what the clients and the disk allow any server (the last column is the "
        "bound ÷ Orthanc's figure, to compare with the targets' 3):",
        "",
        "| bound | value | unit | ÷ Orthanc |",
        "| --- | --- | --- | --- |",
        *bounds,
        "",
        "Verification:",
        "",
        *verified,
        "",
        "Problems seen during the run (⚠ in the table):",
        "",
        *problems,
        "",
        "Server logs:",
        "",
        *logs,
        "",
        f"Peak RSS by phase (MB): pacs {phases(pacs)}; Orthanc {phases(orthanc)}.",
        "",
        "How it was measured and what to keep in mind:",
        "",
        f"- Both servers run on 127.0.0.1 with a fresh, empty storage folder for every ingest. Clients are the same for "
        f"both: DCMTK storescu (one process per association, contiguous slices of the sorted file list; the time runs "
        f"from the first spawn to the last exit, including storescu's start-up, which reads every file's header before "
        f"associating), getscu and movescu (process wall clock, association included), and pynetdicom for C-FIND "
        f"(one association kept open, 10 warm-up queries, then {args.queries} timed ones; each time includes pynetdicom's "
        f"own Python encoding and decoding, the same for both servers) and for the hold test.",
        "- TCP_NODELAY: set in the environment of every DCMTK tool and of Orthanc (DCMTK 3.6.7 keeps Nagle's "
        "algorithm on without it) and on the pynetdicom sockets; pacs sets it on its sockets itself.",
        "- Durability differs. pacs acknowledges a C-STORE only once the file and its index row are durable. "
        "Orthanc 1.10 (SyncStorageArea: true by default) fdatasyncs each stored file, but commits its SQLite "
        "index in WAL mode with synchronous=NORMAL, i.e. without a flush per instance: its last acknowledged "
        "instances can be missing from its index after a power loss. Left at Orthanc's defaults on purpose.",
        "- Orthanc: Debian's package, default SQLite index in its storage folder, StorageCompression false, "
        "StorageAccessOnFind and DicomThreadsCount (4) at their defaults; its DICOM port listens on all "
        "interfaces (no bind option in 1.10), its HTTP port refuses non-local clients and is used only for "
        "/system and /statistics. The benchmark's AE is its only modality (find, get, move, store allowed).",
        "- C-GET writes the received files into the page cache (no fsync), C-MOVE's storescp too: retrieve "
        "rates measure the servers' read and send path, not a disk.",
        "- The machine is shared and small: absolute figures move from run to run by 10-20 % or more; compare "
        "the two servers only within one run, as ratios.",
        "",
    ])


def on_sigterm(signum, frame):
    raise SystemExit(128 + signum)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, on_sigterm)
    try:
        sys.exit(main())
    except BenchError as e:
        print(f"dimse_bench.py: {e}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("dimse_bench.py: interrupted", file=sys.stderr)
        sys.exit(130)
