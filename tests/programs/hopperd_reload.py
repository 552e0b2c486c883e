"""SIGHUP reloads under load: an output added, its address changed (the backlog drains to the
new downstream), the TCP listener moved to another port, an invalid config refused while
the old one keeps running, an output removed (its queue stays on disk and is reported),
and more reloads back and forth — while clients send without pause. Every line a client
sent must reach output "a" (at its old or new downstream): zero lost."""

import json
import os
import signal
import subprocess
import threading
import time

from e2e_util import Hopperd, Sink, args, check, free_port, send_tcp, temp_dir, wait_for

a = args()
work = temp_dir()

a1 = Sink().start()
a2 = Sink().start()
b = Sink().start()
ports = [free_port(), free_port()]


def config(port, a_port, with_b, b_port=None, extra_a=""):
    text = """[input]
tcp = "127.0.0.1:%d"
[metrics]
listen = "127.0.0.1:0"
[health]
ready = "all"
[[output]]
name = "a"
address = "127.0.0.1:%d"
queue_dir = "%s/q-a"
max_memory_bytes = "1MiB"
%s
""" % (port, a_port, work, extra_a)
    if with_b:
        text += """[[output]]
name = "b"
address = "127.0.0.1:%d"
queue_dir = "%s/q-b"
max_memory_bytes = "256KiB"
backoff_max_ms = 200
""" % (b_port, work)
    return text


hd = Hopperd(a.hopperd, work, config(ports[0], a1.port, False))
hd.start()

# ---- the load: clients without pause, each batch on a new connection ----------------
sent = []            # every line of every batch hopperd read to its end
sent_lock = threading.Lock()
stop_load = threading.Event()
target = {"addr": hd.tcp()}


def load(worker):
    # Paced (500 lines every 20 ms per client, 75,000 lines/s in all) so that the load
    # lasts through every reload below; bounded all the same.
    n = 0
    while not stop_load.is_set() and n < 1500:
        time.sleep(0.02)
        batch = ["load.%d.%d 1 %d" % (worker, n * 500 + i, i) for i in range(500)]
        try:
            send_tcp(target["addr"], batch)
        except OSError:
            time.sleep(0.05)  # the listener just moved: the batch is sent again, whole
            continue
        with sent_lock:
            sent.extend(batch)
        n += 1


workers = [threading.Thread(target=load, args=(w,), daemon=True) for w in range(3)]
for w in workers:
    w.start()

reloads = 0


def reload(text, expect_ok=True):
    global reloads
    hd.write_config(text)
    before_ok = hd.metric("hopperd_config_reloads_total")
    before_fail = hd.metric("hopperd_config_reload_failures_total")
    hd.proc.send_signal(signal.SIGHUP)
    if expect_ok:
        wait_for(lambda: hd.metric("hopperd_config_reloads_total") > before_ok, 30, "the reload to take effect")
        reloads += 1
    else:
        wait_for(lambda: hd.metric("hopperd_config_reload_failures_total") > before_fail, 30, "the reload refused")
    hd.reread_ready()
    time.sleep(0.4)  # load flows under the new config


def lines_sent():
    with sent_lock:
        return len(sent)


wait_for(lambda: lines_sent() > 5000, 30, "load flowing")
reload(config(ports[0], a1.port, True, b.port))                      # 1: add b
wait_for(lambda: b.distinct() > 0, 30, "the added output delivers")
check(True, "reload 1: output b added while clients send")
reload(config(ports[0], a2.port, True, b.port))                      # 2: a moves to a2
wait_for(lambda: a2.distinct() > 0, 30, "output a delivers to its new address")
check(True, "reload 2: output a's address changed; lines flow to the new downstream")
reload(config(ports[1], a2.port, True, b.port))                      # 3: the listener moves
check(hd.ready["tcp"] == ["127.0.0.1:%d" % ports[1]], "reload 3: the TCP listener is re-bound: %s" % hd.ready["tcp"])
target["addr"] = hd.tcp()
n0 = lines_sent()
wait_for(lambda: lines_sent() > n0 + 3000, 30, "clients send to the new port")

bad_text = config(ports[1], a2.port, True, b.port) + "max_memroy_bytes = 5\n"
reload(bad_text, expect_ok=False)                                     # refused
log = hd.log()
check("reload refused, the running config stays" in log and "max_memroy_bytes: unknown key" in log,
      "an invalid config is refused with its error: " +
      [l for l in log.splitlines() if "reload refused" in l][-1].split(" error ", 1)[-1])
status, body = hd.healthz()
health = json.loads(body)
check(health["config"]["last_reload_ok"] is False and "max_memroy_bytes" in health["config"]["last_reload_error"],
      "/healthz says the last reload was refused, and why")
check(hd.metric("hopperd_config_last_reload_successful") == 0, "hopperd_config_last_reload_successful 0")
n0 = lines_sent()
wait_for(lambda: lines_sent() > n0 + 3000, 30, "lines still flow under the old config")

b.stop()                                                              # b's lines now wait
b_seen_before = b.distinct()
wait_for(lambda: hd.metric('hopperd_output_queue_memory_items{output="b"}') +
         hd.metric('hopperd_output_queue_disk_items{output="b"}') > 1000, 30, "lines waiting for b")
reload(config(ports[1], a2.port, False))                              # 4: remove b
check(hd.metric("hopperd_config_last_reload_successful") == 1, "a valid reload after a refused one works")
left = json.loads(hd.healthz()[1])["removed_outputs"]
check(len(left) == 1 and left[0]["name"] == "b" and left[0]["lines"] > 0,
      "reload 4: the removed output's queue stays on disk and is reported: %s" % left)
check("output b removed; its queue" in hd.log(), "the log names the removed output and its queue")
dump = subprocess.run([a.hopper, "dump", os.path.join(work, "q-b")], capture_output=True, text=True).stdout.splitlines()
check(len(dump) == left[0]["lines"], "hopper dump shows the %d lines left in b's queue" % len(dump))

for i in range(6):                                                    # 5..10: back and forth
    port = a1.port if i % 2 == 0 else a2.port
    extra = "batch_bytes = \"%dKiB\"" % (16 + i)
    reload(config(ports[1], port, False, extra_a=extra))
check(True, "reloads 5-10: output a changed six more times under load")

stop_load.set()
for w in workers:
    w.join(120)
total = lines_sent()
wait_for(lambda: hd.metric("hopperd_output_queue_memory_items{output=\"a\"}") == 0 and
         hd.metric("hopperd_output_queue_disk_items{output=\"a\"}") == 0, 120, "output a's queue to drain")
expected = set(sent)
wait_for(lambda: expected <= (a1.seen | a2.seen), 60, "every line at a1 or a2")
missing = len(expected - (a1.seen | a2.seen))
check(missing == 0, "zero lost: all %d lines sent under %d reloads reached output a (%d at a1, %d at a2)" %
      (total, reloads, len(expected & a1.seen), len(expected & a2.seen)))
check(hd.metric("hopperd_config_reloads_total") == reloads and hd.metric("hopperd_config_reload_failures_total") == 1,
      "hopperd_config_reloads_total %d, ..._failures_total 1" % reloads)
b_lines = b.seen | set(dump)
check(b_lines <= expected and len(b_lines) > b_seen_before,
      "what output b got (%d at its downstream, %d left on disk) are lines that were sent" % (b_seen_before, len(dump)))
rc, _ = hd.stop()
check(rc == 0, "clean stop after %d reloads" % reloads)
print("hopperd_reload: %d lines, %d reloads (+1 refused), 0 lost" % (total, reloads))
