"""What the load benchmarks of benches/load/ share: logging, medians and number formatting, and
the processes they start (each server in its own process group, its pid kept in a folder so that
the calling shell's EXIT trap can stop it if the driver dies).
"""

import os
import signal
import socket
import statistics
import subprocess
import sys
import time

HOST = "127.0.0.1"
STOP_TIMEOUT_S = 20
STRACE = "/usr/bin/strace"
SYNC_CALLS = ("fsync", "fdatasync", "syncfs", "sync", "sync_file_range", "msync")


class BenchError(Exception):
    pass


def say(*parts):
    print(time.strftime("%H:%M:%S"), *parts, file=sys.stderr, flush=True)


def med(xs):
    return statistics.median(xs) if xs else float("nan")


def fmt(x, digits=3):
    if x is None or x != x:
        return "n/a"
    if abs(x) >= 100:
        return f"{x:,.0f}"
    return f"{x:.{digits}g}"


def listening(port):
    try:
        with socket.create_connection((HOST, port), timeout=0.5):
            return True
    except OSError:
        return False


def proc_status(pid, key):
    """A kB field of /proc/<pid>/status (VmHWM, VmRSS), or None."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def cpu_seconds(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except OSError:
        return float("nan")


class Proc:
    """A process in its own process group; its pid is kept in PIDDIR while it runs so that the
    calling shell's EXIT trap can stop it if this script dies."""

    piddir = None

    def __init__(self, name, argv, log_path, env=None):
        self.name = name
        self.log_path = log_path
        self.log = open(log_path, "ab")
        self.p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT,
                                  env=env, start_new_session=True)
        self.pidfile = None
        if Proc.piddir:
            self.pidfile = os.path.join(Proc.piddir, str(self.p.pid))
            with open(self.pidfile, "w") as f:
                f.write(name + "\n")

    @property
    def pid(self):
        return self.p.pid

    def alive(self):
        return self.p.poll() is None

    def stop(self):
        if self.p.poll() is None:
            try:
                os.killpg(self.p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.p.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                say(f"{self.name} did not stop within {STOP_TIMEOUT_S} s: SIGKILL")
                try:
                    os.killpg(self.p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.p.wait()
        self.log.close()
        if self.pidfile:
            try:
                os.unlink(self.pidfile)
            except OSError:
                pass
        return self.p.returncode


def traced_sync_calls(server, store, n, what):
    """fsync-family system calls the started `server` makes while `store()` stores n instances
    (strace attached after start-up; `store()` returns a list of problems), or None without
    strace. The server is stopped afterwards; a short or failed store is noted as a problem."""
    out = os.path.join(server.work, f"{server.name}-strace.txt")
    tracer = None
    try:
        tracer = Proc("strace", [STRACE, "-f", "-qq", "-c", "-o", out, "-e", "trace=" + ",".join(SYNC_CALLS),
                                 "-p", str(server.proc.pid)], os.path.join(server.work, "strace.log"))
        time.sleep(1.5)  # attaching to every thread
        problems = store()
        time.sleep(0.5)
        tracer.stop()
        tracer = None
        instances, _ = server.count()
    finally:
        if tracer is not None:
            tracer.stop()
        server.stop("strace")
    calls = {}
    try:
        with open(out) as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 5 and parts[-1] in SYNC_CALLS and parts[3].isdigit():
                    calls[parts[-1]] = int(parts[3])
    except OSError:
        return None
    if problems or instances != n:
        server.problems.append(f"strace run: {instances}/{n} stored, {problems[:1]}")
    say(f"  {server.name:8} sync calls while storing {n} instances{what}: {calls}")
    return {"n": n, "calls": calls}
