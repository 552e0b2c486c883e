"""/healthz reflects the outputs: with health.ready = "any", healthy while at least one output
delivers (or has nothing to deliver); with "all", while every one does; with
health.max_backlog_age_ms, an output whose oldest undelivered line is older does not count
even while connected (a downstream that accepts but does not read). The body is JSON that
says why, output by output; /healthz/brokers keeps its meaning (200 without Kafka outputs)."""

import json
import signal

from e2e_util import Hopperd, Sink, args, check, send_tcp, temp_dir, wait_for

a = args()
work = temp_dir()
one = Sink().start()
two = Sink().reserve()  # down: connections refused


def config(ready, two_port, extra=""):
    return """[input]
tcp = "127.0.0.1:0"
[metrics]
listen = "127.0.0.1:0"
[health]
ready = "%s"
%s
[[output]]
name = "one"
address = "127.0.0.1:%d"
queue_dir = "%s/q-one"
[[output]]
name = "two"
address = "127.0.0.1:%d"
queue_dir = "%s/q-two"
backoff_max_ms = 200
write_timeout_ms = 60000
""" % (ready, extra, one.port, work, two_port, work)


hd = Hopperd(a.hopperd, work, config("any", two.port))
hd.start()


def health():
    status, body = hd.healthz()
    return status, json.loads(body)


status, h = health()
check(status == 200 and h["status"] == "ok" and all(o["delivering"] for o in h["outputs"]),
      "nothing to deliver: healthy (%s)" % h["reason"])
lines = ["health.line %d 1" % i for i in range(1000)]
send_tcp(hd.tcp(), lines)
wait_for(lambda: all(l in one.seen for l in lines), 20, "output one delivers")
wait_for(lambda: not health()[1]["outputs"][1]["delivering"], 20, "output two seen not delivering")
status, h = health()
two_state = h["outputs"][1]
check(status == 200 and h["reason"] == "1 of 2 outputs deliver",
      "ready = any: 200 while one output delivers (%s)" % h["reason"])
check(two_state["name"] == "two" and two_state["backlog_lines"] == 1000 and "not connected" in two_state["reason"],
      "the body says why output two does not: %s" % two_state["reason"])
check(hd.metric('hopperd_output_backlog_age_seconds{output="two"}') > 0, "its backlog has an age")

hd.write_config(config("all", two.port))
hd.proc.send_signal(signal.SIGHUP)
wait_for(lambda: hd.metric("hopperd_config_reloads_total") == 1, 20, "reload to ready = all")
status, h = health()
check(status == 503 and h["status"] == "unhealthy" and h["reason"].startswith("output two: not connected"),
      "ready = all: 503, and the reason names the output: %s" % h["reason"])
status, body = hd.healthz("/healthz/brokers")
check(status == 200, "/healthz/brokers: 200 without Kafka outputs")

two.start()
wait_for(lambda: all(l in two.seen for l in lines), 30, "output two catches up")
wait_for(lambda: health()[0] == 200, 20, "healthy again")
# Delivered once the new connection has proved itself (250 ms): then no backlog, no age.
wait_for(lambda: hd.metric('hopperd_output_backlog_age_seconds{output="two"}') == 0, 20, "no backlog, no age")
check(True, "once delivered, no backlog and no age")

# A downstream that accepts and never reads: connected, but its lines grow old.
mute = Sink(mode="mute").start()
hd.write_config(config("all", mute.port, "max_backlog_age_ms = 1000"))
hd.proc.send_signal(signal.SIGHUP)
wait_for(lambda: hd.metric("hopperd_config_reloads_total") == 2, 20, "reload with max_backlog_age_ms")
big = ["stuck.line %06d %s" % (i, "x" * 200) for i in range(60000)]  # ~13 MB: more than socket buffers hold
send_tcp(hd.tcp(), big)
wait_for(lambda: hd.metric('hopperd_output_connected{output="two"}') == 1, 20, "output two connected to the mute one")
wait_for(lambda: health()[0] == 503, 30, "unhealthy: the backlog is too old")
status, h = health()
check(h["outputs"][1]["connected"] and "oldest undelivered line is" in h["outputs"][1]["reason"],
      "connected, yet not delivering: %s" % h["outputs"][1]["reason"])
check(hd.metric('hopperd_output_backlog_age_seconds{output="two"}') > 1, "hopperd_output_backlog_age_seconds > 1")
rc, _ = hd.stop()
check(rc == 0, "clean stop")
for s in (one, two, mute):
    s.stop(keep_port=False)
print("hopperd_health: all checks passed")
