"""Kafka parts of the end-to-end tests: the mock cluster (tests/programs/kafka_mock_cluster,
librdkafka's mock brokers on 127.0.0.1) and the checks of what a consumer reads back.

The cluster process reads commands on stdin and ends at end of input, so it never
outlives the test; e2e_util kills it too if the test dies."""

import argparse
import select
import subprocess

from e2e_util import start


def args():
    p = argparse.ArgumentParser()
    p.add_argument("--hopperd", required=True)
    p.add_argument("--hopper", required=True)
    p.add_argument("--mock", required=True, help="the kafka_mock_cluster program")
    return p.parse_args()


class MockCluster:
    """A mock Kafka cluster with `brokers` brokers and `topic` of `partitions` partitions."""

    def __init__(self, binary, brokers=3, topic="telemetry", partitions=4):
        self.topic = topic
        self.proc = start([binary, "--brokers", str(brokers), "--topic", topic, "--partitions", str(partitions)],
                          stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        first = self._reply(30)
        if not first.startswith("bootstraps "):
            raise AssertionError("kafka_mock_cluster did not start: %r" % first)
        self.bootstraps = first.split(" ", 1)[1]

    def _reply(self, timeout):
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            raise AssertionError("kafka_mock_cluster did not answer within %d s" % timeout)
        line = self.proc.stdout.readline().decode().rstrip("\n")
        if not line:
            raise AssertionError("kafka_mock_cluster exited (%s)" % self.proc.poll())
        return line

    def command(self, text, timeout=90):
        self.proc.stdin.write((text + "\n").encode())
        self.proc.stdin.flush()
        reply = self._reply(timeout)
        if not reply.startswith("ok"):
            raise AssertionError("kafka_mock_cluster: %s: %s" % (text, reply))
        return reply

    def down(self, broker=-1):
        self.command("down %d" % broker)

    def up(self, broker=-1):
        self.command("up %d" % broker)

    def create_topic(self, name, partitions):
        self.command("create_topic %s %d" % (name, partitions))

    def topic_error(self, topic, code):
        self.command("topic_error %s %d" % (topic, code))

    def produce_errors(self, count, code):
        self.command("produce_errors %d %d" % (count, code))

    def offsets(self, topic=None):
        """(first offset kept, next offset), summed over the partitions. The mock keeps a
        bounded log per partition; the second counts every message ever appended."""
        _, low, high = self.command("offsets %s" % (topic or self.topic)).split()
        return int(low), int(high)

    def consume(self, path, topic=None):
        """Every message of the topic now: [(partition, offset, key or None, value)]. The
        mock keeps a bounded log per partition (several MB): read small topics only."""
        self.command("consume %s %s" % (topic or self.topic, path))
        out = []
        with open(path, "rb") as f:
            for raw in f:
                p, o, k, v = raw.decode().rstrip("\n").split("\t", 3)
                out.append((int(p), int(o), None if k == "-" else k, v))
        return out

    def close(self):
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write(b"quit\n")
                self.proc.stdin.flush()
            except OSError:
                pass
            self.proc.wait(timeout=30)


def keyed_lines(tag, n, keys=50):
    """n unique lines "kafka.TAG.mKK I 1700000000" over `keys` keys (the first field)."""
    return ["kafka.%s.m%02d %d 1700000000" % (tag, i % keys, i) for i in range(n)]


def output_metric(hd, name, output="kafka"):
    """One sample of an output's metric family from hopperd's /metrics."""
    return hd.metric('%s{output="%s"}' % (name, output))


def key_of(line, field):
    parts = line.split()
    return parts[field - 1] if len(parts) >= field else None


class Delivery:
    """What a consumer read, against what was sent: lost lines, duplicates, and per-key
    order (each key's first arrivals in send order; Kafka orders within a partition, and
    one key always goes to one partition)."""

    def __init__(self, messages, sent, key_field=1):
        self.values = [m[3] for m in messages]
        distinct = set(self.values)
        self.missing = [l for l in sent if l not in distinct]
        self.duplicates = len(self.values) - len(distinct)
        position = {l: i for i, l in enumerate(sent)}
        self.unknown = [v for v in distinct if v not in position]
        self.key_mismatch = sum(1 for m in messages if key_field and m[2] != key_of(m[3], key_field))
        self.order_violations = 0
        last = {}
        seen = set()
        by_partition = {}
        for p, o, k, v in sorted(messages, key=lambda m: (m[0], m[1])):
            by_partition.setdefault(p, []).append(v)
        for p, values in by_partition.items():
            for v in values:
                if v in seen or v not in position:
                    continue
                seen.add(v)
                k = key_of(v, key_field) if key_field else p
                if k in last and position[v] < last[k]:
                    self.order_violations += 1
                last[k] = position[v]

    def summary(self):
        return "%d messages, %d distinct, %d missing%s, %d not sent%s, %d duplicates, %d order violations" % (
            len(self.values), len(set(self.values)), len(self.missing),
            " (first: %s)" % self.missing[:3] if self.missing else "", len(self.unknown),
            " (first: %s)" % sorted(self.unknown)[:3] if self.unknown else "", self.duplicates, self.order_violations)


def tool_lines(hopper, directory):
    r = subprocess.run([hopper, "dump", directory], capture_output=True, text=True)
    if r.returncode != 0:
        raise AssertionError("hopper dump %s: %s" % (directory, r.stderr))
    return r.stdout.splitlines()
