#!/usr/bin/python3
"""A vkc provider that misbehaves on purpose, for tests/integration/test_bad_provider.sh.

    vkc-core --provider-cmd 'python3 tests/integration/bad_provider.py --mode MODE'

Every mode is a minimal, correct in-memory provider (pods go Running at once, nothing is
run) except for one kind of bad input it gives the core:

  good                a correct provider (the baseline)
  garbage-handshake   Handshake answers --handshake junk (default: bytes that are no
                      HandshakeResponse), empty (protocol 1, empty name and version,
                      unknown and duplicate capability names) or version0 (protocol 0)
  false-capabilities  declares every optional RPC; WatchNode, GetContainerLogs,
                      ExecInContainer, AttachToContainer, PortForward and
                      GetMetricsResource answer UNIMPLEMENTED (WatchPodStatus too with
                      --break-watch), the RPCs named by --hang (default GetStatsSummary)
                      never answer until cancelled
  ghost-status        WatchPodStatus also pushes, --ghost-rate per second, statuses of pods
                      that do not exist: random namespaces, names and uids, the names of
                      real pods with other uids, deletions of those, malformed statuses
  flood               once the file --state-dir/flood.go exists, WatchPodStatus pushes
                      status changes of the real pods as fast as the core takes them
                      (restartCount and a message count up) for --flood-seconds, then the
                      final status of each; writes flood.done (JSON: events sent, rate,
                      the last status of every pod) to --state-dir

The stubs are generated from proto/ as contrib/python-provider/provider.py does
($VKC_PYTHON_STUBS, default build/python). Written to the socket in $VKC_PROVIDER_LISTEN.
"""
import argparse
import json
import os
import random
import signal
import string
import sys
import threading
import time
from concurrent import futures

import grpc

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
Code = grpc.StatusCode
SERVICE = "vkc.provider.v1.Provider"
ALL_CAPS = ["WatchPodStatus", "WatchNode", "GetContainerLogs", "ExecInContainer",
            "AttachToContainer", "PortForward", "GetStatsSummary", "GetMetricsResource"]
REAL_IP = "10.77.0.1"      # the podIP of every real pod
GHOST_IP = "10.66.6.6"     # the podIP of every ghost status: must never reach the API
# Protobuf that cannot parse as a HandshakeResponse: field 2 (provider_name) announces 255
# bytes and three follow.
JUNK = b"\x12\xffabc"


# The stubs, generated from proto/ as the Python provider does it.
sys.path.insert(0, os.path.join(REPO, "contrib", "python-provider"))
from provider import pb, pbg  # noqa: E402


def log(msg, **kv):
    kv = "".join(" %s=%s" % (k, json.dumps(str(v))) for k, v in kv.items())
    print("ts=%s level=info component=bad-provider msg=%s%s"
          % (time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), json.dumps(msg), kv),
          file=sys.stderr, flush=True)


def now():
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def varint(n):
    out = bytearray()
    while n > 0x7f:
        out.append((n & 0x7f) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def rand_word(n=8):
    return "".join(random.choice(string.ascii_lowercase + string.digits) for _ in range(n))


def rand_uid():
    h = "%032x" % random.getrandbits(128)
    return "%s-%s-%s-%s-%s" % (h[:8], h[8:12], h[12:16], h[16:20], h[20:])


class Pod:
    """A pod that runs nothing: its containers are running from the start, unless the mock's
    annotations (mock.vkc.io/exit-code, mock.vkc.io/run-ms, as vkc-conformance sets them)
    script an exit, which restartPolicy then answers like a kubelet."""

    def __init__(self, doc):
        meta = doc["metadata"]
        self.doc, self.ns, self.name, self.uid = doc, meta["namespace"], meta["name"], meta["uid"]
        self.created, self.seq, self.restarts, self.message = now(), 1, 0, "running"
        notes = meta.get("annotations") or {}
        try:
            self.exit_code = int(notes["mock.vkc.io/exit-code"])
            self.run_s = int(notes.get("mock.vkc.io/run-ms", "1000")) / 1000.0
        except (KeyError, ValueError):
            self.exit_code = self.run_s = None
        self.started, self.started_at, self.terminated, self.last = time.time(), now(), None, None

    def tick(self, t):
        """A scripted exit when due: True when the status changed."""
        if self.exit_code is None or self.terminated or t < self.started + self.run_s:
            return False
        ended = {"exitCode": self.exit_code, "reason": "Error" if self.exit_code else "Completed",
                 "startedAt": self.started_at, "finishedAt": now()}
        policy = self.doc["spec"].get("restartPolicy", "Always")
        if policy == "Never" or (policy == "OnFailure" and self.exit_code == 0):
            self.terminated = ended
        else:
            self.restarts, self.last = self.restarts + 1, ended
            self.started, self.started_at = t, now()
        return True

    def ref(self):
        return pb.PodRef(namespace=self.ns, name=self.name, uid=self.uid)

    def status(self):
        state = {"terminated": self.terminated} if self.terminated else \
            {"running": {"startedAt": self.started_at}}
        running = not self.terminated
        ctrs = [dict({"name": c["name"], "image": c.get("image", ""), "imageID": "",
                      "containerID": "bad://%s/%s" % (self.uid, c["name"]),
                      "restartCount": self.restarts, "ready": running, "started": running,
                      "state": state}, **({"lastState": {"terminated": self.last}} if self.last
                                          else {}))
                for c in self.doc["spec"]["containers"]]
        phase = "Running" if running else ("Failed" if self.terminated["exitCode"] else "Succeeded")
        conds = [{"type": t, "status": str(ok), "lastTransitionTime": self.created}
                 for t, ok in (("Initialized", True), ("ContainersReady", running),
                               ("Ready", running))]
        return {"phase": phase, "podIP": REAL_IP, "hostIP": "127.0.0.1",
                "message": self.message, "startTime": self.created,
                "conditions": conds, "containerStatuses": ctrs}

    def event(self, deleted=False):
        return pb.PodStatusEvent(pod=self.ref(), sequence=self.seq, deleted=deleted,
                                 status_json=b"" if deleted else json.dumps(self.status()).encode())


class Provider(pbg.ProviderServicer):
    def __init__(self, args):
        self.args, self.mode = args, args.mode
        self.pods = {}                 # (ns, name) -> Pod
        self.cv = threading.Condition()
        self.watchers = []             # one dict uid -> event per open WatchPodStatus
        self.counts = {}               # RPC name -> calls, for the log at exit

    def run(self, stop):
        """Scripted exits and restarts, every 0.1 s."""
        while not stop.wait(0.1):
            with self.cv:
                for pod in self.pods.values():
                    if pod.tick(time.time()):
                        self.publish(pod)

    def count(self, name):
        with self.cv:
            self.counts[name] = self.counts.get(name, 0) + 1

    def publish(self, pod, deleted=False):
        """With cv held: the pod's latest status to every watch."""
        pod.seq += 1
        for q in self.watchers:
            q[pod.uid] = pod.event(deleted)
        self.cv.notify_all()

    def parse(self, data, context):
        try:
            doc = json.loads(data)
            doc["metadata"].setdefault("namespace", "default")
            doc["metadata"].setdefault("uid", "")
            if doc["metadata"]["name"] and doc["spec"]["containers"]:
                return doc
        except (ValueError, KeyError, TypeError):
            pass
        context.abort(Code.INVALID_ARGUMENT, "not a pod")

    def find(self, ref, context):
        pod = self.pods.get((ref.namespace, ref.name))
        if pod is None or (ref.uid and ref.uid != pod.uid):
            context.abort(Code.NOT_FOUND, "pod %s/%s not found" % (ref.namespace, ref.name))
        return pod

    # ---- handshake, ping, node ----
    def Handshake(self, request, context):
        self.count("Handshake")
        log("handshake", node=request.node_name, mode=self.mode)
        if self.mode == "garbage-handshake" and self.args.handshake == "empty":
            return pb.HandshakeResponse(protocol_version=1, provider_name="", provider_version="",
                                        capabilities=["NoSuchRpc", "WatchPodStatus",
                                                      "WatchPodStatus", ""])
        if self.mode == "garbage-handshake" and self.args.handshake == "version0":
            return pb.HandshakeResponse(protocol_version=0, provider_name="bad",
                                        provider_version="0.0.0", capabilities=["WatchPodStatus"])
        caps = ALL_CAPS if self.mode == "false-capabilities" else ["WatchPodStatus"]
        return pb.HandshakeResponse(protocol_version=1, provider_name="bad",
                                    provider_version="0.1.0-" + self.mode, capabilities=caps)

    def Ping(self, request, context):
        return pb.PingResponse()

    def GetNode(self, request, context):
        return pb.Node(capacity={"cpu": "8", "memory": "16Gi", "pods": "110"},
                       operating_system="linux",
                       node_info_json=json.dumps({"kernelVersion": os.uname().release,
                                                  "osImage": "bad provider",
                                                  "containerRuntimeVersion": "bad://0.1"}).encode())

    # ---- pods ----
    def CreatePod(self, request, context):
        doc = self.parse(request.pod_json, context)
        pod = Pod(doc)
        with self.cv:
            old = self.pods.get((pod.ns, pod.name))
            if old and old.uid == pod.uid:
                return pb.CreatePodResponse()
            if old:
                context.abort(Code.ALREADY_EXISTS, "pod %s/%s runs as uid %s"
                              % (pod.ns, pod.name, old.uid))
            self.pods[(pod.ns, pod.name)] = pod
            self.publish(pod)
        log("pod created", pod="%s/%s" % (pod.ns, pod.name), uid=pod.uid)
        return pb.CreatePodResponse()

    def UpdatePod(self, request, context):
        doc = self.parse(request.pod_json, context)
        with self.cv:
            pod = self.find(pb.PodRef(namespace=doc["metadata"]["namespace"],
                                      name=doc["metadata"]["name"], uid=doc["metadata"]["uid"]),
                            context)
            pod.doc = doc
        return pb.UpdatePodResponse()

    def DeletePod(self, request, context):
        doc = self.parse(request.pod_json, context)
        with self.cv:
            pod = self.find(pb.PodRef(namespace=doc["metadata"]["namespace"],
                                      name=doc["metadata"]["name"], uid=doc["metadata"]["uid"]),
                            context)
            del self.pods[(pod.ns, pod.name)]
            self.publish(pod, deleted=True)
        return pb.DeletePodResponse()

    def GetPod(self, request, context):
        with self.cv:
            pod = self.find(request.pod, context)
            return pb.GetPodResponse(pod_json=json.dumps(dict(pod.doc, status=pod.status())).encode())

    def GetPodStatus(self, request, context):
        with self.cv:
            return pb.GetPodStatusResponse(
                status_json=json.dumps(self.find(request.pod, context).status()).encode())

    def GetPods(self, request, context):
        with self.cv:
            return pb.GetPodsResponse(pods_json=[json.dumps(dict(p.doc, status=p.status())).encode()
                                                 for p in self.pods.values()])

    # ---- WatchPodStatus, in the flavour of the mode ----
    def WatchPodStatus(self, request, context):
        self.count("WatchPodStatus")
        if self.mode == "false-capabilities" and (self.args.break_watch or
                                                  "WatchPodStatus" in self.args.hang):
            self.hang_or_unimplemented("WatchPodStatus", context)
            return
        with self.cv:
            queue = {p.uid: p.event() for p in self.pods.values()}
            self.watchers.append(queue)
        try:
            if self.mode == "flood":
                yield from self.flood(queue, context)
            ghost_every = 1.0 / self.args.ghost_rate if self.mode == "ghost-status" else None
            next_ghost = time.time()
            while context.is_active():
                with self.cv:
                    if not queue:
                        self.cv.wait(ghost_every if ghost_every else 1.0)
                    events = list(queue.values())
                    queue.clear()
                yield from events
                if ghost_every and time.time() >= next_ghost:
                    next_ghost = time.time() + ghost_every
                    yield self.ghost()
        finally:
            with self.cv:
                self.watchers = [q for q in self.watchers if q is not queue]

    def ghost(self):
        """One status event of a pod that does not exist."""
        with self.cv:
            real = random.choice(list(self.pods.values())) if self.pods else None
        kind = random.randrange(5)
        status = {"phase": "Failed", "podIP": GHOST_IP, "reason": "Ghost",
                  "message": "a status of a pod that does not exist",
                  "containerStatuses": [{"name": "ghost", "restartCount": 99, "ready": False,
                                         "state": {"terminated": {"exitCode": 66}}}]}
        seq = random.randrange(1, 1 << 62)
        if kind == 0:    # a pod nobody ever heard of, anywhere
            ref = pb.PodRef(namespace="ghost-" + rand_word(5), name="ghost-" + rand_word(),
                            uid=rand_uid())
        elif kind == 1 or real is None:  # in a namespace that exists, a name that does not
            ns = real.ns if real else "default"
            ref = pb.PodRef(namespace=ns, name="ghost-" + rand_word(), uid=rand_uid())
        elif kind == 2:  # the name of a real pod, another uid
            ref = pb.PodRef(namespace=real.ns, name=real.name, uid=rand_uid())
        elif kind == 3:  # "deleted": a real pod's name, another uid
            return pb.PodStatusEvent(pod=pb.PodRef(namespace=real.ns, name=real.name,
                                                   uid=rand_uid()), sequence=seq, deleted=True)
        else:            # a malformed status, of a ghost
            return pb.PodStatusEvent(pod=pb.PodRef(namespace=real.ns, name="ghost-" + rand_word(),
                                                   uid=rand_uid()),
                                     sequence=seq, status_json=b"{not json" + os.urandom(8))
        return pb.PodStatusEvent(pod=ref, sequence=seq, status_json=json.dumps(status).encode())

    def flood(self, queue, context):
        """Wait for the go file, then status changes of the real pods back to back.

        The events of the flood are encoded by hand (see encode): through the generated
        classes Python manages a third of the rate."""
        go = os.path.join(self.args.state_dir, "flood.go")
        done = os.path.join(self.args.state_dir, "flood.done")
        while context.is_active() and not os.path.exists(go):
            with self.cv:
                if not queue:
                    self.cv.wait(0.2)
                events = list(queue.values())
                queue.clear()
            yield from events
        if os.path.exists(done) or not context.is_active():
            return  # one flood per provider; a reopened stream just watches
        log("flood starts", seconds=self.args.flood_seconds)
        with self.cv:
            pods = list(self.pods.values())
            for pod in pods:  # the pod's ref, and its status JSON with the two changing values
                pod.message = "@MSG@"
                text = json.dumps(pod.status()).replace('"restartCount": %d' % pod.restarts,
                                                        '"restartCount": @RC@')
                ref = pod.ref().SerializeToString()
                pod.template = (b"\x0a" + varint(len(ref)) + ref, text)
        sent, rounds, start = 0, 0, time.time()
        end = start + self.args.flood_seconds
        while context.is_active() and pods:
            rounds += 1
            if rounds % 64 == 0 and time.time() >= end:
                break
            if queue:  # pods created meanwhile are not flooded, just reported
                with self.cv:
                    events = list(queue.values())
                    queue.clear()
                yield from events
            for pod in pods:  # GetPods, GetPod see the same (the GIL orders the stores)
                pod.restarts += 1
                pod.seq += 1
                ref, text = pod.template
                n = str(pod.restarts)
                pod.message = "flood " + n
                text = text.replace("@RC@", n).replace("@MSG@", pod.message).encode()
                yield ref + b"\x10" + varint(pod.seq) + b"\x1a" + varint(len(text)) + text
                sent += 1
        with self.cv:  # the last word: what the API must show in the end
            last = {}
            for pod in pods:
                pod.message = "final %d" % pod.restarts
                pod.seq += 1
                last["%s/%s" % (pod.ns, pod.name)] = pod.status()
                queue[pod.uid] = pod.event()
        elapsed = time.time() - start
        report = {"sent": sent, "seconds": round(elapsed, 3),
                  "rate": round(sent / elapsed) if elapsed else 0, "last": last}
        with open(done + ".tmp", "w") as f:
            json.dump(report, f)
        os.replace(done + ".tmp", done)
        log("flood ends", sent=sent, rate=report["rate"])

    # ---- optional RPCs: false capabilities ----
    def hang_or_unimplemented(self, name, context):
        self.count(name)
        if name in self.args.hang:
            log("hanging", rpc=name)
            while context.is_active():
                time.sleep(0.2)
            return
        context.abort(Code.UNIMPLEMENTED, "%s is declared but not implemented (bad provider)"
                      % name)

    def WatchNode(self, request, context):
        self.hang_or_unimplemented("WatchNode", context)
        yield from ()

    def GetContainerLogs(self, request, context):
        self.hang_or_unimplemented("GetContainerLogs", context)
        yield from ()

    def ExecInContainer(self, request_iterator, context):
        self.hang_or_unimplemented("ExecInContainer", context)
        yield from ()

    def AttachToContainer(self, request_iterator, context):
        self.hang_or_unimplemented("AttachToContainer", context)
        yield from ()

    def PortForward(self, request_iterator, context):
        self.hang_or_unimplemented("PortForward", context)
        yield from ()

    def GetStatsSummary(self, request, context):
        self.hang_or_unimplemented("GetStatsSummary", context)
        context.abort(Code.DEADLINE_EXCEEDED, "gave up")

    def GetMetricsResource(self, request, context):
        self.hang_or_unimplemented("GetMetricsResource", context)
        context.abort(Code.DEADLINE_EXCEEDED, "gave up")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mode", default=os.environ.get("VKC_BAD_MODE", "good"),
                    choices=["good", "garbage-handshake", "false-capabilities", "ghost-status",
                             "flood"])
    ap.add_argument("--listen", default=os.environ.get("VKC_PROVIDER_LISTEN"))
    ap.add_argument("--handshake", default="junk", choices=["junk", "empty", "version0"])
    ap.add_argument("--hang", default="GetStatsSummary",
                    help="comma-separated optional RPCs that never answer (false-capabilities)")
    ap.add_argument("--break-watch", action="store_true",
                    help="false-capabilities: WatchPodStatus too answers UNIMPLEMENTED "
                    "(or hangs, when --hang names it)")
    ap.add_argument("--ghost-rate", type=float, default=200.0, help="ghost events per second")
    ap.add_argument("--flood-seconds", type=float, default=20.0)
    ap.add_argument("--state-dir", default=os.environ.get("VKC_BAD_STATE_DIR", "."))
    args = ap.parse_args()
    args.hang = set(filter(None, args.hang.split(",")))
    if not args.listen:
        ap.error("give --listen or set VKC_PROVIDER_LISTEN")
    sock = args.listen[5:] if args.listen.startswith("unix:") else None

    provider = Provider(args)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=32),
                         options=[("grpc.max_receive_message_length", 16 << 20),
                                  ("grpc.max_send_message_length", 16 << 20)])
    if args.mode == "garbage-handshake" and args.handshake == "junk":
        def junk(request, context):
            provider.count("Handshake")
            log("answering the handshake with junk bytes")
            return JUNK
        # No (de)serializers: the handler's bytes go out as they are. Generic handlers are
        # asked in order, so this one wins for Handshake.
        server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(
            SERVICE, {"Handshake": grpc.unary_unary_rpc_method_handler(junk)})])
    if args.mode == "flood":
        def watch(request, context):  # messages serialized here, the flood's bytes as they are
            for ev in provider.WatchPodStatus(request, context):
                yield ev if isinstance(ev, bytes) else ev.SerializeToString()
        server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(
            SERVICE, {"WatchPodStatus": grpc.unary_stream_rpc_method_handler(
                watch, request_deserializer=pb.WatchPodStatusRequest.FromString)})])
    pbg.add_ProviderServicer_to_server(provider, server)
    if sock and os.path.exists(sock):
        os.unlink(sock)
    server.add_insecure_port(args.listen)
    server.start()
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    log("bad provider serving", mode=args.mode, listen=args.listen)
    threading.Thread(target=provider.run, args=(stop,), daemon=True).start()
    stop.wait()
    log("bad provider stopping", calls=json.dumps(provider.counts, sort_keys=True))
    server.stop(1).wait()


if __name__ == "__main__":
    main()
