#!/usr/bin/env python3
"""A TCP proxy in front of kube-apiserver that can turn into a failing API
server, for tests/integration/test_faults.sh. Python 3 standard library only.

    faultproxy.py --upstream HOST:PORT --cert CRT --key KEY \
                  --port-file FILE --stats-file FILE [--retry-after S]

Normal mode: every connection is relayed byte for byte to the upstream (TLS
end to end: the client's certificate reaches the API server, HTTP/2 works).

Fault mode (SIGUSR1 turns it on, SIGUSR2 off): every relayed connection is
cut at once, and each new connection is TLS-terminated here with CRT/KEY
(the test signs them with the cluster CA; ALPN offers only http/1.1), its
requests are read and answered in turn with 500 Internal Server Error and
429 Too Many Requests with Retry-After, "Connection: close". Leaving fault
mode cuts the terminated connections, so clients reconnect to the relay.

It listens on 127.0.0.1, on a free port written to --port-file. Counters
(connections relayed, 500s and 429s sent, the mode) are rewritten to
--stats-file as JSON. SIGTERM or SIGINT stops it.
"""
import argparse
import json
import os
import signal
import socket
import ssl
import sys
import threading
import time

STATUS_BODY = ('{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",'
               '"message":"%s (injected by faultproxy)","reason":"%s","code":%d}')


class Proxy:
    def __init__(self, args):
        self.args = args
        self.upstream = (args.upstream.rsplit(":", 1)[0], int(args.upstream.rsplit(":", 1)[1]))
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(args.cert, args.key)
        self.ctx.set_alpn_protocols(["http/1.1"])
        self.lock = threading.Lock()
        self.fault = False
        self.relayed = set()     # sockets of relayed connections
        self.terminated = set()  # sockets of fault-mode connections
        self.stats = {"mode": "pass", "relayed": 0, "faulted_connections": 0,
                      "sent_500": 0, "sent_429": 0, "fault_periods": 0}
        self.next_code = 500
        self.stop = False
        self.want = None  # a mode asked for by a signal, applied by the loop

    # ---- mode switches (the main loop, after a signal) ----
    def set_fault(self, on):
        with self.lock:
            if self.fault == on:
                return
            self.fault = on
            self.stats["mode"] = "fault" if on else "pass"
            if on:
                self.stats["fault_periods"] += 1
            victims = list(self.relayed if on else self.terminated)
        for s in victims:
            kill(s)
        self.write_stats()

    def write_stats(self):
        with self.lock:
            data = json.dumps(self.stats)
        tmp = self.args.stats_file + ".tmp"
        with open(tmp, "w") as f:
            f.write(data + "\n")
        os.replace(tmp, self.args.stats_file)

    # ---- normal mode: relay ----
    def relay(self, client):
        try:
            up = socket.create_connection(self.upstream, timeout=5)
            up.settimeout(None)
        except OSError:
            kill(client)
            return
        with self.lock:
            if self.fault:  # the mode changed meanwhile
                kill(client)
                kill(up)
                return
            self.relayed.update((client, up))
            self.stats["relayed"] += 1

        def pump(src, dst):
            try:
                while True:
                    data = src.recv(65536)
                    if not data:
                        break
                    dst.sendall(data)
            except OSError:
                pass
            kill(src)
            kill(dst)
            with self.lock:
                self.relayed.discard(src)
                self.relayed.discard(dst)

        threading.Thread(target=pump, args=(up, client), daemon=True).start()
        pump(client, up)

    # ---- fault mode: answer every request with 500 or 429 ----
    def refuse(self, client):
        with self.lock:
            self.terminated.add(client)
            self.stats["faulted_connections"] += 1
        tls = None
        try:
            client.settimeout(10)
            tls = self.ctx.wrap_socket(client, server_side=True)
            with self.lock:
                self.terminated.add(tls)
            buf = b""
            while True:
                while b"\r\n\r\n" not in buf:
                    data = tls.recv(65536)
                    if not data:
                        return
                    buf += data
                head, buf = buf.split(b"\r\n\r\n", 1)
                length, chunked = 0, False
                for line in head.split(b"\r\n")[1:]:
                    k, _, v = line.partition(b":")
                    k = k.strip().lower()
                    if k == b"content-length":
                        length = int(v.strip())
                    elif k == b"transfer-encoding" and b"chunked" in v.lower():
                        chunked = True
                if chunked:
                    while b"\r\n0\r\n\r\n" not in b"\r\n" + buf:
                        data = tls.recv(65536)
                        if not data:
                            return
                        buf += data
                    buf = (b"\r\n" + buf).split(b"\r\n0\r\n\r\n", 1)[1]
                else:
                    while len(buf) < length:
                        data = tls.recv(65536)
                        if not data:
                            return
                        buf += data
                    buf = buf[length:]
                with self.lock:
                    code = self.next_code
                    self.next_code = 429 if code == 500 else 500
                    self.stats["sent_%d" % code] += 1
                if code == 500:
                    body = STATUS_BODY % ("etcdserver: request timed out", "InternalError", 500)
                    extra = ""
                    reason = "Internal Server Error"
                else:
                    body = STATUS_BODY % ("too many requests, please try again later",
                                          "TooManyRequests", 429)
                    extra = "Retry-After: %d\r\n" % self.args.retry_after
                    reason = "Too Many Requests"
                resp = ("HTTP/1.1 %d %s\r\nContent-Type: application/json\r\n"
                        "Content-Length: %d\r\n%sConnection: close\r\n\r\n%s"
                        % (code, reason, len(body), extra, body)).encode()
                tls.sendall(resp)
                try:
                    tls.unwrap()
                except (OSError, ValueError):
                    pass
                return
        except (OSError, ssl.SSLError, ValueError):
            pass
        finally:
            kill(client)
            with self.lock:
                self.terminated.discard(client)
            if tls is not None:
                kill(tls)
                with self.lock:
                    self.terminated.discard(tls)

    def serve(self):
        ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ls.bind(("127.0.0.1", 0))
        ls.listen(128)
        ls.settimeout(0.2)
        with open(self.args.port_file + ".tmp", "w") as f:
            f.write("%d\n" % ls.getsockname()[1])
        os.replace(self.args.port_file + ".tmp", self.args.port_file)
        self.write_stats()
        last = 0.0
        while not self.stop:
            try:
                client, _ = ls.accept()
            except socket.timeout:
                client = None
            except InterruptedError:
                client = None
            if self.want is not None:
                want, self.want = self.want, None
                self.set_fault(want)
            if client is not None:
                with self.lock:
                    fault = self.fault
                target = self.refuse if fault else self.relay
                threading.Thread(target=target, args=(client,), daemon=True).start()
            if time.monotonic() - last > 0.5:
                self.write_stats()
                last = time.monotonic()
        ls.close()
        self.write_stats()


def kill(s):
    try:
        s.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    try:
        s.close()
    except OSError:
        pass


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--upstream", required=True)
    p.add_argument("--cert", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--port-file", required=True)
    p.add_argument("--stats-file", required=True)
    p.add_argument("--retry-after", type=int, default=1)
    args = p.parse_args()
    proxy = Proxy(args)

    def stop(*_):
        proxy.stop = True

    def want(on):
        proxy.want = on

    signal.signal(signal.SIGUSR1, lambda *_: want(True))
    signal.signal(signal.SIGUSR2, lambda *_: want(False))
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    proxy.serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())
