#!/usr/bin/env python3
"""Peer measurement for benches/load/import.sh: how fast Orthanc ingests a folder of DICOM files.

    python3 benches/load/orthanc_import.py FOLDER [--workers N] [--reps R]

Needs Debian's `orthanc` package (/usr/sbin/Orthanc, 1.10.x); installs nothing itself. Python 3
standard library only.

For each repetition the script
  1. refuses to run if 127.0.0.1:18042 (HTTP) or 127.0.0.1:14242 (DICOM) already answers, so a
     server we did not start can never be measured by mistake;
  2. creates a fresh temporary folder (under $TMPDIR, default /tmp) holding Orthanc's config, log,
     storage area and SQLite index;
  3. starts /usr/sbin/Orthanc in its own process group with TCP_NODELAY=1 in its environment
     (Orthanc's DCMTK layer keeps Nagle on without it) and waits at most 30 s for GET /system;
  4. uploads every regular file under FOLDER (recursive, sorted by path) with POST /instances
     (body = the file's bytes, Content-Type: application/dicom) from N threads, each with its own
     keep-alive http.client connection, opened before the clock starts. The threads take the next
     file from one shared list, read it from disk and send it. The time runs from the first
     request to the last response; an HTTP status other than 200, or a failed connection, counts as
     an error;
  5. checks that GET /statistics reports CountInstances == number of files;
  6. stops Orthanc (SIGTERM to its process group, at most 20 s, then SIGKILL) and deletes the temp
     folder, also when something failed (try/finally).

Orthanc's config: loopback only as far as Orthanc 1.10 allows (it has no bind-address option and
listens on 0.0.0.0: "RemoteAccessAllowed": false makes HTTP refuse non-local clients, and
"DicomAlwaysAllowEcho"/"DicomAlwaysAllowStore": false with no modality declared make the DICOM
port refuse every C-ECHO/C-STORE), HTTP 18042, DICOM 14242, "StorageCompression": false, no
plugins, no authentication, "ConcurrentJobs" and all other settings at their defaults.

Stdout: one JSON object
    {"files", "bytes", "reps": [seconds, ...], "median_s", "instances_per_s", "mb_per_s",
     "errors", "complete", "orthanc_version", ...}
("errors" is summed over the repetitions; "complete" is true when every repetition stored every
file). Progress goes to stderr. The exit status is 0 once the JSON is printed, even when "complete"
is false or "errors" > 0: the caller decides. It is 1 when nothing could be measured (Orthanc
missing, port taken, Orthanc did not start, empty folder).

Durability is not the same on both sides. `pacs import` reports success only after the stored
files are made durable (one syncfs per batch) and the SQLite index is committed with
synchronous=FULL. Orthanc 1.10.x (default "SyncStorageArea": true since 1.7.4) calls fdatasync
on every file it writes to its storage area, but its SQLite index runs in WAL mode with
"PRAGMA SYNCHRONOUS=NORMAL": an index commit is not flushed before Orthanc answers (the WAL is
synced only at checkpoints), so after a power failure the last acknowledged instances can be
missing from its index although their files are on disk. (Counted with strace on 300 instances:
300 fdatasync of storage files, 16 of the WAL, 9 of the index.) So, contrary to an older note,
Orthanc does sync each instance's file; on the index the comparison favours Orthanc.

Other differences to keep in mind when reading the ratio: Orthanc receives the files over loopback
HTTP from a Python client that shares the machine's cores with it, while `pacs import` reads them
itself; the corpus is in the page cache in both cases.
"""
import argparse
import http.client
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ORTHANC = "/usr/sbin/Orthanc"
HOST = "127.0.0.1"
HTTP_PORT = 18042
DICOM_PORT = 14242
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 20.0


class BenchError(Exception):
    """A failure that means nothing could be measured; printed as one line."""


def say(*parts):
    print(time.strftime("%H:%M:%S"), *parts, file=sys.stderr, flush=True)


def listening(port):
    """True if something accepts TCP connections on HOST:port."""
    try:
        with socket.create_connection((HOST, port), timeout=0.5):
            return True
    except OSError:
        return False


def cpu_seconds(pid):
    """user+system CPU seconds of this process (pid None) or of process pid, from /proc."""
    with open(f"/proc/{pid or 'self'}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def list_files(folder):
    """Every regular file under folder, recursively, sorted by path."""
    found = []
    for root, dirs, names in os.walk(folder):
        dirs.sort()
        for name in names:
            path = os.path.join(root, name)
            if os.path.isfile(path) and not os.path.islink(path):
                found.append(path)
    found.sort()
    return found


def http_json(method, path, timeout=30.0):
    conn = http.client.HTTPConnection(HOST, HTTP_PORT, timeout=timeout)
    try:
        conn.request(method, path)
        resp = conn.getresponse()
        body = resp.read()
        if resp.status != 200:
            raise BenchError(f"{method} {path}: HTTP {resp.status}")
        return json.loads(body)
    finally:
        conn.close()


def orthanc_config(workdir):
    storage = os.path.join(workdir, "storage")
    return {
        "Name": "pacs-bench-orthanc-import",
        "StorageDirectory": storage,
        "IndexDirectory": storage,
        "StorageCompression": False,
        "Plugins": [],
        "HttpServerEnabled": True,
        "HttpPort": HTTP_PORT,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "SslEnabled": False,
        "DicomServerEnabled": True,
        "DicomPort": DICOM_PORT,
        "DicomAet": "ORTHANC",
        # The DICOM listener binds to all interfaces too; with no modality declared, these make it
        # refuse every association's C-ECHO and C-STORE (C-FIND/GET/MOVE are refused by default).
        "DicomAlwaysAllowEcho": False,
        "DicomAlwaysAllowStore": False,
    }


class Orthanc:
    """One Orthanc process with its own temp folder; stop() is safe to call at any point."""

    def __init__(self):
        self.workdir = None
        self.proc = None
        self.log = None

    leftovers = []

    def start(self):
        for port in (HTTP_PORT, DICOM_PORT):
            if listening(port):
                raise BenchError(f"port {HOST}:{port} is already in use: refusing to benchmark a server "
                                 f"this script did not start")
        self.workdir = tempfile.mkdtemp(prefix="orthanc-import-")
        os.makedirs(os.path.join(self.workdir, "storage"))
        cfg = os.path.join(self.workdir, "orthanc.json")
        with open(cfg, "w") as f:
            json.dump(orthanc_config(self.workdir), f, indent=2)
        env = dict(os.environ, TCP_NODELAY="1")
        self.log = open(os.path.join(self.workdir, "orthanc.log"), "wb")
        self.proc = subprocess.Popen([ORTHANC, cfg], stdin=subprocess.DEVNULL, stdout=self.log,
                                     stderr=subprocess.STDOUT, env=env, start_new_session=True)
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if self.proc.poll() is not None:
                raise BenchError(f"Orthanc exited with status {self.proc.returncode} while starting: "
                                 f"{self.log_tail()}")
            try:
                return http_json("GET", "/system", timeout=2.0)
            except (OSError, http.client.HTTPException, ValueError, BenchError):
                pass
            if time.monotonic() > deadline:
                raise BenchError(f"Orthanc did not answer GET /system within {START_TIMEOUT_S:.0f} s: "
                                 f"{self.log_tail()}")
            time.sleep(0.1)

    def log_tail(self):
        try:
            with open(os.path.join(self.workdir, "orthanc.log"), "rb") as f:
                lines = f.read().decode("utf-8", "replace").strip().splitlines()
            return lines[-1] if lines else "(empty log)"
        except OSError:
            return "(no log)"

    def stop(self):
        if self.proc is not None:
            pgid = self.proc.pid  # start_new_session: the group is ours alone
            try:
                os.killpg(pgid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                say(f"Orthanc did not stop within {STOP_TIMEOUT_S:.0f} s, sending SIGKILL")
                try:
                    os.killpg(pgid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait()
            self.proc = None
        if self.log is not None:
            self.log.close()
            self.log = None
        if self.workdir is not None:
            # Removed at the very end, not now: ext4 searches long for a free inode next to
            # thousands of just-deleted ones, which would slow the next repetition's files.
            Orthanc.leftovers.append(self.workdir)
            self.workdir = None


def upload(files, workers):
    """POST every file from `workers` threads. Returns (seconds, errors, first error message)."""
    lock = threading.Lock()
    state = {"next": 0, "errors": 0, "first_error": None}
    firsts, lasts = [], []
    ready = threading.Barrier(workers + 1)

    def take():
        with lock:
            i = state["next"]
            state["next"] = i + 1
        return files[i] if i < len(files) else None

    def fail(msg):
        with lock:
            state["errors"] += 1
            if state["first_error"] is None:
                state["first_error"] = msg

    def work():
        conn = http.client.HTTPConnection(HOST, HTTP_PORT, timeout=300)
        first = last = None
        try:
            try:
                conn.connect()  # http.client sets TCP_NODELAY on its sockets
            finally:
                ready.wait()
            while True:
                path = take()
                if path is None:
                    break
                with open(path, "rb") as f:
                    body = f.read()
                if first is None:
                    first = time.perf_counter()
                try:
                    conn.request("POST", "/instances", body=body,
                                  headers={"Content-Type": "application/dicom"})
                    resp = conn.getresponse()
                    answer = resp.read()
                    if resp.status != 200:
                        fail(f"{path}: HTTP {resp.status} {answer[:200]!r}")
                except (OSError, http.client.HTTPException) as e:
                    fail(f"{path}: {type(e).__name__}: {e}")
                    conn.close()  # http.client reconnects on the next request
                last = time.perf_counter()
        except BaseException as e:  # make sure the caller learns about a crashed worker
            fail(f"worker crashed: {type(e).__name__}: {e}")
        finally:
            conn.close()
            with lock:
                if first is not None:
                    firsts.append(first)
                    lasts.append(last)

    threads = [threading.Thread(target=work, daemon=True) for _ in range(workers)]
    for t in threads:
        t.start()
    ready.wait()
    for t in threads:
        t.join()
    if state["next"] < len(files):
        fail(f"{len(files) - state['next']} files were never sent")
    seconds = (max(lasts) - min(firsts)) if firsts else float("nan")
    return seconds, state["errors"], state["first_error"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folder")
    ap.add_argument("--workers", type=int, default=4, help="upload threads, one connection each (4)")
    ap.add_argument("--reps", type=int, default=3, help="repetitions, each into a fresh Orthanc (3)")
    args = ap.parse_args()
    if args.workers < 1 or args.reps < 1:
        raise BenchError("--workers and --reps must be at least 1")
    if not os.access(ORTHANC, os.X_OK):
        raise BenchError(f"{ORTHANC} not found: install Debian's orthanc package (apt-get install -y orthanc)")
    if not os.path.isdir(args.folder):
        raise BenchError(f"{args.folder} is not a folder")
    files = list_files(args.folder)
    if not files:
        raise BenchError(f"no files under {args.folder}")
    total = sum(os.path.getsize(p) for p in files)
    say(f"{len(files)} files, {total / 1e6:.1f} MB under {args.folder}; {args.workers} workers, {args.reps} reps")

    reps, counts = [], []
    errors = 0
    version = None
    for rep in range(1, args.reps + 1):
        server = Orthanc()
        try:
            system = server.start()
            version = system.get("Version")
            client0, server0 = cpu_seconds(None), cpu_seconds(server.proc.pid)
            seconds, errs, first_error = upload(files, args.workers)
            client_cpu = cpu_seconds(None) - client0
            server_cpu = cpu_seconds(server.proc.pid) - server0
            stats = http_json("GET", "/statistics", timeout=120.0)
            stored = int(stats.get("CountInstances", -1))
        finally:
            server.stop()
        reps.append(seconds)
        counts.append(stored)
        errors += errs
        say(f"rep {rep}/{args.reps}: {seconds:.3f} s, {len(files) / seconds:.0f} inst/s, "
            f"{total / seconds / 1e6:.1f} MB/s, {errs} errors, {stored}/{len(files)} stored; "
            f"CPU s during upload: client {client_cpu:.2f}, Orthanc {server_cpu:.2f}"
            + (f"; first error: {first_error}" if first_error else ""))

    for workdir in Orthanc.leftovers:
        shutil.rmtree(workdir, ignore_errors=True)
    median = statistics.median(reps)
    complete = all(c == len(files) for c in counts)
    if not complete or errors:
        say(f"WARNING: incomplete ingest or errors (stored per rep {counts}, {errors} errors)")
    print(json.dumps({
        "files": len(files),
        "bytes": total,
        "reps": [round(s, 4) for s in reps],
        "median_s": round(median, 4),
        "instances_per_s": len(files) / median,
        "mb_per_s": total / median / 1e6,
        "errors": errors,
        "complete": complete,
        "orthanc_version": version,
        "workers": args.workers,
        "stored_per_rep": counts,
    }))


def on_sigterm(signum, frame):
    raise SystemExit(128 + signum)  # unwinds through the finally blocks, which stop Orthanc


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, on_sigterm)
    try:
        main()
    except BenchError as e:
        print(f"orthanc_import.py: {e}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("orthanc_import.py: interrupted", file=sys.stderr)
        sys.exit(130)
