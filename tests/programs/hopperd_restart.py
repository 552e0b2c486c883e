"""hopperd restart: SIGTERM mid-stream while the downstream is down, start again, the
downstream comes back: nothing that hopperd accepted is lost, and order is kept.

Also: the stop is clean (exit 0, bounded time), the stopped queue is intact and holds the
backlog (`hopper inspect`, `hopper verify`, `hopper dump`), and SIGHUP reopens the log."""

import json
import os
import signal
import subprocess
import threading
import time

from e2e_util import (Hopperd, Sink, args, check, first_occurrences, send_tcp, temp_dir, wait_for)

a = args()
work = temp_dir()
qdir = os.path.join(work, "queue")
logfile = os.path.join(work, "hopperd-file.log")
sink = Sink().start()

config = f"""
[log]
file = "{logfile}"
[input]
tcp = "127.0.0.1:0"
[metrics]
listen = "127.0.0.1:0"
[daemon]
shutdown_timeout_ms = 3000
[[output]]
name = "sink"
address = "127.0.0.1:{sink.port}"
queue_dir = "{qdir}"
max_memory_bytes = "128KiB"
max_disk_bytes = "256MiB"
segment_bytes = "1MiB"
page_bytes = "32KiB"
backoff_initial_ms = 50
backoff_max_ms = 400
"""
hd = Hopperd(a.hopperd, work, config).start()

CHUNK = 500
sent = []            # every line offered, in order
confirmed = []       # chunk indexes hopperd read to the end (it closed after our EOF)
interrupted = []     # the chunk a stop cut short, if any


class Streamer(threading.Thread):
    """Sends chunks of uniquely numbered lines, one connection each, until told to stop."""

    def __init__(self, first_chunk, max_chunks, pause):
        super().__init__(daemon=True)
        self.k = first_chunk
        self.end = first_chunk + max_chunks
        self.pause = pause
        self.stop_flag = False

    def run(self):
        while not self.stop_flag and self.k < self.end:
            lines = ["restart.test.c%05d.l%04d %d 1700000000" % (self.k, i, self.k * CHUNK + i) for i in range(CHUNK)]
            sent.extend(lines)
            try:
                send_tcp(hd.tcp(), lines)
                confirmed.append(self.k)
            except OSError:
                interrupted.append(self.k)
                return
            self.k += 1
            time.sleep(self.pause)


s1 = Streamer(0, 10**6, 0.002)
s1.start()
wait_for(lambda: len(sink.snapshot()) >= 5000, 30, "the sink receiving")
sink.stop()
t_down = time.monotonic()
print("downstream down after %d lines" % len(sink.snapshot()), flush=True)
# Counted from the moment the sink is gone: on a fast machine the chunks sent before it
# could all have been delivered already, leaving no backlog to test.
confirmed_at_down = len(confirmed)
wait_for(lambda: len(confirmed) >= confirmed_at_down + 30, 30,
         "30 more chunks sent while the downstream is down")
rc, took = hd.stop(signal.SIGTERM)
s1.stop_flag = True
s1.join(30)
check(rc == 0, "hopperd exits 0 on SIGTERM (took %.2f s)" % took)
check(took < 3.0 + 2.0, "the stop is bounded by daemon.shutdown_timeout_ms (+2 s)")
delivered_before = first_occurrences(sink.snapshot())
print("lines offered %d, confirmed chunks %d, interrupted %s, delivered before restart %d"
      % (len(sent), len(confirmed), interrupted, len(delivered_before)), flush=True)

# The stopped queue: intact, not locked, holding the backlog in order.
out = subprocess.run([a.hopper, "inspect", "--json", qdir], capture_output=True, text=True)
check(out.returncode == 0, "hopper inspect runs on the stopped queue")
info = json.loads(out.stdout)
check(not info["lock"]["held"], "nobody holds the queue's lock after the stop")
check(info["intact"], "the stopped queue is intact")
check(info["undelivered_items"] > 0, "the backlog (%d lines) is on disk" % info["undelivered_items"])
check(subprocess.run([a.hopper, "verify", qdir], capture_output=True).returncode == 0, "hopper verify: exit 0")
dump = subprocess.run([a.hopper, "dump", qdir], capture_output=True, text=True).stdout.splitlines()
check(len(dump) == info["undelivered_items"], "hopper dump prints every undelivered line")
position = {line: i for i, line in enumerate(sent)}
check(all(l in position for l in dump), "the dumped lines are lines that were sent")
check([position[l] for l in dump] == sorted(position[l] for l in dump), "the dumped lines are in send order")
check(os.path.exists(os.path.join(qdir, "hopperd-replay")),
      "the replay window was kept: the downstream went away with lines maybe unread")

# Start again; more lines arrive; then the downstream comes back.
hd.start()
s2 = Streamer(10**5, 10, 0.0)
s2.start()
s2.join(60)
check(not s2.is_alive() and s2.k == 10**5 + 10, "10 more chunks accepted after the restart")
time.sleep(2.0)
sink.start()
down_for = time.monotonic() - t_down

must = set()
for k in confirmed:
    for i in range(CHUNK):
        base = k * CHUNK + i
        must.add("restart.test.c%05d.l%04d %d 1700000000" % (k, i, base))
wait_for(lambda: sink.has_all(must), 60, "every accepted line at the downstream")
got = sink.snapshot()
firsts = first_occurrences(got)
position = {line: i for i, line in enumerate(sent)}
check(must.issubset(set(firsts)), "nothing accepted was lost: %d lines" % len(must))
check(all(l in position for l in firsts), "nothing arrived that was not sent")
order = [position[l] for l in firsts]
check(order == sorted(order), "first arrivals are in send order")
for k in interrupted:  # the chunk cut by the stop: what hopperd had read is a prefix of it
    idx = sorted(int(l.split(".l")[1].split()[0]) for l in firsts if l.startswith("restart.test.c%05d." % k))
    check(idx == list(range(len(idx))), "the chunk cut by SIGTERM arrived as a prefix (%d of %d lines)" % (len(idx), CHUNK))
wait_for(lambda: not os.path.exists(os.path.join(qdir, "hopperd-replay")), 20, "the replay file consumed")
print("e2e restart: lines accepted %d, delivered %d distinct (%d with duplicates), downstream down %.1f s, "
      "replayed %d" % (len(must), len(firsts), len(got), down_for, hd.metric('hopperd_output_replayed_lines_total{output="sink"}')),
      flush=True)

# SIGHUP reopens the log file (what logrotate relies on).
os.rename(logfile, logfile + ".1")
hd.proc.send_signal(signal.SIGHUP)
wait_for(lambda: os.path.exists(logfile) and "SIGHUP" in open(logfile).read(), 10, "a new log file after SIGHUP")
check(hd.proc.poll() is None, "hopperd keeps running after SIGHUP")

rc, took = hd.stop(signal.SIGINT)
check(rc == 0, "hopperd exits 0 on SIGINT")
sink.stop()
print("1 passed, 0 failed")
