"""hopperd under systemd's Type=notify protocol, without systemd: the test is the notification
socket (NOTIFY_SOCKET, a Unix datagram socket) and sets WATCHDOG_USEC as systemd would.
hopperd must say READY=1 once it serves (and still write --ready-file), ping WATCHDOG=1
within the period, say RELOADING=1 then READY=1 around a SIGHUP reload, and STOPPING=1 at
SIGTERM."""

import os
import signal
import socket
import time

from e2e_util import Hopperd, Sink, args, check, one_output_config, send_tcp, temp_dir, wait_for

a = args()
work = temp_dir()
sink = Sink().start()

sock_path = os.path.join(work, "notify.sock")
notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
notify.bind(sock_path)
notify.settimeout(0.2)
messages = []


def collect(seconds):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            messages.append(notify.recv(4096).decode())
        except socket.timeout:
            pass


def seen(state):
    return [m for m in messages if state in m.split("\n")]


def wait_state(state, timeout=20):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if seen(state):
            return True
        collect(0.2)
    raise AssertionError("no %s from hopperd; got %r" % (state, messages))


text = one_output_config(sink.port, work + "/q")
hd = Hopperd(a.hopperd, work, text)
env = dict(os.environ, NOTIFY_SOCKET=sock_path, WATCHDOG_USEC="300000")
hd.start(env=env)  # waits for --ready-file: kept for scripts outside systemd
check(True, "--ready-file is still written")
wait_state("READY=1")
ready = seen("READY=1")[0]
check("STATUS=serving" in ready.split("\n"), "READY=1 with a STATUS line: %r" % ready)
check(os.path.exists(hd.ready_path), "READY=1 comes once the ready file is there (listeners bound)")
collect(1.0)
pings = len(seen("WATCHDOG=1"))
check(pings >= 3, "WATCHDOG=1 about twice per WATCHDOG_USEC (%d in a second at 300 ms)" % pings)

send_tcp(hd.tcp(), ["notify.line 1 1"])
wait_for(lambda: "notify.line 1 1" in sink.seen, 20, "a line through")

messages.clear()
hd.proc.send_signal(signal.SIGHUP)
wait_state("READY=1")
check(seen("RELOADING=1") and messages.index(seen("RELOADING=1")[0]) < messages.index(seen("READY=1")[0]),
      "SIGHUP: RELOADING=1, then READY=1 once the reload is done")

hd.write_config(text + "bogus = 1\n")
messages.clear()
hd.proc.send_signal(signal.SIGHUP)
wait_state("READY=1")
status = [l for l in seen("READY=1")[0].split("\n") if l.startswith("STATUS=")]
check(status and "reload refused" in status[0], "a refused reload is in systemd's STATUS: %s" % status)

messages.clear()
hd.proc.send_signal(signal.SIGTERM)
rc = hd.proc.wait(30)
collect(0.3)
check(seen("STOPPING=1"), "SIGTERM: STOPPING=1")
check(rc == 0, "clean stop")

# Without NOTIFY_SOCKET nothing changes (and no error).
hd2 = Hopperd(a.hopperd, work, text.replace("/q\"", "/q2\""), "plain").start()
check(hd2.stop()[0] == 0 and "error" not in hd2.log(), "without systemd: no notification, no error")
notify.close()
sink.stop(keep_port=False)
print("hopperd_systemd: all checks passed")
