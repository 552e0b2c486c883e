"""An output's max_age_ms: lines that waited in the queue longer than it while the downstream
was away are not delivered when it comes back (nor is a batch the output took from its queue
and held meanwhile, however recently it took it), and are counted; lines sent after the
pause are. The
queue's age and capacity metrics say what waits and what the budgets are, and the whole
/metrics page passes `promtool check metrics` (Prometheus's own linter)."""

import subprocess
import time
import urllib.request

from e2e_util import Hopperd, Sink, args, check, send_tcp, temp_dir, wait_for

a = args()
work = temp_dir()
sink = Sink().reserve()  # down: connections refused
MAX_AGE_MS = 3000

hd = Hopperd(a.hopperd, work, """[input]
tcp = "127.0.0.1:0"
[metrics]
listen = "127.0.0.1:0"
[[output]]
name = "aged"
address = "127.0.0.1:%d"
queue_dir = "%s/q-aged"
max_memory_bytes = "16KiB"
max_disk_bytes = "8MiB"
segment_bytes = "1MiB"
max_age_ms = %d
backoff_max_ms = 100
batch_bytes = 64  # the output holds a few lines; the rest wait in its queue
""" % (sink.port, work, MAX_AGE_MS))
hd.start()

# A first few lines: the output takes them as its batch at once and holds it, retrying the
# connection. Half max_age later, the rest (past 16 KiB: most of them spill). When the
# first batch expires, the output takes a second one from those, already half max_age old:
# it must go max_age after they were accepted, not after it was taken (the sink is up by
# then and would receive them).
first = ["age.old %d 1" % i for i in range(4)]
send_tcp(hd.tcp(), first)
wait_for(lambda: hd.metric('hopperd_output_queued_total{output="aged"}') == len(first), 20, "the first lines are queued")
time.sleep(MAX_AGE_MS / 2000.0)
rest = ["age.old %d 1" % i for i in range(len(first), 3000)]
rest_sent = time.monotonic()
send_tcp(hd.tcp(), rest)
old = first + rest
wait_for(lambda: hd.metric('hopperd_output_queued_total{output="aged"}') == len(old), 20, "the old lines are queued")
m = hd.metrics()
check(m['hopperd_output_queue_capacity_bytes{output="aged",tier="memory"}'] == 16 * 1024, "memory capacity is max_memory_bytes")
check(m['hopperd_output_queue_capacity_bytes{output="aged",tier="disk"}'] == 8 * 1024 * 1024, "disk capacity is max_disk_bytes")
check(m['hopperd_output_spilled_total{output="aged"}'] > 0, "some old lines went to disk")
time.sleep(0.5)
age = hd.metric('hopperd_output_queue_oldest_item_age_seconds{output="aged"}')
check(0.4 <= age < 60, "the oldest waiting line's age is reported (%.3f s)" % age)

# Fresh lines, queued behind the old ones before those are past max_age_ms: when the output
# comes to them it has just passed over expired lines, and they must not be taken for as
# old as those.
time.sleep(max(0.0, rest_sent + MAX_AGE_MS * 0.8 / 1000.0 - time.monotonic()))
fresh = ["age.fresh %d 1" % i for i in range(50)]
send_tcp(hd.tcp(), fresh)
wait_for(lambda: hd.metric('hopperd_output_queued_total{output="aged"}') == len(old) + len(fresh), 20,
         "the fresh lines are queued")
# Every old line is now past max_age_ms; the second batch, taken about when the first
# expired, is not yet max_age_ms old itself.
time.sleep(max(0.0, rest_sent + MAX_AGE_MS / 1000.0 + 0.5 - time.monotonic()))
sink.start()
wait_for(lambda: all(l in sink.seen for l in fresh), 30, "the fresh lines arrive")
# Whether they waited in the queue or in the batch the output took from it while it tried to
# connect, none is delivered, and each is counted once.
check(not any(l in sink.seen for l in old), "no line past max_age_ms was delivered")
wait_for(lambda: hd.metric('hopperd_output_queue_expired_total{output="aged"}') == len(old), 10,
         "every old line counted expired")
check(hd.metric('hopperd_output_queue_expired_bytes_total{output="aged"}') > 0, "and their bytes")
wait_for(lambda: hd.metric('hopperd_output_queue_oldest_item_age_seconds{output="aged"}') == 0, 10,
         "nothing waits: age 0")

with urllib.request.urlopen("http://%s/metrics" % hd.ready["metrics"], timeout=10) as r:
    text = r.read()
lint = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True)
check(lint.returncode == 0 and not lint.stdout.strip() and not lint.stderr.strip(),
      "promtool check metrics: clean (%s%s)" % (lint.stdout.decode(), lint.stderr.decode()))

check(hd.stop()[0] == 0, "hopperd stops cleanly")
sink.stop()
