#!/usr/bin/env python3
"""DICOMweb load benchmark: `pacs serve` against Orthanc with its DICOMweb plugin, same corpus, same
HTTP client, one run.

    python3 benches/load/dicomweb_bench.py --pacs target/release/pacs --small DIR --ct DIR --out FILE.md

Normally started by benches/load/dicomweb.sh, which installs Orthanc, its DICOMweb plugin and
pydicom, builds `pacs` and generates the corpus first. Everything runs on 127.0.0.1.

Both servers are started by this script (each in its own process group, with a fresh, empty storage
folder in a temp directory) and stopped again, also on errors. The client is the same for both:
Python's http.client, one keep-alive connection per client thread, connected (and, for reads,
warmed up with two requests) before the clock starts; 1 and --clients (16) threads. Each thread
takes the next request from one shared list. Answers are checked after the clock stops.

  STOW-RS   POST {root}/studies, multipart/related; type="application/dicom", --batch (10)
            instances per request, bodies built in memory before timing. Small corpus and CT
            corpus, with 1 and 16 clients, --reps times, every repetition into an empty archive
            (the server is restarted on a new folder), servers interleaved. Wall clock from the
            first request to the last answer. Each answer must be 200 with one ReferencedSOPSequence
            item per part and no FailedSOPSequence; afterwards the server's own count (pacs stats,
            Orthanc GET /statistics) must equal the corpus.
  reads     both servers are loaded with the small corpus (STOW-RS, 16 clients, not timed) and
            stay up together; every read test then alternates between them. Then both are restarted
            empty and loaded with the CT corpus for the CT WADO-RS test (the two corpora of
            gen-corpus share UIDs, so they are never mixed in one archive):
    QIDO-RS     GET {root}/studies?PatientID=<random patient>: latency median / p95; each answer
                must list exactly that patient's studies.
    metadata    GET {root}/studies/{s}/series/{se}/instances/{i}/metadata of a random small
                instance: latency median / p95; each answer must be one dataset with that SOP
                Instance UID.
    WADO-RS     GET {root}/studies/{s}, Accept: multipart/related; type="application/dicom", of a
                whole CT study (50 x 525 KB) and of a whole small study (50 x 9.4 KB): MB/s of DICOM
                file bytes (multipart framing not counted). Before timing, one answer per study is
                parsed: it must have one part per instance, the same total bytes as the original
                files, and (reported) the same bytes; timed answers must be 200 and as long as it.
            Latency series use max(--queries, 20 x clients) requests, WADO-RS study series
            --retrieve-reps x 4 requests with 1 client and 2 x clients with 16.
  sync      fsync-family system calls per stored instance while each server ingests 100 small
            instances over STOW-RS (strace -f -c, optional).
  RSS       peak resident set (VmHWM) of every server process, read just before each stop.

The table (ratios pacs / Orthanc, targets) goes to --out and to stdout. Exit status 0, or 2 when
the run finished with problems (listed in the report), 1 when nothing could be measured.
"""
import argparse
import hashlib
import http.client
import json
import os
import platform
import random
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
import urllib.parse


from benchlib import STRACE, BenchError, Proc, cpu_seconds, fmt, listening, med, proc_status, say, traced_sync_calls

HOST = "127.0.0.1"
ROOT = "/dicom-web"
PACS_PORT, PACS_HTTP = 11290, 18280
ORTHANC_PORT, ORTHANC_HTTP = 14390, 18290
ORTHANC_BIN = "/usr/sbin/Orthanc"
START_TIMEOUT_S = 30
STOP_TIMEOUT_S = 20
HTTP_TIMEOUT_S = 300
DICOM_MULTIPART = 'multipart/related; type="application/dicom"'
# Error lines: Orthanc's "E1123 ..."/"F1123 ..." (it logs its ordinary start-up at the W level),
# pacs's WARN/ERROR levels, panics.
LOG_PROBLEM = re.compile(r"^[EF]\d{4} |\b(WARN|ERROR)\b|panick")


def pct(xs, p):
    """p-th percentile, nearest rank."""
    if not xs:
        return float("nan")
    s = sorted(xs)
    k = max(0, min(len(s) - 1, int(round(p / 100 * len(s) + 0.5)) - 1))
    return s[k]


# ---------------------------------------------------------------------------------------------
# corpus


def numeric_key(path):
    """Sort key: the numbers in the path, so s2/15.dcm comes before s10/1.dcm."""
    return [int(x) for x in re.findall(r"\d+", path)], path


class Corpus:
    """The files of one corpus, their bytes (kept in memory) and UIDs."""

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
        self.files = files
        self.data = {}
        self.sop, self.study_of, self.series_of = {}, {}, {}
        self.patient_studies = {}
        for p in files:
            with open(p, "rb") as f:
                self.data[p] = f.read()
            ds = pydicom.dcmread(p, stop_before_pixels=True,
                                 specific_tags=["PatientID", "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"])
            self.sop[p] = str(ds.SOPInstanceUID)
            self.study_of[p] = str(ds.StudyInstanceUID)
            self.series_of[p] = str(ds.SeriesInstanceUID)
            self.patient_studies.setdefault(str(ds.PatientID), set()).add(str(ds.StudyInstanceUID))
        self.bytes = sum(len(b) for b in self.data.values())
        self.studies = sorted(set(self.study_of.values()), key=numeric_key)
        self.patients = sorted(self.patient_studies, key=numeric_key)

    def study_files(self, study):
        return [p for p in self.files if self.study_of[p] == study]

    def study_bytes(self, study):
        return sum(len(self.data[p]) for p in self.study_files(study))

    def describe(self):
        n = len(self.files)
        return (f"{n:,} files, {len(self.studies)} studies, {len(self.patient_studies)} patients, "
                f"{self.bytes / 1e6:.1f} MB ({self.bytes / n / 1e3:.1f} KB per file)")

    def stow_bodies(self, batch):
        """[(content type, body, number of parts)] for STOW-RS, `batch` files per request."""
        out = []
        for k, i in enumerate(range(0, len(self.files), batch)):
            chunk = self.files[i:i + batch]
            boundary = f"dicomweb-bench-{k:06d}-{os.urandom(8).hex()}".encode()
            parts = []
            for p in chunk:
                parts += [b"--", boundary, b"\r\nContent-Type: application/dicom\r\n\r\n", self.data[p], b"\r\n"]
            parts += [b"--", boundary, b"--\r\n"]
            out.append((f"{DICOM_MULTIPART}; boundary={boundary.decode()}", b"".join(parts), len(chunk)))
        return out


# ---------------------------------------------------------------------------------------------
# processes


# ---------------------------------------------------------------------------------------------
# HTTP


class Client:
    """One keep-alive HTTP/1.1 connection (http.client sets TCP_NODELAY and sends small bodies in
    the same send() as the headers). A request on a reused connection that the server had closed
    is retried once on a new connection, and counted."""

    def __init__(self, port):
        self.port = port
        self.conn = http.client.HTTPConnection(HOST, port, timeout=HTTP_TIMEOUT_S)
        self.reconnects = 0
        self.used = False

    def connect(self):
        self.conn.connect()

    def request(self, method, path, body=None, headers=None):
        for attempt in (1, 2):
            try:
                self.conn.request(method, path, body=body, headers=headers or {})
                resp = self.conn.getresponse()
                data = resp.read()
                self.used = True
                if resp.getheader("Connection", "").lower() == "close":
                    self.conn.close()
                    self.reconnects += 1
                return resp.status, resp.getheader("Content-Type", ""), data
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as e:
                self.conn.close()
                if attempt == 2 or not self.used:
                    raise
                self.reconnects += 1
                self.used = False
                last = e
        raise last  # not reached

    def close(self):
        self.conn.close()


def run_clients(port, nclients, jobs, warmup=None):
    """Send jobs [(method, path, body, headers)] from nclients threads, each with its own
    connection, taking the next job from one shared list. warmup: a job each thread sends twice
    before the clock starts. Returns a dict: seconds (first request to last answer), per-job
    (latency s, status, content type, body or its length), errors, reconnects, client CPU."""
    lock = threading.Lock()
    state = {"next": 0}
    results = [None] * len(jobs)
    errors = []
    starts, ends = [], []
    reconnects = [0]
    ready = threading.Barrier(nclients + 1)

    def work():
        c = Client(port)
        first = last = None
        try:
            try:
                c.connect()
                if warmup:
                    for _ in range(2):
                        c.request(*warmup)
            finally:
                ready.wait()
            while True:
                with lock:
                    i = state["next"]
                    state["next"] = i + 1
                if i >= len(jobs):
                    break
                method, path, body, headers, keep_body = jobs[i]
                t0 = time.perf_counter()
                if first is None:
                    first = t0
                try:
                    status, ctype, data = c.request(method, path, body, headers)
                    t1 = time.perf_counter()
                    results[i] = (t1 - t0, status, ctype, data if keep_body else len(data))
                except (OSError, http.client.HTTPException) as e:
                    t1 = time.perf_counter()
                    with lock:
                        errors.append(f"{method} {path[:80]}: {type(e).__name__}: {e}")
                    c.close()
                last = t1
        except BaseException as e:  # a crashed worker must be seen
            with lock:
                errors.append(f"client thread: {type(e).__name__}: {e}")
        finally:
            c.close()
            with lock:
                reconnects[0] += c.reconnects
                if first is not None:
                    starts.append(first)
                    ends.append(last)

    threads = [threading.Thread(target=work, daemon=True) for _ in range(nclients)]
    for t in threads:
        t.start()
    ready.wait()
    cpu0 = time.process_time()
    for t in threads:
        t.join()
    cpu = time.process_time() - cpu0
    seconds = (max(ends) - min(starts)) if starts else float("nan")
    return {"seconds": seconds, "results": results, "errors": errors, "reconnects": reconnects[0], "client_cpu": cpu}


def get_json(port, path, timeout=60):
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Accept": "application/json"})
        resp = conn.getresponse()
        body = resp.read()
        if resp.status != 200:
            raise BenchError(f"GET {path}: HTTP {resp.status}")
        return json.loads(body)
    finally:
        conn.close()


def split_multipart(ctype, body):
    """The parts' contents of a multipart body (boundary from the Content-Type)."""
    m = re.search(r'boundary="?([^";]+)"?', ctype)
    if not m:
        raise ValueError(f"no boundary in Content-Type {ctype!r}")
    delim = b"--" + m.group(1).encode()
    parts = []
    pos = body.find(delim)
    if pos < 0:
        raise ValueError("no boundary in the body")
    while True:
        pos += len(delim)
        if body[pos:pos + 2] == b"--":
            return parts
        head_end = body.find(b"\r\n\r\n", pos)
        if head_end < 0:
            raise ValueError("truncated part headers")
        nxt = body.find(b"\r\n" + delim, head_end + 4)
        if nxt < 0:
            raise ValueError("no closing boundary")
        parts.append(body[head_end + 4:nxt])
        pos = nxt + 2


# ---------------------------------------------------------------------------------------------
# servers


class Server:
    name = None
    port = http_port = None

    def __init__(self, work):
        self.work = work
        self.proc = None
        self.dir = None
        self.runs = 0
        self.peak_rss_kb = {}
        self.problems = []
        self.logs = []
        # Storage of earlier repetitions, removed only at the end: ext4 searches long for a free
        # inode next to thousands of just-deleted ones, which would slow the next ingest.
        self.retired = []

    def check_ports(self):
        for port in (self.port, self.http_port):
            if listening(port):
                raise BenchError(f"{HOST}:{port} already answers: refusing to measure a server this script did not start")

    def fresh_dir(self):
        if self.dir:
            self.retired.append(self.dir)
        self.runs += 1
        self.dir = os.path.join(self.work, f"{self.name}-{self.runs}")
        shutil.rmtree(self.dir, ignore_errors=True)
        os.makedirs(self.dir)
        return self.dir

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

    def cleanup(self):
        for d in self.retired + [self.dir]:
            if d:
                shutil.rmtree(d, ignore_errors=True)
        self.retired = []
        self.dir = None

    def wait_http(self, path):
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if not self.proc.alive():
                raise BenchError(f"{self.name} exited while starting; log: {self.proc.log_path}")
            try:
                return get_json(self.http_port, path, timeout=2) if path.endswith("/system") else self.probe(path)
            except (OSError, http.client.HTTPException, ValueError, BenchError):
                pass
            if time.monotonic() > deadline:
                raise BenchError(f"{self.name} did not answer GET {path} within {START_TIMEOUT_S} s; log: {self.proc.log_path}")
            time.sleep(0.1)

    def probe(self, path):
        conn = http.client.HTTPConnection(HOST, self.http_port, timeout=2)
        try:
            conn.request("GET", path)
            resp = conn.getresponse()
            resp.read()
            if resp.status != 200:
                raise BenchError(f"GET {path}: HTTP {resp.status}")
        finally:
            conn.close()


class Pacs(Server):
    name, port, http_port = "pacs", PACS_PORT, PACS_HTTP

    def __init__(self, work, binary):
        super().__init__(work)
        self.binary = binary

    def version(self):
        return subprocess.run([self.binary, "--version"], capture_output=True, text=True).stdout.strip()

    def start(self, phase):
        self.check_ports()
        d = self.fresh_dir()
        open(os.path.join(d, "bench.toml"), "w").close()  # defaults only, whatever a user's pacs.toml says
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PACS_", "RUST_LOG"))}
        log = os.path.join(self.work, "pacs.log")
        if log not in self.logs:
            self.logs.append(log)
        self.proc = Proc("pacs", [self.binary, "serve", "--data-dir", os.path.join(d, "data"),
                                  "--config", os.path.join(d, "bench.toml"), "--bind", HOST,
                                  "--port", str(self.port), "--http-port", str(self.http_port)], log, env)
        self.wait_http(f"{ROOT}/health")

    def count(self):
        out = subprocess.run([self.binary, "stats", "--json", "--data-dir", os.path.join(self.dir, "data"),
                              "--config", os.path.join(self.dir, "bench.toml")],
                             capture_output=True, text=True, timeout=120)
        if out.returncode != 0:
            raise BenchError(f"pacs stats failed: {out.stderr.strip()}")
        s = json.loads(out.stdout)
        return int(s["instances"]), int(s["studies"])


class Orthanc(Server):
    name, port, http_port = "orthanc", ORTHANC_PORT, ORTHANC_HTTP

    def __init__(self, work, plugin):
        super().__init__(work)
        self.plugin = plugin
        self.system = {}
        self.plugin_version = "?"

    def start(self, phase):
        self.check_ports()
        d = self.fresh_dir()
        storage = os.path.join(d, "storage")
        os.makedirs(storage)
        config = {
            "Name": "pacs-dicomweb-bench",
            "StorageDirectory": storage,
            "IndexDirectory": storage,          # default SQLite index, next to the files
            "StorageCompression": False,
            "Plugins": [self.plugin],
            "DicomWeb": {"Enable": True, "Root": ROOT + "/", "EnableWado": False},
            "HttpServerEnabled": True,
            "HttpPort": self.http_port,
            "KeepAlive": True,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "SslEnabled": False,
            # Orthanc 1.10 has no bind-address option; its DICOM listener would take every
            # interface, so it is left off (DICOMweb does not need it).
            "DicomServerEnabled": False,
            "DicomPort": self.port,
            "DicomAet": "ORTHANC",
        }
        cfg = os.path.join(d, "orthanc.json")
        with open(cfg, "w") as f:
            json.dump(config, f, indent=2)
        log = os.path.join(self.work, "orthanc.log")
        if log not in self.logs:
            self.logs.append(log)
        self.proc = Proc("orthanc", [ORTHANC_BIN, cfg], log, dict(os.environ, TCP_NODELAY="1"))
        self.system = self.wait_http("/system")
        plugins = get_json(self.http_port, "/plugins")
        if "dicom-web" not in plugins:
            raise BenchError(f"Orthanc started without its DICOMweb plugin ({self.plugin}); plugins: {plugins}")
        self.plugin_version = get_json(self.http_port, "/plugins/dicom-web").get("Version", "?")
        self.probe(f"{ROOT}/studies?limit=1")

    def version(self):
        return (f"Orthanc {self.system.get('Version', '?')} with DICOMweb plugin {self.plugin_version} "
                f"(Debian packages, SQLite index)")

    def count(self):
        s = get_json(self.http_port, "/statistics", timeout=120)
        return int(s["CountInstances"]), int(s["CountStudies"])


# ---------------------------------------------------------------------------------------------
# measurements


def stow(server, bodies, nclients):
    """POST every body; returns (seconds, problems, reconnects, client CPU)."""
    jobs = [("POST", f"{ROOT}/studies", body, {"Content-Type": ctype, "Accept": "application/dicom+json"}, True)
            for ctype, body, _n in bodies]
    r = run_clients(server.http_port, nclients, jobs)
    problems = list(r["errors"])
    for (ctype, body, n), res in zip(bodies, r["results"]):
        if res is None:
            continue
        _lat, status, _ct, data = res
        try:
            answer = json.loads(data) if data else {}
        except ValueError:
            answer = {}
        ok_items = len(answer.get("00081199", {}).get("Value", []) or [])
        failed = len(answer.get("00081198", {}).get("Value", []) or [])
        if status != 200 or ok_items != n or failed:
            problems.append(f"HTTP {status}, {ok_items} stored / {failed} failed of {n}: {data[:160]!r}")
    return r["seconds"], problems, r["reconnects"], r["client_cpu"]


def ingest(server, corpus, bodies, nclients, label, keep=False):
    """One STOW-RS ingest into an empty archive; verified by the server's own count."""
    server.start(label)
    try:
        cpu0 = cpu_seconds(server.proc.pid)
        seconds, problems, reconnects, client_cpu = stow(server, bodies, nclients)
        cpu = cpu_seconds(server.proc.pid) - cpu0
        instances, studies = server.count()
        ok = instances == len(corpus.files) and studies == len(corpus.studies) and not problems
        if not ok:
            server.problems.append(f"STOW-RS {label}, {nclients} clients: stored {instances} instances / {studies} studies "
                                   f"of {len(corpus.files)} / {len(corpus.studies)}; {len(problems)} bad answers: {problems[:2]}")
        say(f"  {server.name:8} STOW {label} x{nclients}: {seconds:.2f} s, {len(corpus.files) / seconds:.0f} inst/s, "
            f"{corpus.bytes / seconds / 1e6:.1f} MB/s, stored {instances}/{len(corpus.files)}, server CPU {cpu:.2f} s, "
            f"client CPU {client_cpu:.2f} s" + (f", {reconnects} reconnects" if reconnects else "")
            + (f", PROBLEMS {problems[:2]}" if problems else ""))
        return {"s": seconds, "ok": ok, "cpu": cpu, "client_cpu": client_cpu, "reconnects": reconnects}
    finally:
        if not keep:
            server.stop(f"STOW {label}")


def sync_calls(server, corpus, batch, n=100):
    """fsync-family system calls of the server while it takes n small instances over STOW-RS,
    one client (strace attached after start-up), or None without strace."""
    if not os.access(STRACE, os.X_OK):
        return None
    files = corpus.files[:n]
    sub = Corpus.__new__(Corpus)
    sub.files, sub.data = files, corpus.data
    bodies = sub.stow_bodies(batch)
    server.start("strace")
    return traced_sync_calls(server, lambda: stow(server, bodies, 1)[1], len(files), " over STOW-RS")


def latency_series(server, nclients, paths, check, warm_path):
    """GET every path (Accept: application/dicom+json) from nclients clients; check(i, status, body)
    returns an error string or None. Returns latency median/p95 (ms), requests/s, wrong answers."""
    headers = {"Accept": "application/dicom+json"}
    jobs = [("GET", p, None, headers, True) for p in paths]
    r = run_clients(server.http_port, nclients, jobs, warmup=("GET", warm_path, None, headers))
    lat, wrong = [], []
    for i, res in enumerate(r["results"]):
        if res is None:
            continue
        t, status, _ct, body = res
        lat.append(t * 1000)
        err = check(i, status, body)
        if err:
            wrong.append(err)
    wrong = r["errors"] + wrong
    return {"median": med(lat), "p95": pct(lat, 95), "rps": len(paths) / r["seconds"], "n": len(paths),
            "wrong": len(wrong), "examples": wrong[:2], "reconnects": r["reconnects"]}


def qido(server, corpus, nclients, n, seed):
    rng = random.Random(seed)
    pats = [rng.choice(corpus.patients) for _ in range(n)]
    paths = [f"{ROOT}/studies?PatientID={urllib.parse.quote(p)}" for p in pats]

    def check(i, status, body):
        if status != 200:
            return f"HTTP {status}"
        try:
            got = {d["0020000D"]["Value"][0] for d in json.loads(body)}
        except (ValueError, KeyError, IndexError, TypeError) as e:
            return f"bad answer ({type(e).__name__}: {body[:100]!r})"
        if got != corpus.patient_studies[pats[i]]:
            return f"PatientID={pats[i]}: {len(got)} studies, {len(corpus.patient_studies[pats[i]])} expected"
        return None

    return latency_series(server, nclients, paths, check, f"{ROOT}/studies?PatientID={urllib.parse.quote(corpus.patients[0])}")


def metadata(server, corpus, nclients, n, seed):
    rng = random.Random(seed)
    picks = [rng.choice(corpus.files) for _ in range(n)]

    def path(p):
        return f"{ROOT}/studies/{corpus.study_of[p]}/series/{corpus.series_of[p]}/instances/{corpus.sop[p]}/metadata"

    def check(i, status, body):
        if status != 200:
            return f"HTTP {status}"
        try:
            got = json.loads(body)
            uid = got[0]["00080018"]["Value"][0]
        except (ValueError, KeyError, IndexError, TypeError) as e:
            return f"bad answer ({type(e).__name__}: {body[:100]!r})"
        if len(got) != 1 or uid != corpus.sop[picks[i]]:
            return f"{len(got)} datasets, SOP Instance UID {uid}, {corpus.sop[picks[i]]} expected"
        return None

    return latency_series(server, nclients, [path(p) for p in picks], check, path(corpus.files[0]))


def verify_study(server, corpus, study):
    """One untimed WADO-RS of the study, parsed. Returns (answer length or None, identical bytes?, problem)."""
    c = Client(server.http_port)
    try:
        status, ctype, body = c.request("GET", f"{ROOT}/studies/{study}", headers={"Accept": DICOM_MULTIPART})
    finally:
        c.close()
    if status != 200:
        return None, False, f"WADO-RS study: HTTP {status}"
    try:
        parts = split_multipart(ctype, body)
    except ValueError as e:
        return None, False, f"WADO-RS study: {e}"
    files = corpus.study_files(study)
    want = sorted(hashlib.sha256(corpus.data[p]).hexdigest() for p in files)
    got = sorted(hashlib.sha256(x).hexdigest() for x in parts)
    size_ok = len(parts) == len(files) and sum(map(len, parts)) == corpus.study_bytes(study)
    if not size_ok:
        return None, False, (f"WADO-RS study: {len(parts)} parts, {sum(map(len, parts))} bytes; "
                             f"{len(files)} / {corpus.study_bytes(study)} expected")
    return len(body), got == want, None


def wado_study(server, corpus, nclients, n):
    """n whole-study retrieves (studies round robin) from nclients clients."""
    studies = corpus.studies
    expect, identical = {}, True
    for st in studies:
        length, same, problem = verify_study(server, corpus, st)
        if problem:
            server.problems.append(problem)
            return {"mbps": float("nan"), "ok": False, "identical": False, "median_ms": float("nan"), "n": 0}
        expect[st] = length
        identical &= same
    order = [studies[i % len(studies)] for i in range(n)]
    jobs = [("GET", f"{ROOT}/studies/{st}", None, {"Accept": DICOM_MULTIPART}, False) for st in order]
    r = run_clients(server.http_port, nclients, jobs, warmup=("GET", f"{ROOT}/studies/{studies[0]}", None,
                                                                {"Accept": DICOM_MULTIPART}))
    bad = list(r["errors"])
    lat = []
    for st, res in zip(order, r["results"]):
        if res is None:
            continue
        t, status, _ct, length = res
        lat.append(t * 1000)
        if status != 200 or length != expect[st]:
            bad.append(f"HTTP {status}, {length} bytes, {expect[st]} expected")
    payload = sum(corpus.study_bytes(st) for st in order)
    if bad:
        server.problems.append(f"WADO-RS study x{nclients}: {len(bad)} bad answers: {bad[:2]}")
    return {"mbps": payload / r["seconds"] / 1e6, "ok": not bad, "identical": identical, "median_ms": med(lat),
            "n": n, "reconnects": r["reconnects"]}


# ---------------------------------------------------------------------------------------------
# report


def host_info(work):
    info = {"nproc": os.cpu_count(), "kernel": platform.release(), "cpu": "?", "mem_gib": "?", "fs": "?"}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    info["mem_gib"] = round(int(line.split()[1]) / 1024 / 1024)
        out = subprocess.run(["df", "-T", work], capture_output=True, text=True).stdout.splitlines()
        if len(out) > 1:
            info["fs"] = out[1].split()[1]
    except (OSError, IndexError):
        pass
    return info


def render(args, R, pacs, orthanc, small, ct, host, versions, log_lines, elapsed):
    P, O = R["pacs"], R["orthanc"]
    C = args.clients
    rows = []

    def row(measure, clients, p, o, unit, ratio, target, met):
        rows.append(f"| {measure} | {clients} | {p} | {o} | {unit} | {ratio} | {target} | {met} |")

    def verdict(ok):
        return "yes" if ok else "**no**"

    def rate_row(label, key, corpus, unit):
        for c in (1, C):
            vals = {}
            for name, Rs in (("pacs", P), ("orthanc", O)):
                runs = Rs[f"{key}{c}"]
                amount = len(corpus.files) if unit == "inst/s" else corpus.bytes / 1e6
                vals[name] = (amount / med([x["s"] for x in runs]),
                              ", ".join(fmt(amount / x["s"]) for x in runs),
                              all(x["ok"] for x in runs))
            (pv, pe, pok), (ov, oe, ook) = vals["pacs"], vals["orthanc"]
            r = pv / ov
            row(label, c, f"{fmt(pv)} ({pe}){'' if pok else ' ⚠'}", f"{fmt(ov)} ({oe}){'' if ook else ' ⚠'}", unit,
                f"{r:.2f}", "≥ 3", verdict(r >= 3 and pok))

    rate_row(f"STOW-RS small corpus, {args.batch}/request", "small", small, "inst/s")
    rate_row(f"STOW-RS small corpus, {args.batch}/request", "small", small, "MB/s")
    rate_row(f"STOW-RS CT 512x512, {args.batch}/request", "ct", ct, "MB/s")
    pc = med([x["cpu"] for x in P["small1"]]) / len(small.files) * 1000
    oc = med([x["cpu"] for x in O["small1"]]) / len(small.files) * 1000
    row("server CPU per 1,000 small instances stored over STOW-RS", 1, fmt(pc), fmt(oc), "CPU s", f"{pc / oc:.2f}", "", "")

    for key, label in (("qido", "QIDO-RS /studies?PatientID= (random patient)"),
                       ("meta", "WADO-RS instance /metadata (random small instance)")):
        for c in (1, C):
            p, o = P[f"{key}{c}"], O[f"{key}{c}"]
            pw = "" if not p["wrong"] else f" ⚠ {p['wrong']} wrong"
            ow = "" if not o["wrong"] else f" ⚠ {o['wrong']} wrong"
            for stat, name in (("median", "median"), ("p95", "p95")):
                r = p[stat] / o[stat]
                row(f"{label}, {name} of {p['n']}", c, fmt(p[stat]) + pw, fmt(o[stat]) + ow, "ms", f"{r:.2f}",
                    "≤ 0.33", verdict(r <= 1 / 3 and not p["wrong"]))
            r = p["rps"] / o["rps"]
            row(f"{label}, requests/s", c, fmt(p["rps"]), fmt(o["rps"]), "req/s", f"{r:.2f}", "", "")

    for key, label in (("wado_ct", f"WADO-RS whole CT study ({len(ct.study_files(ct.studies[0]))} x "
                                   f"{ct.bytes / len(ct.files) / 1e3:.0f} KB)"),
                       ("wado_small", f"WADO-RS whole small study ({len(small.study_files(small.studies[0]))} x "
                                      f"{small.bytes / len(small.files) / 1e3:.1f} KB)")):
        for c in (1, C):
            p, o = P[f"{key}{c}"], O[f"{key}{c}"]
            r = p["mbps"] / o["mbps"]
            row(f"{label}, {p['n']} retrieves", c, fmt(p["mbps"]) + ("" if p["ok"] else " ⚠"),
                fmt(o["mbps"]) + ("" if o["ok"] else " ⚠"), "MB/s", f"{r:.2f}", "≥ 3", verdict(r >= 3 and p["ok"]))
            r = p["median_ms"] / o["median_ms"]
            row(f"{label}, time per retrieve, median", c, fmt(p["median_ms"]), fmt(o["median_ms"]), "ms", f"{r:.2f}", "", "")

    if P.get("sync") and O.get("sync"):
        def per(x):
            total = sum(x["calls"].values())
            detail = ", ".join(f"{k} {v}" for k, v in sorted(x["calls"].items())) or "none"
            return total / x["n"], f"{total / x['n']:.2f} ({detail})"
        pv, pt = per(P["sync"])
        ov, ot = per(O["sync"])
        row(f"fsync-family system calls per stored instance (strace, {P['sync']['n']} small instances over "
            f"STOW-RS, {args.batch}/request)", 1, pt, ot, "calls", f"{pv / ov:.2f}" if ov else "", "", "")
    prss = max(v for k, v in pacs.peak_rss_kb.items() if k != "strace") / 1024
    orss = max(v for k, v in orthanc.peak_rss_kb.items() if k != "strace") / 1024
    row("peak server RSS (VmHWM), max over every server process of the run", "", fmt(prss), fmt(orss), "MB",
        f"{prss / orss:.2f}", "", "")

    verified = []
    for s, Rs in ((pacs, P), (orthanc, O)):
        ingests = all(x["ok"] for k in ("small1", f"small{C}", "ct1", f"ct{C}") for x in Rs[k])
        wado = all(Rs[f"{k}{c}"]["ok"] for k in ("wado_ct", "wado_small") for c in (1, C))
        same = all(Rs[f"{k}{c}"]["identical"] for k in ("wado_ct", "wado_small") for c in (1, C))
        wrong = sum(Rs[f"{k}{c}"]["wrong"] for k in ("qido", "meta") for c in (1, C))
        reconn = sum(Rs[k].get("reconnects", 0) for k in Rs if isinstance(Rs[k], dict) and "reconnects" in Rs[k]) + \
            sum(x["reconnects"] for k in ("small1", f"small{C}", "ct1", f"ct{C}") for x in Rs[k])
        verified.append(
            f"- {s.name}: every STOW-RS answer listed each part as stored and the server then counted exactly the "
            f"corpus: {'yes' if ingests else 'NO'}; QIDO-RS and /metadata answers with the wrong content: {wrong}; "
            f"WADO-RS study answers with one part per instance and the original byte count: {'yes' if wado else 'NO'}; "
            f"parts byte-identical to the files sent: {'yes' if same else 'NO'}; keep-alive connections the server "
            f"closed (the client reconnected): {reconn}.")
    for s, Rs in ((pacs, P), (orthanc, O)):
        where = [f"{k} {Rs[k]['reconnects']}" for k in sorted(Rs) if isinstance(Rs[k], dict) and Rs[k].get("reconnects")]
        if where:
            verified.append(f"  - {s.name} closed keep-alive connections in: {', '.join(where)} (answers with "
                            f"`Connection: close`; the reconnection is inside the timed window).")
    problems = [f"- {s.name}: {p}" for s in (pacs, orthanc) for p in s.problems] or ["- none"]
    examples = []
    for s, Rs in ((pacs, P), (orthanc, O)):
        for k in ("qido", "meta"):
            for c in (1, C):
                if Rs[f"{k}{c}"]["wrong"]:
                    examples.append(f"- {s.name} {k} x{c}: {Rs[f'{k}{c}']['examples']}")
    logs = []
    for name, lines in log_lines.items():
        logs.append(f"- {name}: {len(lines)} error lines (pacs: WARN/ERROR, Orthanc: E/F)" + ("; first ones:" if lines else "."))
        for l in lines[:5]:
            logs.append(f"  `{l[:200].replace('`', '')}`")

    def phases(s):
        return ", ".join(f"{k} {v / 1024:.0f}" for k, v in s.peak_rss_kb.items() if k not in ("cleanup", "strace"))

    date = time.strftime("%Y-%m-%dT%H:%MZ", time.gmtime())
    return "\n".join([
        f"# pacs serve vs Orthanc over DICOMweb, {date} ({args.mode} run)",
        "",
        f"Host: {host['nproc']} cores ({host['cpu']}), {host['mem_gib']} GiB, Linux {host['kernel']}, scratch on "
        f"{host['fs']}. Loopback only; the client runs on the same cores as the server. Run time {elapsed / 60:.1f} min.",
        "",
        f"Versions: {versions['pacs']} (release build of {args.revision}); {versions['orthanc']}; "
        f"Python {versions['python']} (http.client), pydicom {versions['pydicom']} (corpus headers only).",
        "",
        f"Corpus (benches' gen-corpus, Explicit VR Little Endian, CT Image Storage, 16-bit pixels): small = "
        f"{small.describe()}; CT = {ct.describe()}.",
        "",
        "Ratio = pacs ÷ Orthanc: above 1 is better for pacs for rates, below 1 is better for pacs for latency, "
        f"time and memory. Targets: ≥ 3 on throughput, ≤ 0.33 on latency. STOW-RS rates are medians of "
        f"{args.reps} ingests (each value in parentheses), each into an empty archive.",
        "",
        "| measure | clients | pacs | Orthanc | unit | ratio | target | met |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
        *rows,
        "",
        "Verification:",
        "",
        *verified,
        "",
        "Problems seen during the run (⚠ in the table):",
        "",
        *problems,
        *examples,
        "",
        "Server logs:",
        "",
        *logs,
        "",
        f"Peak RSS by phase (MB): pacs {phases(pacs)}; Orthanc {phases(orthanc)}.",
        "",
        "How it was measured and what to keep in mind:",
        "",
        "- One client for both servers: Python's http.client, one keep-alive HTTP/1.1 connection per client thread "
        "(TCP_NODELAY on, headers and body in one send), connected before the clock starts; each thread takes the "
        "next request from one shared list. With 16 threads the client is bound by Python's interpreter lock and "
        "shares the 2 cores with the server: 16-client figures show what the pair reaches on this machine, and "
        "include the client's cost, the same for both servers. Latencies are per request, from sending to the "
        "last byte of the answer; requests/s and MB/s use the wall clock from the first request to the last answer.",
        f"- STOW-RS: {args.batch} instances per multipart/related request, bodies built before timing; the time "
        "includes the whole answer. The read tests run with both servers up, each loaded with one corpus, "
        "alternating pacs and Orthanc test by test (the small corpus, then, restarted, the CT corpus); QIDO-RS and /metadata threads send two warm-up requests first; "
        "WADO-RS MB/s counts DICOM file bytes, not the multipart framing.",
        "- Durability differs. pacs answers a STOW-RS request only once its files and index rows are durable "
        "(see the fsync row). Orthanc 1.10 (SyncStorageArea true by default) fdatasyncs each stored file but commits "
        "its SQLite index in WAL mode with synchronous=NORMAL, i.e. without a flush per instance, so its last "
        "acknowledged instances can be missing from its index after a power loss. Orthanc's defaults are kept on "
        "purpose.",
        "- Orthanc: Debian's orthanc and orthanc-dicomweb packages, default SQLite index in its storage folder, "
        "StorageCompression false, DicomWeb Enable true with Root /dicom-web/, KeepAlive true, RemoteAccessAllowed "
        "false, AuthenticationEnabled false, its DICOM listener off (it cannot be bound to loopback only), every "
        "other setting at its default. pacs: `pacs serve` with an empty config file, DICOM and HTTP bound to "
        "127.0.0.1.",
        "- The corpus and the retrieved data are in the page cache: reads measure the servers' read and send path, "
        "not a disk. The machine is shared and small: absolute figures move from run to run by 10-20 % or more; "
        "compare the two servers only within one run, as ratios.",
        "",
    ])


# ---------------------------------------------------------------------------------------------


def find_plugin():
    try:
        out = subprocess.run(["dpkg", "-L", "orthanc-dicomweb"], capture_output=True, text=True).stdout
    except FileNotFoundError:
        out = ""
    sos = [l for l in out.splitlines() if re.search(r"\.so(\.|$)", l) and os.path.exists(l)]
    sos.sort(key=lambda p: (not p.endswith(".so"), p))  # the plugins/ link first
    if not sos:
        raise BenchError("the DICOMweb plugin of Orthanc is missing: install Debian's orthanc-dicomweb")
    return sos[0]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pacs", required=True, help="the pacs binary")
    ap.add_argument("--small", required=True, help="folder of the small corpus (gen-corpus small)")
    ap.add_argument("--ct", required=True, help="folder of the CT corpus (gen-corpus ct)")
    ap.add_argument("--out", required=True, help="Markdown report")
    ap.add_argument("--work", help="scratch folder (default: a new temp folder)")
    ap.add_argument("--piddir", help="folder where the pids of running servers are kept for the caller")
    ap.add_argument("--reps", type=int, default=3, help="STOW-RS ingest repetitions (3)")
    ap.add_argument("--queries", type=int, default=200, help="requests per latency series (200)")
    ap.add_argument("--retrieve-reps", type=int, default=5, help="WADO-RS whole-study rounds with 1 client (5)")
    ap.add_argument("--clients", type=int, default=16, help="concurrent clients besides 1 (16)")
    ap.add_argument("--batch", type=int, default=10, help="instances per STOW-RS request (10)")
    ap.add_argument("--small-limit", type=int, default=0, help="use only the first N small instances (quick runs)")
    ap.add_argument("--mode", default="full")
    ap.add_argument("--revision", default="unknown", help="source revision of the pacs binary, for the report")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    Proc.piddir = args.piddir
    if not os.access(ORTHANC_BIN, os.X_OK):
        raise BenchError(f"{ORTHANC_BIN} missing: install Debian's orthanc package")
    plugin = find_plugin()
    own_work = args.work is None
    work = args.work or tempfile.mkdtemp(prefix="pacs-dicomweb-bench-")
    os.makedirs(work, exist_ok=True)
    started = time.time()

    say("reading the corpus")
    small = Corpus(args.small, args.small_limit or None)
    ct = Corpus(args.ct)
    say(f"small: {small.describe()}; CT: {ct.describe()}")
    small_bodies = small.stow_bodies(args.batch)
    ct_bodies = ct.stow_bodies(args.batch)

    pacs = Pacs(work, args.pacs)
    orthanc = Orthanc(work, plugin)
    servers = [pacs, orthanc]
    R = {s.name: {} for s in servers}
    C = args.clients
    nlat = lambda c: max(args.queries, 20 * c)  # noqa: E731
    try:
        # STOW-RS ingest, interleaved so that both servers see the same moments of a noisy machine.
        for corpus, bodies, label in ((small, small_bodies, "small"), (ct, ct_bodies, "ct")):
            for rep in range(1, args.reps + 1):
                say(f"STOW-RS {label} rep {rep}/{args.reps}")
                for c in (1, C):
                    for s in servers:
                        R[s.name].setdefault(f"{label}{c}", []).append(ingest(s, corpus, bodies, c, label))

        for s in servers:
            R[s.name]["sync"] = sync_calls(s, small, args.batch)

        # Reads: both servers up together, first holding the small corpus, then (restarted on an empty
        # archive) the CT corpus: the two corpora of gen-corpus share UIDs, so they are never mixed.
        def load(corpus, bodies, phase):
            say(f"loading both servers with the {phase} corpus for the read tests")
            for s in servers:
                s.start(phase)
                _sec, problems, _r, _c = stow(s, bodies, C)
                if problems:
                    s.problems.append(f"loading for the reads ({phase}): {problems[:2]}")
                instances, _ = s.count()
                if instances != len(corpus.files):
                    s.problems.append(f"loaded for the reads ({phase}): {instances} instances, {len(corpus.files)} expected")
            time.sleep(2)

        def unload(corpus, phase):
            for s in servers:
                instances, _ = s.count()
                if instances != len(corpus.files):
                    s.problems.append(f"after the reads ({phase}): {instances} instances stored, {len(corpus.files)} expected")
                s.stop(f"reads {phase}")

        load(small, small_bodies, "small")
        for c in (1, C):
            for s in servers:
                R[s.name][f"qido{c}"] = q = qido(s, small, c, nlat(c), args.seed + c)
                say(f"  {s.name:8} QIDO-RS x{c}: median {q['median']:.2f} ms, p95 {q['p95']:.2f} ms, "
                    f"{q['rps']:.0f} req/s, {q['wrong']} wrong, {q['reconnects']} closed by the server")
        for c in (1, C):
            for s in servers:
                R[s.name][f"meta{c}"] = q = metadata(s, small, c, nlat(c), args.seed + 100 + c)
                say(f"  {s.name:8} metadata x{c}: median {q['median']:.2f} ms, p95 {q['p95']:.2f} ms, "
                    f"{q['rps']:.0f} req/s, {q['wrong']} wrong, {q['reconnects']} closed by the server")

        def wado(key, corpus, n_for):
            for c in (1, C):
                for s in servers:
                    R[s.name][f"{key}{c}"] = w = wado_study(s, corpus, c, n_for(c))
                    say(f"  {s.name:8} {key} x{c}: {w['mbps']:.1f} MB/s, median {w['median_ms']:.1f} ms per study, "
                        f"ok {w['ok']}, identical {w['identical']}, {w.get('reconnects', 0)} closed by the server")

        wado("wado_small", small, lambda c: 10 * args.retrieve_reps if c == 1 else 10 * c)
        unload(small, "small")
        load(ct, ct_bodies, "CT")
        wado("wado_ct", ct, lambda c: args.retrieve_reps * len(ct.studies) if c == 1 else 2 * c)
        unload(ct, "CT")
    finally:
        for s in servers:
            try:
                s.stop("cleanup")
            finally:
                s.cleanup()

    log_lines = {}
    for s in servers:
        lines = []
        for log in s.logs:
            try:
                with open(log, errors="replace") as f:
                    lines += [l.rstrip() for l in f if LOG_PROBLEM.search(l)]
            except OSError:
                pass
        log_lines[s.name] = lines

    import pydicom

    versions = {"pacs": pacs.version(), "orthanc": orthanc.version(), "python": platform.python_version(),
                "pydicom": pydicom.__version__}
    report = render(args, R, pacs, orthanc, small, ct, host_info(work), versions, log_lines, time.time() - started)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        f.write(report)
    print(report)
    say(f"written to {args.out}")
    if own_work:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if not (pacs.problems or orthanc.problems) else 2


def on_sigterm(signum, frame):
    raise SystemExit(128 + signum)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, on_sigterm)
    try:
        sys.exit(main())
    except BenchError as e:
        print(f"dicomweb_bench.py: {e}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("dicomweb_bench.py: interrupted", file=sys.stderr)
        sys.exit(130)
