#!/usr/bin/python3
"""Write an OCI image archive holding Debian's busybox-static, for
`ctr images import`. No network, no image tooling: a layer tar, a config,
a manifest and an index, each addressed by its sha256.

    mkimage.py OUT.tar NAME [NAME...]

Every NAME (a full reference, e.g. docker.io/library/busybox:latest) is
given to the same manifest. The image's default command sleeps for as long
as a 32-bit time allows, so the same image serves as the pod sandbox
("pause") image and as a workload image.
"""
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile

BUSYBOX = "/bin/busybox"
EPOCH = 0  # fixed mtimes: the same input gives the same image id


def add(tar, name, kind, data=b"", mode=0o755, target=""):
    info = tarfile.TarInfo(name)
    info.mtime = EPOCH
    info.uid = info.gid = 0
    info.mode = mode
    info.type = kind
    if kind == tarfile.SYMTYPE:
        info.linkname = target
        tar.addfile(info)
    elif kind == tarfile.DIRTYPE:
        tar.addfile(info)
    else:
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))


def layer():
    with open(BUSYBOX, "rb") as f:
        busybox = f.read()
    applets = subprocess.run([BUSYBOX, "--list"], check=True,
                             capture_output=True, text=True).stdout.split()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for d in ("bin", "dev", "etc", "proc", "sys", "tmp", "root", "var"):
            add(tar, d, tarfile.DIRTYPE, mode=0o1777 if d == "tmp" else 0o755)
        add(tar, "bin/busybox", tarfile.REGTYPE, busybox)
        for a in sorted(set(applets)):
            if a != "busybox":
                add(tar, "bin/" + a, tarfile.SYMTYPE, target="busybox")
        add(tar, "etc/passwd", tarfile.REGTYPE,
            b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n",
            mode=0o644)
        add(tar, "etc/group", tarfile.REGTYPE, b"root:x:0:\nnogroup:x:65534:\n", mode=0o644)
    return buf.getvalue()


def blob(tar, data):
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    add(tar, "blobs/sha256/" + digest[7:], tarfile.REGTYPE, data, mode=0o644)
    return digest


def main():
    if len(sys.argv) < 3:
        sys.exit("usage: mkimage.py OUT.tar NAME [NAME...]")
    out, names = sys.argv[1], sys.argv[2:]
    lay = layer()
    with tarfile.open(out + ".tmp", mode="w", format=tarfile.PAX_FORMAT) as tar:
        layer_digest = blob(tar, lay)
        config = json.dumps({
            "architecture": {"x86_64": "amd64", "aarch64": "arm64"}.get(os.uname().machine,
                                                                         os.uname().machine),
            "os": "linux",
            "config": {
                "Env": ["PATH=/bin"],
                "Cmd": ["/bin/sleep", "2147483647"],
                "WorkingDir": "/",
            },
            "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
        }, sort_keys=True).encode()
        config_digest = blob(tar, config)
        manifest = json.dumps({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": config_digest, "size": len(config)},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                        "digest": layer_digest, "size": len(lay)}],
        }, sort_keys=True).encode()
        manifest_digest = blob(tar, manifest)
        index = {"schemaVersion": 2, "manifests": [
            {"mediaType": "application/vnd.oci.image.manifest.v1+json",
             "digest": manifest_digest, "size": len(manifest),
             "annotations": {"io.containerd.image.name": n,
                             "org.opencontainers.image.ref.name": n.rsplit(":", 1)[-1]}}
            for n in names]}
        add(tar, "oci-layout", tarfile.REGTYPE, b'{"imageLayoutVersion":"1.0.0"}', mode=0o644)
        add(tar, "index.json", tarfile.REGTYPE, json.dumps(index, sort_keys=True).encode(),
            mode=0o644)
    os.rename(out + ".tmp", out)
    print(config_digest)


if __name__ == "__main__":
    main()
