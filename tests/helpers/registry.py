"""A real registry for tests: Debian's docker-registry (the CNCF distribution
server) on 127.0.0.1 with a free port, its storage in a temp dir, ended by
its pid. Optionally htpasswd basic auth over TLS, with a test CA made by the
openssl CLI (the CA goes to skopeo through a certs dir, never /etc)."""

from __future__ import annotations

import json
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

REGISTRY = "/usr/bin/docker-registry"
USER, PASSWORD = "tester", "s3cret-pass"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_ca_and_cert(directory: Path, host: str) -> tuple[Path, Path, Path]:
    """(ca.crt, server.crt, server.key): a test CA and a cert for `host` (an IP)."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca_crt = directory / "ca.key", directory / "ca.crt"
    key, csr, crt = directory / "server.key", directory / "server.csr", directory / "server.crt"
    run = lambda *a: subprocess.run(["openssl", *a], check=True, capture_output=True)  # noqa: E731
    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=supd test CA",
        "-keyout", str(ca_key), "-out", str(ca_crt))
    run("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={host}", "-keyout", str(key), "-out", str(csr))
    ext = directory / "san.ext"
    ext.write_text(f"subjectAltName=IP:{host}\n")
    run("x509", "-req", "-in", str(csr), "-CA", str(ca_crt), "-CAkey", str(ca_key), "-CAcreateserial",
        "-days", "2", "-extfile", str(ext), "-out", str(crt))
    return ca_crt, crt, key


@dataclass
class Registry:
    root: Path
    tls: bool = False
    auth: bool = False
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    ca: Path | None = None

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def storage(self) -> Path:
        return self.root / "storage"

    def start(self) -> Registry:
        self.root.mkdir(parents=True, exist_ok=True)
        http: dict[str, object] = {"addr": self.host}
        config: dict[str, object] = {
            "version": 0.1,
            "log": {"level": "warn"},
            "storage": {"filesystem": {"rootdirectory": str(self.storage)}, "delete": {"enabled": True}},
            "http": http,
        }
        if self.tls:
            self.ca, crt, key = make_ca_and_cert(self.root / "tls", "127.0.0.1")
            http["tls"] = {"certificate": str(crt), "key": str(key)}
        if self.auth:
            htpasswd = self.root / "htpasswd"
            subprocess.run(["htpasswd", "-Bbc", str(htpasswd), USER, PASSWORD], check=True, capture_output=True)
            config["auth"] = {"htpasswd": {"realm": "supd-test", "path": str(htpasswd)}}
        conf = self.root / "config.json"  # YAML is a superset of JSON
        conf.write_text(json.dumps(config))
        log = open(self.root / "registry.log", "wb")
        self.process = subprocess.Popen([REGISTRY, "serve", str(conf)], stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        log.close()
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        scheme = "https" if self.tls else "http"
        context = ssl.create_default_context(cafile=str(self.ca)) if self.ca else None
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"registry exited: {(self.root / 'registry.log').read_text()}")
            try:
                urllib.request.urlopen(f"{scheme}://{self.host}/v2/", timeout=2, context=context)
                return
            except urllib.error.HTTPError:
                return  # 401 with auth: it is serving
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("registry did not start")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def certs_dir(self) -> Path:
        """A containers-style certs dir: <dir>/<host:port>/ca.crt."""
        assert self.ca is not None
        d = self.root / "certs.d"
        (d / self.host).mkdir(parents=True, exist_ok=True)
        (d / self.host / "ca.crt").write_bytes(self.ca.read_bytes())
        return d

    def push(self, source: str, name: str, *extra: str) -> None:
        """skopeo copy `source` (e.g. "oci:/layout:tag") to this registry as `name`."""
        args = ["skopeo", "copy", "--quiet", *extra]
        if self.tls:
            args += [f"--dest-cert-dir={self.certs_dir() / self.host}"]
        else:
            args += ["--dest-tls-verify=false"]
        if self.auth:
            args += [f"--dest-creds={USER}:{PASSWORD}"]
        subprocess.run([*args, source, f"docker://{self.host}/{name}"], check=True, capture_output=True, text=True)

    def blob_files(self) -> list[Path]:
        return sorted(self.storage.glob("docker/registry/v2/blobs/sha256/*/*/data"))


def auth_json(path: Path, host: str, user: str = USER, password: str = PASSWORD) -> Path:
    """A containers-auth.json for `host`."""
    import base64

    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    path.write_text(json.dumps({"auths": {host: {"auth": token}}}))
    return path
