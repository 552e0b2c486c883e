"""hopperd at its limits: out of file descriptors (RLIMIT_NOFILE smaller than
max_tcp_clients), silent clients (input.idle_timeout_ms) and a full client table
(input.max_tcp_clients). A client hopperd cannot serve must be refused visibly (its
connection closed at once, counted), never left believing it is sending; running out of
descriptors must pause accepting (logged once, counted), not spin; nothing accepted is lost."""

import re
import resource
import socket
import time

from e2e_util import Hopperd, Sink, args, check, one_output_config, send_tcp, temp_dir, wait_for

a = args()
work = temp_dir()


def closed_by_peer(s, timeout):
    """True when the peer closed (EOF or reset) within timeout; False if still open."""
    s.settimeout(timeout)
    try:
        return s.recv(1) == b""
    except socket.timeout:
        return False
    except (ConnectionResetError, BrokenPipeError):
        return True


def limit_fds(soft, hard):
    return lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def soft_limit(pid):
    with open("/proc/%d/limits" % pid) as f:
        for line in f:
            if line.startswith("Max open files"):
                return int(line.split()[3])
    return None


def config(sink_port, queue, extra=""):
    return one_output_config(sink_port, "%s/%s" % (work, queue), extra)


sink = Sink().start()

# ---- out of file descriptors -------------------------------------------------------
# 64 descriptors, max_tcp_clients 1024: hopperd warns at start that it cannot raise the
# limit; about 40 clients exhaust it.
hd = Hopperd(a.hopperd, work, config(sink.port, "q-fd", "max_tcp_clients = 1024\nidle_timeout_ms = 600000"), "fd")
hd.start(preexec_fn=limit_fds(64, 64))
check(re.search(r"input.max_tcp_clients = 1024 needs about \d+ file descriptors, but RLIMIT_NOFILE allows 64",
                hd.log()) is not None, "a start-up warning: max_tcp_clients exceeds RLIMIT_NOFILE")
send_tcp(hd.tcp(), ["warm.up 1 1"])  # the downstream connection exists before the shortage
wait_for(lambda: "warm.up 1 1" in sink.seen, 20, "the first line at the downstream")

clients = []
for i in range(80):
    clients.append(socket.create_connection(hd.tcp(), timeout=5))
time.sleep(0.5)  # hopperd accepts what it can and refuses the rest
refused = [c for c in clients if closed_by_peer(c, 0.2)]
check(len(refused) > 0 and len(refused) < len(clients),
      "out of descriptors: %d of %d clients were closed at once, the rest are served" % (len(refused), len(clients)))

# A new client that sends while hopperd has no descriptor: refused visibly, not stranded.
late = socket.create_connection(hd.tcp(), timeout=5)
try:
    late.sendall(b"".join(b"late.line %d 1\n" % i for i in range(100)))
except OSError:
    pass
check(closed_by_peer(late, 10), "a client arriving while out of descriptors sees its connection closed")
late.close()

# hopperd does not spin meanwhile: a second of shortage costs a handful of accept() calls.
cpu_before = sum(float(x) for x in open("/proc/%d/stat" % hd.proc.pid).read().rsplit(")", 1)[1].split()[11:13])
time.sleep(1.0)
cpu_after = sum(float(x) for x in open("/proc/%d/stat" % hd.proc.pid).read().rsplit(")", 1)[1].split()[11:13])
served = [c for c in clients if c not in refused]
served[0].sendall(b"served.client 1 1\nserved.client 2 1\n")
served[0].shutdown(socket.SHUT_WR)
for c in clients:
    if c is not served[0]:
        c.close()
check(closed_by_peer(served[0], 10), "a served client's lines are read to its end")
served[0].close()
wait_for(lambda: {"served.client 1 1", "served.client 2 1"} <= sink.seen, 30,
         "the served client's lines at the downstream")

send_tcp(hd.tcp(), ["after.shortage 1 1"])
wait_for(lambda: "after.shortage 1 1" in sink.seen, 20, "new clients are served again once descriptors free up")
check("file descriptors available again" in hd.log(), "the end of the shortage is logged")
m = hd.metrics()
errors = m.get("hopperd_tcp_accept_errors_total", 0)
pauses = m.get("hopperd_tcp_accept_pauses_total", 0)
rejected = m.get('hopperd_tcp_connections_rejected_total{reason="out_of_descriptors"}', 0)
print("accept errors %d, pauses %d, refused %d, CPU ticks in 1 s of shortage %d" %
      (errors, pauses, rejected, cpu_after - cpu_before))
check(pauses >= 1 and errors >= 1, "the shortage is counted (hopperd_tcp_accept_pauses_total, ..._accept_errors_total)")
check(errors < 500, "accept() failed %d times, not in a busy loop" % errors)
check(rejected >= len(refused) + 1, "every refused client is counted (%d)" % rejected)
check(hd.log().count("out of file descriptors") == pauses,
      "logged once per episode (%d)" % hd.log().count("out of file descriptors"))
rc, _ = hd.stop()
check(rc == 0, "clean stop after the shortage")

# ---- raising the soft limit ---------------------------------------------------------
hd = Hopperd(a.hopperd, work, config(sink.port, "q-raise", "max_tcp_clients = 1024"), "raise")
hd.start(preexec_fn=limit_fds(64, 4096))
limit = soft_limit(hd.proc.pid)
check(limit is not None and limit > 1024 and "raised the file descriptor limit" in hd.log(),
      "the soft RLIMIT_NOFILE is raised towards the hard limit (%s)" % limit)
hd.stop()

# ---- idle clients and a full client table -------------------------------------------
hd = Hopperd(a.hopperd, work, config(sink.port, "q-idle", "max_tcp_clients = 2\nidle_timeout_ms = 300"), "idle")
hd.start()
silent = [socket.create_connection(hd.tcp(), timeout=5) for _ in range(2)]
check(all(closed_by_peer(s, 10) for s in silent), "silent clients are disconnected after idle_timeout_ms")
for s in silent:
    s.close()
wait_for(lambda: hd.metric("hopperd_tcp_idle_closed_total") == 2, 10, "hopperd_tcp_idle_closed_total counts them")

# Two clients that keep talking hold both slots; a third is refused at once, visibly.
talkers = [socket.create_connection(hd.tcp(), timeout=5) for _ in range(2)]
for t in talkers:
    t.sendall(b"talker.hello 1 1\n")
wait_for(lambda: hd.metric("hopperd_tcp_connections") == 2, 10, "two clients connected")
third = socket.create_connection(hd.tcp(), timeout=5)
check(closed_by_peer(third, 10), "over max_tcp_clients, a new client is closed at once")
third.close()
wait_for(lambda: hd.metric('hopperd_tcp_connections_rejected_total{reason="max_tcp_clients"}') == 1, 10,
         "and counted (hopperd_tcp_connections_rejected_total{reason=\"max_tcp_clients\"})")
for i in range(3):  # still talking: not idle
    for t in talkers:
        t.sendall(b"talker.tick %d 1\n" % i)
    time.sleep(0.15)
check(hd.metric("hopperd_tcp_idle_closed_total") == 2, "clients that talk are not idle")
for t in talkers:
    t.close()
lines = ["after.idle %d 1" % i for i in range(100)]
wait_for(lambda: hd.metric("hopperd_tcp_connections") == 0, 10, "slots free again")
send_tcp(hd.tcp(), lines)
wait_for(lambda: all(l in sink.seen for l in lines), 30, "a client after the idle ones has all 100 lines delivered")
rc, _ = hd.stop()
check(rc == 0, "clean stop")
sink.stop(keep_port=False)
print("hopperd_limits: all checks passed")
