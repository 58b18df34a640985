"""Calls the mock provider from Python, with stubs generated from proto/.

This is the proof that the contract needs nothing but the .proto file: the
stubs come from protoc and Debian's python3-grpcio, no vkc code is imported.
Run by tests/run-tests.sh as: test_mock_client.py BIN_DIR STUB_DIR.
"""

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import unittest

BIN_DIR = sys.argv.pop(1) if len(sys.argv) > 2 else "build/bin"
STUB_DIR = sys.argv.pop(1) if len(sys.argv) > 1 else "build/python"
sys.path.insert(0, STUB_DIR)

import grpc  # noqa: E402
import provider_pb2 as pb  # noqa: E402
import provider_pb2_grpc as pbg  # noqa: E402


def pod_json(name, uid, containers=("app",)):
    return json.dumps({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"namespace": "default", "name": name, "uid": uid},
        "spec": {
            "nodeName": "vkc-node",
            "containers": [{"name": c, "image": "busybox"} for c in containers],
        },
    }).encode()


class MockFromPython(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        sock = os.path.join(cls.tmp.name, "provider.sock")
        env = dict(os.environ, VKC_PROVIDER_LISTEN="unix:" + sock)
        cls.proc = subprocess.Popen([os.path.join(BIN_DIR, "vkc-provider-mock")], env=env)
        deadline = time.time() + 10
        while not os.path.exists(sock):
            if time.time() > deadline or cls.proc.poll() is not None:
                raise RuntimeError("mock provider did not start")
            time.sleep(0.05)
        cls.channel = grpc.insecure_channel("unix:" + sock)
        grpc.channel_ready_future(cls.channel).result(timeout=10)
        cls.stub = pbg.ProviderStub(cls.channel)

    @classmethod
    def tearDownClass(cls):
        cls.channel.close()
        cls.proc.send_signal(signal.SIGTERM)
        rc = cls.proc.wait(timeout=10)
        cls.tmp.cleanup()
        if rc != 0:
            raise RuntimeError("mock provider exited with %d on SIGTERM" % rc)

    def create(self, name, uid):
        self.stub.CreatePod(pb.CreatePodRequest(pod_json=pod_json(name, uid)), timeout=5)
        return pb.PodRef(namespace="default", name=name, uid=uid)

    def wait_running(self, ref):
        deadline = time.time() + 10
        while time.time() < deadline:
            st = json.loads(self.stub.GetPodStatus(pb.GetPodStatusRequest(pod=ref), timeout=5).status_json)
            if st.get("phase") == "Running":
                return st
            time.sleep(0.05)
        self.fail("pod %s never reached Running" % ref.name)

    def test_handshake(self):
        r = self.stub.Handshake(pb.HandshakeRequest(
            protocol_version=pb.PROTOCOL_VERSION_CURRENT, node_name="vkc-node"), timeout=5)
        self.assertEqual(r.protocol_version, 1)
        self.assertEqual(r.provider_name, "mock")
        for cap in ("WatchPodStatus", "GetContainerLogs", "ExecInContainer", "PortForward",
                    "GetStatsSummary", "GetMetricsResource"):
            self.assertIn(cap, r.capabilities)

    def test_pod_lifecycle(self):
        ref = self.create("py-life", "uid-life")
        st = self.wait_running(ref)
        self.assertEqual(st["containerStatuses"][0]["name"], "app")
        self.assertTrue(st["containerStatuses"][0]["ready"])
        names = [json.loads(p)["metadata"]["name"]
                 for p in self.stub.GetPods(pb.GetPodsRequest(), timeout=5).pods_json]
        self.assertIn("py-life", names)
        got = json.loads(self.stub.GetPod(pb.GetPodRequest(pod=ref), timeout=5).pod_json)
        self.assertEqual(got["metadata"]["uid"], "uid-life")
        self.assertEqual(got["status"]["phase"], "Running")
        self.stub.DeletePod(pb.DeletePodRequest(pod_json=pod_json("py-life", "uid-life")), timeout=5)
        with self.assertRaises(grpc.RpcError) as e:
            self.stub.GetPodStatus(pb.GetPodStatusRequest(pod=ref), timeout=5)
        self.assertEqual(e.exception.code(), grpc.StatusCode.NOT_FOUND)

    def test_unknown_pod_and_bad_json(self):
        with self.assertRaises(grpc.RpcError) as e:
            self.stub.GetPod(pb.GetPodRequest(pod=pb.PodRef(namespace="x", name="nope")), timeout=5)
        self.assertEqual(e.exception.code(), grpc.StatusCode.NOT_FOUND)
        with self.assertRaises(grpc.RpcError) as e:
            self.stub.CreatePod(pb.CreatePodRequest(pod_json=b"{not json"), timeout=5)
        self.assertEqual(e.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)
        self.assertTrue(e.exception.details())

    def test_watch_pod_status(self):
        stream = self.stub.WatchPodStatus(pb.WatchPodStatusRequest(), timeout=10)
        ref = self.create("py-watch", "uid-watch")
        last_seq = {}
        for ev in stream:
            self.assertGreater(ev.sequence, last_seq.get(ev.pod.uid, 0))
            last_seq[ev.pod.uid] = ev.sequence
            if ev.pod.uid == ref.uid and json.loads(ev.status_json).get("phase") == "Running":
                break
        stream.cancel()
        self.stub.DeletePod(pb.DeletePodRequest(pod_json=pod_json("py-watch", "uid-watch")), timeout=5)

    def test_logs(self):
        ref = self.create("py-logs", "uid-logs")
        self.wait_running(ref)
        req = pb.GetContainerLogsRequest(pod=ref, container="app", follow=True)
        stream = self.stub.GetContainerLogs(req, timeout=10)
        data = b""
        for chunk in stream:
            data += chunk.data
            if b"\n" in data:
                break
        stream.cancel()
        self.assertIn(b"py-logs/app", data)
        limited = b"".join(c.data for c in self.stub.GetContainerLogs(
            pb.GetContainerLogsRequest(pod=ref, container="app", limit_bytes=pb.Int64Value(value=5)),
            timeout=5))
        self.assertLessEqual(len(limited), 5)

    def exec(self, ref, command, stdin=b""):
        def inputs():
            yield pb.ExecInput(start=pb.ExecStart(pod=ref, container="app", command=command,
                                                  stdin=bool(stdin), stdout=True, stderr=True))
            if stdin:
                yield pb.ExecInput(stdin=stdin)
                yield pb.ExecInput(stdin_close=True)
        out, code = b"", None
        for o in self.stub.ExecInContainer(inputs(), timeout=10):
            if o.HasField("exit"):
                code = o.exit.exit_code
            else:
                out += o.stdout
        return out, code

    def test_exec(self):
        ref = self.create("py-exec", "uid-exec")
        self.wait_running(ref)
        self.assertEqual(self.exec(ref, ["echo", "hello", "python"]), (b"hello python\n", 0))
        self.assertEqual(self.exec(ref, ["sh", "-c", "exit 3"])[1], 3)
        self.assertEqual(self.exec(ref, ["cat"], stdin=b"from stdin"), (b"from stdin", 0))

    def test_port_forward(self):
        ref = self.create("py-pf", "uid-pf")
        self.wait_running(ref)

        def inputs():
            yield pb.PortForwardInput(start=pb.PortForwardStart(pod=ref, port=8080))
            yield pb.PortForwardInput(data=b"ping")
            yield pb.PortForwardInput(close_write=True)
        got = b"".join(o.data for o in self.stub.PortForward(inputs(), timeout=10))
        self.assertEqual(got, b"ping")

    def test_stats(self):
        ref = self.create("py-stats", "uid-stats")
        self.wait_running(ref)
        summary = json.loads(self.stub.GetStatsSummary(pb.GetStatsSummaryRequest(), timeout=5).summary_json)
        self.assertIn("py-stats", [p["podRef"]["name"] for p in summary["pods"]])
        text = self.stub.GetMetricsResource(pb.GetMetricsResourceRequest(), timeout=5).text
        self.assertIn("pod_cpu_usage_seconds_total", text)
        self.assertIn('pod="py-stats"', text)


if __name__ == "__main__":
    unittest.main(verbosity=2)
