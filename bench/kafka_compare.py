#!/usr/bin/env python3
"""hopperd's Kafka output, measured against librdkafka's mock cluster (no broker needed).

1. Throughput: the same lines through hopperd (TCP in, Kafka output: queue, producer,
   commit on acknowledgement) and through `kcat -P` alone, to the same mock cluster, in
   the same run, alternating; each timed from the first line sent to the last one
   acknowledged. Both use acks=all and the idempotent producer, no key.
2. Duplicates per outage: a paced stream of unique lines; the downstream goes away for
   --outage seconds mid-stream and comes back. For the Kafka output every broker goes
   down; for the TCP output the downstream (a line sink) stops listening. Afterwards
   every line is checked to have arrived, and the duplicates are counted.

  bench/kafka_compare.py --build build/release [--lines 500000] [--runs 3] [--outage 10]

Needs kcat and the build's hopperd, hopper and kafka_mock_cluster. Everything listens on
127.0.0.1; every process it starts ends with it. Prints a table (and --json for scripts).
"""

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "programs"))

from e2e_util import Hopperd, Sink, temp_dir, wait_for  # noqa: E402
from kafka_util import Delivery, MockCluster  # noqa: E402

p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
p.add_argument("--build", default=os.path.join(HERE, "..", "build", "release"))
p.add_argument("--lines", type=int, default=500000)
p.add_argument("--runs", type=int, default=3)
p.add_argument("--outage", type=float, default=10.0, help="seconds each downstream is away")
p.add_argument("--outages", type=int, default=2, help="outages per output type")
p.add_argument("--rate", type=int, default=10000, help="lines/s of the paced stream during outages")
p.add_argument("--only", choices=["throughput", "outage"], help="run one of the two measurements")
p.add_argument("--json", action="store_true")
a = p.parse_args()
hopperd_bin = os.path.join(a.build, "hopperd")
mock_bin = os.path.join(a.build, "kafka_mock_cluster")
kcat = shutil.which("kcat")
for need in (hopperd_bin, mock_bin, kcat):
    if not need or not os.path.exists(need):
        sys.exit("kafka_compare: missing %s (build the programs; apt-get install kcat)" % need)

work = temp_dir("hopper-kafka-bench-")
results = {"lines": a.lines, "runs": a.runs}


def graphite(tag, n):
    return ["bench.%s.host%03d.cpu.load %d.%02d %d" % (tag, i % 500, i % 97, i % 100, 1700000000 + i) for i in range(n)]


def hopperd_config(name, output):
    return f"""
[input]
tcp = "127.0.0.1:0"
max_tcp_clients = 16
[metrics]
listen = "127.0.0.1:0"
[[output]]
name = "{name}"
queue_dir = "{os.path.join(work, name + '-queue')}"
max_memory_bytes = "64MiB"
max_disk_bytes = "1GiB"
{output}
"""


# ---- 1. throughput -----------------------------------------------------------------------
def run_kcat(cluster, path, topic):
    cluster.create_topic(topic, 4)
    t0 = time.monotonic()
    r = subprocess.run([kcat, "-P", "-b", cluster.bootstraps, "-t", topic, "-X", "acks=all",
                        "-X", "enable.idempotence=true", "-l", path], capture_output=True, text=True)
    took = time.monotonic() - t0
    if r.returncode != 0:
        sys.exit("kcat failed: %s" % r.stderr)
    return took


def run_hopperd(cluster, payload, topic, k):
    cluster.create_topic(topic, 4)
    d = os.path.join(work, "h%d" % k)
    os.makedirs(d)
    output = 'type = "kafka"\nbrokers = "%s"\ntopic = "%s"\n' % (cluster.bootstraps, topic)
    hd = Hopperd(hopperd_bin, d, hopperd_config("kafka", output)).start()
    m = 'hopperd_output_delivered_total{output="kafka"}'
    t0 = time.monotonic()
    s = socket.create_connection(hd.tcp())
    s.sendall(payload)
    s.shutdown(socket.SHUT_WR)
    s.recv(1)
    s.close()
    wait_for(lambda: hd.metric(m) >= a.lines, 600, "every line acknowledged", interval=0.02)
    took = time.monotonic() - t0
    spilled = hd.metric('hopperd_output_spilled_total{output="kafka"}')
    rc, _ = hd.stop()
    if rc != 0:
        sys.exit("hopperd exited %d" % rc)
    return took, spilled


def throughput():
    cluster = MockCluster(mock_bin, brokers=3, topic="kcat", partitions=4)
    lines = graphite("t", a.lines)
    payload = ("\n".join(lines) + "\n").encode()
    path = os.path.join(work, "lines.txt")
    with open(path, "wb") as f:
        f.write(payload)
    kcat_rates, hopperd_rates, spills = [], [], []
    for k in range(a.runs):  # alternating, so that a busy moment of the machine hits both
        kcat_rates.append(a.lines / run_kcat(cluster, path, "kcat%d" % k))
        took, spilled = run_hopperd(cluster, payload, "hopperd%d" % k, k)
        hopperd_rates.append(a.lines / took)
        spills.append(spilled)
    # The mock keeps a bounded log per partition: too little for reading every run back, but
    # its offsets count every message appended (the tests read smaller topics back).
    for k in range(a.runs):
        for name in ("kcat%d" % k, "hopperd%d" % k):
            low, high = cluster.offsets(name)
            if high != a.lines:
                sys.exit("%s: %d messages appended, not %d" % (name, high, a.lines))
    cluster.close()
    results["throughput"] = {
        "line_bytes": len(payload) // a.lines,
        "kcat_lines_per_s": [round(r) for r in kcat_rates],
        "hopperd_lines_per_s": [round(r) for r in hopperd_rates],
        "hopperd_spilled_lines": spills,
        "ratio_median": round(statistics.median(h / k for h, k in zip(hopperd_rates, kcat_rates)), 3),
    }


# ---- 2. duplicates per outage --------------------------------------------------------------
class Stream(threading.Thread):
    """Unique lines at `rate` per second over one connection, until stopped."""

    def __init__(self, address, tag):
        super().__init__(daemon=True)
        self.address, self.tag, self.sent, self.stop_flag = address, tag, [], False

    def run(self):
        s = socket.create_connection(self.address)
        i, t0, chunk = 0, time.monotonic(), max(1, a.rate // 20)
        while not self.stop_flag:
            batch = ["dup.%s.m%03d %d 1700000000" % (self.tag, (i + j) % 200, i + j) for j in range(chunk)]
            s.sendall(("\n".join(batch) + "\n").encode())
            self.sent.extend(batch)
            i += chunk
            delay = t0 + i / a.rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        s.shutdown(socket.SHUT_WR)
        s.recv(1)
        s.close()


def outage_run(kind):
    d = os.path.join(work, "outage-" + kind)
    os.makedirs(d)
    if kind == "kafka":
        cluster = MockCluster(mock_bin, brokers=3, topic="dup", partitions=8)  # fits the mock's log
        output = f'type = "kafka"\nbrokers = "{cluster.bootstraps}"\ntopic = "dup"\nkey = "field:1"\n'
        away, back = cluster.down, cluster.up
    else:
        sink = Sink().start()
        output = f'address = "127.0.0.1:{sink.port}"\nbackoff_max_ms = 1000\n'
        away, back = sink.stop, sink.start
    hd = Hopperd(hopperd_bin, d, hopperd_config(kind, output)).start()
    stream = Stream(hd.tcp(), kind)
    stream.start()
    for _ in range(a.outages):
        time.sleep(3)
        away()
        time.sleep(a.outage)
        back()
    time.sleep(3)
    stream.stop_flag = True
    stream.join(60)
    m = 'hopperd_output_delivered_total{output="%s"}' % kind
    wait_for(lambda: hd.metric(m) >= len(stream.sent), 300, "the stream delivered", interval=0.2)
    if kind == "kafka":
        wait_for(lambda: hd.metric('hopperd_output_in_flight{output="kafka"}') == 0, 60, "nothing in flight")
        got = Delivery(cluster.consume(os.path.join(d, "c.tsv")), stream.sent)
        missing, dups, order = len(got.missing), got.duplicates, got.order_violations
        cluster.close()
    else:
        want = set(stream.sent)
        wait_for(lambda: sink.has_all(want), 120, "every line at the sink", interval=0.2)
        arrived = sink.snapshot()
        missing, dups, order = len(want - set(arrived)), len(arrived) - len(set(arrived)), 0
        sink.stop(keep_port=False)
    hd.stop()
    return {"lines": len(stream.sent), "outages": a.outages, "missing": missing, "duplicates": dups,
            "duplicates_per_outage": round(dups / a.outages, 1), "order_violations": order}


if a.only != "outage":
    throughput()
if a.only != "throughput":
    results["outage_seconds"] = a.outage
    results["stream_lines_per_s"] = a.rate
    results["tcp"] = outage_run("tcp")
    results["kafka"] = outage_run("kafka")

if a.json:
    print(json.dumps(results, indent=2))
    sys.exit(0)
if "throughput" in results:
    t = results["throughput"]
    print("throughput, %d lines of ~%d bytes, %d runs (lines/s):" % (a.lines, t["line_bytes"], a.runs))
    print("  kcat -P          %s" % "  ".join("%9d" % r for r in t["kcat_lines_per_s"]))
    print("  hopperd (kafka)  %s" % "  ".join("%9d" % r for r in t["hopperd_lines_per_s"]))
    print("  ratio hopperd / kcat, median: %.2f" % t["ratio_median"])
if "tcp" in results:
    print("duplicates per %.0f s outage, stream of %d lines/s, %d outages each:" % (a.outage, a.rate, a.outages))
    for kind in ("tcp", "kafka"):
        r = results[kind]
        print("  %-6s %8.1f per outage (%d duplicates, %d missing, %d order violations, %d lines)" % (
            kind, r["duplicates_per_outage"], r["duplicates"], r["missing"], r["order_violations"], r["lines"]))
