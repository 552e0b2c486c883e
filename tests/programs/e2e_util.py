"""Shared parts of the end-to-end tests of hopperd and the hopper tool.

Everything runs on 127.0.0.1. Listeners bind port 0 where the program allows it (hopperd
reports the ports it bound in its --ready-file); where a fixed port must be known in
advance (a downstream hopperd connects to), a free one is picked by binding port 0 and
the start is retried if someone else took it meanwhile. Every process a test starts is
registered here and killed when the test exits, whatever happens.
"""

import argparse
import atexit
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

_processes = []
_temp_dirs = []


def _cleanup():
    for p in _processes:
        if p.poll() is None:
            p.kill()
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
    for d in _temp_dirs:
        shutil.rmtree(d, ignore_errors=True)


atexit.register(_cleanup)

_daemons = []


def _report_failure(kind, value, tb):
    # Before the temporary directories go: what every process logged, for the CI log.
    logs = sorted({d.log_path for d in _daemons} |
                  {os.path.join(r, f) for t in _temp_dirs for r, _, fs in os.walk(t) for f in fs if f.endswith(".log")})
    for path in logs:
        try:
            with open(path, errors="replace") as f:
                lines = f.read().splitlines()
        except OSError:
            continue
        if lines:
            print("---- last lines of %s ----" % path, file=sys.stderr)
            print("\n".join(lines[-40:]), file=sys.stderr)
    for d in _daemons:
        if d.proc is None or d.proc.poll() is not None or not d.ready:
            continue
        try:
            m = d.metrics()
            print("---- metrics of %s (pid %d), non-zero ----" % (d.config_path, d.proc.pid), file=sys.stderr)
            print("\n".join("%s %g" % kv for kv in sorted(m.items()) if kv[1]), file=sys.stderr)
        except OSError:
            pass
        if os.environ.get("HOPPER_E2E_GDB") and shutil.which("gdb"):
            r = subprocess.run(["gdb", "-p", str(d.proc.pid), "-batch", "-ex", "thread apply all bt 30"],
                               capture_output=True, text=True)
            print(r.stdout[-12000:], file=sys.stderr)
    sys.__excepthook__(kind, value, tb)


sys.excepthook = _report_failure
signal.signal(signal.SIGTERM, lambda *_: sys.exit(3))  # ctest timeout: still clean up


def args():
    p = argparse.ArgumentParser()
    p.add_argument("--hopperd", required=True)
    p.add_argument("--hopper", required=True)
    return p.parse_args()


def temp_dir(prefix="hopper-e2e-"):
    d = tempfile.mkdtemp(prefix=prefix)
    _temp_dirs.append(d)
    return d


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(cmd, **kw):
    p = subprocess.Popen(cmd, **kw)
    _processes.append(p)
    return p


def check(cond, what):
    if not cond:
        raise AssertionError(what)
    print("ok:", what, flush=True)


def wait_for(pred, timeout, what, interval=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(interval)
    raise AssertionError("timed out after %.0f s waiting for %s" % (timeout, what))


def addr(text):
    host, port = text.rsplit(":", 1)
    return host.strip("[]"), int(port)


class Hopperd:
    """One hopperd process with its config file, log and ready file."""

    def __init__(self, binary, workdir, config, name="hopperd"):
        self.binary = binary
        self.config_path = os.path.join(workdir, name + ".toml")
        self.log_path = os.path.join(workdir, name + ".log")
        self.ready_path = os.path.join(workdir, name + ".ready")
        with open(self.config_path, "w") as f:
            f.write(config)
        self.proc = None
        self.ready = None
        _daemons.append(self)

    def start(self, expect_ready=True, **popen):
        """popen: more for subprocess.Popen (env, preexec_fn for resource limits...)."""
        if os.path.exists(self.ready_path):
            os.unlink(self.ready_path)
        log = open(self.log_path, "ab")
        self.proc = start([self.binary, "--config", self.config_path, "--ready-file", self.ready_path],
                          stdout=log, stderr=subprocess.STDOUT, **popen)
        log.close()
        if expect_ready:
            wait_for(lambda: os.path.exists(self.ready_path) or self.proc.poll() is not None, 20, "hopperd ready")
            if self.proc.poll() is not None:
                raise AssertionError("hopperd exited with %d:\n%s" % (self.proc.returncode, self.log()))
            with open(self.ready_path) as f:
                self.ready = json.load(f)
        return self

    def tcp(self, i=0):
        return addr(self.ready["tcp"][i])

    def tls(self, i=0):
        return addr(self.ready["tls"][i])

    def reread_ready(self):
        """After a reload: the ready file is written again with what is bound now."""
        with open(self.ready_path) as f:
            self.ready = json.load(f)
        return self.ready

    def write_config(self, text):
        with open(self.config_path, "w") as f:
            f.write(text)

    def healthz(self, path="/healthz"):
        """(status, body) of GET path on the metrics listener."""
        try:
            with urllib.request.urlopen("http://%s%s" % (self.ready["metrics"], path), timeout=10) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def udp(self, i=0):
        return addr(self.ready["udp"][i])

    def metrics(self):
        """The /metrics samples as {"name{labels}": value}."""
        url = "http://%s/metrics" % self.ready["metrics"]
        with urllib.request.urlopen(url, timeout=10) as r:
            text = r.read().decode()
        out = {}
        for line in text.splitlines():
            if line.startswith("#") or not line.strip():
                continue
            key, value = line.rsplit(" ", 1)
            out[key] = float(value)
        return out

    def metric(self, key):
        return self.metrics().get(key, 0)

    def stop(self, sig=signal.SIGTERM, timeout=30):
        """Signals the process and waits; returns (exit status, seconds it took)."""
        t0 = time.monotonic()
        self.proc.send_signal(sig)
        rc = self.proc.wait(timeout=timeout)
        return rc, time.monotonic() - t0

    def log(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()


class Sink:
    """A downstream on 127.0.0.1 that records every line it reads, per connection.

    mode "normal" reads until the peer closes; mode "slam" accepts and at once closes
    (a broken downstream); mode "mute" accepts and never reads (a hung downstream). stop() closes the listener and every connection, as a
    downstream that goes away does; start() listens again on the same port."""

    def __init__(self, port=None, mode="normal", keep=True):
        """keep=False: only count the lines (self.count), for runs of millions."""
        self.port = port
        self.mode = mode
        self.keep = keep
        self.count = 0
        self.lock = threading.Lock()
        self.lines = []         # every line read, in arrival order
        self.seen = set()       # the distinct ones (kept as they come: cheap to poll)
        self.connections = 0
        self.listener = None
        self.threads = []
        self.conns = []
        self.running = False
        self.reservation = None

    def reserve(self):
        """Takes a port without listening: connections are refused, as when the
        downstream is down, and no other listener can take the port meanwhile."""
        for attempt in range(30):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            # The listener's closed connections may linger on the port (FIN_WAIT2 until
            # hopperd notices); they have SO_REUSEPORT too, so this bind may share it.
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            try:
                s.bind(("127.0.0.1", self.port or 0))
            except OSError:
                # Connections of the listener just closed may hold the port a moment.
                s.close()
                time.sleep(0.1)
                continue
            self.port = s.getsockname()[1]
            self.reservation = s
            return self
        if not self.port:
            raise AssertionError("no port to reserve")
        return self  # left unreserved: refused all the same, unless someone takes it

    def start(self):
        if self.reservation:
            self.reservation.close()
            self.reservation = None
        for attempt in range(50):
            port = self.port or free_port()
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                s.close()
                if self.port:
                    time.sleep(0.1)  # the old listener's port, not yet released
                continue
            s.listen(64)
            self.port = port
            self.listener = s
            break
        else:
            raise AssertionError("no port for the sink")
        self.running = True
        t = threading.Thread(target=self._accept, daemon=True)
        t.start()
        self.threads.append(t)
        return self

    def _accept(self):
        s = self.listener
        while self.running:
            try:
                c, _ = s.accept()
            except OSError:
                return
            if not self.running:  # accepted as stop() ran: the downstream is gone
                c.close()
                return
            with self.lock:
                self.connections += 1
            if self.mode == "slam":
                c.close()
                continue
            if self.mode == "mute":  # keeps the connection, never reads: writes block
                with self.lock:
                    self.conns.append(c)
                continue
            with self.lock:
                self.conns.append(c)
            t = threading.Thread(target=self._read, args=(c,), daemon=True)
            t.start()

    def _read(self, c):
        rest = b""
        while True:
            try:
                d = c.recv(1 << 16)
            except OSError:
                d = b""
            if not d:
                break
            if not self.keep:
                with self.lock:
                    self.count += d.count(b"\n")
                continue
            rest += d
            *done, rest = rest.split(b"\n")
            if done:
                decoded = [x.decode() for x in done]
                with self.lock:
                    self.lines.extend(decoded)
                    self.seen.update(decoded)
        try:
            c.close()
        except OSError:
            pass

    def stop(self, keep_port=True):
        """The downstream goes away; by default its port stays reserved (refusing)."""
        self.running = False
        if self.listener:
            # close() alone would not wake the thread blocked in accept(), and the kernel
            # would go on accepting for it; shutdown() stops the listener at once.
            try:
                self.listener.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self.listener.close()
            self.listener = None
        for t in self.threads:
            t.join(5)
        self.threads = []
        # The connections go first: reserving the port may wait for it (up to 3 s), and a
        # downstream that is "down" must not go on reading meanwhile.
        with self.lock:
            conns, self.conns = self.conns, []
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            c.close()
        if keep_port:
            self.reserve()

    def snapshot(self):
        with self.lock:
            return list(self.lines)

    def distinct(self):
        with self.lock:
            return len(self.seen)

    def has_all(self, lines):
        with self.lock:
            return all(l in self.seen for l in lines)


class Background(threading.Thread):
    """Runs fn(*args) in a thread and keeps any exception, so a failing client cannot
    look like a finished one."""

    def __init__(self, fn, *fn_args):
        super().__init__(daemon=True)
        self.fn, self.fn_args, self.error = fn, fn_args, None
        self.start()

    def run(self):
        try:
            self.fn(*self.fn_args)
        except BaseException as e:  # noqa: BLE001 - reported by finished()
            self.error = e

    def finished(self, timeout):
        """Waits; True when it ended without an exception (raises the exception)."""
        self.join(timeout)
        if self.error is not None:
            raise AssertionError("background %s failed: %r" % (self.fn.__name__, self.error))
        return not self.is_alive()


def first_occurrences(lines):
    seen = set()
    out = []
    for l in lines:
        if l not in seen:
            seen.add(l)
            out.append(l)
    return out


def one_output_config(sink_port, queue_dir, input_extra=""):
    """hopperd with a TCP listener (port 0), metrics, and one output "sink"."""
    return """[input]
tcp = "127.0.0.1:0"
%s
[metrics]
listen = "127.0.0.1:0"
[[output]]
name = "sink"
address = "127.0.0.1:%d"
queue_dir = "%s"
""" % (input_extra, sink_port, queue_dir)


def send_tcp(address, lines, chunk=1000):
    """Sends lines over one connection and closes it cleanly."""
    # No timeout: under back-pressure hopperd may not read for as long as its queue is
    # full; the test's own timeout bounds the wait.
    s = socket.create_connection(address)
    for i in range(0, len(lines), chunk):
        s.sendall(("\n".join(lines[i:i + chunk]) + "\n").encode())
    s.shutdown(socket.SHUT_WR)
    s.recv(1)  # hopperd never answers: returns b"" once it has read everything and closed
    s.close()


def tree_bytes(path):
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            try:
                total += os.path.getsize(os.path.join(root, f))
            except OSError:
                pass
    return total
