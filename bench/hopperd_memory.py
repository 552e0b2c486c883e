#!/usr/bin/env python3
"""hopperd's resident memory against its budget (issue 15: peak RSS <= 1.1 x the sum of the
outputs' max_memory_bytes + 32 MiB), in three phases, one TCP output:

  steady   clients send --rate lines/s in all (default 200,000), the downstream reads
  outage   the downstream is away, clients send as fast as they can: the queue fills its
           memory budget, then spills
  drain    the downstream is back: the backlog drains; RSS a few seconds after it is empty

RSS is sampled every 20 ms from /proc/PID/status (VmRSS); the process's own peak (VmHWM)
is printed too. Measures, asserts nothing (exit 0 unless hopperd fails).

  bench/hopperd_memory.py --hopperd build/release/hopperd [--memory 64MiB] [--seconds 10]
"""

import argparse
import os
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "programs"))
from e2e_util import Hopperd, Sink, temp_dir, wait_for  # noqa: E402

p = argparse.ArgumentParser()
p.add_argument("--hopperd", required=True)
p.add_argument("--memory", default="64MiB")
p.add_argument("--seconds", type=float, default=10)
p.add_argument("--clients", type=int, default=4)
p.add_argument("--line-bytes", type=int, default=60)
p.add_argument("--rate", type=float, default=200000, help="lines/s in all during the steady phase")
a = p.parse_args()
units = {"KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30}
budget = int(a.memory[:-3]) * units[a.memory[-3:]]
goal = 1.1 * budget + (32 << 20)


def status(pid, key):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    return 0


class Sampler(threading.Thread):
    def __init__(self, pid):
        super().__init__(daemon=True)
        self.pid, self.peak, self.last, self.running = pid, 0, 0, True
        self.start()

    def run(self):
        while self.running:
            try:
                self.last = status(self.pid, "VmRSS")
            except OSError:
                return
            self.peak = max(self.peak, self.last)
            time.sleep(0.02)

    def phase(self):
        peak, self.peak = self.peak, self.last
        return peak


work = temp_dir("hopperd-memory-")
sink = Sink(keep=False).start()  # counts lines, keeps none: the test's memory is not hopperd's
hd = Hopperd(a.hopperd, work, """[input]
tcp = "127.0.0.1:0"
max_line_bytes = 4096
[metrics]
listen = "127.0.0.1:0"
[log]
level = "warn"
[[output]]
name = "out"
address = "127.0.0.1:%d"
queue_dir = "%s/q"
max_memory_bytes = "%s"
max_disk_bytes = "8GiB"
backoff_max_ms = 200
""" % (sink.port, work, a.memory))
hd.start()
sampler = Sampler(hd.proc.pid)
base = status(hd.proc.pid, "VmRSS")
pad = "x" * max(0, a.line_bytes - 30)
sent = [0] * a.clients


def client(i, until, rate):
    s = socket.create_connection(hd.tcp())
    n = 0
    t0 = time.monotonic()
    while time.monotonic() < until:
        if rate and n > rate * (time.monotonic() - t0):
            time.sleep(0.001)
            continue
        chunk = "".join("mem.%d.%09d %s 1700000000\n" % (i, n + k, pad) for k in range(1000))
        s.sendall(chunk.encode())
        n += 1000
    s.close()
    sent[i] += n


def load(seconds, rate=0):
    until = time.monotonic() + seconds
    ts = [threading.Thread(target=client, args=(i, until, rate / a.clients)) for i in range(a.clients)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()


def mib(n):
    return "%.1f MiB" % (n / (1 << 20))


def queue():
    m = hd.metrics()
    return (m.get('hopperd_output_queue_memory_bytes{output="out"}', 0),
            m.get('hopperd_output_queue_memory_items{output="out"}', 0),
            m.get('hopperd_output_queue_disk_items{output="out"}', 0))


rows = []
sampler.phase()
load(a.seconds, a.rate)
rows.append(("steady", sampler.phase(), queue()))

sink.stop()
load(a.seconds)
time.sleep(1)
rows.append(("outage", sampler.phase(), queue()))

sink.start()
total = sum(sent)
wait_for(lambda: sink.count >= total, 600, "the backlog to drain", interval=0.5)
wait_for(lambda: queue()[1] == 0 and queue()[2] == 0, 60, "the queue to be empty", interval=0.5)
time.sleep(3)
after = sampler.last
rows.append(("drain", sampler.phase(), queue()))
hwm = status(hd.proc.pid, "VmHWM")
rc, _ = hd.stop()

print("hopperd %s, max_memory_bytes %s, %d clients, %d-byte lines, %d lines sent (steady: %d/s); goal: peak RSS <= %s"
      % (a.hopperd, a.memory, a.clients, a.line_bytes + 1, total, a.rate, mib(goal)))
print("%-8s %12s %14s %12s %12s" % ("phase", "peak RSS", "queue memory", "mem lines", "disk lines"))
for name, peak, (qb, qi, qd) in rows:
    print("%-8s %12s %14s %12d %12d" % (name, mib(peak), mib(qb), qi, qd))
print("RSS at start %s, %s after the drain (3 s after the queue emptied); VmHWM %s; %s"
      % (mib(base), mib(after), mib(hwm), "within the goal" if hwm <= goal else "OVER the goal"))
sys.exit(0 if rc == 0 else 1)
