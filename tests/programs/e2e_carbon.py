"""End to end with a real downstream: carbon-cache (Debian's graphite-carbon) behind hopperd.

Tens of thousands of uniquely named graphite lines go through real sockets into hopperd;
carbon-cache is stopped for several seconds mid-run and started again; at the end every
line is looked up in carbon's own storage (whisper files, read with python3-whisper):
each metric must exist and hold exactly the value that was sent for it.

Prints the figures: lines sent, lines found in whisper, how long carbon was down, the
peak disk use of hopperd's queue, lines replayed after reconnecting."""

import os
import shutil
import signal
import socket
import subprocess
import threading
import time

from e2e_util import (Hopperd, args, check, free_port, start, temp_dir, tree_bytes, wait_for)

try:
    import whisper
except ImportError:
    raise SystemExit("python3-whisper is missing: run scripts/setup (this test needs Debian's python3 and it)")

CARBON = shutil.which("carbon-cache") or "/usr/bin/carbon-cache"
if not os.path.exists(CARBON):
    raise SystemExit("carbon-cache is missing: run scripts/setup (package graphite-carbon)")

a = args()
work = temp_dir("hopper-carbon-")
storage = os.path.join(work, "storage")
conf_dir = os.path.join(work, "conf")
os.makedirs(os.path.join(storage, "whisper"))
os.makedirs(conf_dir)
os.makedirs(os.path.join(work, "log"))

N = 30000           # lines, each a metric of its own
CLIENTS = 4
FEED_SECONDS = 14   # the feed is paced over this long
DOWN_AT = 4.0       # carbon is stopped this far into the feed ...
DOWN_FOR = 6.0      # ... and started again this long after it has exited


class Carbon:
    """carbon-cache in the foreground on loopback, with a config of its own."""

    def __init__(self):
        self.proc = None
        self.pick_ports()

    def pick_ports(self):
        self.line_port, self.pickle_port, self.query_port = free_port(), free_port(), free_port()
        with open(os.path.join(conf_dir, "carbon.conf"), "w") as f:
            f.write(f"""[cache]
STORAGE_DIR = {storage}/
LOCAL_DATA_DIR = {storage}/whisper/
WHITELISTS_DIR = {storage}/lists/
CONF_DIR = {conf_dir}/
LOG_DIR = {work}/log/
PID_DIR = {work}/
DATABASE = whisper
USER =
MAX_CACHE_SIZE = inf
MAX_UPDATES_PER_SECOND = inf
MAX_CREATES_PER_MINUTE = inf
LINE_RECEIVER_INTERFACE = 127.0.0.1
LINE_RECEIVER_PORT = {self.line_port}
ENABLE_UDP_LISTENER = False
PICKLE_RECEIVER_INTERFACE = 127.0.0.1
PICKLE_RECEIVER_PORT = {self.pickle_port}
CACHE_QUERY_INTERFACE = 127.0.0.1
CACHE_QUERY_PORT = {self.query_port}
USE_FLOW_CONTROL = True
WHISPER_AUTOFLUSH = False
WHISPER_FALLOCATE_CREATE = False
LOG_UPDATES = False
LOG_CREATES = False
LOG_LISTENER_CONNECTIONS = True
""")
        with open(os.path.join(conf_dir, "storage-schemas.conf"), "w") as f:
            f.write("[everything]\npattern = .*\nretentions = 60s:30m\n")

    def start(self):
        log = open(os.path.join(work, "carbon-console.log"), "ab")
        self.proc = start([CARBON, "--config=" + os.path.join(conf_dir, "carbon.conf"),
                           "--pidfile=" + os.path.join(work, "carbon.pid"), "--nodaemon", "start"],
                          stdout=log, stderr=subprocess.STDOUT)
        log.close()

        def listening():
            if self.proc.poll() is not None:
                raise AssertionError("carbon-cache exited with %d; see %s" % (self.proc.returncode, work))
            try:
                socket.create_connection(("127.0.0.1", self.line_port), timeout=1).close()
                return True
            except OSError:
                return False
        wait_for(listening, 60, "carbon-cache listening", interval=0.2)

    def stop(self):
        """SIGTERM: carbon stops listening, writes its cache to whisper, exits."""
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=120)


carbon = Carbon()
carbon.start()
qdir = os.path.join(work, "queue")
hd = Hopperd(a.hopperd, work, f"""
[input]
tcp = "127.0.0.1:0"
[metrics]
listen = "127.0.0.1:0"
[[output]]
name = "carbon"
address = "127.0.0.1:{carbon.line_port}"
queue_dir = "{qdir}"
max_memory_bytes = "256KiB"
max_disk_bytes = "256MiB"
segment_bytes = "1MiB"
page_bytes = "32KiB"
backoff_initial_ms = 50
backoff_max_ms = 1000
""", "hopperd").start()

# ---- the feed: 4 clients, paced, every line a metric of its own -----------------------
t_start = int(time.time())
values = {}  # metric -> value sent
lines_by_client = [[] for _ in range(CLIENTS)]
for i in range(N):
    name = "hopper.e2e.c%d.m%05d" % (i % CLIENTS, i)
    values[name] = i
    lines_by_client[i % CLIENTS].append("%s %d %d" % (name, i, t_start))
errors = []


def feed(lines):
    try:
        s = socket.create_connection(hd.tcp(), timeout=60)
        per_chunk = 100
        pause = FEED_SECONDS / (len(lines) / per_chunk)
        for k in range(0, len(lines), per_chunk):
            s.sendall(("\n".join(lines[k:k + per_chunk]) + "\n").encode())
            time.sleep(pause)
        s.shutdown(socket.SHUT_WR)
        s.recv(1)
        s.close()
    except OSError as e:
        errors.append(e)


peak = {"metric": 0, "du": 0}
sampling = True


def sample():
    while sampling:
        try:
            peak["metric"] = max(peak["metric"], hd.metric('hopperd_output_queue_disk_bytes{output="carbon"}'))
        except OSError:
            pass
        peak["du"] = max(peak["du"], tree_bytes(qdir))
        time.sleep(0.1)


sampler = threading.Thread(target=sample, daemon=True)
sampler.start()
t0 = time.monotonic()
feeders = [threading.Thread(target=feed, args=(lines,)) for lines in lines_by_client]
for t in feeders:
    t.start()

time.sleep(DOWN_AT)
t_down = time.monotonic()
carbon.stop()
print("carbon-cache stopped %.1f s into the feed (took %.1f s to write its cache and exit)"
      % (t_down - t0, time.monotonic() - t_down), flush=True)
time.sleep(DOWN_FOR)
carbon.start()
down_for = time.monotonic() - t_down
print("carbon-cache back after %.1f s" % down_for, flush=True)

for t in feeders:
    t.join(120)
check(not errors and not any(t.is_alive() for t in feeders), "%d lines sent by %d clients" % (N, CLIENTS))


def drained():
    m = hd.metrics()
    return (m['hopperd_lines_received_total{transport="tcp"}'] == N
            and m['hopperd_output_delivered_total{output="carbon"}'] >= N
            and m['hopperd_output_queue_disk_items{output="carbon"}'] == 0
            and m['hopperd_output_queue_memory_items{output="carbon"}'] == 0)


wait_for(drained, 90, "hopperd to deliver its backlog", interval=0.2)
sampling = False
sampler.join()
m = hd.metrics()
check(m['hopperd_output_spilled_total{output="carbon"}'] > 0,
      "the queue spilled to disk while carbon was down (%d lines)" % m['hopperd_output_spilled_total{output="carbon"}'])
check(m['hopperd_output_reconnects_total{output="carbon"}'] >= 1, "hopperd reconnected to the restarted carbon")
rc, took = hd.stop()
check(rc == 0, "hopperd exits 0 (%.2f s)" % took)
# hopperd has written everything to carbon's socket; carbon must also have read it before
# it is stopped (a stopped carbon drops what its kernel buffers still hold). It creates
# a whisper file per metric as it goes: wait for the count to stop growing.
root = os.path.join(storage, "whisper")


def whisper_files():
    return sum(len([f for f in files if f.endswith(".wsp")]) for _, _, files in os.walk(root))


last = {"n": -1, "since": time.monotonic()}


def settled():
    n = whisper_files()
    if n != last["n"]:
        last["n"], last["since"] = n, time.monotonic()
    return n >= N or time.monotonic() - last["since"] > 10


wait_for(settled, 180, "carbon-cache to create the whisper files", interval=0.5)
carbon.stop()  # writes what it still caches to whisper

# ---- proof from carbon's own storage ------------------------------------------------------
now = int(time.time())
missing, wrong = [], []
for name, value in values.items():
    path = os.path.join(root, *name.split(".")) + ".wsp"
    if not os.path.exists(path):
        missing.append(name)
        continue
    _, points = whisper.fetch(path, now - 1700, now)
    got = [v for v in points if v is not None]
    if got != [float(value)]:
        wrong.append((name, got))
check(not missing, "every metric has a whisper file (%d missing%s)" % (len(missing), ", e.g. " + missing[0] if missing else ""))
check(not wrong, "every whisper file holds exactly the value sent (%d wrong%s)"
      % (len(wrong), ", e.g. %s" % (wrong[0],) if wrong else ""))
print("e2e carbon: lines sent %d, found in whisper %d, carbon down %.1f s, peak queue disk %d bytes "
      "(metric) / %d bytes (du), spilled %d, replayed %d, reconnects %d"
      % (N, N - len(missing) - len(wrong), down_for, peak["metric"], peak["du"],
         m['hopperd_output_spilled_total{output="carbon"}'], m['hopperd_output_replayed_lines_total{output="carbon"}'],
         m['hopperd_output_reconnects_total{output="carbon"}']), flush=True)
print("1 passed, 0 failed")
