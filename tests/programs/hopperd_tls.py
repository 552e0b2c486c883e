"""TLS on hopperd's TCP inputs and outputs, with certificates made by the openssl tool at run
time: a CA, a server certificate for localhost / sink.test / 127.0.0.1, a client certificate,
and a rogue CA with its own client. Inputs: server certificate and key, client certificates
required (mutual TLS): a client without one, or with one from the rogue CA, is refused and
counted. Outputs: the downstream verified against tls_ca_file under tls_server_name (sent as
SNI), a client certificate presented; a wrong name or CA is refused, lines wait, and a
reload with the right name delivers them. --check-config finds a key that does not match."""

import os
import socket
import ssl
import subprocess
import threading

from e2e_util import Hopperd, Sink, args, check, send_tcp, temp_dir, wait_for

a = args()
work = temp_dir()
pki = os.path.join(work, "pki")
os.makedirs(pki)


def openssl(*argv):
    r = subprocess.run(["openssl", *argv], cwd=pki, capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        raise AssertionError("openssl %s: %s" % (" ".join(argv), r.stderr))


def key_and_csr(name, cn):
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", name + ".key",
            "-out", name + ".csr", "-subj", "/CN=" + cn)


def sign(name, ca, ext):
    with open(os.path.join(pki, name + ".ext"), "w") as f:
        f.write(ext + "\n")
    openssl("x509", "-req", "-in", name + ".csr", "-CA", ca + ".crt", "-CAkey", ca + ".key", "-CAcreateserial",
            "-out", name + ".crt", "-days", "2", "-extfile", name + ".ext")


for ca in ("ca", "rogue"):
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", ca + ".key",
            "-out", ca + ".crt", "-days", "2", "-subj", "/CN=hopper test " + ca)
key_and_csr("server", "localhost")
sign("server", "ca", "subjectAltName=DNS:localhost,DNS:sink.test,IP:127.0.0.1\nextendedKeyUsage=serverAuth")
key_and_csr("client", "client")
sign("client", "ca", "extendedKeyUsage=clientAuth")
key_and_csr("intruder", "intruder")
sign("intruder", "rogue", "extendedKeyUsage=clientAuth")
P = lambda n: os.path.join(pki, n)  # noqa: E731
check(True, "certificates generated with the openssl tool")


class TlsSink(Sink):
    """A Sink speaking TLS with the server certificate; records the SNI names it was
    asked for, and can require client certificates signed by the CA."""

    def __init__(self, require_client_cert=False):
        super().__init__()
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(P("server.crt"), P("server.key"))
        if require_client_cert:
            self.ctx.verify_mode = ssl.CERT_REQUIRED
            self.ctx.load_verify_locations(P("ca.crt"))
        self.names = []
        self.peers = []
        self.ctx.sni_callback = lambda sock, name, ctx: self.names.append(name)

    def _read(self, c):
        try:
            c = self.ctx.wrap_socket(c, server_side=True)
        except (ssl.SSLError, OSError):
            c.close()
            return
        cert = c.getpeercert()
        if cert:
            self.peers.append(dict(x[0] for x in cert["subject"])["commonName"])
        super()._read(c)


def tls_send(address, lines, cert=None, key=None):
    """Sends over TLS and closes cleanly; raises if the server refuses the session."""
    ctx = ssl.create_default_context(cafile=P("ca.crt"))
    if cert:
        ctx.load_cert_chain(P(cert), P(key))
    raw = socket.create_connection(address, timeout=10)
    s = ctx.wrap_socket(raw, server_hostname="localhost")
    s.sendall(("\n".join(lines) + "\n").encode())
    try:
        s.shutdown(socket.SHUT_WR)
    except OSError:
        pass
    data = s.recv(1)  # b"" once hopperd read everything and closed; an alert raises
    s.close()
    return data


# ---- TLS input, mutual TLS ---------------------------------------------------------------
plain_sink = Sink().start()
tls_sink = TlsSink(require_client_cert=True).start()
hd = Hopperd(a.hopperd, work, f"""[input]
tls = "127.0.0.1:0"
tls_cert_file = "{P('server.crt')}"
tls_key_file = "{P('server.key')}"
tls_client_ca_file = "{P('ca.crt')}"
idle_timeout_ms = 500
[metrics]
listen = "127.0.0.1:0"
[[output]]
name = "plain"
address = "127.0.0.1:{plain_sink.port}"
queue_dir = "{work}/q-plain"
[[output]]
name = "secure"
address = "127.0.0.1:{tls_sink.port}"
queue_dir = "{work}/q-secure"
tls = true
tls_ca_file = "{P('ca.crt')}"
tls_server_name = "sink.test"
tls_cert_file = "{P('client.crt')}"
tls_key_file = "{P('client.key')}"
""", "tls")
hd.start()
check(hd.ready["tls"] and not hd.ready["tcp"], "the ready file lists the TLS listener: %s" % hd.ready["tls"])
good = ["tls.line %d 1" % i for i in range(2000)]
tls_send(hd.tls(), good, "client.crt", "client.key")
wait_for(lambda: all(l in plain_sink.seen for l in good), 30, "lines from a TLS client at the plain downstream")
check(True, "a client with a certificate from the CA is served over TLS")
wait_for(lambda: all(l in tls_sink.seen for l in good), 30, "the same lines at the TLS downstream")
check(tls_sink.names and set(tls_sink.names) == {"sink.test"}, "the output sends tls_server_name as SNI: %s" %
      set(tls_sink.names))
check(tls_sink.peers and set(tls_sink.peers) == {"client"}, "the output presents its client certificate")

for who, cert, key in (("without a certificate", None, None), ("with the rogue CA's certificate", "intruder.crt",
                                                               "intruder.key")):
    before = hd.metric("hopperd_tls_handshake_failures_total")
    try:
        tls_send(hd.tls(), ["intruder.line 1 1"], cert, key)
    except (ssl.SSLError, OSError):
        pass
    wait_for(lambda: hd.metric("hopperd_tls_handshake_failures_total") > before, 10, "the refusal counted")
    check(True, "a client %s is refused and counted" % who)
check("intruder.line 1 1" not in plain_sink.seen, "nothing from a refused client is relayed")
check("TLS client" in hd.log() and "refused" in hd.log(), "the log names the refused client")

# A plain-text client on the TLS port is refused too, never relayed.
s = socket.create_connection(hd.tls())
s.sendall(b"plain.on.tls 1 1\n")
s.settimeout(10)
try:
    s.recv(100)
except OSError:
    pass
s.close()
check("plain.on.tls 1 1" not in plain_sink.seen, "plain text on the TLS port is not relayed")
silent = socket.create_connection(hd.tls())  # connects, never starts the handshake
silent.settimeout(10)
try:
    gone = silent.recv(1) == b""
except ConnectionResetError:
    gone = True
except socket.timeout:
    gone = False
silent.close()
check(gone, "a client that never finishes its handshake is disconnected (idle_timeout_ms)")
check(hd.stop()[0] == 0, "clean stop")

# ---- TLS output: a wrong name, then a reload with the right one -----------------------
tls_sink2 = TlsSink().start()


def out_config(name, ca):
    return f"""[input]
tcp = "127.0.0.1:0"
[metrics]
listen = "127.0.0.1:0"
[[output]]
name = "secure"
address = "127.0.0.1:{tls_sink2.port}"
queue_dir = "{work}/q-secure2"
tls = true
tls_ca_file = "{P(ca)}"
tls_server_name = "{name}"
backoff_max_ms = 200
"""


hd = Hopperd(a.hopperd, work, out_config("wrong.test", "ca.crt"), "wrongname")
hd.start()
lines = ["wait.line %d 1" % i for i in range(500)]
send_tcp(hd.tcp(), lines)
wait_for(lambda: hd.metric('hopperd_output_connect_failures_total{output="secure"}') >= 2, 20, "failed connections")
check(tls_sink2.distinct() == 0, "a downstream whose certificate does not match tls_server_name gets nothing")
check("certificate verify failed" in hd.log() or "hostname mismatch" in hd.log(),
      "the log says why: " + [l for l in hd.log().splitlines() if "TLS with" in l][0].split(" warn ", 1)[-1])
hd.write_config(out_config("sink.test", "rogue.crt"))
hd.proc.send_signal(__import__("signal").SIGHUP)
wait_for(lambda: hd.metric("hopperd_config_reloads_total") == 1, 20, "reload")
before = hd.metric('hopperd_output_connect_failures_total{output="secure"}')
wait_for(lambda: hd.metric('hopperd_output_connect_failures_total{output="secure"}') > before, 20, "failures")
check(tls_sink2.distinct() == 0, "a downstream not signed by tls_ca_file gets nothing")
hd.write_config(out_config("sink.test", "ca.crt"))
hd.proc.send_signal(__import__("signal").SIGHUP)
wait_for(lambda: all(l in tls_sink2.seen for l in lines), 30, "the waiting lines after the fix")
check(True, "after a reload with the right name and CA, the 500 waiting lines are delivered over TLS")
check(hd.stop()[0] == 0, "clean stop")

# ---- check-config: TLS files -----------------------------------------------------------
bad = os.path.join(work, "badkey.toml")
with open(bad, "w") as f:
    f.write(f"""[input]
tls = "127.0.0.1:0"
tls_cert_file = "{P('server.crt')}"
tls_key_file = "{P('intruder.key')}"
[[output]]
address = "127.0.0.1:9"
queue_dir = "{work}/q-x"
""")
r = subprocess.run([a.hopperd, "--check-config", bad], capture_output=True, text=True, timeout=30)
check(r.returncode == 2 and "badkey.toml:4: input.tls_key_file" in r.stderr and "mismatch" in r.stderr,
      "--check-config: a key that does not match its certificate: " + r.stderr.strip())
plain_sink.stop(keep_port=False)
tls_sink.stop(keep_port=False)
tls_sink2.stop(keep_port=False)
print("hopperd_tls: all checks passed")
