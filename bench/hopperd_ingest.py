#!/usr/bin/env python3
"""hopperd's durable ingest (sync = "always"), against one fdatasync per line.

1. The limit a line-at-a-time relay has: each line appended to a file and fdatasync'ed
   before the next, in the directory the queues use (same file system, same disk).
2. hopperd with one output under sync = "always" (its downstream, a line sink, listening):
   one client sends the lines over TCP as fast as it can; timed from the connection to
   the last line queued (hopperd_output_queued_total), with the fdatasync calls it took
   (hopperd_output_queue_syncs_total).
3. The same with sync = "none", for scale.

  bench/hopperd_ingest.py --build build/release [--lines 200000] [--runs 3] [--dir /var/tmp]

Everything listens on 127.0.0.1; every process it starts ends with it. Prints a table
(and --json for scripts).
"""

import argparse
import json
import os
import socket
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "programs"))

from e2e_util import Hopperd, Sink, temp_dir, wait_for  # noqa: E402

p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
p.add_argument("--build", default=os.path.join(HERE, "..", "build", "release"))
p.add_argument("--lines", type=int, default=200000)
p.add_argument("--limit-lines", type=int, default=2000, help="lines for the fdatasync-per-line limit")
p.add_argument("--runs", type=int, default=3)
p.add_argument("--dir", default=None, help="a directory on the disk to measure (default: $TMPDIR or /tmp)")
p.add_argument("--json", action="store_true")
a = p.parse_args()
hopperd_bin = os.path.join(a.build, "hopperd")
if not os.path.exists(hopperd_bin):
    sys.exit("hopperd_ingest: missing %s (build the programs)" % hopperd_bin)

if a.dir is not None:
    tempfile.tempdir = a.dir  # the queues' file system is the one measured
work = temp_dir("hopper-ingest-bench-")
lines = ["bench.ingest.host%03d.cpu.load %d.%02d %d" % (i % 500, i % 97, i % 100, 1700000000 + i) for i in range(a.lines)]
payload = ("\n".join(lines) + "\n").encode()


def fdatasync_per_line():
    path = os.path.join(work, "limit-%d" % os.getpid())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o600)
    try:
        n = min(a.limit_lines, len(lines))
        t0 = time.monotonic()
        for line in lines[:n]:
            os.write(fd, line.encode() + b"\n")
            os.fdatasync(fd)
        return n / (time.monotonic() - t0)
    finally:
        os.close(fd)
        os.unlink(path)


def hopperd_run(sync, k):
    sink = Sink().start()
    d = os.path.join(work, "h-%s-%d" % (sync, k))
    os.makedirs(d)
    config = f"""
[input]
tcp = "127.0.0.1:0"
[metrics]
listen = "127.0.0.1:0"
[[output]]
name = "o"
address = "127.0.0.1:{sink.port}"
queue_dir = "{os.path.join(d, 'queue')}"
sync = "{sync}"
"""
    hd = Hopperd(hopperd_bin, d, config).start()
    queued = 'hopperd_output_queued_total{output="o"}'
    syncs0 = hd.metric('hopperd_output_queue_syncs_total{output="o"}')
    t0 = time.monotonic()
    s = socket.create_connection(hd.tcp())
    s.sendall(payload)
    s.shutdown(socket.SHUT_WR)
    s.recv(1)
    s.close()
    wait_for(lambda: hd.metric(queued) >= len(lines), 600, "every line queued", interval=0.01)
    took = time.monotonic() - t0
    syncs = hd.metric('hopperd_output_queue_syncs_total{output="o"}') - syncs0
    rc, _ = hd.stop()
    sink.stop(keep_port=False)
    if rc != 0:
        sys.exit("hopperd exited %d" % rc)
    return len(lines) / took, syncs


limit, always, always_syncs, none = [], [], [], []
for k in range(a.runs):  # alternating, so that a busy moment of the machine hits each
    limit.append(fdatasync_per_line())
    rate, syncs = hopperd_run("always", k)
    always.append(rate)
    always_syncs.append(syncs)
    none.append(hopperd_run("none", k)[0])

results = {
    "lines": a.lines,
    "line_bytes": len(payload) // a.lines,
    "fdatasync_per_line_lines_per_s": [round(r) for r in limit],
    "hopperd_always_lines_per_s": [round(r) for r in always],
    "hopperd_always_syncs": always_syncs,
    "hopperd_none_lines_per_s": [round(r) for r in none],
    "ratio_always_to_limit_median": round(statistics.median(h / l for h, l in zip(always, limit)), 1),
}
if a.json:
    print(json.dumps(results, indent=2))
    sys.exit(0)
print("hopperd ingest, one client, %d lines of ~%d bytes, %d runs (lines/s):" % (a.lines, results["line_bytes"], a.runs))
print("  one fdatasync per line        %s" % "  ".join("%9d" % r for r in results["fdatasync_per_line_lines_per_s"]))
print("  hopperd sync = \"always\"       %s" % "  ".join("%9d" % r for r in results["hopperd_always_lines_per_s"]))
print("    fdatasync calls             %s" % "  ".join("%9d" % r for r in always_syncs))
print("  hopperd sync = \"none\"         %s" % "  ".join("%9d" % r for r in results["hopperd_none_lines_per_s"]))
print("  hopperd always / one fdatasync per line, median: %.1f" % results["ratio_always_to_limit_median"])
