#!/usr/bin/python3
"""A vkc provider in Python: every container is a local process.

    vkc-core --provider-cmd '/usr/bin/python3 contrib/python-provider/provider.py'

Nothing here is vkc code: the gRPC stubs are generated from proto/ by protoc, and Debian's
python3-grpcio serves them. README.md maps this file and says what is left out.
"""
import argparse
import base64
import fcntl
import json
import os
import pty
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import termios
import threading
import time
from concurrent import futures

import grpc

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
VERSION, MAX_PODS, Code = "0.1.0", 110, grpc.StatusCode
CAPS = ["WatchPodStatus", "GetContainerLogs", "ExecInContainer", "PortForward",
        "GetStatsSummary", "GetMetricsResource"]  # optional RPCs: vkc-core calls no others
WORKERS = 64        # concurrent RPCs, streams included: more get RESOURCE_EXHAUSTED
LOG_MAX = 8 << 20   # past this a container log starts afresh (the old one is kept as .old)
CHUNK = 64 << 10
TICK = 0.2          # how soon an exit, a cancellation or new log data is noticed
METRICS = [  # the series of /metrics/resource, read from the stats summary
    ("cpu_usage_seconds_total", "counter", lambda u: u["cpu"]["usageCoreNanoSeconds"] / 1e9),
    ("memory_working_set_bytes", "gauge", lambda u: u["memory"]["workingSetBytes"])]
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def load_stubs():
    """Generate provider_pb2*.py from proto/ unless they are up to date."""
    out = os.environ.get("VKC_PYTHON_STUBS", os.path.join(REPO, "build", "python"))
    proto, stub = os.path.join(REPO, "proto", "provider.proto"), out + "/provider_pb2_grpc.py"
    if not os.path.exists(stub) or os.path.getmtime(stub) < os.path.getmtime(proto):
        os.makedirs(out, exist_ok=True)
        tmp = tempfile.mkdtemp(dir=out)  # then renamed into place: no half-written stubs
        subprocess.run(["protoc", "-I", os.path.dirname(proto), "--python_out", tmp,
                        "--grpc_python_out", tmp, proto,
                        "--plugin=protoc-gen-grpc_python=/usr/bin/grpc_python_plugin"], check=True)
        for name in os.listdir(tmp):
            os.replace(os.path.join(tmp, name), os.path.join(out, name))
        os.rmdir(tmp)
    sys.path.insert(0, out)


load_stubs()
import provider_pb2 as pb  # noqa: E402
import provider_pb2_grpc as pbg  # noqa: E402


# ---- small helpers ---------------------------------------------------------------------------
def log(msg, **kv):
    kv = "".join(" %s=%s" % (k, json.dumps(str(v))) for k, v in kv.items())
    print("ts=%s level=info component=python msg=%s%s"
          % (rfc3339(time.time()), json.dumps(msg), kv), file=sys.stderr)


def rfc3339(t):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t)) if t else None


def stamp(ns):
    """The time that starts a log line: fixed width, so that text order is time order."""
    s = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns // 10**9))
    return (s + ".%09dZ" % (ns % 10**9)).encode()


def dumps(obj):
    return json.dumps(obj).encode()


def under(root, path):
    """path taken relative to root, never leading outside it."""
    return os.path.join(root, os.path.normpath("/" + path).lstrip("/"))


def exit_code(returncode):
    return returncode if returncode >= 0 else 128 - returncode  # signal N reads 128+N


def killpg(proc, sig):
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, AttributeError):  # gone, or never started
        pass


def host_ip():
    try:
        return socket.gethostbyname(socket.gethostname())
    except OSError:
        return "127.0.0.1"


HOST_IP = host_ip()


# ---- a container: a process group, its log, its restarts -------------------------------------
class Container:
    def __init__(self, pod, spec):
        self.pod, self.spec, self.name = pod, spec, spec["name"]
        self.log = os.path.join(pod.dir, self.name + ".log")
        self.cwd = under(pod.dir, spec.get("workingDir", "/"))
        self.env = {"PATH": PATH, "HOME": pod.dir, "HOSTNAME": pod.name,  # vkc-core resolved it
                    **{e["name"]: e.get("value", "") for e in spec.get("env", [])}}
        self.proc = self.started = self.next_start = self.last = None
        self.restarts, self.state = 0, {"waiting": {"reason": "ContainerCreating"}}

    def start(self):
        if os.path.exists(self.log):  # what `kubectl logs --previous` shows
            os.replace(self.log, self.log + ".prev")
        self.started, self.next_start = time.time(), None
        try:
            os.makedirs(self.cwd, exist_ok=True)
            self.proc = subprocess.Popen(
                self.spec.get("command", []) + self.spec.get("args", []), cwd=self.cwd,
                env=self.env, start_new_session=True, stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        except OSError as e:
            self.proc = None
            return self.exited(127, "StartError", str(e))
        self.state = {"running": {"startedAt": rfc3339(self.started)}}
        with open(self.log + ".pid", "w") as f:  # for crash recovery: see reap_leftovers
            f.write(str(self.proc.pid))
        for pipe in (self.proc.stdout, self.proc.stderr):
            threading.Thread(target=self.pump, args=(pipe,), daemon=True).start()

    def pump(self, pipe):
        """Copy one output of the process to the log, each line behind its time."""
        out = open(self.log, "ab")
        for line in iter(pipe.readline, b""):
            if out.tell() > LOG_MAX:
                out.close()
                os.replace(self.log, self.log + ".old")
                out = open(self.log, "ab")
            out.write(stamp(time.time_ns()) + b" " + line.rstrip(b"\n") + b"\n")
            out.flush()
        out.close()
        pipe.close()

    def exited(self, code, reason, message=""):
        now = time.time()
        ended = {"exitCode": code, "reason": reason, "message": message,
                 "startedAt": rfc3339(self.started), "finishedAt": rfc3339(now)}
        policy = self.pod.doc["spec"].get("restartPolicy", "Always")
        if policy == "Always" or (policy == "OnFailure" and code != 0):
            self.next_start = now + min(2 ** self.restarts, 30)  # back-off: 1, 2, 4 ... 30 s
            self.last, self.state = ended, {"waiting": {"reason": "CrashLoopBackOff"}}
        else:
            self.state = {"terminated": ended}

    def tick(self, now):
        """Notice an exit; restart when it is time."""
        if self.running() and self.proc.poll() is not None:
            code = self.proc.returncode
            self.exited(exit_code(code), "Error" if code else "Completed")
        if self.next_start and now >= self.next_start:
            self.restarts += 1
            self.start()

    def running(self):
        return "running" in self.state

    def status(self):
        st = {"name": self.name, "image": self.spec.get("image", ""), "imageID": "",
              "restartCount": self.restarts, "ready": self.running(), "started": self.running(),
              "state": self.state}
        if self.proc:
            st["containerID"] = "process://%d" % self.proc.pid
        if self.last:
            st["lastState"] = {"terminated": self.last}
        return st


# ---- a pod: its directory, volumes, containers and status ------------------------------------
class Pod:
    def __init__(self, root, doc):
        meta = doc["metadata"]  # namespace, name and uid, as in a PodRef: see Provider.find
        self.doc, self.namespace, self.name, self.uid = \
            doc, meta["namespace"], meta["name"], meta["uid"]
        self.dir = os.path.join(root, "%s_%s_%s" % (self.namespace, self.name, self.uid))
        self.seq, self.sent, self.execs, self.created = 0, "", set(), time.time()
        self.containers = [Container(self, c) for c in doc["spec"]["containers"]]

    def setup(self, core):
        """The pod directory, with ConfigMap and Secret volumes as files under <mountPath>/."""
        os.makedirs(self.dir, mode=0o700, exist_ok=True)
        spec = self.doc["spec"]
        for vol in spec.get("volumes", []):
            kind = "secret" if "secret" in vol else "configMap"
            src = vol.get(kind)
            if not src:
                continue  # other volume types are ignored
            name = src.get("secretName" if kind == "secret" else "name", "")
            try:
                get = core.GetSecret if kind == "secret" else core.GetConfigMap
                obj = json.loads(get(pb.GetObjectRequest(namespace=self.namespace, name=name),
                                     timeout=5).object_json)
            except (grpc.RpcError, AttributeError) as e:  # AttributeError: no core
                if src.get("optional") and getattr(e, "code", 0) and e.code() == Code.NOT_FOUND:
                    continue
                raise OSError("cannot read %s %s/%s: %s" % (kind, self.namespace, name, e))
            files = {k: base64.b64decode(v) for k, v in obj.get("binaryData", {}).items()}
            files.update({k: base64.b64decode(v) if kind == "secret" else v.encode()
                          for k, v in obj.get("data", {}).items()})
            for path in [under(self.dir, m["mountPath"]) for c in spec["containers"]
                         for m in c.get("volumeMounts", []) if m["name"] == vol["name"]]:
                os.makedirs(path, exist_ok=True)
                for key, data in files.items():
                    with open(under(path, key), "wb") as f:
                        f.write(data)

    def container(self, name, context):
        for c in self.containers:
            if c.name == name or not name:
                return c
        context.abort(Code.NOT_FOUND, "container %s is not part of pod %s/%s"
                      % (name, self.namespace, self.name))

    def done(self):
        return all("terminated" in c.state for c in self.containers)

    def status(self):
        ctrs = [c.status() for c in self.containers]
        phase = "Running"  # from CreatePod on: all containers start at once
        if self.done():
            failed = any(c["state"]["terminated"]["exitCode"] for c in ctrs)
            phase = "Failed" if failed else "Succeeded"
        ready = phase == "Running" and all(c["ready"] for c in ctrs)
        conds = [{"type": t, "status": str(ok), "lastTransitionTime": rfc3339(self.created)}
                 for t, ok in (("Initialized", True), ("ContainersReady", ready),
                               ("Ready", ready))]  # PodScheduled is the scheduler's
        return {"phase": phase, "hostIP": HOST_IP, "podIP": HOST_IP, "conditions": conds,
                "startTime": rfc3339(self.created), "containerStatuses": ctrs}

    def json(self):
        return dumps(dict(self.doc, status=self.status()))

    def event(self, deleted=False):
        ref = pb.PodRef(namespace=self.namespace, name=self.name, uid=self.uid)
        return pb.PodStatusEvent(pod=ref, sequence=self.seq, deleted=deleted,
                                 status_json=b"" if deleted else dumps(self.status()))


# ---- the Provider service: pods, their status, the node --------------------------------------
class Provider(pbg.ProviderServicer):
    def __init__(self, root, core_target):
        self.root, self.pods, self.watchers, self.samples = root, {}, [], {}
        self.cv = threading.Condition()  # guards the pods, their state and the watchers
        self.core = self.core_target = None
        self.set_core(core_target)

    def set_core(self, target):
        if target and target != self.core_target:
            self.core_target, self.core = target, pbg.CoreStub(grpc.insecure_channel(target))

    def run(self, stop):
        """Every TICK: notice exits, restart what is due, publish what changed."""
        while not stop.wait(TICK):
            with self.cv:
                for pod in self.pods.values():
                    for c in pod.containers:
                        c.tick(time.time())
                    self.publish(pod)

    def publish(self, pod, deleted=False):
        """With cv held: hand the pod's status to every watch, if it changed."""
        text = "" if deleted else json.dumps(pod.status(), sort_keys=True)
        if deleted or text != pod.sent:
            pod.seq, pod.sent = pod.seq + 1, text
            for queue in self.watchers:
                queue[pod.uid] = pod.event(deleted)  # coalesced: the latest status wins
            self.cv.notify_all()

    def parse(self, data, context):
        """The Pod of a CreatePod, UpdatePod or DeletePod request, if this provider can run it."""
        try:
            doc = json.loads(data)
            meta, spec = doc["metadata"], doc["spec"]
            meta.setdefault("namespace", "default")
            meta.setdefault("uid", "")
            if meta["name"] and spec["containers"] and not spec.get("initContainers") and all(
                    c["name"] and (c.get("command") or c.get("args")) for c in spec["containers"]):
                return Pod(self.root, doc)
        except (ValueError, KeyError, TypeError, AttributeError):
            pass
        context.abort(Code.INVALID_ARGUMENT, "not a pod this provider can run: it needs a name "
                      "and containers with a command (there are no images here), and no init "
                      "containers")

    def find(self, ref, context):
        """With cv held: the pod a PodRef (or a parsed Pod) names."""
        pod = self.pods.get((ref.namespace, ref.name))
        if pod is None or (ref.uid and ref.uid != pod.uid):
            context.abort(Code.NOT_FOUND, "pod %s/%s not found" % (ref.namespace, ref.name))
        return pod

    def Handshake(self, request, context):
        self.set_core(request.core_target)
        log("handshake", node=request.node_name)
        return pb.HandshakeResponse(protocol_version=1, provider_name="python",
                                    provider_version=VERSION, capabilities=CAPS)

    def Ping(self, request, context):
        return pb.PingResponse()

    def CreatePod(self, request, context):
        pod = self.parse(request.pod_json, context)
        key = (pod.namespace, pod.name)
        with self.cv:
            old = self.pods.get(key)
            if old and old.uid == pod.uid:
                return pb.CreatePodResponse()  # a retry
            if old and not old.done():
                context.abort(Code.ALREADY_EXISTS, "pod %s/%s still runs as uid %s"
                              % (key + (old.uid,)))
            if len(self.pods) >= MAX_PODS:
                context.abort(Code.RESOURCE_EXHAUSTED, "this node runs %d pods" % MAX_PODS)
            self.pods.pop(key, None)  # one that ended gives way to the new incarnation
        if old:
            self.remove(old, 0)
        try:  # without the lock: volumes take a round trip to the core
            pod.setup(self.core)
        except OSError as e:
            shutil.rmtree(pod.dir, ignore_errors=True)
            context.abort(Code.UNAVAILABLE, "cannot set up pod %s/%s: %s" % (key + (e,)))
        with self.cv:
            if key in self.pods:  # another CreatePod won the race
                shutil.rmtree(pod.dir, ignore_errors=True)
                context.abort(Code.ALREADY_EXISTS, "pod %s/%s exists" % key)
            self.pods[key] = pod
            for c in pod.containers:
                c.start()
            self.publish(pod)
        return pb.CreatePodResponse()

    def UpdatePod(self, request, context):
        new = self.parse(request.pod_json, context)
        with self.cv:
            self.find(new, context).doc = new.doc  # labels, annotations, images...
        return pb.UpdatePodResponse()

    def DeletePod(self, request, context):
        gone = self.parse(request.pod_json, context)
        with self.cv:
            pod = self.find(gone, context)
            del self.pods[(pod.namespace, pod.name)]
        grace = gone.doc["metadata"].get("deletionGracePeriodSeconds",
                                         gone.doc["spec"].get("terminationGracePeriodSeconds", 30))
        left = context.time_remaining()  # answer within the core's deadline
        self.remove(pod, min(grace, max(0, left - 1)) if left else grace)
        return pb.DeletePodResponse()

    def remove(self, pod, grace):
        """Stop every process of a pod no longer in self.pods, then drop its files."""
        for c in pod.containers:
            killpg(c.proc, signal.SIGTERM)
        end = time.time() + grace
        while time.time() < end and any(c.running() and c.proc.poll() is None
                                        for c in pod.containers):
            time.sleep(0.05)
        with self.cv:
            procs = [c.proc for c in pod.containers if c.proc] + list(pod.execs)
            self.publish(pod, deleted=True)
        for proc in procs:
            killpg(proc, signal.SIGKILL)
            proc.wait()
        shutil.rmtree(pod.dir, ignore_errors=True)

    def GetPod(self, request, context):
        with self.cv:
            return pb.GetPodResponse(pod_json=self.find(request.pod, context).json())

    def GetPodStatus(self, request, context):
        with self.cv:
            status = self.find(request.pod, context).status()
        return pb.GetPodStatusResponse(status_json=dumps(status))

    def GetPods(self, request, context):
        with self.cv:
            return pb.GetPodsResponse(pods_json=[p.json() for p in self.pods.values()])

    def WatchPodStatus(self, request, context):
        with self.cv:
            queue = {p.uid: p.event() for p in self.pods.values()}  # the current state first
            self.watchers.append(queue)
        try:
            while context.is_active():
                with self.cv:
                    if not queue:
                        self.cv.wait(1)
                    events = list(queue.values())
                    queue.clear()
                yield from events
        finally:
            with self.cv:  # by identity: two empty queues are equal
                self.watchers = [q for q in self.watchers if q is not queue]

    def GetNode(self, request, context):
        """Capacity and system info. vkc-core adds the architecture and the Ready condition."""
        with open("/etc/os-release") as f:
            release = dict(line.rstrip().split("=", 1) for line in f if "=" in line)
        info = {"kernelVersion": os.uname().release, "containerRuntimeVersion": "process://"
                + VERSION, "osImage": release.get("PRETTY_NAME", "Linux").strip('"')}
        return pb.Node(capacity={"cpu": str(os.cpu_count()), "pods": str(MAX_PODS),
                                 "memory": "%dKi" % (meminfo()["MemTotal"] // 1024)},
                       operating_system="linux", node_info_json=dumps(info))

    # ---- stats and metrics ----
    def summary(self):
        """The kubelet's stats summary, from /proc: a container is its process group."""
        t, groups, host, samples, pods = time.time(), group_usage(), meminfo(), {}, []
        now = rfc3339(t)

        def used(cpu, cores, mem, **fields):  # the cpu and memory of a pod or a container
            return dict(fields, memory={"time": now, "workingSetBytes": mem, "rssBytes": mem},
                        cpu={"time": now, "usageCoreNanoSeconds": int(cpu * 1e9),
                             "usageNanoCores": int(cores * 1e9)})
        with self.cv:
            for pod in self.pods.values():
                ctrs = []
                for c in pod.containers:
                    cpu, mem = groups.get(c.running() and c.proc.pid, (0.0, 0))
                    t0, cpu0 = self.samples.get(c, (t, cpu))  # cores: the change since last time
                    samples[c] = (t, cpu)
                    ctrs.append((cpu, (cpu - cpu0) / (t - t0) if t > t0 else 0.0, mem, c))
                cpu, cores, mem, _ = zip(*ctrs)
                ref = {"namespace": pod.namespace, "name": pod.name, "uid": pod.uid}
                pods.append(used(sum(cpu), sum(cores), sum(mem), podRef=ref,
                                 startTime=rfc3339(pod.created),
                                 containers=[used(*r[:3], name=r[3].name,
                                                  startTime=rfc3339(r[3].started)) for r in ctrs]))
            self.samples = samples  # of the containers still there
        return {"pods": pods, "node": {
            "nodeName": "", "cpu": {"time": now, "usageCoreNanoSeconds": int(cpu_seconds() * 1e9)},
            "memory": {"time": now, "availableBytes": host["MemAvailable"],
                       "workingSetBytes": host["MemTotal"] - host["MemAvailable"]}}}

    def GetStatsSummary(self, request, context):
        return pb.GetStatsSummaryResponse(summary_json=dumps(self.summary()))

    def GetMetricsResource(self, request, context):
        """The summary's numbers in the Prometheus text format, as the kubelet serves them."""
        s, text = self.summary(), ""
        at = {"node": [("", s["node"])], "pod": [], "container": []}
        for p in s["pods"]:
            labels = 'namespace="%(namespace)s",pod="%(name)s"' % p["podRef"]
            at["pod"].append(("{%s}" % labels, p))
            at["container"] += [('{container="%s",%s}' % (c["name"], labels), c)
                                for c in p["containers"]]
        for level, rows in at.items():
            for metric, kind, value in METRICS:
                name = level + "_" + metric
                text += "# TYPE %s %s\n" % (name, kind)
                text += "".join("%s%s %s\n" % (name, labels, value(u)) for labels, u in rows)
        return pb.GetMetricsResourceResponse(text=text)

    # ---- streams: logs, exec, port-forward ----
    def GetContainerLogs(self, request, context):
        with self.cv:
            c = self.find(request.pod, context).container(request.container, context)
            instance = c.proc  # a follow ends with it
        path = c.log + (".prev" if request.previous else "")
        if request.previous and not os.path.exists(path):
            context.abort(Code.NOT_FOUND, "container %s has not restarted" % c.name)
        since = request.since_time_unix_nano.value
        if request.HasField("since_seconds"):
            since = max(since, time.time_ns() - request.since_seconds.value * 10**9)
        left = request.limit_bytes.value if request.HasField("limit_bytes") else -1
        f = open(path if os.path.exists(path) else os.devnull, "rb")
        try:
            lines = [x for x in whole_lines(f) if x[:30] >= stamp(max(since, 0))]
            if request.HasField("tail_lines"):
                n = request.tail_lines.value
                lines = lines[max(0, len(lines) - n):] if n > 0 else []
            while context.is_active() and left != 0:
                data = b"".join(x if request.timestamps else x.split(b" ", 1)[1] for x in lines)
                if left > 0:
                    data, left = data[:left], max(0, left - len(data))
                for i in range(0, len(data), CHUNK):
                    yield pb.LogChunk(data=data[i:i + CHUNK])
                if not request.follow or request.previous:
                    break
                ended = instance is None or c.proc is not instance or instance.poll() is not None
                if not lines:
                    time.sleep(TICK)
                    if os.path.exists(path) and \
                            os.stat(path).st_ino != os.fstat(f.fileno()).st_ino:
                        f.close()  # rotated: go on in the new file
                        f = open(path, "rb")
                lines = whole_lines(f)
                if not lines and ended:
                    break
        finally:
            f.close()

    def stream_start(self, request_iterator, context):
        """The start message of an exec or port-forward stream, and the pod it names."""
        first = next(request_iterator, None)
        if first is None or not first.HasField("start"):
            context.abort(Code.INVALID_ARGUMENT, "the first message must be start")
        with self.cv:
            return first.start, self.find(first.start.pod, context)

    def ExecInContainer(self, request_iterator, context):
        start, pod = self.stream_start(request_iterator, context)
        with self.cv:
            c = pod.container(start.container, context)
            if not c.running():
                context.abort(Code.FAILED_PRECONDITION, "container %s is not running" % c.name)
        argv, tty = list(start.command), None
        if start.tty:  # setsid makes the terminal the command's own: ^C and resizes reach it.
            # It forks (hiding the exit code) when started as a group leader: so no new session
            tty, slave = pty.openpty()
            resize(tty, start.size)
            argv, io = ["setsid", "--ctty"] + argv, dict(stdin=slave, stdout=slave, stderr=slave)
        else:
            io = dict(stdin=subprocess.PIPE if start.stdin else subprocess.DEVNULL,
                      stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            proc = subprocess.Popen(argv, cwd=c.cwd, env=c.env, start_new_session=not tty, **io)
        except OSError as e:
            context.abort(Code.INVALID_ARGUMENT, "cannot run %s: %s" % (argv[0], e.strerror))
        finally:
            if tty:
                os.close(slave)
        with self.cv:
            pod.execs.add(proc)  # killed with the pod
        context.add_callback(lambda: killpg(proc, signal.SIGKILL))
        if tty:
            outs = {tty: "stdout"}
            feed(request_iterator, {"stdin": lambda data: os.write(tty, data),
                                    "resize": lambda size: resize(tty, size),
                                    "stdin_close": lambda _: os.write(tty, b"\x04")})  # ^D
        else:
            outs = {proc.stdout.fileno(): "stdout", proc.stderr.fileno(): "stderr"}
            feed(request_iterator, {"stdin": lambda data: os.write(proc.stdin.fileno(), data),
                                    "stdin_close": lambda _: proc.stdin.close()} if proc.stdin
                 else {})
        try:
            for fd, data in relay(context, outs):
                yield pb.ExecOutput(**{outs[fd]: data})
            if context.is_active():
                yield pb.ExecOutput(exit=pb.ExecExit(exit_code=exit_code(proc.wait())))
        finally:
            killpg(proc, signal.SIGKILL)
            proc.wait()
            for pipe in filter(None, (proc.stdin, proc.stdout, proc.stderr)):
                pipe.close()
            if tty:
                os.close(tty)
            with self.cv:
                pod.execs.discard(proc)

    def PortForward(self, request_iterator, context):
        start, _ = self.stream_start(request_iterator, context)
        try:  # the pods share the host's network
            conn = socket.create_connection(("127.0.0.1", start.port), 5)
        except (OSError, OverflowError) as e:
            context.abort(Code.UNAVAILABLE, "nothing accepts on port %d: %s" % (start.port, e))
        feed(request_iterator, {"data": conn.sendall,
                                "close_write": lambda _: conn.shutdown(socket.SHUT_WR)})
        with conn:
            for _, data in relay(context, [conn.fileno()]):
                yield pb.PortForwardOutput(data=data)


# ---- stream plumbing -------------------------------------------------------------------------
def feed(request_iterator, handlers):
    """In a thread of its own, hand each later message of a stream to handlers[its kind]."""
    def run():
        try:
            for msg in request_iterator:
                kind = msg.WhichOneof("input")
                if kind in handlers:
                    handlers[kind](getattr(msg, kind))
        except (OSError, ValueError, grpc.RpcError):
            pass  # the command or the caller is gone
    threading.Thread(target=run, daemon=True).start()


def relay(context, fds):
    """(fd, data) as it comes from fds, until each is at its end or the caller goes away."""
    fds = list(fds)
    while fds and context.is_active():
        for fd in select.select(fds, [], [], TICK)[0]:
            try:
                data = os.read(fd, CHUNK)
            except OSError:  # EIO: the terminal's last user left
                data = b""
            if data:
                yield fd, data
            else:
                fds.remove(fd)


def whole_lines(f):
    """The lines from f's position on; one still being written is left for next time."""
    lines = f.readlines()
    if lines and not lines[-1].endswith(b"\n"):
        f.seek(-len(lines.pop()), os.SEEK_CUR)
    return lines


def resize(fd, size):
    if size and size.width:
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", size.height, size.width, 0, 0))


# ---- /proc readers, crash recovery -----------------------------------------------------------
def meminfo():
    with open("/proc/meminfo") as f:
        return {k: int(v.split()[0]) * 1024 for k, v in (line.split(":") for line in f)}


def cpu_seconds():
    with open("/proc/stat") as f:
        ticks = [int(x) for x in f.readline().split()[1:9]]
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")  # less idle, iowait


def group_usage():
    """{process group: (cpu seconds, resident bytes)} of every process."""
    usage, hz, page = {}, os.sysconf("SC_CLK_TCK"), os.sysconf("SC_PAGE_SIZE")
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open("/proc/%s/stat" % pid) as f:
                st = f.read().rsplit(")", 1)[1].split()  # after "pid (comm)"
        except OSError:
            continue  # gone meanwhile
        cpu, mem = usage.get(int(st[2]), (0.0, 0))
        usage[int(st[2])] = (cpu + (int(st[11]) + int(st[12])) / hz, mem + int(st[21]) * page)
    return usage


def reap_leftovers(root):
    """Kill what an instance of this provider that crashed left running, and its files."""
    for pod_dir in (os.path.join(root, d) for d in os.listdir(root)):
        if not os.path.isdir(pod_dir):
            continue
        for pid_file in (f for f in os.listdir(pod_dir) if f.endswith(".pid")):
            try:
                with open(os.path.join(pod_dir, pid_file)) as f:
                    pid = int(f.read())
                if os.readlink("/proc/%d/cwd" % pid).startswith(pod_dir):  # not a reused pid
                    os.killpg(pid, signal.SIGKILL)
            except (OSError, ValueError):
                pass
        shutil.rmtree(pod_dir, ignore_errors=True)


# ---- main: flags, the gRPC server, shutdown --------------------------------------------------
def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--listen", default=os.environ.get("VKC_PROVIDER_LISTEN"),
                    help="unix:/path or host:port (default: $VKC_PROVIDER_LISTEN)")
    ap.add_argument("--root-dir", help="where pods live (default: python-pods/ beside the socket)")
    args = ap.parse_args()
    sock = args.listen[5:] if args.listen and args.listen.startswith("unix:") else None
    root = args.root_dir or (sock and os.path.join(os.path.dirname(sock), "python-pods"))
    if not args.listen or not root:
        ap.error("give --listen (or set VKC_PROVIDER_LISTEN), and --root-dir with TCP")
    os.makedirs(root, mode=0o700, exist_ok=True)
    reap_leftovers(root)
    provider = Provider(root, os.environ.get("VKC_CORE_TARGET"))
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=WORKERS),
                         maximum_concurrent_rpcs=WORKERS,
                         options=[("grpc.max_receive_message_length", 16 << 20),
                                  ("grpc.max_send_message_length", 16 << 20)])
    pbg.add_ProviderServicer_to_server(provider, server)
    if sock and os.path.exists(sock):
        os.unlink(sock)
    server.add_insecure_port(args.listen)
    server.start()
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    log("python provider serving", listen=args.listen, root=root)
    threading.Thread(target=provider.run, args=(stop,), daemon=True).start()
    stop.wait()
    log("python provider stopping")
    server.stop(2).wait()
    with provider.cv:
        pods = list(provider.pods.values())
        provider.pods.clear()
    for pod in pods:  # nothing survives the provider: the core recreates pods at its next start
        provider.remove(pod, 1)
    if not args.root_dir:
        os.rmdir(root)


if __name__ == "__main__":
    main()
