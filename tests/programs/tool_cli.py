"""The hopper command-line tool: inspect, verify and dump on a queue that hopperd filled
(stopped, then live and locked by hopperd, then damaged), usage errors, and the demo."""

import glob
import json
import os
import struct
import subprocess

from e2e_util import Hopperd, Sink, args, check, send_tcp, temp_dir

a = args()
work = temp_dir()
qdir = os.path.join(work, "queue")


def hopper(*argv, ok=(0,)):
    r = subprocess.run([a.hopper, *argv], capture_output=True, text=True, timeout=120)
    if r.returncode not in ok:
        raise AssertionError("hopper %s: exit %d\n%s%s" % (" ".join(argv), r.returncode, r.stdout, r.stderr))
    return r


# A queue with 20,000 lines that could not be delivered (the downstream is away).
sink = Sink().reserve()
config = f"""
[input]
tcp = "127.0.0.1:0"
[[output]]
name = "away"
address = "127.0.0.1:{sink.port}"
queue_dir = "{qdir}"
max_memory_bytes = "32KiB"
segment_bytes = "64KiB"
page_bytes = "8KiB"
"""
hd = Hopperd(a.hopperd, work, config).start()
# Not too compressible, so that the queue takes several segment files.
lines = ["tool.test.l%05d.%08x %d 1700000000" % (i, (i * 2654435761) % 2**32, i) for i in range(20000)]
send_tcp(hd.tcp(), lines)
check(hd.stop()[0] == 0, "hopperd filled a queue and stopped")

# ---- inspect ---------------------------------------------------------------------------
info = json.loads(hopper("inspect", "--json", qdir).stdout)
check(info["undelivered_items"] == 20000, "inspect --json: 20,000 undelivered items")
check(info["oldest_seq"] == 0 and info["newest_seq"] == 19999, "inspect --json: sequence numbers 0..19999")
check(info["intact"] and not info["lock"]["held"], "inspect --json: intact, not locked")
check(info["segments"] >= 2 and info["segments"] == len(info["segment_files"]), "inspect --json: segment list")
check(info["disk_bytes"] == sum(os.path.getsize(p) for p in glob.glob(qdir + "/hopper-*.seg")),
      "inspect --json: bytes on disk match the files")
check(info["raw_bytes"] > info["disk_bytes"], "inspect --json: raw bytes exceed compressed bytes")
text = hopper("inspect", qdir).stdout
check("not held" in text and "20,000 not yet delivered" in text and "SEGMENT" in text, "inspect: human table")

# ---- dump ------------------------------------------------------------------------------
check(hopper("dump", qdir).stdout.splitlines() == lines, "dump: every line, in order")
check(hopper("dump", "--limit", "3", qdir).stdout.splitlines() == lines[:3], "dump --limit")
check(hopper("dump", "--seq", "--limit", "2", qdir).stdout.splitlines() == ["0\t" + lines[0], "1\t" + lines[1]],
      "dump --seq")
rows = [json.loads(l) for l in hopper("dump", "--json", qdir).stdout.splitlines()]
check([r["item"] for r in rows] == lines and [r["seq"] for r in rows] == list(range(20000)), "dump --json")
check(hopper("dump", qdir).stdout.splitlines() == lines, "dump consumed nothing")

# ---- verify ----------------------------------------------------------------------------
r = hopper("verify", qdir)
check("intact" in r.stdout and "NOT" not in r.stdout, "verify: intact, exit 0")

# ---- live: hopperd holds the queue -----------------------------------------------------
hd.start()
info = json.loads(hopper("inspect", "--json", qdir).stdout)
check(info["lock"]["held"] and info["lock"]["pid"] == hd.proc.pid, "inspect: the lock is held by hopperd's pid")
check(hopper("dump", qdir).stdout.splitlines() == lines, "dump works on a live queue without its lock")
check("held by pid %d (hopperd)" % hd.proc.pid in hopper("inspect", qdir).stdout, "inspect names the holder")
check(hd.stop()[0] == 0, "hopperd stopped again")

# ---- damage ----------------------------------------------------------------------------
seg = sorted(glob.glob(qdir + "/hopper-*.seg"))[0]
with open(seg, "r+b") as f:
    data = f.read()
    # docs/format.md, version 2: a 56-byte page header, its magic "HPG2".
    first_payload = struct.unpack_from("<I", data, 32 + 4)[0]
    second = 32 + 56 + first_payload
    check(struct.unpack_from("<I", data, second)[0] == 0x32475048, "found the second page of " + os.path.basename(seg))
    f.seek(second + 56 + 10)
    f.write(bytes([data[second + 66] ^ 0xFF]))
r = hopper("verify", qdir, ok=(1,))
check("NOT INTACT" in r.stdout and "bytes %d.." % second in r.stdout, "verify: exit 1 and the damaged range")
info = json.loads(hopper("verify", "--json", qdir, ok=(1,)).stdout)
check(not info["intact"] and info["damaged"][0]["begin"] == second, "verify --json: the damaged range")
dumped = hopper("dump", qdir).stdout.splitlines()
check(0 < len(dumped) < len(lines) and dumped[-1] == lines[-1], "dump skips the damaged page and prints the rest")

# ---- usage -------------------------------------------------------------------------------
check(hopper(ok=(2,)).returncode == 2, "no subcommand: exit 2")
check(hopper("verify", ok=(2,)).returncode == 2, "verify without DIR: exit 2")
r = hopper("inspect", os.path.join(work, "nope"), ok=(2,))
check("nope" in r.stderr, "inspect of a missing directory names it, exit 2")

# ---- the demo (faster) -------------------------------------------------------------------
r = hopper("demo", "--speed", "4", "--json", "--plain")
summary = json.loads(r.stdout)
check(summary["ok"] and summary["lost"] == 0 and summary["duplicates"] == 0 and summary["out_of_order"] == 0,
      "demo: nothing lost, nothing twice, order kept (%d lines)" % summary["sent"])
check(summary["spilled"] > 0 and summary["recovered_at_restart"] > 0, "demo: it spilled and recovered")
check(summary["peak_memory_bytes"] <= summary["memory_budget_bytes"], "demo: memory within its budget")
# ---- bench (small) -----------------------------------------------------------------------
bench_parent = os.path.join(work, "bench")
os.makedirs(bench_parent)
r = hopper("bench", "--items", "30000", "--producers", "3", "--memory", "64KiB", "--segment", "1MiB",
           "--page", "16KiB", "--dir", bench_parent, "--json")
res = json.loads(r.stdout)
phases = {p["name"]: p for p in res["phases"]}
check(res["ok"] and set(phases) == {"fill", "reopen", "drain", "through"}, "bench --json: four phases")
check(phases["drain"]["items"] == 30000 and phases["through"]["items"] == 30000,
      "bench: drain and through each received every item (checked in order by the tool)")
check(res["fill"]["spilled"] > 25000 and 0 < res["fill"]["disk_over_raw"] < 1, "bench: fill spilled, compressed")
check(os.listdir(bench_parent) == [], "bench removes its scratch queue")
r = hopper("bench", "--items", "300", "--sync", "always", "--dir", bench_parent, "--json")
check(json.loads(r.stdout)["fill"]["syncs"] > 0, "bench --sync always: fdatasyncs counted")
r = hopper("bench", "--sync", "sometimes", ok=(2,))
check("--sync sometimes" in r.stderr, "bench: a bad --sync is named, exit 2")
r = hopper("bench", "--page", "32MiB", "--segment", "1MiB", "--dir", bench_parent, ok=(2,))
check("page_bytes" in r.stderr, "bench: invalid budgets are refused with the option's name, exit 2")
r = hopper("bench", "--dir", os.path.join(work, "no", "such"), ok=(2,))
check(os.path.join(work, "no", "such") in r.stderr, "bench: an unusable --dir is named, exit 2")

print("1 passed, 0 failed")
