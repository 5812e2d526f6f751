"""What the load benchmarks of benches/load/ share: logging, medians and number formatting, and
the processes they start (each server in its own process group, its pid kept in a folder so that
the calling shell's EXIT trap can stop it if the driver dies).
"""

import os
import signal
import socket
import statistics
import struct
import subprocess
import sys
import time

HOST = "127.0.0.1"
STOP_TIMEOUT_S = 20
STRACE = "/usr/bin/strace"
TCPDUMP = "/usr/bin/tcpdump"
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


class LoopbackCapture:
    """tcpdump on the loopback interface for one TCP port, headers only, while a `with` block
    runs; `exchanges()` then gives the server's own time of each request/answer exchange."""

    def __init__(self, work, port, name):
        self.port = port
        self.path = os.path.join(work, f"{name}.pcap")
        self.proc = None

    def __enter__(self):
        self.proc = Proc("tcpdump", [TCPDUMP, "-i", "lo", "-s", "256", "-B", "16384", "-U", "-w", self.path,
                                     f"tcp port {self.port}"], self.path + ".log")
        # tcpdump says "listening on lo" once it captures.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with open(self.path + ".log", "rb") as f:
                if b"listening on" in f.read():
                    return self
            if not self.proc.alive():
                break
            time.sleep(0.05)
        self.proc.stop()
        raise BenchError("tcpdump did not start capturing")

    def __exit__(self, *exc):
        time.sleep(1.0)  # tcpdump may lag behind on a busy machine: let it write the last packets
        self.proc.stop()
        with open(self.path + ".log", "rb") as f:
            log = f.read().decode(errors="replace")
        if "\n0 packets dropped by kernel" not in log:
            say(f"tcpdump: {' / '.join(log.strip().splitlines()[-3:])}")
        return False

    def packets(self):
        """(time in s, from the server, the captured start of the TCP payload) of every packet
        carrying data."""
        with open(self.path, "rb") as f:
            head = f.read(24)
            nano = struct.unpack("<I", head[:4])[0] == 0xA1B23C4D
            link = struct.unpack("<I", head[20:24])[0]
            skip = {1: 14, 113: 16, 276: 20}.get(link, 14)
            while True:
                h = f.read(16)
                if len(h) < 16:
                    return
                sec, frac, incl, _ = struct.unpack("<IIII", h)
                ip = f.read(incl)[skip:]
                if len(ip) < 20 or ip[0] >> 4 != 4:
                    continue
                ihl = (ip[0] & 15) * 4
                total = struct.unpack(">H", ip[2:4])[0]
                tcp = ip[ihl:]
                sport = struct.unpack(">H", tcp[:2])[0]
                start = ihl + (tcp[12] >> 4) * 4
                if total > start:
                    yield sec + frac * (1e-9 if nano else 1e-6), sport == self.port, ip[start:]

    def exchanges(self):
        """For each exchange (the client sends, then the server answers until the client sends
        again): (the DIMSE Command Field of the client's request, or None, and the time from the
        client's last data packet to the server's last one, in ms). That time is the server's
        own latency, without the client's encoding and decoding. The Command Field is found in
        the command set's (0000,0100) element, Implicit VR Little Endian, within the capture."""
        out, command, last_client, last_server, answering = [], None, None, None, False
        for t, from_server, payload in self.packets():
            if from_server:
                last_server, answering = t, True
                continue
            if answering and last_client is not None:
                out.append((command, (last_server - last_client) * 1e3))
                command = None
            if command is None:
                at = payload.find(b"\x00\x00\x00\x01\x02\x00\x00\x00")
                if at >= 0 and len(payload) >= at + 10:
                    command = struct.unpack("<H", payload[at + 8:at + 10])[0]
            last_client, answering = t, False
        if answering and last_client is not None:
            out.append((command, (last_server - last_client) * 1e3))
        return out
