"""hopperd fan-out and back-pressure.

1. Two outputs: while one downstream is away, its queue spills to disk and the other
   output keeps delivering everything; when it returns, its backlog drains in order.
   Many concurrent TCP clients; per-client order is checked at each output.
2. when_full = block with tiny budgets and the downstream away: hopperd stops reading TCP
   (the client is pushed back by the kernel), memory and disk stay within their budgets,
   UDP lines are counted as dropped; when the downstream returns, every TCP line arrives.
   A second output beside it gets every line too (the lines read at once are offered to
   both: the one that waits keeps its place, and gets the lines unmoved)."""

import random
import socket
import time

from e2e_util import (Background, Hopperd, Sink, args, check, first_occurrences, send_tcp, temp_dir, wait_for)

a = args()
work = temp_dir()

# ---- 1. fan-out: one downstream away does not hold back the other ---------------------
sink_a = Sink().reserve()  # the port is known; nobody listens yet
sink_b = Sink().start()
config = f"""
[input]
tcp = "127.0.0.1:0"
[metrics]
listen = "127.0.0.1:0"
[[output]]
name = "a"
address = "127.0.0.1:{sink_a.port}"
queue_dir = "{work}/qa"
max_memory_bytes = "64KiB"
max_disk_bytes = "64MiB"
segment_bytes = "1MiB"
backoff_initial_ms = 50
backoff_max_ms = 300
[[output]]
name = "b"
address = "127.0.0.1:{sink_b.port}"
queue_dir = "{work}/qb"
max_memory_bytes = "64KiB"
max_disk_bytes = "64MiB"
segment_bytes = "1MiB"
"""
hd = Hopperd(a.hopperd, work, config, "fanout").start()

CLIENTS, PER_CLIENT = 8, 6000
client_lines = [["fan.c%d.l%05d %d 1700000000" % (c, i, i) for i in range(PER_CLIENT)] for c in range(CLIENTS)]
clients = [Background(send_tcp, hd.tcp(), lines) for lines in client_lines]
check(all(c.finished(120) for c in clients), "%d concurrent clients sent %d lines each" % (CLIENTS, PER_CLIENT))
total = CLIENTS * PER_CLIENT
check(hd.metric('hopperd_lines_received_total{transport="tcp"}') == total, "hopperd read every line")

wait_for(lambda: sink_b.distinct() >= total, 60, "output b delivering everything while a is away")
check(hd.metric('hopperd_output_delivered_total{output="a"}') == 0, "output a delivered nothing (its downstream is away)")
m = hd.metrics()
check(m['hopperd_output_spilled_total{output="a"}'] > 0, "output a's queue spilled to disk (%d lines)"
      % m['hopperd_output_spilled_total{output="a"}'])
check(m['hopperd_output_queue_disk_items{output="a"}'] > 0, "output a's backlog is on disk")
check(m['hopperd_output_queue_memory_bytes{output="a"}'] <= 64 * 1024, "output a's memory stays within its budget")

sink_a.start()
wait_for(lambda: sink_a.distinct() >= total, 60, "output a draining its backlog")


def check_order(sink, name):
    got = first_occurrences(sink.snapshot())
    check(len(got) == total, "output %s: every line arrived (%d)" % (name, total))
    for c in range(CLIENTS):
        mine = [l for l in got if l.startswith("fan.c%d." % c)]
        if mine != client_lines[c]:
            raise AssertionError("output %s: client %d's lines out of order or missing" % (name, c))
    check(True, "output %s: each client's lines in the order sent" % name)


check_order(sink_a, "a")
check_order(sink_b, "b")
rc, _ = hd.stop()
check(rc == 0, "hopperd exits 0")
sink_a.stop(keep_port=False)
sink_b.stop(keep_port=False)

# ---- 2. back-pressure under when_full = block ------------------------------------------
sink_c = Sink().reserve()
sink_d = Sink().start()
MEM, DISK = 16 * 1024, 192 * 1024
config = f"""
[input]
tcp = "127.0.0.1:0"
udp = "127.0.0.1:0"
[metrics]
listen = "127.0.0.1:0"
[[output]]
name = "c"
address = "127.0.0.1:{sink_c.port}"
queue_dir = "{work}/qc"
max_memory_bytes = {MEM}
max_disk_bytes = {DISK}
segment_bytes = "64KiB"
page_bytes = "8KiB"
when_full = "block"
backoff_initial_ms = 50
backoff_max_ms = 300
[[output]]
name = "d"
address = "127.0.0.1:{sink_d.port}"
queue_dir = "{work}/qd"
"""
hd = Hopperd(a.hopperd, work, config, "backpressure").start()
rnd = random.Random(7)
N = 200000
lines = ["bp.test.l%06d.%08x %d 1700000000" % (i, rnd.getrandbits(32), i) for i in range(N)]
sender = Background(send_tcp, hd.tcp(), lines)


def stalled():
    # Full, and nothing more read for a while: the connection is being pushed back.
    m1 = hd.metrics()
    if m1["hopperd_backpressure_pauses_total"] == 0:
        return False
    r1 = m1['hopperd_lines_received_total{transport="tcp"}']
    time.sleep(0.5)
    return hd.metric('hopperd_lines_received_total{transport="tcp"}') == r1


wait_for(stalled, 60, "hopperd to stop reading while its queue is full")
m = hd.metrics()
received = m['hopperd_lines_received_total{transport="tcp"}']
check(sender.is_alive() and received < N, "the client is pushed back: %d of %d lines read" % (received, N))
check(m['hopperd_output_queue_memory_bytes{output="c"}'] <= MEM, "memory within its budget (%d <= %d)"
      % (m['hopperd_output_queue_memory_bytes{output="c"}'], MEM))
check(m['hopperd_output_queue_disk_bytes{output="c"}'] <= DISK, "disk within its budget (%d <= %d)"
      % (m['hopperd_output_queue_disk_bytes{output="c"}'], DISK))
check(m['hopperd_output_dropped_total{output="c"}'] == 0, "no TCP line dropped under block")

udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for i in range(200):
    udp.sendto(b"udp.when.full %d 1700000000\n" % i, hd.udp())
wait_for(lambda: hd.metric('hopperd_lines_received_total{transport="udp"}') >= 1, 10, "UDP lines read")
wait_for(lambda: hd.metric('hopperd_output_dropped_total{output="c"}') > 0, 10, "UDP lines dropped while full")
check(True, "UDP lines are counted as dropped while the queue is full (%d)" % hd.metric('hopperd_output_dropped_total{output="c"}'))

sink_c.start()
check(sender.finished(120), "the client finishes once the downstream is back")
wait_for(lambda: sink_c.has_all(lines), 60, "every TCP line at the downstream")
got = [l for l in first_occurrences(sink_c.snapshot()) if l.startswith("bp.test.")]
check(got == lines, "all %d TCP lines arrived, in order, none lost" % N)
wait_for(lambda: sink_d.has_all(lines), 60, "every TCP line at the other output's downstream")
got = [l for l in first_occurrences(sink_d.snapshot()) if l.startswith("bp.test.")]
check(got == lines, "the other output got all %d TCP lines too, in order" % N)
check(hd.metric('hopperd_output_dropped_total{output="d"}') == 0, "the other output dropped nothing")
rc, _ = hd.stop()
check(rc == 0, "hopperd exits 0")
sink_c.stop(keep_port=False)
sink_d.stop(keep_port=False)
print("1 passed, 0 failed")
