"""Real services from a real Debian image run unchanged inside a default
supd container (issue 11): the secure defaults (docker's seccomp profile,
podman's capabilities, docker's device list, paths resolved in the root)
must not break what a distribution ships. redis-server runs as its own
user; nginx's master starts as root and drops its workers to www-data."""

from __future__ import annotations

import socket
import urllib.request
from pathlib import Path

import pytest

from tests.e2e.conftest import Supd, wait_for
from tests.e2e.test_containers import container_unit, exec_in, proc_status, start_unit
from tests.helpers.debian import debian_rootfs

PACKAGES = ("redis-server", "redis-tools", "nginx-light")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def debian() -> Path:
    return debian_rootfs(PACKAGES)


def http_get(port: int) -> str | None:
    """The body at http://127.0.0.1:PORT/, or None while nothing answers."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as r:
            return str(r.read().decode())
    except OSError:
        return None


def test_redis_serves_under_the_default_confinement(supd: Supd, debian: Path) -> None:
    port = free_port()
    command = ["/usr/bin/redis-server", "--port", str(port), "--bind", "127.0.0.1", "--daemonize", "no",
               "--dir", "/var/lib/redis"]  # fmt: skip
    st = start_unit(supd, "redis", container_unit([debian], command, exec_extra='user = "redis"'))
    assert proc_status(int(st["pid"]))["Seccomp"] == "2"  # type: ignore[arg-type]

    def ping() -> str:
        return exec_in(supd, "redis", "redis-cli", "-p", str(port), "ping")[1].strip()

    assert wait_for(lambda: ping() == "PONG" and "PONG", what="redis to answer")
    assert exec_in(supd, "redis", "redis-cli", "-p", str(port), "set", "k", "v")[1].strip() == "OK"
    assert exec_in(supd, "redis", "redis-cli", "-p", str(port), "get", "k")[1].strip() == "v"
    assert supd.ctl("stop", "redis").returncode == 0


def test_nginx_serves_the_host_under_the_default_confinement(supd: Supd, debian: Path, tmp_path: Path) -> None:
    port = free_port()
    conf = tmp_path / "conf" / "etc" / "nginx"
    conf.mkdir(parents=True)
    (conf / "supd-test.conf").write_text(
        "user www-data;\nworker_processes 2;\npid /run/nginx-test.pid;\nerror_log stderr;\n"
        "events {}\n"
        "http { access_log off; server { listen 80; location / { return 200 \"hello from nginx\\n\"; } } }\n"
    )
    command = ["/usr/sbin/nginx", "-c", "/etc/nginx/supd-test.conf", "-g", "daemon off;"]
    # on the default bridge network, its port 80 published on the host's loopback
    published = f'ports = ["127.0.0.1:{port}:80"]\n'
    st = start_unit(supd, "web", container_unit([debian, tmp_path / "conf"], command, extra_rootfs=published))
    assert proc_status(int(st["pid"]))["Seccomp"] == "2"  # type: ignore[arg-type]

    assert wait_for(lambda: http_get(port), what="nginx to answer") == "hello from nginx\n"
    workers = exec_in(supd, "web", "sh", "-c", "ps -o user= -C nginx 2>/dev/null || cat /proc/[0-9]*/status")[1]
    assert "www-data" in workers or "Uid:\t33" in workers
    assert supd.ctl("stop", "web").returncode == 0


def test_nginx_on_a_readonly_root_with_tmpfs_scratch(supd: Supd, debian: Path) -> None:
    # Debian's nginx writes its pid to /run and makes /var/lib/nginx/body: on a
    # read-only root /run is supd's scratch tmpfs and /var/lib/nginx the unit's own
    port = free_port()
    command = ["/bin/sh", "-c", f"printf '%s' \"$0\" > /tmp/nginx.conf && exec /usr/sbin/nginx -c /tmp/nginx.conf -g 'daemon off;'",
               f"user www-data; pid /run/nginx.pid; error_log stderr; events {{}} http {{ access_log off; server {{ "
               f'listen 80; location / {{ return 200 "read-only nginx\\n"; }} }} }}']  # fmt: skip
    # on the default bridge network, its port 80 published on the host's loopback
    extra = f'tmpfs = ["/var/lib/nginx"]\nports = ["127.0.0.1:{port}:80"]\n'
    unit = container_unit([debian], command, writable="readonly", extra_rootfs=extra)
    start_unit(supd, "roweb", unit)

    assert wait_for(lambda: http_get(port), what="nginx to answer") == "read-only nginx\n"
    rc, out, _err = exec_in(supd, "roweb", "sh", "-c", "ls -d /var/lib/nginx/body; cat /run/nginx.pid; touch /etc/x")
    assert rc != 0 and "/var/lib/nginx/body" in out, out  # nginx made it; /etc stays read-only
    assert supd.ctl("stop", "roweb").returncode == 0
