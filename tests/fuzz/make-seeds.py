#!/usr/bin/python3
"""Writes the seed corpora of the fuzz targets into tests/fuzz/corpus/NAME/.

    /usr/bin/python3 tests/fuzz/make-seeds.py [BUILD]

Seeds are a handful of real-looking inputs per target, in the input format
each target's header comment describes. The binary ones (protobuf messages,
SPDY and WebSocket descriptions) are built here so that they can be
regenerated when a format changes; the files are committed so that the
fuzz targets and `make test` need no Python. Protobuf seeds use the Python
stubs of proto/provider.proto, generated into BUILD/python (default build).
"""
import json
import os
import shutil
import struct
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
CORPUS = os.path.join(HERE, "corpus")


def write(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def compact(obj):
    return json.dumps(obj, separators=(",", ":"))


# ---- Kubernetes objects ------------------------------------------------------

POD_MINIMAL = {
    "apiVersion": "v1", "kind": "Pod",
    "metadata": {"name": "web-1", "namespace": "team", "uid": "0d1e7f3c-1111-4c1b-9c39-4f0e2b7d1a10"},
    "spec": {"containers": [{"name": "web", "image": "nginx:1.25"}]},
}

POD_FULL = {
    "apiVersion": "v1", "kind": "Pod",
    "metadata": {
        "name": "api-7d9f8c6b5-x2x9q", "namespace": "team", "uid": "6c1a2b3c-2222-4c1b-9c39-4f0e2b7d1a11",
        "resourceVersion": "48213", "labels": {"app": "api", "pod-template-hash": "7d9f8c6b5"},
        "annotations": {"kubectl.kubernetes.io/restartedAt": "2026-11-28T09:00:00Z"},
    },
    "spec": {
        "nodeName": "vk", "restartPolicy": "Always", "serviceAccountName": "builder",
        "hostname": "api", "enableServiceLinks": True,
        "imagePullSecrets": [{"name": "regcred"}],
        "initContainers": [{"name": "migrate", "image": "api:1.4", "command": ["/migrate", "--to=$(SCHEMA)"],
                            "env": [{"name": "SCHEMA", "value": "v7"}]}],
        "containers": [{
            "name": "api", "image": "registry.local/api:1.4", "imagePullPolicy": "IfNotPresent",
            "workingDir": "/srv", "command": ["/api"], "args": ["--port=$(PORT)", "--db=$(DB_HOST)", "$$(literal)"],
            "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}, {"containerPort": 9090, "hostPort": 9090}],
            "env": [
                {"name": "PORT", "value": "8080"},
                {"name": "DB_HOST", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "db_host"}}},
                {"name": "DB_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}},
                {"name": "OPTIONAL", "valueFrom": {"secretKeyRef": {"name": "absent", "key": "k", "optional": True}}},
                {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
                {"name": "CPU_LIMIT", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu", "divisor": "1m"}}},
                {"name": "MEM_REQ", "valueFrom": {"resourceFieldRef": {"containerName": "api", "resource": "requests.memory", "divisor": "1Mi"}}},
            ],
            "envFrom": [{"configMapRef": {"name": "cfg"}}, {"prefix": "S_", "secretRef": {"name": "db"}}],
            "resources": {"requests": {"cpu": "250m", "memory": "128Mi"}, "limits": {"cpu": "1", "memory": "1Gi"}},
            "volumeMounts": [{"name": "config", "mountPath": "/etc/api", "readOnly": True},
                             {"name": "data", "mountPath": "/data", "subPath": "api"}],
            "tty": False, "stdin": True,
        }],
        "volumes": [
            {"name": "config", "configMap": {"name": "cfg"}},
            {"name": "creds", "secret": {"secretName": "db"}},
            {"name": "data", "persistentVolumeClaim": {"claimName": "api-data"}},
            {"name": "scratch", "emptyDir": {}},
            {"name": "token", "projected": {"sources": [{"serviceAccountToken": {"path": "token", "expirationSeconds": 3600}},
                                                        {"configMap": {"name": "ca"}}]}},
        ],
    },
    "status": {"phase": "Pending", "qosClass": "Burstable"},
}

POD_DELETING = {
    "apiVersion": "v1", "kind": "Pod",
    "metadata": {"name": "batch-0", "namespace": "default", "uid": "u-batch-0",
                 "deletionTimestamp": "2026-11-28T09:10:00Z", "deletionGracePeriodSeconds": 30},
    "spec": {"hostNetwork": True, "restartPolicy": "Never",
             "containers": [{"name": "job", "image": "busybox", "command": ["sh", "-c", "sleep 5"],
                             "resources": {"limits": {"cpu": 2, "memory": "0.5Gi"}}}]},
    "status": {"phase": "Running", "podIP": "10.244.0.5",
               "containerStatuses": [{"name": "job", "ready": True, "restartCount": 0,
                                      "state": {"running": {"startedAt": "2026-11-28T09:00:00Z"}}}]},
}

CONFIGMAP = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg", "namespace": "team"},
             "data": {"db_host": "db.team.svc", "LEVEL": "debug", "1BAD": "x", "with space": "y",
                      "REF": "$(PORT)-$(LEVEL)"}}
SECRET = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db", "namespace": "team"},
          "type": "Opaque", "data": {"password": "czNjcjN0", "USER": "YWRtaW4=", "empty": ""}}


def json_seeds():
    write("json", "pod", compact(POD_FULL))
    write("json", "pretty", json.dumps(CONFIGMAP, indent=2) + "\n")
    write("json", "scalars", '[1, -0.5e10, 12345678901234567890, true, false, null, "", "\\u00e9\\ud83d\\ude00\\n"]')
    write("json", "keys", '{"a":{"a":{"a":[]}},"a":1,"\\u0000":"nul","k\\"q":{}}')
    write("json", "nested", "[" * 99 + "]" * 99)


def pod_seeds():
    write("pod", "minimal", compact(POD_MINIMAL))
    write("pod", "full", compact(POD_FULL))
    write("pod", "deleting", compact(POD_DELETING))
    write("pod", "escaped-keys", '{"metadata":{"name":"p"},"spec":{"containers":[{"name":"c"}]},'
                                 '"st\\u0061tus":{"phase":"Running"},"extra":[1,2,{"x":null}]}')


def quantity_seeds():
    for i, q in enumerate(["100m", "1.5Gi", "1e3", "-2k", "0.1", "128974848", "129M", "123Mi",
                           ".5", "1Ei", "9223372036854775807", "+5n", "1E-3", "0.000000001u"]):
        write("quantity", "q%02d" % i, q)


def command_seeds():
    write("command", "plain", "/usr/bin/vkc-provider-mock --config /etc/vkc/mock.yaml")
    write("command", "quoted", "prov --name 'my provider' --msg \"say \\\"hi\\\" \\$HOME\" a\\ b")
    write("command", "shell", "sh -c 'exec prov --x \"$Y\"'")
    write("command", "refused", "prov | tee log")


def duration_seeds():
    for i, d in enumerate(["500ms", "1m30s", "2h", "0", "1.5s", "10s", "24h0m0s"]):
        write("duration", "d%d" % i, d)


KUBECONFIG_FILES = """apiVersion: v1
kind: Config
current-context: prod
clusters:
- name: prod
  cluster:
    server: https://10.0.0.1:6443
    certificate-authority: ca.crt
    tls-server-name: kubernetes
users:
- name: node
  user:
    client-certificate: client.crt
    client-key: client.key
contexts:
- name: prod
  context:
    cluster: prod
    user: node
    namespace: kube-system
- name: dev
  context:
    cluster: dev
    user: dev
clusters:
- name: dev
  cluster:
    server: https://127.0.0.1:6443
    insecure-skip-tls-verify: true
users:
- name: dev
  user:
    tokenFile: token
"""

KUBECONFIG_INLINE = """apiVersion: v1
kind: Config
preferences: {}
current-context: dev
clusters:
- cluster:
    certificate-authority-data: LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCk1JSUIKLS0tLS1FTkQgQ0VSVElGSUNBVEUtLS0tLQo=
    server: "https://[fd00::1]:6443"
    proxy-url: http://proxy:3128
  name: dev
contexts:
- context: {cluster: dev, user: dev, namespace: ""}
  name: dev
users:
- name: dev
  user:
    token: eyJhbGciOiJSUzI1NiJ9.payload.sig
    exec:
      command: aws
"""

KUBECONFIG_ANCHORS = """current-context: &c dev
contexts:
- name: *c
  context: &ctx {cluster: dev, user: dev}
clusters:
- name: dev
  cluster: {server: 'https://a', insecure-skip-tls-verify: yes}
users:
- name: dev
  user: {client-certificate-data: Zm9v, client-key-data: YmFy}
"""


def kubeconfig_seeds():
    write("kubeconfig", "files", KUBECONFIG_FILES)
    write("kubeconfig", "inline", KUBECONFIG_INLINE)
    write("kubeconfig", "anchors", KUBECONFIG_ANCHORS)
    write("kubeconfig", "bad-base64", KUBECONFIG_INLINE.replace("LS0tLS1CRUdJ", "LS0tLS1CRUd!"))


def envresolve_seeds():
    sep = "\0"
    write("envresolve", "full", compact(POD_FULL) + sep + compact(CONFIGMAP) + sep + compact(SECRET))
    write("envresolve", "missing", compact(POD_FULL) + sep + compact(CONFIGMAP))
    flaky = json.loads(json.dumps(POD_MINIMAL))
    flaky["spec"]["containers"][0]["env"] = [
        {"name": "A", "valueFrom": {"configMapKeyRef": {"name": "flaky", "key": "a", "optional": True}}}]
    write("envresolve", "flaky", compact(flaky))
    links = json.loads(json.dumps(POD_MINIMAL))
    links["metadata"]["namespace"] = "default"
    links["spec"]["containers"][0]["command"] = ["echo", "$(REDIS_MASTER_SERVICE_HOST):$(KUBERNETES_PORT_443_TCP_PORT)"]
    links["spec"]["ephemeralContainers"] = [{"name": "debug", "image": "busybox",
                                             "envFrom": [{"secretRef": {"name": "any"}}]}]
    unnamed = {"kind": "Secret", "data": {"K": "dg=="}}
    write("envresolve", "links", compact(links) + sep + compact(unnamed))


def podstatus_seeds():
    """Option byte, then NUL-separated: the API's Pod, the provider's statuses."""
    api = json.loads(json.dumps(POD_DELETING))
    api["metadata"]["deletionTimestamp"] = None
    api["status"]["conditions"] = [{"type": "PodScheduled", "status": "True"},
                                   {"type": "example.com/gate", "status": "False"}]
    api["status"]["qosClass"] = "BestEffort"
    running = {"phase": "Running", "podIP": "10.244.0.5",
               "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "2026-11-28T09:00:01Z"}],
               "containerStatuses": [{"name": "job", "ready": True, "restartCount": 1, "image": "busybox",
                                      "imageID": "", "state": {"running": {"startedAt": "2026-11-28T09:00:00Z"}}}]}
    done = dict(running, phase="Succeeded", containerStatuses=[
        {"name": "job", "ready": False, "restartCount": 1, "image": "busybox", "imageID": "",
         "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}])
    pending = {"phase": "Pending", "reason": "ContainerCreating"}
    sep = "\0"
    write("podstatus", "forward", "\x01" + compact(api) + sep + compact(running) + sep + compact(done) +
          sep + compact(pending))
    write("podstatus", "stale-cache", "\x00" + compact(api) + sep + compact(running) + sep +
          compact(dict(running, podIP="10.244.0.6")) + sep + compact(running))
    write("podstatus", "refused", "\x06" + compact(api) + sep + compact(pending) + sep + compact(running))


def watch_seeds():
    def event(t, obj):
        return compact({"type": t, "object": obj}) + "\n"
    pod = dict(POD_MINIMAL, metadata=dict(POD_MINIMAL["metadata"], resourceVersion="101"))
    stream = (event("ADDED", pod) + event("MODIFIED", POD_DELETING) + event("DELETED", pod) +
              event("BOOKMARK", {"kind": "Pod", "metadata": {"resourceVersion": "120"}}))
    # Seed byte, option byte, then the body.
    write("watch", "events", b"\x2a\x00" + stream.encode())
    write("watch", "take-free", b"\x07\x03" + stream.encode())
    gone = event("ERROR", {"kind": "Status", "status": "Failure", "code": 410, "reason": "Expired",
                           "message": "too old resource version: 1 (120)"})
    write("watch", "gone", b"\x11\x04" + (event("ADDED", pod) + gone).encode())
    write("watch", "small-limit", b"\x53\x58" + stream.encode())
    write("watch", "cut", b"\x01\x00" + stream.encode()[:-40])


def reflector_seeds():
    """NUL-separated parts, each a control byte (never 0: it separates) and
    the answer's body; for a list, 3 means 200, 1 410 and 2 500."""
    def pod(name, rv):
        p = json.loads(json.dumps(POD_MINIMAL))
        p["metadata"]["name"], p["metadata"]["resourceVersion"] = name, rv
        return p

    def page(items, rv="", cont=""):
        meta = {"resourceVersion": rv} if rv else {}
        if cont:
            meta["continue"] = cont
        return compact({"kind": "PodList", "apiVersion": "v1", "metadata": meta, "items": items})

    def events(*evs):
        return "".join(compact({"type": t, "object": o}) + "\n" for t, o in evs)
    parts = [
        "\x03" + page([pod("a", "10"), pod("b", "11")], cont="eyJ2IjoibWV0YS5rOHMuaW8vdjEiLCJydiI6MTJ9"),
        "\x03" + page([pod("c", "12")], rv="12"),
        "\x21" + events(("ADDED", pod("d", "13")), ("BOOKMARK", {"kind": "Pod", "metadata": {"resourceVersion": "20"}}),
                         ("MODIFIED", pod("a", "21")), ("DELETED", pod("b", "22"))),
        "\x02" + events(("ERROR", {"kind": "Status", "code": 410, "message": "too old resource version"})),
        "\x01",
        "\x03" + page([], rv="30"),
        "\x85" + events(("ADDED", pod("e", "31"))),
        "\x03" + page(None, rv="40"),
    ]
    write("reflector", "list-watch", "\0".join(parts))
    write("reflector", "free-in-callback", "\0".join(parts[:3]) + "!")
    write("reflector", "bad-list", "\0".join(["\x03" + page([1, "x", None], rv=""), "\x03{}", "\x03" + page("no", rv="5")]))


# ---- protobuf ------------------------------------------------------------------

def load_stubs(build):
    out = os.path.join(ROOT, build, "python")
    os.makedirs(out, exist_ok=True)
    subprocess.check_call(["protoc", "--proto_path", os.path.join(ROOT, "proto"),
                           "--python_out", out, os.path.join(ROOT, "proto", "provider.proto")])
    sys.path.insert(0, out)
    import provider_pb2
    return provider_pb2


def message_names(pb):
    """Full names of the messages fuzz_protobuf knows, in its order: every
    method's input and output and what their fields refer to, by name."""
    seen = set()

    def add(d):
        if d.full_name in seen:
            return
        seen.add(d.full_name)
        for f in d.fields:
            if f.message_type is not None:
                add(f.message_type)
    for service in pb.DESCRIPTOR.services_by_name.values():
        for m in service.methods:
            add(m.input_type)
            add(m.output_type)
    return sorted(seen)


def protobuf_seeds(pb):
    names = message_names(pb)

    def index(msg):
        return names.index(msg.DESCRIPTOR.full_name)

    ref = pb.PodRef(namespace="team", name="web-1", uid="u1")
    node = pb.Node(capacity={"cpu": "4", "memory": "15Gi", "pods": "110"},
                   allocatable={"cpu": "3800m", "memory": "14Gi"},
                   conditions_json=b'[{"type":"Ready","status":"True","reason":"KubeletReady"}]',
                   addresses_json=b'[{"type":"InternalIP","address":"10.0.0.7"}]',
                   operating_system="linux",
                   node_info_json=b'{"architecture":"amd64","osImage":"Debian 12"}',
                   labels={"topology.kubernetes.io/zone": "a", "kubernetes.io/role": "agent"})
    messages = {
        "handshake-response": pb.HandshakeResponse(protocol_version=1, provider_name="mock", provider_version="0.1",
                                                   capabilities=["WatchPodStatus", "ExecInContainer", "Bogus"]),
        "node": node,
        "pod-status-event": pb.PodStatusEvent(pod=ref, sequence=7, status_json=b'{"phase":"Running"}'),
        "get-pods-response": pb.GetPodsResponse(pods_json=[compact(POD_MINIMAL).encode(), b"{}"]),
        "exec-input": pb.ExecInput(start=pb.ExecStart(pod=ref, container="web", command=["sh"], stdin=True,
                                                      tty=True, size=pb.TerminalSize(width=80, height=24))),
        "exec-output": pb.ExecOutput(exit=pb.ExecExit(exit_code=2, error="")),
        "port-forward-input": pb.PortForwardInput(data=b"GET / HTTP/1.0\r\n\r\n"),
        "logs-request": pb.GetContainerLogsRequest(pod=ref, container="web"),
        "event": pb.EmitEventRequest(pod=ref, type="Warning", reason="BackOff", message="restarting"),
    }
    for name, msg in messages.items():
        write("protobuf", name, bytes([index(msg)]) + msg.SerializeToString(deterministic=True))
    return node, ref


def provider_rpc_seeds(pb, node, ref):
    ok = 0

    def seed(name, call, msg, status=ok):
        write("provider_rpc", name, bytes([call, status]) + msg)

    def framed(*msgs):
        return b"".join(struct.pack(">H", len(m)) + m for m in msgs)
    seed("handshake", 0, pb.HandshakeResponse(protocol_version=1, provider_name="mock", provider_version="1",
                                              capabilities=["WatchNode", "PortForward", "x"]).SerializeToString(deterministic=True))
    seed("handshake-error", 0, b"provider \xff not ready\n", 0xf3)
    seed("get-pod", 1, pb.GetPodResponse(pod_json=compact(POD_MINIMAL).encode()).SerializeToString(deterministic=True))
    seed("get-pod-status", 2, pb.GetPodStatusResponse(status_json=b'{"phase":"Failed"}').SerializeToString(deterministic=True))
    seed("stats", 3, pb.GetStatsSummaryResponse(summary_json=b'{"node":{"nodeName":"vk"}}').SerializeToString(deterministic=True))
    seed("metrics", 4, pb.GetMetricsResourceResponse(text="node_cpu_usage_seconds_total 1\n").SerializeToString(deterministic=True))
    seed("get-pods", 5, pb.GetPodsResponse(pods_json=[compact(POD_FULL).encode()]).SerializeToString(deterministic=True))
    seed("get-node", 6, node.SerializeToString(deterministic=True))
    seed("watch-pod-status", 9, framed(pb.PodStatusEvent(pod=ref, sequence=1, status_json=b"{}").SerializeToString(deterministic=True),
                                       pb.PodStatusEvent(pod=ref, sequence=2, deleted=True).SerializeToString(deterministic=True)))
    seed("watch-node", 10, framed(node.SerializeToString(deterministic=True), b"\x0a\x03bad"))
    seed("exec", 11, framed(pb.ExecOutput(stdout=b"hi\n").SerializeToString(deterministic=True),
                            pb.ExecOutput(exit=pb.ExecExit(exit_code=0)).SerializeToString(deterministic=True)))
    seed("get-secret", 12, pb.GetObjectRequest(namespace="team", name="db").SerializeToString(deterministic=True))
    seed("get-secret-denied", 12, pb.GetObjectRequest(namespace="other", name="db").SerializeToString(deterministic=True))
    seed("get-configmap", 13, pb.GetObjectRequest(namespace="team", name="cfg").SerializeToString(deterministic=True))
    seed("token", 14, pb.ServiceAccountTokenRequest(pod=pb.PodRef(namespace="team", name="web-1", uid="u1"),
                                                    service_account_name="builder",
                                                    audiences=["vault"], expiration_seconds=600).SerializeToString(deterministic=True))
    seed("event", 15, pb.EmitEventRequest(pod=ref, type="Normal", reason="Pulled",
                                          message="pulled nginx").SerializeToString(deterministic=True))


def node_seeds(pb, node):
    """Option byte, provider name, NUL, then Nodes with 2-byte lengths."""
    def seed(name, opts, provider, *nodes):
        body = b"".join(struct.pack(">H", len(n)) + n for n in nodes)
        write("node", name, bytes([opts]) + provider + b"\0" + body)
    plain = node.SerializeToString(deterministic=True)
    changed = pb.Node(capacity={"cpu": "8", "memory": "31Gi", "nvidia.com/gpu": "1"},
                      conditions_json=b'[{"type":"Ready","status":"False","reason":"RuntimeDown"},'
                                      b'{"type":"DiskPressure","status":"True"}]',
                      addresses_json=b'[{"type":"InternalIP","address":"10.0.0.8"},'
                                     b'{"type":"InternalIP","address":"fd00::8"}]',
                      operating_system="windows",
                      labels={"node.kubernetes.io/pool": "gpu", "example.com/rack": "r1",
                              "node-role.kubernetes.io/worker": ""}).SerializeToString(deterministic=True)
    bad_json = pb.Node(capacity={"cpu": "1"}, conditions_json=b'{"type":"Ready"}',
                       addresses_json=b"[1,2", node_info_json=b'["x"]').SerializeToString(deterministic=True)
    seed("register", 0, b"mock", plain)
    seed("changes", 0x01, b"mock", plain, changed, bad_json)
    seed("down-up", 0x0c, b"cri", changed, plain)
    seed("no-taint", 0x02, b"", bad_json)


# ---- SPDY and WebSocket descriptions (see spdy_client.h and ws_client.h) --------

SPDY_NAMES = {"streamtype": 0, "port": 1, "requestid": 2}
SPDY_VALUES = {"error": 0, "stdin": 1, "stdout": 2, "stderr": 3, "resize": 4, "data": 5, "8080": 6,
               "80": 7, "0": 8, "1": 9}


def syn(stream, pairs, flags=0):
    """SYN_STREAM on client stream id 2*stream+1 with (name, value) pairs."""
    out = bytes([0, stream, flags, len(pairs)])
    for name, value in pairs:
        out += bytes([SPDY_NAMES[name] << 4 | SPDY_VALUES[value]])
    return out


def data(stream, payload, fin=False):
    return bytes([2, stream, 1 if fin else 0, len(payload)]) + payload


def ws_frame(opcode, payload, fin=True):
    index = [0x0, 0x1, 0x2, 0x8, 0x9, 0xa].index(opcode)
    return bytes([index | (0 if fin else 0x08), 0x40, len(payload)]) + payload


GO_CAPTURE = os.path.join(ROOT, "tests", "unit", "spdy_go_capture.h")


def go_capture():
    text = open(GO_CAPTURE).read()
    body = text[text.index("{") + 1:text.index("};")]
    return bytes(int(x, 16) for x in body.replace(",", " ").split())


def spdy_seeds():
    exec_session = (syn(0, [("streamtype", "error")]) + syn(1, [("streamtype", "stdin")]) +
                    syn(2, [("streamtype", "stdout")]) + data(1, b"hello\n", fin=True) +
                    bytes([4, 3]) + bytes([6, 0x90, 0, 1]) + bytes([5, 1, 0, 4, 0]))
    write("spdy", "exec", b"\x31\x00" + exec_session)
    write("spdy", "exec-echo-pause", b"\x31\x3c" + exec_session)
    # A reset, a raw header block with an empty name (refused), a GOAWAY.
    bad_block = b"\x00\x00\x00\x01" + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x01x"
    write("spdy", "reset-goaway", b"\x05\x90" + syn(0, [("streamtype", "data")]) + bytes([3, 0, 5]) +
          bytes([0, 1, 0x80 | 1, len(bad_block)]) + bad_block + bytes([7, 1, 0]))
    write("spdy", "small-limits", b"\x77\x12" + syn(0, [("streamtype", "stdin")]) + data(0, b"x" * 100) +
          syn(1, [("requestid", "0")] * 8))
    write("spdy", "go-capture", b"\x09\x01" + go_capture())


def websocket_seeds():
    frames = (ws_frame(0x1, b"hello") + ws_frame(0x2, b"\x00\x01", fin=False) + ws_frame(0x9, b"p") +
              ws_frame(0x0, b"\x02\x03") + ws_frame(0xa, b"") + ws_frame(0x8, b"\x03\xe8bye"))
    write("websocket", "messages", b"\x44\x08" + frames)
    write("websocket", "pause-close", b"\x45\x30" + frames)
    write("websocket", "too-big", b"\x46\x04" + ws_frame(0x2, b"z" * 100))
    write("websocket", "handshake", b"\x00\x01" + b"\0".join([
        b"websocket", b"keep-alive, Upgrade", b"dGhlIHNhbXBsZSBub25jZQ==", b"13",
        b"v4.channel.k8s.io, v5.channel.k8s.io"]))


def remotecommand_seeds():
    # opts: stdin 8, stdout 16, stderr 32, tty 64; version byte picks the protocol.
    spdy = (syn(0, [("streamtype", "error")]) + syn(1, [("streamtype", "stdin")]) +
            syn(2, [("streamtype", "stdout")]) + syn(3, [("streamtype", "resize")]) +
            data(1, b"ls -l\n") + data(3, b'{"Width":80,"Height":24}\n{"Width":1') + data(3, b'20,"Height":40}') +
            data(1, b"", fin=True))
    write("remotecommand", "spdy-tty", bytes([0x21, 8 | 16 | 64, 0]) + spdy)
    write("remotecommand", "spdy-v2", bytes([0x22, 8 | 16 | 32, 2]) + syn(0, [("streamtype", "error")]) +
          syn(1, [("streamtype", "stdin")]) + syn(2, [("streamtype", "stdout")]) +
          syn(3, [("streamtype", "stderr")]) + data(1, b"echo\n", fin=True))
    ws = (ws_frame(0x2, b"\x00ls\n") + ws_frame(0x2, b'\x04{"Width":100,"Height":30}') +
          ws_frame(0x2, b"\xff\x00") + ws_frame(0x8, b"\x03\xe8"))
    write("remotecommand", "ws-v5", bytes([0x23, 2 | 8 | 16 | 64, 0]) + ws)
    write("remotecommand", "ws-base64", bytes([0x24, 2 | 8 | 16, 2]) + ws_frame(0x1, b"0bHMK") +
          ws_frame(0x1, b"4eyJXaWR0aCI6MX0=") + ws_frame(0x1, b"0"))
    write("remotecommand", "helpers", bytes([0, 1, 1]) + b"\0".join([
        b"command=sh", b"command=-c", b"command=echo hi", b"input=1", b"output=true", b"tty=1",
        b"container=web", b"v4.channel.k8s.io, v3.channel.k8s.io"]))


def portforward_seeds():
    pair = (syn(0, [("streamtype", "error"), ("port", "8080"), ("requestid", "0")]) +
            syn(1, [("streamtype", "data"), ("port", "8080"), ("requestid", "0")]) +
            data(1, b"GET / HTTP/1.0\r\n\r\n") + data(1, b"", fin=True))
    old = syn(2, [("streamtype", "error"), ("port", "80")]) + syn(3, [("streamtype", "data"), ("port", "80")])
    write("portforward", "spdy-pairs", bytes([0x31, 0x20, 0]) + pair + old + bytes([3, 3, 5]))
    write("portforward", "spdy-incomplete", bytes([0x32, 0x18, 0]) + syn(0, [("streamtype", "data"), ("port", "1")]) +
          data(0, b"early"))
    ws = ws_frame(0x2, b"\x00ping") + ws_frame(0x2, b"\x02two") + ws_frame(0x2, b"\x01x") + ws_frame(0x8, b"")
    write("portforward", "ws-two-ports", bytes([0x33, 0x02 | 0x20, 0x10]) + ws)
    write("portforward", "ws-base64", bytes([0x34, 0x02, 0x01]) + ws_frame(0x1, b"0aGk=") + ws_frame(0x1, b"0"))
    write("portforward", "helpers", bytes([0, 1, 0]) + b"\0".join([b"8080,9090", b"53", b"portforward.k8s.io"]))


def http_seeds():
    get = (b"GET /containerLogs/team/web-1/web?follow=true&tailLines=10&a+b=%2F HTTP/1.1\r\n"
           b"Host: 10.0.0.7:10250\r\nAuthorization: Bearer abc\r\nAccept: */*\r\n\r\n")
    post = (b"POST /run/team/web-1/web?cmd=ls HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"
            b"Content-Length: 11\r\nExpect: 100-continue\r\n\r\ncmd=ls+-la&")
    chunked = (b"POST /stream HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"5\r\nhello\r\n0\r\n\r\n")
    head = b"HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
    old = b"GET /stream HTTP/1.0\r\n\r\n"
    write("http", "pipelined", b"\x11\x00" + get + post + chunked + head + b"GET /missing HTTP/1.1\r\n\r\n")
    write("http", "http10-stream", b"\x12\x00" + old)
    write("http", "upgrade", b"\x13\x00" + b"GET /exec/team/web-1/web?command=sh&input=1&output=1&tty=1 HTTP/1.1\r\n"
          b"Host: x\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: v4.channel.k8s.io\r\n\r\n"
          b"\x80\x03\x00\x01raw bytes")
    later = b"GET /later?wait=1 HTTP/1.1\r\nHost: x\r\n\r\nGET /after HTTP/1.1\r\nHost: x\r\n\r\n"
    write("http", "later", b"\x16\x00" + later)
    write("http", "hangup", b"\x17\x02" + later)
    write("http", "close-after-requests", b"\x18\x04" + get + head + old)
    write("http", "limits", b"\x14\x01" + b"GET /" + b"a" * 600 + b" HTTP/1.1\r\n\r\n")
    write("http", "bad", b"\x15\x00" + b"GET /%zz HTTP/1.1\r\nHost: x\r\n\r\nPUT / HTTP/1.1\r\nContent-Length: 99999999\r\n\r\n")


def main():
    build = sys.argv[1] if len(sys.argv) > 1 else "build"
    if os.path.isdir(CORPUS):
        shutil.rmtree(CORPUS)
    json_seeds()
    pod_seeds()
    quantity_seeds()
    command_seeds()
    duration_seeds()
    kubeconfig_seeds()
    envresolve_seeds()
    podstatus_seeds()
    watch_seeds()
    reflector_seeds()
    pb = load_stubs(build)
    node, ref = protobuf_seeds(pb)
    provider_rpc_seeds(pb, node, ref)
    node_seeds(pb, node)
    spdy_seeds()
    websocket_seeds()
    remotecommand_seeds()
    portforward_seeds()
    http_seeds()


if __name__ == "__main__":
    main()
