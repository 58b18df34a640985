#!/usr/bin/python3
"""A vkc provider in Python: every container is a local process.

    vkc-core --provider-cmd '/usr/bin/python3 contrib/python-provider/provider.py'

Nothing here is vkc code: the gRPC stubs are generated from proto/ by protoc, and Debian's
python3-grpcio serves them. A container is its command and args, run with the pod's env in a
process group of its own, in a directory per pod; its stdout and stderr go to a log file, each
line prefixed with its time. README.md says what is left out.
"""
import argparse
import base64
import calendar
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

VERSION = "0.1.0"
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CAPS = ["WatchPodStatus", "GetContainerLogs", "ExecInContainer", "PortForward",
        "GetStatsSummary", "GetMetricsResource"]
WORKERS = 64        # concurrent RPCs, streams included: more get RESOURCE_EXHAUSTED
MAX_PODS = 110
LOG_MAX = 8 << 20   # past this a container log starts afresh (the old one is kept as .old)
CHUNK = 64 << 10
TICK = 0.2          # how soon an exit, a cancellation or new log data is noticed
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def load_stubs():
    """Generate provider_pb2*.py from proto/ unless they are up to date."""
    out = os.environ.get("VKC_PYTHON_STUBS", os.path.join(REPO, "build", "python"))
    proto, stub = os.path.join(REPO, "proto", "provider.proto"), "provider_pb2_grpc.py"
    if not os.path.exists(os.path.join(out, stub)) or \
            os.path.getmtime(os.path.join(out, stub)) < os.path.getmtime(proto):
        os.makedirs(out, exist_ok=True)
        tmp = tempfile.mkdtemp(dir=out)  # then renamed into place: no half-written stubs
        subprocess.run(["protoc", "--proto_path", os.path.dirname(proto), "--python_out", tmp,
                        "--grpc_python_out", tmp, proto,
                        "--plugin=protoc-gen-grpc_python=/usr/bin/grpc_python_plugin"],
                       check=True)
        for name in os.listdir(tmp):
            os.replace(os.path.join(tmp, name), os.path.join(out, name))
        os.rmdir(tmp)
    sys.path.insert(0, out)


load_stubs()
import grpc  # noqa: E402
import provider_pb2 as pb  # noqa: E402
import provider_pb2_grpc as pbg  # noqa: E402

Code = grpc.StatusCode


def log(msg, **kv):
    kv = "".join(" %s=%s" % (k, json.dumps(str(v))) for k, v in kv.items())
    now = rfc3339(time.time())
    print("ts=%s level=info component=python msg=%s%s" % (now, json.dumps(msg), kv),
          file=sys.stderr)


def rfc3339(t, nanos=False):
    if not t:
        return None
    s = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t))
    return s + (".%09dZ" % int(t % 1 * 1e9) if nanos else "Z")


def stamp_ns(line):
    """The time of a log line, as written by Container.pump."""
    try:
        return calendar.timegm(time.strptime(line[:19].decode(), "%Y-%m-%dT%H:%M:%S")) \
            * 10**9 + int(line[20:29])
    except ValueError:
        return 0


def whole_lines(f):
    """The lines from f's position on; one still being written is left for next time."""
    lines = f.readlines()
    if lines and not lines[-1].endswith(b"\n"):
        f.seek(-len(lines.pop()), os.SEEK_CUR)
    return lines


def under(root, path):
    """path taken relative to root, never leading outside it."""
    return os.path.join(root, os.path.normpath("/" + path).lstrip("/"))


def host_ip():
    try:
        return socket.gethostbyname(socket.gethostname())
    except OSError:
        return "127.0.0.1"


def killpg(proc, sig):
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, AttributeError):
        pass


class Container:
    def __init__(self, pod, spec):
        self.pod, self.spec, self.name = pod, spec, spec["name"]
        self.log = os.path.join(pod.dir, self.name + ".log")
        self.proc = self.started = self.finished = self.exit_code = self.next_start = None
        self.last, self.restarts, self.reason, self.message = None, 0, "ContainerCreating", ""

    def start(self):
        if os.path.exists(self.log):  # what `kubectl logs --previous` shows
            os.replace(self.log, self.log + ".prev")
        self.started, self.exit_code, self.next_start = time.time(), None, None
        try:
            cwd = under(self.pod.dir, self.spec.get("workingDir", "/"))
            os.makedirs(cwd, exist_ok=True)
            self.proc = subprocess.Popen(
                self.spec.get("command", []) + self.spec.get("args", []), cwd=cwd,
                env=self.pod.env(self.spec), start_new_session=True, stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        except OSError as e:
            self.proc = None
            return self.exited(127, "StartError", str(e))
        with open(self.log + ".pid", "w") as f:
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
            out.write(rfc3339(time.time(), True).encode() + b" " + line.rstrip(b"\n") + b"\n")
            out.flush()
        out.close()
        pipe.close()

    def exited(self, code, reason, message=""):
        self.exit_code, self.finished, self.reason, self.message = \
            code, time.time(), reason, message
        policy = self.pod.doc["spec"].get("restartPolicy", "Always")
        if policy == "Always" or (policy == "OnFailure" and code != 0):
            self.next_start = self.finished + min(2 ** self.restarts, 30)  # back-off
            self.last = self.terminated()

    def tick(self, now):
        if self.running() and self.proc.poll() is not None:
            code = self.proc.returncode
            self.exited(code if code >= 0 else 128 - code, "Error" if code else "Completed")
        if self.next_start and now >= self.next_start:
            self.restarts += 1
            self.start()

    def running(self):
        return self.proc is not None and self.exit_code is None

    def terminated(self):
        return {"exitCode": self.exit_code, "reason": self.reason, "message": self.message,
                "startedAt": rfc3339(self.started), "finishedAt": rfc3339(self.finished)}

    def status(self):
        st = {"name": self.name, "image": self.spec.get("image", ""), "imageID": "",
              "restartCount": self.restarts, "ready": self.running(), "started": self.running()}
        if self.proc:
            st["containerID"] = "process://%d" % self.proc.pid
        if self.running():
            st["state"] = {"running": {"startedAt": rfc3339(self.started)}}
        elif self.exit_code is not None and not self.next_start:
            st["state"] = {"terminated": self.terminated()}
        else:
            st["state"] = {"waiting": {"reason": "CrashLoopBackOff" if self.next_start
                                       else self.reason}}
        if self.last:
            st["lastState"] = {"terminated": self.last}
        return st


class Pod:
    def __init__(self, root, doc, core):
        meta = doc["metadata"]
        self.doc, self.ns, self.name, self.uid = doc, meta["namespace"], meta["name"], meta["uid"]
        self.dir = os.path.join(root, "%s_%s_%s" % (self.ns, self.name, self.uid))
        self.seq, self.sent, self.execs, self.created = 0, "", set(), time.time()
        os.makedirs(self.dir, mode=0o700, exist_ok=True)
        self.containers = [Container(self, c) for c in doc["spec"]["containers"]]
        self.write_volumes(core)

    def write_volumes(self, core):
        """ConfigMap and Secret volumes as files under <pod dir>/<mountPath>/."""
        mounts = {}
        for c in self.doc["spec"]["containers"]:
            for m in c.get("volumeMounts", []):
                mounts.setdefault(m["name"], []).append(m["mountPath"])
        for vol in self.doc["spec"].get("volumes", []):
            secret, src = "secret" in vol, vol.get("secret") or vol.get("configMap")
            if not src:
                continue
            name = src.get("secretName" if secret else "name", "")
            try:
                get = core.GetSecret if secret else core.GetConfigMap
                obj = json.loads(get(pb.GetObjectRequest(namespace=self.ns, name=name),
                                     timeout=5).object_json)
            except (grpc.RpcError, AttributeError) as e:  # AttributeError: no core
                if isinstance(e, grpc.RpcError) and e.code() == Code.NOT_FOUND \
                        and src.get("optional"):
                    continue
                kind = "secret" if secret else "configMap"
                raise OSError("cannot read %s %s/%s: %s" % (kind, self.ns, name, e))
            files = {k: base64.b64decode(v) if secret else v.encode()
                     for k, v in obj.get("data", {}).items()}
            files.update({k: base64.b64decode(v) for k, v in obj.get("binaryData", {}).items()})
            for path in mounts.get(vol["name"], []):
                os.makedirs(under(self.dir, path), exist_ok=True)
                for key, data in files.items():
                    with open(under(under(self.dir, path), key), "wb") as f:
                        f.write(data)

    def env(self, spec):
        env = {"PATH": PATH, "HOME": self.dir, "HOSTNAME": self.name}
        env.update({e["name"]: e.get("value", "") for e in spec.get("env", [])})
        return env

    def container(self, name, context):
        for c in self.containers:
            if c.name == name or not name:
                return c
        context.abort(Code.NOT_FOUND, "container %s is not part of pod %s/%s"
                      % (name, self.ns, self.name))

    def done(self):
        return all(c.exit_code is not None and not c.next_start for c in self.containers)

    def status(self):
        ctrs = [c.status() for c in self.containers]
        if self.done():
            phase = "Succeeded" if all(c.exit_code == 0 for c in self.containers) else "Failed"
        else:
            phase = "Running" if any(c.started for c in self.containers) else "Pending"
        ready = phase == "Running" and all(c["ready"] for c in ctrs)
        conds = [{"type": t, "status": str(ok), "lastTransitionTime": rfc3339(self.created)}
                 for t, ok in (("PodScheduled", True), ("Initialized", True),
                               ("ContainersReady", ready), ("Ready", ready))]
        return {"phase": phase, "hostIP": HOST_IP, "podIP": HOST_IP, "conditions": conds,
                "startTime": rfc3339(self.created), "containerStatuses": ctrs}

    def event(self, deleted=False):
        return pb.PodStatusEvent(pod=pb.PodRef(namespace=self.ns, name=self.name, uid=self.uid),
                                 sequence=self.seq, deleted=deleted, status_json=b"" if deleted
                                 else json.dumps(self.status()).encode())


class Provider(pbg.ProviderServicer):
    def __init__(self, root, core_target):
        self.root, self.pods, self.watchers, self.samples = root, {}, [], {}
        self.cv = threading.Condition()  # guards the pods, their state and the watchers
        self.core = self.core_target = None
        self.set_core(core_target)

    def set_core(self, target):
        if target and target != self.core_target:
            self.core_target, self.core = target, pbg.CoreStub(grpc.insecure_channel(target))

    def publish(self, pod, deleted=False):
        """With cv held: hand the pod's status to every watch, if it changed."""
        text = "" if deleted else json.dumps(pod.status(), sort_keys=True)
        if deleted or text != pod.sent:
            pod.seq, pod.sent = pod.seq + 1, text
            for queue in self.watchers:
                queue[pod.uid] = pod.event(deleted)  # coalesced: the latest status wins
            self.cv.notify_all()

    def run(self, stop):
        while not stop.wait(TICK):
            with self.cv:
                for pod in self.pods.values():
                    for c in pod.containers:
                        c.tick(time.time())
                    self.publish(pod)

    def parse(self, data, context):
        try:
            doc = json.loads(data)
            meta, spec = doc["metadata"], doc["spec"]
            meta.setdefault("namespace", "default")
            meta.setdefault("uid", "")
            if meta["name"] and spec["containers"] and not spec.get("initContainers") and all(
                    c["name"] and (c.get("command") or c.get("args")) for c in spec["containers"]):
                return doc
        except (ValueError, KeyError, TypeError, AttributeError):
            pass
        context.abort(Code.INVALID_ARGUMENT, "not a pod this provider can run: it needs a name "
                      "and containers with a command (there are no images here), and no init "
                      "containers")

    def find(self, ref, context):
        pod = self.pods.get((ref.namespace, ref.name))
        if pod is None or (ref.uid and ref.uid != pod.uid):
            context.abort(Code.NOT_FOUND, "pod %s/%s not found" % (ref.namespace, ref.name))
        return pod

    def ref(self, doc):
        meta = doc["metadata"]
        return pb.PodRef(namespace=meta["namespace"], name=meta["name"], uid=meta["uid"])

    def Handshake(self, request, context):
        self.set_core(request.core_target)
        log("handshake", node=request.node_name)
        return pb.HandshakeResponse(protocol_version=1, provider_name="python",
                                    provider_version=VERSION, capabilities=CAPS)

    def Ping(self, request, context):
        return pb.PingResponse()

    def CreatePod(self, request, context):
        doc = self.parse(request.pod_json, context)
        ref = self.ref(doc)
        key = (ref.namespace, ref.name)
        with self.cv:
            old = self.pods.get(key)
            if old and old.uid == ref.uid:
                return pb.CreatePodResponse()
            if old and not old.done():
                context.abort(Code.ALREADY_EXISTS, "pod %s/%s still runs as uid %s"
                              % (key + (old.uid,)))
            if len(self.pods) >= MAX_PODS:
                context.abort(Code.RESOURCE_EXHAUSTED, "this node runs %d pods" % MAX_PODS)
            self.pods.pop(key, None)  # one that ended gives way to the new incarnation
        if old:
            self.remove(old, 0)
        try:
            pod = Pod(self.root, doc, self.core)
        except OSError as e:
            shutil.rmtree(os.path.join(self.root, "%s_%s_%s" % (key + (ref.uid,))), True)
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
        doc = self.parse(request.pod_json, context)
        with self.cv:
            self.find(self.ref(doc), context).doc = doc  # labels, annotations, images...
        return pb.UpdatePodResponse()

    def DeletePod(self, request, context):
        doc = self.parse(request.pod_json, context)
        with self.cv:
            pod = self.find(self.ref(doc), context)
            del self.pods[(pod.ns, pod.name)]
        grace = doc["metadata"].get("deletionGracePeriodSeconds",
                                    doc["spec"].get("terminationGracePeriodSeconds", 30))
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
            pod = self.find(request.pod, context)
            return pb.GetPodResponse(pod_json=json.dumps(dict(pod.doc, status=pod.status()))
                                     .encode())

    def GetPodStatus(self, request, context):
        with self.cv:
            status = self.find(request.pod, context).status()
        return pb.GetPodStatusResponse(status_json=json.dumps(status).encode())

    def GetPods(self, request, context):
        with self.cv:
            return pb.GetPodsResponse(pods_json=[json.dumps(dict(p.doc, status=p.status()))
                                                 .encode() for p in self.pods.values()])

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
        u = os.uname()
        info = {"architecture": {"x86_64": "amd64", "aarch64": "arm64"}.get(u.machine, u.machine),
                "kernelVersion": u.release, "operatingSystem": "linux", "osImage": os_image(),
                "containerRuntimeVersion": "process://" + VERSION}
        ready = [{"type": "Ready", "status": "True", "reason": "ProviderReady",
                  "message": "the Python provider runs pods as processes"}]
        return pb.Node(capacity={"cpu": str(os.cpu_count()), "pods": str(MAX_PODS),
                                 "memory": "%dKi" % (meminfo()["MemTotal"] // 1024)},
                       conditions_json=json.dumps(ready).encode(), operating_system="linux",
                       node_info_json=json.dumps(info).encode())

    def GetContainerLogs(self, request, context):
        with self.cv:
            c = self.find(request.pod, context).container(request.container, context)
            instance = c.proc  # a follow ends with it
        path = c.log + (".prev" if request.previous else "")
        if request.previous and not os.path.exists(path):
            context.abort(Code.NOT_FOUND, "container %s has not restarted" % c.name)
        since = request.since_time_unix_nano.value
        if request.HasField("since_seconds"):
            since = max(since, (time.time() - request.since_seconds.value) * 1e9)
        left = request.limit_bytes.value if request.HasField("limit_bytes") else -1
        f = open(path if os.path.exists(path) else os.devnull, "rb")
        try:
            lines = [x for x in whole_lines(f) if stamp_ns(x) >= since]
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

    def start_of(self, request_iterator, context):
        first = next(request_iterator, None)
        if first is None or not first.HasField("start"):
            context.abort(Code.INVALID_ARGUMENT, "the first message must be start")
        return first.start

    def ExecInContainer(self, request_iterator, context):
        start = self.start_of(request_iterator, context)
        with self.cv:
            pod = self.find(start.pod, context)
            c = pod.container(start.container, context)
            if not c.running():
                context.abort(Code.FAILED_PRECONDITION, "container %s is not running" % c.name)
            env = pod.env(c.spec)
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
            proc = subprocess.Popen(argv, cwd=under(pod.dir, c.spec.get("workingDir", "/")),
                                    env=env, start_new_session=not tty, **io)
        except OSError as e:
            context.abort(Code.INVALID_ARGUMENT, "cannot run %s: %s" % (argv[0], e.strerror))
        finally:
            if tty:
                os.close(slave)
        with self.cv:
            pod.execs.add(proc)  # killed with the pod
        context.add_callback(lambda: killpg(proc, signal.SIGKILL))
        stdin = tty or (proc.stdin.fileno() if proc.stdin else None)

        def feed():
            try:
                for msg in request_iterator:
                    kind = msg.WhichOneof("input")
                    if kind == "stdin" and stdin is not None:
                        os.write(stdin, msg.stdin)
                    elif kind == "resize" and tty:
                        resize(tty, msg.resize)
                    elif kind == "stdin_close" and tty:
                        os.write(tty, b"\x04")  # ^D: end of input at a terminal
                    elif kind == "stdin_close" and proc.stdin:
                        proc.stdin.close()
            except (OSError, ValueError, grpc.RpcError):
                pass  # the command or the caller is gone
        threading.Thread(target=feed, daemon=True).start()
        outs = {tty: "stdout"} if tty else {proc.stdout.fileno(): "stdout",
                                            proc.stderr.fileno(): "stderr"}
        try:
            while outs and context.is_active():
                for fd in select.select(list(outs), [], [], TICK)[0]:
                    try:
                        data = os.read(fd, CHUNK)
                    except OSError:  # EIO: the terminal's last user left
                        data = b""
                    if data:
                        yield pb.ExecOutput(**{outs[fd]: data})
                    else:
                        del outs[fd]
            if context.is_active():
                code = proc.wait()
                yield pb.ExecOutput(exit=pb.ExecExit(exit_code=code if code >= 0 else 128 - code))
        finally:
            killpg(proc, signal.SIGKILL)
            proc.wait()
            for pipe in (proc.stdin, proc.stdout, proc.stderr):
                if pipe:
                    pipe.close()
            if tty:
                os.close(tty)
            with self.cv:
                pod.execs.discard(proc)

    def PortForward(self, request_iterator, context):
        start = self.start_of(request_iterator, context)
        with self.cv:
            self.find(start.pod, context)
        try:  # the pod shares the host's network
            conn = socket.create_connection(("127.0.0.1", start.port), 5)
        except (OSError, OverflowError) as e:
            context.abort(Code.UNAVAILABLE, "nothing accepts on port %d: %s" % (start.port, e))

        def feed():
            try:
                for msg in request_iterator:
                    if msg.WhichOneof("input") == "data":
                        conn.sendall(msg.data)
                    elif msg.WhichOneof("input") == "close_write":
                        conn.shutdown(socket.SHUT_WR)
            except (OSError, grpc.RpcError):
                pass
        threading.Thread(target=feed, daemon=True).start()
        with conn:
            while context.is_active():
                if select.select([conn], [], [], TICK)[0]:
                    data = conn.recv(CHUNK)
                    if not data:
                        break
                    yield pb.PortForwardOutput(data=data)

    def usage(self):
        """[(pod, [(container, cpu seconds, cores now, memory bytes)])] from /proc."""
        groups, now, samples, out = group_usage(), time.time(), {}, []
        with self.cv:
            pods = [(p, [(c, c.proc.pid if c.running() else None) for c in p.containers])
                    for p in self.pods.values()]
        for pod, ctrs in pods:
            rows = []
            for c, pgid in ctrs:
                cpu, mem = groups.get(pgid, (0.0, 0))
                t0, cpu0 = self.samples.get((pod.uid, c.name), (now, cpu))
                samples[(pod.uid, c.name)] = (now, cpu)
                rows.append((c, cpu, (cpu - cpu0) / (now - t0) if now > t0 else 0.0, mem))
            out.append((pod, rows))
        self.samples = samples  # of the pods still there
        return out

    def GetStatsSummary(self, request, context):
        now, mem = rfc3339(time.time()), meminfo()
        pods = [{"podRef": {"namespace": pod.ns, "name": pod.name, "uid": pod.uid},
                 "startTime": rfc3339(pod.created),
                 "cpu": {"time": now, "usageCoreNanoSeconds": int(sum(r[1] for r in rows) * 1e9),
                         "usageNanoCores": int(sum(r[2] for r in rows) * 1e9)},
                 "memory": {"time": now, "workingSetBytes": sum(r[3] for r in rows)},
                 "containers": [{"name": c.name, "startTime": rfc3339(c.started),
                                 "cpu": {"time": now, "usageCoreNanoSeconds": int(cpu * 1e9),
                                         "usageNanoCores": int(cores * 1e9)},
                                 "memory": {"time": now, "workingSetBytes": m, "rssBytes": m}}
                                for c, cpu, cores, m in rows]}
                for pod, rows in self.usage()]
        node = {"nodeName": "", "cpu": {"time": now, "usageCoreNanoSeconds":
                                        int(node_cpu_seconds() * 1e9)},
                "memory": {"time": now, "availableBytes": mem["MemAvailable"],
                           "workingSetBytes": mem["MemTotal"] - mem["MemAvailable"]}}
        return pb.GetStatsSummaryResponse(summary_json=json.dumps({"node": node, "pods": pods})
                                          .encode())

    def GetMetricsResource(self, request, context):
        mem = meminfo()
        series = {"node_cpu_usage_seconds_total": [("", node_cpu_seconds())],
                  "node_memory_working_set_bytes": [("", mem["MemTotal"] - mem["MemAvailable"])],
                  "pod_cpu_usage_seconds_total": [], "pod_memory_working_set_bytes": [],
                  "container_cpu_usage_seconds_total": [],
                  "container_memory_working_set_bytes": []}
        for pod, rows in self.usage():
            at = 'namespace="%s",pod="%s"' % (pod.ns, pod.name)
            series["pod_cpu_usage_seconds_total"].append((at, sum(r[1] for r in rows)))
            series["pod_memory_working_set_bytes"].append((at, sum(r[3] for r in rows)))
            for c, cpu, _, m in rows:
                series["container_cpu_usage_seconds_total"].append(
                    ('container="%s",%s' % (c.name, at), cpu))
                series["container_memory_working_set_bytes"].append(
                    ('container="%s",%s' % (c.name, at), m))
        text = ""
        for name, samples in series.items():
            text += "# TYPE %s %s\n" % (name, "counter" if name.endswith("total") else "gauge")
            text += "".join("%s%s %s\n" % (name, "{%s}" % at if at else "", v)
                            for at, v in samples)
        return pb.GetMetricsResourceResponse(text=text)


def resize(fd, size):
    if size and size.width:
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", size.height, size.width, 0, 0))


def meminfo():
    with open("/proc/meminfo") as f:
        return {k: int(v.split()[0]) * 1024 for k, v in (line.split(":") for line in f)}


def os_image():
    with open("/etc/os-release") as f:
        rel = dict(line.rstrip().split("=", 1) for line in f if "=" in line)
    return rel.get("PRETTY_NAME", "Linux").strip('"')


def node_cpu_seconds():
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
    limits = [("grpc.max_receive_message_length", 16 << 20),
              ("grpc.max_send_message_length", 16 << 20)]
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=WORKERS), options=limits,
                         maximum_concurrent_rpcs=WORKERS)
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


HOST_IP = host_ip()
if __name__ == "__main__":
    main()
