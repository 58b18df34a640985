#!/usr/bin/python3
"""Exec and logs of a pod through the real API server over WebSocket, as
non-kubectl clients (client-go's WebSocket executor, the dashboard, Python
clients) reach a vkc node.

    ws_apiserver.py KUBECONFIG NAMESPACE POD CONTAINER

The API server hands an exec upgrade on to vkc's kubelet API untouched, so the
subprotocol is vkc's to choose; the log stream it reads from vkc as plain HTTP
and serves over HTTPS or, on request, a WebSocket of its own. Needs the mock
provider: its built-ins (echo, cat, exit N) and its log lines "... POD/CTR line
K". Prints one line per check; exits 1 at the first failure.
"""
import base64
import json
import os
import re
import ssl
import sys
import tempfile
import time
import urllib.parse
import urllib.request

import websocket
import yaml

STDIN, STDOUT, STDERR, ERROR = 0, 1, 2, 3
STREAM_CLOSE = 255  # v5: a message of this byte and a channel closes it
TIMEOUT = 20


class Failure(Exception):
    pass


def check(ok, what):
    if not ok:
        raise Failure(what)


class Cluster:
    """The API server and the admin's client certificate, from a kubeconfig
    that embeds them (*-data) or names their files."""

    def __init__(self, path, tmp):
        with open(path) as f:
            cfg = yaml.safe_load(f)
        ctx_name = cfg["current-context"]
        ctx = next(c["context"] for c in cfg["contexts"] if c["name"] == ctx_name)
        cluster = next(c["cluster"] for c in cfg["clusters"] if c["name"] == ctx["cluster"])
        user = next(u["user"] for u in cfg["users"] if u["name"] == ctx["user"])
        self.server = cluster["server"].rstrip("/")
        base = os.path.dirname(os.path.abspath(path))
        self.ca = self._file(cluster, "certificate-authority", base, tmp)
        self.cert = self._file(user, "client-certificate", base, tmp)
        self.key = self._file(user, "client-key", base, tmp)

    @staticmethod
    def _file(section, key, base, tmp):
        if key + "-data" in section:
            name = os.path.join(tmp, key)
            with open(name, "wb") as f:
                f.write(base64.b64decode(section[key + "-data"]))
            return name
        return os.path.join(base, section[key])

    def sslopt(self):
        return {"ca_certs": self.ca, "certfile": self.cert, "keyfile": self.key,
                "cert_reqs": ssl.CERT_REQUIRED}

    def ssl_context(self):
        ctx = ssl.create_default_context(cafile=self.ca)
        ctx.load_cert_chain(self.cert, self.key)
        return ctx

    def ws_url(self, path, query):
        return "wss://" + self.server.split("://", 1)[1] + path + "?" + \
            urllib.parse.urlencode(query, doseq=True)


class Exec:
    """One exec over a WebSocket with a channel.k8s.io subprotocol."""

    def __init__(self, cluster, ns, pod, ctr, command, protocol, stdin=False):
        query = {"container": ctr, "command": command, "stdout": "1", "stderr": "1"}
        if stdin:
            query["stdin"] = "1"
        path = "/api/v1/namespaces/%s/pods/%s/exec" % (ns, pod)
        self.ws = websocket.create_connection(
            cluster.ws_url(path, query), subprotocols=[protocol],
            sslopt=cluster.sslopt(), timeout=TIMEOUT)
        check(self.ws.subprotocol == protocol,
              "%s: the server chose subprotocol %r" % (protocol, self.ws.subprotocol))
        self.b64 = protocol.startswith("base64.") or ".base64." in protocol
        self.got = {STDOUT: b"", STDERR: b"", ERROR: b""}
        self.closed = False

    def send(self, channel, data):
        if self.b64:
            self.ws.send(str(channel) + base64.b64encode(data).decode())
        else:
            self.ws.send_binary(bytes([channel]) + data)

    def close_stdin(self):
        self.ws.send_binary(bytes([STREAM_CLOSE, STDIN]))

    def read(self, until=None):
        """Collect the channels until the server closes, or until(got) holds."""
        deadline = time.monotonic() + TIMEOUT
        while not self.closed and not (until and until(self.got)):
            check(time.monotonic() < deadline, "no end of the exec in %d s: %r" % (TIMEOUT, self.got))
            try:
                op, data = self.ws.recv_data()
            except websocket.WebSocketConnectionClosedException:
                op, data = websocket.ABNF.OPCODE_CLOSE, b""
            if op == websocket.ABNF.OPCODE_CLOSE:
                self.closed = True
            elif data:
                self._take(data)
        return self.got

    def _take(self, data):
        if self.b64:
            channel, payload = data[0] - ord("0"), base64.b64decode(data[1:])
        else:
            channel, payload = data[0], data[1:]
        check(channel in self.got, "a message on channel %d" % channel)
        self.got[channel] += payload

    def close(self):
        self.ws.close()


def status(got):
    """The v4+ error channel: a metav1.Status."""
    check(got[ERROR], "no Status on the error channel")
    return json.loads(got[ERROR])


def exec_echo(cluster, target, protocol):
    e = Exec(cluster, *target, ["echo", "hello", "over", "ws"], protocol)
    got = e.read()
    check(got[STDOUT] == b"hello over ws\n", "%s: echo printed %r" % (protocol, got[STDOUT]))
    if protocol.startswith("v"):
        st = status(got)
        check(st.get("status") == "Success", "%s: echo's Status %r" % (protocol, st))
    else:
        check(got[ERROR] == b"", "%s: echo's error channel %r" % (protocol, got[ERROR]))


def exec_exit(cluster, target, protocol):
    e = Exec(cluster, *target, ["exit", "3"], protocol)
    got = e.read()
    if protocol.startswith("v"):
        st = status(got)
        causes = st.get("details", {}).get("causes", [])
        check(st.get("status") == "Failure" and st.get("reason") == "NonZeroExitCode" and
              {"reason": "ExitCode", "message": "3"} in causes,
              "%s: exit 3 gave Status %r" % (protocol, st))
    else:
        check(got[ERROR].endswith(b"exit status 3"),
              "%s: exit 3 gave error %r" % (protocol, got[ERROR]))


def exec_cat(cluster, target, protocol):
    """stdin reaches cat and comes back; v5 can close stdin, which ends cat."""
    e = Exec(cluster, *target, ["cat"], protocol, stdin=True)
    data = b"from ws stdin\n"
    e.send(STDIN, data)
    if protocol == "v5.channel.k8s.io":
        e.close_stdin()
        got = e.read()
        check(status(got).get("status") == "Success", "v5: cat's Status %r" % got[ERROR])
    else:
        # Before v5 stdin cannot be closed alone: read the echo, then hang up.
        got = e.read(until=lambda g: len(g[STDOUT]) >= len(data))
        e.close()
    check(got[STDOUT] == data, "%s: cat echoed %r" % (protocol, got[STDOUT]))


def line_numbers(text):
    return [int(n) for n in re.findall(r" line (\d+)$", text, re.M)]


def follow_https(cluster, ns, pod, ctr, seconds):
    """GET .../log?follow&tailLines=1 for a while; the line numbers seen."""
    query = urllib.parse.urlencode({"container": ctr, "follow": "true", "tailLines": "1"})
    url = "%s/api/v1/namespaces/%s/pods/%s/log?%s" % (cluster.server, ns, pod, query)
    deadline = time.monotonic() + seconds
    text = b""
    with urllib.request.urlopen(url, context=cluster.ssl_context(), timeout=TIMEOUT) as r:
        while time.monotonic() < deadline:
            text += r.read1(4096)
    return line_numbers(text.decode())


def follow_ws(cluster, ns, pod, ctr, seconds):
    """The same over the API server's own WebSocket log reader."""
    query = {"container": ctr, "follow": "true", "tailLines": "1"}
    ws = websocket.create_connection(
        cluster.ws_url("/api/v1/namespaces/%s/pods/%s/log" % (ns, pod), query),
        subprotocols=["binary.k8s.io"], sslopt=cluster.sslopt(), timeout=TIMEOUT)
    deadline = time.monotonic() + seconds
    text = b""
    while time.monotonic() < deadline:
        op, data = ws.recv_data()
        check(op != websocket.ABNF.OPCODE_CLOSE, "the log WebSocket closed early")
        text += data
    ws.close()
    return line_numbers(text.decode())


def follows(how, numbers):
    """tailLines=1 then new lines: the first line is old, later ones grow."""
    check(len(numbers) >= 3 and numbers == sorted(set(numbers)) and
          numbers == list(range(numbers[0], numbers[0] + len(numbers))),
          "logs follow over %s gave line numbers %r" % (how, numbers))


def main():
    if len(sys.argv) != 5:
        sys.exit(__doc__)
    with tempfile.TemporaryDirectory() as tmp:
        cluster = Cluster(sys.argv[1], tmp)
        target = tuple(sys.argv[2:5])
        every = ["v4.channel.k8s.io", "v5.channel.k8s.io", "v4.base64.channel.k8s.io",
                 "base64.channel.k8s.io"]
        checks = [("exec echo", exec_echo, every),
                  ("exec exit 3", exec_exit, every),
                  ("exec cat", exec_cat, every)]
        try:
            for name, fn, protocols in checks:
                for protocol in protocols:
                    fn(cluster, target, protocol)
                    print("ok: %s over %s" % (name, protocol))
            follows("HTTPS", follow_https(cluster, *target, 2.5))
            print("ok: logs follow over HTTPS")
            follows("WebSocket", follow_ws(cluster, *target, 2.5))
            print("ok: logs follow over WebSocket (binary.k8s.io)")
        except (Failure, OSError, websocket.WebSocketException) as e:
            print("FAIL: %s" % e)
            sys.exit(1)


if __name__ == "__main__":
    main()
