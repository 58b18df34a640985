#!/usr/bin/python3
"""fake_plugin.py -- an interLink plugin (sidecar) for tests, stdlib only.

It serves the plugin REST API of interLink 0.4 and later the way the
project's own plugins read it (interlink-hq/interLink pkg/interlink/types.go,
the Slurm and Docker plugins):

  POST /create   body: RetrievedPodData {"pod": Pod, "container": [...]}
                 answer: CreateStruct {"PodUID": ..., "PodJID": ...}
  POST /delete   body: Pod                answer: "OK", or 404
  GET  /status   body: [Pod, ...]         answer: [PodStatus, ...] for known pods
  GET  /getLogs  body: LogStruct          answer: text/plain, streamed with Follow

Jobs live in memory. A job is Pending for --start-delay seconds, then its
init containers have completed and its containers run. With the pod
annotation fake.interlink/exit-code: "N" they end N after
fake.interlink/run-seconds (default 1). A running container writes
"<container> line <k>" every --log-interval seconds.

For the test driving it:
  GET  /_fake/requests  every request received: [{"method", "path", "body"}]
  POST /_fake/mode      {"status": "garbage"} makes /status answer junk,
                        {"create": "fail"} makes /create answer HTTP 500 with
                        an HTML page; "ok" restores either.

  fake_plugin.py (--port-file FILE | --socket PATH) [--start-delay S] [--log-interval S]
"""
import argparse
import datetime
import json
import os
import socketserver
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOCK = threading.Lock()
JOBS = {}        # pod uid -> job
REQUESTS = []    # what the test asks for with /_fake/requests
MODE = {"status": "ok", "create": "ok"}
OPTS = None
MAX_BODY = 64 << 20
MAX_RECORDED = 1000


def rfc3339(t):
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime(
        "%Y-%m-%dT%H:%M:%SZ")


def rfc3339_nano(t):
    d = datetime.datetime.fromtimestamp(t, datetime.timezone.utc)
    return d.strftime("%Y-%m-%dT%H:%M:%S.") + "%06d000Z" % d.microsecond


class BadRequest(Exception):
    pass


def need(cond, what):
    if not cond:
        raise BadRequest(what)


class Job:
    def __init__(self, data, jid):
        pod = data["pod"]
        self.pod = pod
        self.jid = jid
        self.created = time.time()
        self.deleted = False
        ann = pod["metadata"].get("annotations") or {}
        self.exit_code = int(ann["fake.interlink/exit-code"]) if "fake.interlink/exit-code" in ann else None
        self.run_seconds = float(ann.get("fake.interlink/run-seconds", "1"))
        spec = pod["spec"]
        self.inits = [c["name"] for c in spec.get("initContainers") or []]
        self.containers = [(c["name"], c.get("image", "")) for c in spec["containers"]]

    def started(self):
        return self.created + OPTS.start_delay

    def ended(self):
        if self.exit_code is None:
            return None
        return self.started() + self.run_seconds

    def lines(self, now):
        """Lines each container has written by now, with their times."""
        start, end = self.started(), self.ended()
        stop = min(now, end) if end is not None else now
        if stop < start:
            return []
        n = int((stop - start) / OPTS.log_interval) + 1
        return [start + k * OPTS.log_interval for k in range(n)]

    def container_status(self, name, image, now):
        st = {"name": name, "image": image, "imageID": "", "restartCount": 0,
              "containerID": "fake://%s/%s" % (self.jid, name), "ready": False}
        start, end = self.started(), self.ended()
        if now < start:
            st["state"] = {"waiting": {"reason": "ContainerCreating"}}
        elif end is not None and now >= end:
            st["state"] = {"terminated": {"exitCode": self.exit_code,
                                          "startedAt": rfc3339(start),
                                          "finishedAt": rfc3339(end)}}
        else:
            st["state"] = {"running": {"startedAt": rfc3339(start)}}
            st["ready"] = True
        return st

    def status(self, now):
        meta = self.pod["metadata"]
        inits = []
        for name in self.inits:
            if now < self.started():
                state = {"waiting": {"reason": "PodInitializing"}}
            else:
                state = {"terminated": {"exitCode": 0, "reason": "Completed",
                                        "startedAt": rfc3339(self.created),
                                        "finishedAt": rfc3339(self.started())}}
            inits.append({"name": name, "state": state, "ready": False, "restartCount": 0,
                          "image": "", "imageID": ""})
        return {"name": meta["name"], "UID": meta["uid"], "namespace": meta["namespace"],
                "JID": self.jid,
                "containers": [self.container_status(n, i, now) for n, i in self.containers],
                "initContainers": inits}


def check_create(data):
    """The shape interLink 0.4+ sends and plugins unmarshal into
    RetrievedPodData: one object, not a list (that was 0.3)."""
    need(isinstance(data, dict), "body must be one RetrievedPodData object")
    pod = data.get("pod")
    need(isinstance(pod, dict), "pod missing")
    meta = pod.get("metadata") or {}
    need(meta.get("uid") and meta.get("name") and meta.get("namespace"),
         "pod.metadata needs name, namespace and uid")
    need(isinstance((pod.get("spec") or {}).get("containers"), list), "pod.spec.containers missing")
    conts = data.get("container")
    need(isinstance(conts, list), "container must be a list")
    for c in conts:
        need(isinstance(c, dict) and isinstance(c.get("name"), str), "container entry without name")
        for key in ("configMaps", "secrets", "projectedvolumemaps", "emptyDirs"):
            need(key in c, "container entry without " + key)
            need(c[key] is None or isinstance(c[key], list), key + " must be a list or null")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"

    def log_message(self, fmt, *args):
        if OPTS.verbose:
            sys.stderr.write("fake_plugin: " + (fmt % args) + "\n")

    def address_string(self):
        return "unix" if isinstance(self.client_address, str) else self.client_address[0]

    def body(self):
        n = int(self.headers.get("Content-Length") or 0)
        need(n <= MAX_BODY, "body too large")
        raw = self.rfile.read(n) if n else b""
        with LOCK:
            if len(REQUESTS) < MAX_RECORDED:
                REQUESTS.append({"method": self.command, "path": self.path,
                                 "body": raw.decode("utf-8", "replace")})
        return json.loads(raw) if raw else None

    def answer(self, code, payload, ctype="application/json"):
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def dispatch(self):
        routes = {("POST", "/create"): self.create, ("POST", "/delete"): self.delete,
                  ("GET", "/status"): self.status, ("GET", "/getLogs"): self.logs,
                  ("GET", "/_fake/requests"): self.requests,
                  ("POST", "/_fake/mode"): self.mode}
        route = routes.get((self.command, self.path))
        if route is None:
            self.answer(404, {"detail": "Not Found"})
            return
        try:
            route()
        except (BadRequest, ValueError, KeyError, TypeError) as e:
            self.answer(422, {"detail": str(e)})

    do_GET = dispatch
    do_POST = dispatch

    def create(self):
        data = self.body()
        if MODE["create"] == "fail":
            self.answer(500, b"<html><body><h1>Internal Server Error</h1>"
                        b"<p>sbatch: error: Batch job submission failed</p></body></html>",
                        "text/html")
            return
        check_create(data)
        uid = data["pod"]["metadata"]["uid"]
        with LOCK:
            job = JOBS.get(uid)
            if job is None:
                job = JOBS[uid] = Job(data, "job-%d" % (len(REQUESTS) + 1000))
        self.answer(200, {"PodUID": uid, "PodJID": job.jid})

    def delete(self):
        pod = self.body()
        need(isinstance(pod, dict), "body must be a Pod")
        with LOCK:
            job = JOBS.pop((pod.get("metadata") or {}).get("uid"), None)
            if job:
                job.deleted = True
        if job is None:
            self.answer(404, {"detail": "No containers found for UUID"})
        else:
            self.answer(200, b"OK", "text/plain")

    def status(self):
        pods = self.body()
        if MODE["status"] == "garbage":
            self.answer(200, b"<html>502 Bad Gateway</html>", "text/html")
            return
        need(isinstance(pods, list), "body must be a list of Pods")
        now = time.time()
        out = []
        with LOCK:
            for pod in pods:
                job = JOBS.get((pod.get("metadata") or {}).get("uid"))
                if job:
                    out.append(job.status(now))
        self.answer(200, out)

    def logs(self):
        req = self.body()
        need(isinstance(req, dict) and isinstance(req.get("Opts"), dict), "body must be a LogStruct")
        opts = req["Opts"]
        for key in ("Tail", "Bytes", "Timestamps", "Follow", "Previous", "SinceSeconds",
                    "SinceTime"):
            need(key in opts, "Opts." + key + " missing")
        with LOCK:
            job = JOBS.get(req.get("PodUID"))
        if job is None or req.get("ContainerName") not in [n for n, _ in job.containers]:
            self.answer(404, {"detail": "No containers found for UUID"})
            return
        name = req["ContainerName"]

        def text(times):
            out = ""
            for t in times:
                k = int(round((t - job.started()) / OPTS.log_interval)) + 1
                prefix = rfc3339_nano(t) + " " if opts["Timestamps"] else ""
                out += "%s%s line %d\n" % (prefix, name, k)
            return out

        now = time.time()
        times = job.lines(now)
        if opts["SinceSeconds"] > 0:
            times = [t for t in times if t >= now - opts["SinceSeconds"]]
        if opts["Tail"] > 0:
            times = times[-opts["Tail"]:]
        first = text(times).encode()
        if opts["Bytes"] > 0:
            first = first[:opts["Bytes"]]
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.end_headers()
        self.wfile.write(first)
        self.wfile.flush()
        last = times[-1] if times else None
        while opts["Follow"] and not job.deleted:
            time.sleep(0.05)
            now = time.time()
            new = [t for t in job.lines(now) if last is None or t > last]
            if new:
                self.wfile.write(text(new).encode())
                self.wfile.flush()
                last = new[-1]
            end = job.ended()
            if end is not None and now >= end:
                break

    def requests(self):
        with LOCK:
            self.answer(200, list(REQUESTS))

    def mode(self):
        data = self.body()
        need(isinstance(data, dict), "body must be an object")
        with LOCK:
            MODE.update({k: v for k, v in data.items() if k in MODE})
        self.answer(200, MODE)


class UnixServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True

    def get_request(self):
        conn, _ = super().get_request()
        return conn, "unix"


def main():
    global OPTS
    p = argparse.ArgumentParser()
    p.add_argument("--port-file")
    p.add_argument("--socket")
    p.add_argument("--start-delay", type=float, default=0.3)
    p.add_argument("--log-interval", type=float, default=0.1)
    p.add_argument("--verbose", action="store_true")
    OPTS = p.parse_args()
    if OPTS.socket:
        if os.path.exists(OPTS.socket):
            os.unlink(OPTS.socket)
        server = UnixServer(OPTS.socket, Handler)
    else:
        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        tmp = OPTS.port_file + ".tmp"
        with open(tmp, "w") as f:
            f.write(str(server.server_address[1]))
        os.rename(tmp, OPTS.port_file)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
