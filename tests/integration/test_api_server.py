"""The real API server on a temporary socket, driven by the real client, curl and supctl.

The daemon is not under test here: `FakeController` stands in for it (units in
a dict, events in a list, exec by spawning a real /bin/sh with the passed fds).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import anyio.to_thread
import pytest

from supervisor.api.client import Client, DaemonNotRunningError, RequestError
from supervisor.api.commands import (
    ConflictError,
    NoSuchUnitError,
)
from supervisor.api.peercred import SocketGroupError
from supervisor.api.server import SocketInUseError, serve
from supervisor.cli.main import main as supctl_main
from tests.conftest import requires_root

pytestmark = pytest.mark.usefixtures("no_leaks")

REPO = Path(__file__).resolve().parents[2]
DEADLINE = 30.0
NOBODY = ["setpriv", "--reuid=65534", "--regid=65534"]


def status_object(name: str, state: str = "running", pid: int | None = 4242) -> dict[str, Any]:
    return {
        "name": name,
        "state": state,
        "pid": pid if state in ("running", "frozen") else None,
        "since": "2026-11-29T23:50:01.000+00:00",
        "restarts": 0,
        "last_exit": None,
        "error": None,
        "file": f"/units/{name}.toml",
        "cgroup": f"/supd.slice/supd-{name}.scope",
        "frozen": state == "frozen",
        "health": None,
        "resources": {"memory_current": 1024, "memory_peak": 2048, "cpu_usage_ns": 5, "pids_current": 1, "oom_kills": 0},
        "description": f"{name} unit",
        "enabled": True,
        "processes": [],
    }


class SpawnedProcess:
    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc = proc
        self.pid = proc.pid

    async def wait(self) -> int:
        while self.proc.poll() is None:
            await anyio.sleep(0.02)
        code = self.proc.returncode
        return 128 - code if code < 0 else code

    def kill(self, sig: int) -> None:
        os.kill(self.pid, sig)

    def kill_group(self, sig: int) -> None:
        os.killpg(self.pid, sig)

    tty = None  # exec -t is tested end to end (tests/e2e/test_exec_tty.py)

    def resize(self, rows: int, cols: int) -> None:
        pass

    def close(self) -> None:
        pass


class FakeController:
    """Stands in for the daemon; records what the API asked of it."""

    def __init__(self, log_dir: Path) -> None:
        self.units = {"web": status_object("web"), "batch": status_object("batch", "exited")}
        self.log_dir = log_dir
        self.events: list[dict[str, Any]] = [
            {"time": f"2026-11-29T23:50:0{i}.000+00:00", "unit": "web", "event": "running", "reason": "user"} for i in range(3)
        ]
        self.subscribers: list[anyio.abc.ObjectSendStream[dict[str, Any]]] = []
        self.commands: list[tuple[str, str]] = []
        self.execs: list[SpawnedProcess] = []
        self.imported: list[tuple[str, str]] = []

    def info(self) -> dict[str, Any]:
        return {"version": "test", "pid": os.getpid(), "driver": "fake", "units": len(self.units)}

    def list_units(self) -> list[dict[str, Any]]:
        return [self.units[n] for n in sorted(self.units)]

    def unit_status(self, name: str) -> dict[str, Any]:
        if name not in self.units:
            raise NoSuchUnitError(name)
        return self.units[name]

    async def command(self, name: str, verb: str) -> dict[str, Any]:
        status = self.unit_status(name)
        if verb == "thaw" and status["state"] != "frozen":
            raise ConflictError(f"{name} is {status['state']}, not frozen")
        self.commands.append((name, verb))
        status["state"] = {"start": "running", "stop": "exited", "restart": "running", "freeze": "frozen", "thaw": "running"}[verb]
        return status

    async def reload(self) -> dict[str, Any]:
        return {"added": ["new"], "changed": [], "removed": [], "errors": {"bad": "bad.toml: oops"}}

    def log_file(self, name: str) -> Path:
        self.unit_status(name)
        return self.log_dir / f"{name}.log"

    def log_driver(self, name: str) -> str:
        self.unit_status(name)
        return "file"

    def read_journal(self, name: str, n: int, since_ns: int | None, until_ns: int | None, follow: bool) -> Any:
        raise AssertionError("these tests use the file driver")

    def recent_events(self, n: int) -> list[dict[str, Any]]:
        return self.events[-n:] if n else []

    @contextmanager
    def subscribe_events(self) -> Iterator[anyio.abc.ObjectReceiveStream[dict[str, Any]]]:
        send, receive = anyio.create_memory_object_stream[dict[str, Any]](100)
        self.subscribers.append(send)
        try:
            with receive:
                yield receive
        finally:
            self.subscribers.remove(send)
            send.close()

    def emit(self, unit: str, event: str, reason: str) -> None:
        record = {"time": "2026-11-29T23:51:00.000+00:00", "unit": unit, "event": event, "reason": reason}
        self.events.append(record)
        for s in self.subscribers:
            s.send_nowait(record)

    def tree(self) -> dict[str, Any]:
        return {"name": "supd.slice", "path": "/supd.slice", "memory_current": 1024, "cpu_usage_ns": 5, "tasks": 1,
                "children": [], "processes": []}

    async def start_exec(
        self, name: str, argv: list[str], fds: tuple[int, int, int], *, user: str | None, env: dict[str, str], cwd: str | None
    ) -> SpawnedProcess:
        status = self.unit_status(name)
        if status["state"] != "running":
            raise ConflictError(f"{name} is {status['state']}; exec needs a running unit")
        proc = subprocess.Popen(
            argv, stdin=fds[0], stdout=fds[1], stderr=fds[2], env={"PATH": "/usr/bin:/bin", **env}, cwd=cwd,
            start_new_session=True,  # like the spawner's exec relay: a group of its own
        )
        spawned = SpawnedProcess(proc)
        self.execs.append(spawned)
        return spawned

    def _images(self) -> list[dict[str, Any]]:
        return [{"name": f"{p}:{t}", "digest": "sha256:" + "ab" * 32, "layers": ["x"], "size": 2048} for p, t in self.imported]

    async def images(self) -> list[dict[str, Any]]:
        return self._images()

    async def import_image(self, path: str, tag: str) -> dict[str, Any]:
        self.imported.append((path, tag))
        return self._images()[-1]

    async def remove_image(self, ref: str) -> dict[str, Any]:
        self.imported = [(p, t) for p, t in self.imported if f"{p}:{t}" != ref]
        return {"images": [{"name": ref}], "layers": [], "tmp_dirs": 0, "freed": 0}

    async def prune_images(self) -> dict[str, Any]:
        return {"images": [], "layers": [], "tmp_dirs": 0, "freed": 0}


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A short folder for sockets: AF_UNIX paths are limited to 108 bytes."""
    path = Path(tempfile.mkdtemp(prefix="supdtest", dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@asynccontextmanager
async def running_server(
    sock: Path,
    controller: Any,
    *,
    group: str | None = None,
    admin_group: str | None = None,
    request_timeout: float = 10.0,
    max_followers: int = 64,
) -> AsyncIterator[Path]:
    async with anyio.create_task_group() as tg:
        await tg.start(
            lambda task_status: serve(
                sock, controller, group=group, admin_group=admin_group, task_status=task_status,
                request_timeout=request_timeout,
                max_followers=max_followers,
            )
        )  # fmt: skip
        try:
            yield sock
        finally:
            tg.cancel_scope.cancel()


async def in_thread(fn: Callable[..., Any], *args: Any) -> Any:
    return await anyio.to_thread.run_sync(fn, *args)


def run_supctl(*argv: str) -> tuple[int, str, str]:
    import io

    out, err = io.StringIO(), io.StringIO()
    code = supctl_main(list(argv), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def supctl_cmd(*argv: str) -> list[str]:
    return [sys.executable, "-m", "supervisor.cli.main", *argv]


def subprocess_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "NO_COLOR": "1"}


def raw_exchange(sock_path: Path, payload: bytes, timeout: float = DEADLINE) -> bytes:
    """Send raw bytes and read until the server closes the connection."""
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(timeout)
        s.connect(str(sock_path))
        s.sendall(payload)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
        return data


def call_once(sock: Path, path: str) -> Any:
    with Client(sock) as c:
        return c.call("GET", path)


async def wait_for(predicate: Callable[[], bool], what: str, deadline: float = DEADLINE) -> None:
    with anyio.fail_after(deadline):
        while not predicate():
            await anyio.sleep(0.05)


# -- routes --------------------------------------------------------------------


@pytest.mark.asyncio
async def test_every_json_route_through_the_client(short_dir: Path, tmp_path: Path) -> None:
    fake = FakeController(tmp_path)
    async with running_server(short_dir / "s.sock", fake) as sock:

        def drive() -> None:
            with Client(sock) as c:
                assert c.call("GET", "/v1/info")["driver"] == "fake"
                assert [u["name"] for u in c.call("GET", "/v1/units")] == ["batch", "web"]
                assert c.call("GET", "/v1/units/web")["state"] == "running"
                assert c.request("GET", "/v1/units/nope") == (404, {"error": "no such unit: nope"})
                assert c.call("POST", "/v1/units/web/freeze")["state"] == "frozen"
                assert c.call("POST", "/v1/units/web/thaw")["state"] == "running"
                assert c.request("POST", "/v1/units/web/thaw") == (409, {"error": "web is running, not frozen"})
                assert c.call("POST", "/v1/units/batch/start")["state"] == "running"
                assert c.call("POST", "/v1/units/batch/stop")["state"] == "exited"
                assert c.call("POST", "/v1/units/batch/restart")["state"] == "running"
                assert c.call("POST", "/v1/reload")["added"] == ["new"]
                assert c.call("GET", "/v1/tree")["name"] == "supd.slice"
                assert c.call("GET", "/v1/images") == []
                imported = c.call("POST", "/v1/images", {"path": "/srv/img", "tag": "3.20"})
                assert imported["name"] == "/srv/img:3.20"
                assert [i["name"] for i in c.call("GET", "/v1/images")] == ["/srv/img:3.20"]
                assert c.call("GET", "/v1/events?n=2") == fake.events[-2:]
                status, body = c.request("POST", "/v1/images", {"path": "relative"})
                assert status == 400 and "expected an absolute path" in body["error"]

        await in_thread(drive)
    assert fake.commands == [("web", "freeze"), ("web", "thaw"), ("batch", "start"), ("batch", "stop"), ("batch", "restart")]
    assert not (short_dir / "s.sock").exists(), "the socket is removed when serve() ends"


@pytest.mark.asyncio
async def test_unknown_route_is_404_and_wrong_method_405_with_allow(short_dir: Path, tmp_path: Path) -> None:
    async with running_server(short_dir / "s.sock", FakeController(tmp_path)) as sock:

        def drive() -> None:
            with Client(sock) as c:
                assert c.request("GET", "/v1/nothing")[0] == 404
                assert c.request("POST", "/v1/units/web/explode")[0] == 404
                status, body = c.request("GET", "/v1/units/web/start")
                assert status == 405 and "expected POST" in body["error"]
                assert c.request("DELETE", "/v1/units")[0] == 405
                assert c.request("GET", "/v1/units/BAD..NAME")[0] == 400
            reply = raw_exchange(sock, b"PUT /v1/reload HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
            assert reply.startswith(b"HTTP/1.1 405 ")
            assert b"allow: POST\r\n" in reply

        await in_thread(drive)


@pytest.mark.asyncio
async def test_curl_speaks_to_the_socket(short_dir: Path, tmp_path: Path) -> None:
    async with running_server(short_dir / "s.sock", FakeController(tmp_path)) as sock:
        result = await anyio.run_process(["curl", "-sS", "--fail", "--unix-socket", str(sock), "http://supd/v1/units/web"])
        assert json.loads(result.stdout)["name"] == "web"
        result = await anyio.run_process(
            ["curl", "-sS", "--unix-socket", str(sock), "-X", "POST", "http://supd/v1/units/web/freeze"]
        )
        assert json.loads(result.stdout)["state"] == "frozen"


@pytest.mark.asyncio
async def test_keep_alive_serves_pipelined_requests_on_one_connection(short_dir: Path, tmp_path: Path) -> None:
    async with running_server(short_dir / "s.sock", FakeController(tmp_path)) as sock:
        request = b"GET /v1/units/web HTTP/1.1\r\nHost: x\r\n\r\n"
        last = b"GET /v1/info HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        reply = await in_thread(raw_exchange, sock, request + request + last)
        assert reply.count(b"HTTP/1.1 200 OK") == 3


# -- limits and bad input --------------------------------------------------------


@pytest.mark.asyncio
async def test_malformed_http_gets_400_and_the_connection_closes(short_dir: Path, tmp_path: Path) -> None:
    async with running_server(short_dir / "s.sock", FakeController(tmp_path)) as sock:
        reply = await in_thread(raw_exchange, sock, b"THIS IS NOT HTTP\r\n\r\n")
        head, _, body = reply.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 400 ")
        assert b"connection: close" in head
        assert json.loads(body)["error"].startswith("malformed HTTP request")


@pytest.mark.asyncio
async def test_malformed_json_gets_400_with_the_parse_message(short_dir: Path, tmp_path: Path) -> None:
    async with running_server(short_dir / "s.sock", FakeController(tmp_path)) as sock:
        body = b'{"path": '
        payload = (
            b"POST /v1/images HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\n"
            + b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
        )
        reply = await in_thread(raw_exchange, sock, payload)
        head, _, answer = reply.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 400 ")
        assert json.loads(answer)["error"].startswith("malformed JSON body: Expecting value: line 1")


@pytest.mark.asyncio
async def test_body_over_one_mib_is_refused(short_dir: Path, tmp_path: Path) -> None:
    async with running_server(short_dir / "s.sock", FakeController(tmp_path)) as sock:
        declared = b"POST /v1/images HTTP/1.1\r\nHost: x\r\nContent-Length: 1048577\r\n\r\n"
        reply = await in_thread(raw_exchange, sock, declared)
        assert reply.startswith(b"HTTP/1.1 413 ")
        assert b"1048577 bytes is over the limit of 1048576 bytes" in reply

        def chunked() -> bytes:
            # No Content-Length: the limit holds while the body arrives.
            with socket.socket(socket.AF_UNIX) as s:
                s.settimeout(DEADLINE)
                s.connect(str(sock))
                s.sendall(b"POST /v1/images HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
                chunk = b"x" * 65536
                try:
                    for _ in range(20):
                        s.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                except (BrokenPipeError, ConnectionResetError):
                    pass
                data = b""
                try:
                    while part := s.recv(65536):
                        data += part
                except ConnectionResetError:
                    pass
                return data

        assert (await in_thread(chunked)).startswith(b"HTTP/1.1 413 ")


@pytest.mark.asyncio
async def test_silent_client_is_dropped_after_the_timeout_without_blocking_others(short_dir: Path, tmp_path: Path) -> None:
    async with running_server(short_dir / "s.sock", FakeController(tmp_path), request_timeout=1.5) as sock:
        silent = socket.socket(socket.AF_UNIX)
        silent.connect(str(sock))
        silent.setblocking(False)
        with silent:
            started = time.monotonic()

            def others() -> None:
                for _ in range(5):
                    with Client(sock) as c:
                        assert c.call("GET", "/v1/units/web")["name"] == "web"

            await in_thread(others)
            closed = anyio.Event()

            async def watch() -> None:
                while True:
                    await anyio.wait_readable(silent)
                    if silent.recv(4096) == b"":
                        closed.set()
                        return

            with anyio.fail_after(DEADLINE):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(watch)
                    await closed.wait()
            # Never before the timeout; the upper bound is only the test's deadline.
            assert time.monotonic() - started >= 1.4


# -- peer credentials ------------------------------------------------------------


def curl_as(
    uid_args: list[str], sock: Path, path: str = "/v1/units", *curl_args: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*uid_args, "curl", "-sS", "-o", "-", "-w", "\n%{http_code}", *curl_args, "--unix-socket", str(sock), f"http://supd{path}"],
        capture_output=True,
        text=True,
        timeout=DEADLINE,
    )


@requires_root
@pytest.mark.asyncio
async def test_peer_not_root_nor_in_group_gets_403_and_a_warning(
    short_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async with running_server(short_dir / "s.sock", FakeController(tmp_path)) as sock:
        short_dir.chmod(0o755)
        sock.chmod(0o666)  # let the kernel connect(); the server must still refuse
        result = await in_thread(curl_as, [*NOBODY, "--clear-groups"], sock)
        body, _, code = result.stdout.rpartition("\n")
        assert code == "403"
        assert "uid 65534 may not use supd" in json.loads(body)["error"]
    assert "api_forbidden" in capsys.readouterr().out


@requires_root
@pytest.mark.asyncio
async def test_socket_group_member_is_allowed_and_others_refused(short_dir: Path, tmp_path: Path) -> None:
    async with running_server(short_dir / "s.sock", FakeController(tmp_path), group="users") as sock:
        short_dir.chmod(0o755)
        st = sock.stat()
        assert oct(st.st_mode & 0o777) == "0o660" and st.st_gid == 100
        member = await in_thread(curl_as, [*NOBODY, "--groups=100"], sock)
        assert member.stdout.endswith("\n200"), member
        # Without the group the file mode already keeps nobody out.
        stranger = await in_thread(curl_as, [*NOBODY, "--clear-groups"], sock)
        assert stranger.returncode == 7 and stranger.stdout.endswith("000"), stranger  # curl: could not connect


@requires_root
@pytest.mark.asyncio
async def test_socket_group_operates_and_admin_group_also_execs(short_dir: Path, tmp_path: Path) -> None:
    """users (gid 100) is socket_group, adm (gid 4) admin_group: an operator
    reads and operates, and gets a 403 naming admin_group for exec and image import."""
    async with running_server(short_dir / "s.sock", FakeController(tmp_path), group="users", admin_group="adm") as sock:
        short_dir.chmod(0o755)
        assert sock.stat().st_gid == 100, "the socket's group is socket_group"
        operator = [*NOBODY, "--groups=100"]
        for path, args in (("/v1/units", ()), ("/v1/units/web", ()), ("/v1/units/web/stop", ("-X", "POST"))):
            r = await in_thread(curl_as, operator, sock, path, *args)
            assert r.stdout.endswith("\n200"), (path, r)
        exec_body = json.dumps({"argv": ["/bin/true"]})
        for path, body, action in (("/v1/units/web/exec", exec_body, "exec"), ("/v1/images", '{"path": "/srv"}', "image import")):
            r = await in_thread(curl_as, operator, sock, path, "-X", "POST", "-d", body)
            text, _, code = r.stdout.rpartition("\n")
            assert code == "403", r
            assert json.loads(text)["error"] == f'{action} needs root or membership of admin_group "adm"'
        # An admin_group member who is also in socket_group passes the same check
        # (the server answers the plain POST about the missing upgrade, past the 403).
        admin = [*NOBODY, "--groups=100,4"]
        r = await in_thread(curl_as, admin, sock, "/v1/units/web/exec", "-X", "POST", "-d", exec_body)
        assert r.stdout.endswith("\n400") and "Upgrade" in r.stdout, r


@pytest.mark.asyncio
async def test_missing_admin_group_is_a_clear_error(short_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(SocketGroupError, match='admin_group "nosuchgroupsupdtest": no such group'):
        await serve(short_dir / "s.sock", FakeController(tmp_path), group=None, admin_group="nosuchgroupsupdtest")
    assert not (short_dir / "s.sock").exists()


@pytest.mark.asyncio
async def test_missing_socket_group_is_a_clear_error(short_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(SocketGroupError, match='socket_group "nosuchgroupsupdtest": no such group'):
        await serve(short_dir / "s.sock", FakeController(tmp_path), group="nosuchgroupsupdtest")
    assert not (short_dir / "s.sock").exists()


# -- socket file life cycle --------------------------------------------------------


@pytest.mark.asyncio
async def test_stale_socket_is_taken_over(short_dir: Path, tmp_path: Path) -> None:
    path = short_dir / "s.sock"
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(path))
    stale.close()  # the file stays, nobody listens: what a crashed supd leaves
    assert path.exists()
    async with running_server(path, FakeController(tmp_path)) as sock:
        assert (await in_thread(call_once, sock, "/v1/units/web"))["name"] == "web"


@pytest.mark.asyncio
async def test_live_socket_is_refused(short_dir: Path, tmp_path: Path) -> None:
    async with running_server(short_dir / "s.sock", FakeController(tmp_path)) as sock:
        with pytest.raises(SocketInUseError, match=f"another supd is listening on {sock}"):
            await serve(sock, FakeController(tmp_path), group=None)
        # ...and the first one is undisturbed.
        assert (await in_thread(call_once, sock, "/v1/info"))["driver"] == "fake"


def test_client_reports_a_daemon_that_is_not_running(short_dir: Path) -> None:
    with pytest.raises(DaemonNotRunningError) as err:
        Client(short_dir / "none.sock").call("GET", "/v1/units")
    assert str(err.value) == f"cannot reach supd at {short_dir}/none.sock: No such file or directory (is supd running?)"


# -- exec -------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_exec_passes_the_fds_and_returns_the_exit_code(short_dir: Path, tmp_path: Path) -> None:
    fake = FakeController(tmp_path)
    stdin_file, stdout_file, stderr_file = tmp_path / "in", tmp_path / "out", tmp_path / "err"
    stdin_file.write_text("hello\n")
    async with running_server(short_dir / "s.sock", fake) as sock:

        def drive() -> int:
            with open(stdin_file, "rb") as i, open(stdout_file, "wb") as o, open(stderr_file, "wb") as e:
                with Client(sock) as c:
                    return c.exec(
                        "web", ["/bin/sh", "-c", 'read x; echo "got:$x $GREETING"; pwd; echo oops >&2; exit 7'],
                        env={"GREETING": "hi"}, cwd=str(tmp_path), fds=(i.fileno(), o.fileno(), e.fileno()),
                    )

        assert await in_thread(drive) == 7
    assert stdout_file.read_text() == f"got:hello hi\n{tmp_path}\n"
    assert stderr_file.read_text() == "oops\n"


@pytest.mark.asyncio
async def test_exec_errors_before_and_after_the_upgrade(short_dir: Path, tmp_path: Path) -> None:
    fake = FakeController(tmp_path)
    async with running_server(short_dir / "s.sock", fake) as sock:

        def drive(name: str) -> RequestError:
            with pytest.raises(RequestError) as err, Client(sock) as c:
                c.exec(name, ["/bin/true"])
            return err.value

        missing = await in_thread(drive, "nope")
        assert (missing.status, missing.message) == (404, "no such unit: nope")
        not_running = await in_thread(drive, "batch")
        assert (not_running.status, not_running.message) == (409, "batch is exited; exec needs a running unit")
        code, _out, err = await in_thread(run_supctl, "--socket", str(sock), "exec", "nope", "--", "/bin/true")
        assert (code, err) == (4, "supctl: no such unit: nope\n")


@pytest.mark.asyncio
async def test_supctl_exec_forwards_sigterm_and_exits_with_the_process_code(short_dir: Path, tmp_path: Path) -> None:
    fake = FakeController(tmp_path)
    marker = tmp_path / "trap-set"
    script = f'trap "echo got-term; exit 42" TERM; touch {marker}; while :; do sleep 0.05; done'
    async with running_server(short_dir / "s.sock", fake) as sock:
        async with await anyio.open_process(
            supctl_cmd("--socket", str(sock), "exec", "web", "--", "/bin/sh", "-c", script),
            env=subprocess_env(), cwd=REPO,
        ) as proc:
            try:
                await wait_for(marker.exists, "the exec'd shell to set its trap")
                proc.send_signal(signal.SIGTERM)
                with anyio.fail_after(DEADLINE):
                    code = await proc.wait()
                assert proc.stdout is not None
                out = await proc.stdout.receive()
            finally:
                if proc.returncode is None:
                    proc.kill()
                for e in fake.execs:
                    if e.proc.poll() is None:
                        e.kill(signal.SIGKILL)
                        e.proc.wait()
        assert code == 42
        assert out == b"got-term\n"


# -- logs and events ----------------------------------------------------------------


async def read_until(stream: anyio.abc.ByteReceiveStream, wanted: bytes, buffer: bytearray) -> None:
    with anyio.fail_after(DEADLINE):
        while wanted not in buffer:
            buffer += await stream.receive()


@pytest.mark.asyncio
async def test_logs_last_n_lines_and_follow_across_copytruncate(short_dir: Path, tmp_path: Path) -> None:
    fake = FakeController(tmp_path)
    log = tmp_path / "web.log"
    log.write_text("".join(f"line {i}\n" for i in range(5000)))
    async with running_server(short_dir / "s.sock", fake) as sock:
        code, out, _ = await in_thread(run_supctl, "--socket", str(sock), "logs", "web", "-n", "3")
        assert (code, out) == (0, "line 4997\nline 4998\nline 4999\n")
        code, out, _ = await in_thread(run_supctl, "--socket", str(sock), "logs", "web", "-n", "2", "--json")
        # lines of a log written before timestamps: no time, read as stdout
        plain = {"unit": "web", "time": None, "stream": "stdout", "partial": False}
        assert [json.loads(x) for x in out.splitlines()] == [dict(plain, line="line 4998"), dict(plain, line="line 4999")]
        code, out, _ = await in_thread(run_supctl, "--socket", str(sock), "logs", "batch")
        assert (code, out) == (0, ""), "a unit with no log file yet has empty logs"

        async with await anyio.open_process(
            supctl_cmd("--socket", str(sock), "logs", "web", "-f", "-n", "1"), env=subprocess_env(), cwd=REPO
        ) as proc:
            assert proc.stdout is not None
            seen = bytearray()
            try:
                await read_until(proc.stdout, b"line 4999\n", seen)
                with log.open("a") as f:
                    f.write("appended\n")
                await read_until(proc.stdout, b"appended\n", seen)
                # copytruncate: logrotate copies the file, then truncates it in place.
                shutil.copy(log, tmp_path / "web.log.1")
                with log.open("r+") as f:
                    f.truncate(0)
                with log.open("a") as f:
                    f.write("after rotation\n")
                await read_until(proc.stdout, b"after rotation\n", seen)
                # rename rotation: a new file takes the old name.
                log.rename(tmp_path / "web.log.2")
                log.write_text("new file\n")
                await read_until(proc.stdout, b"new file\n", seen)
            finally:
                proc.kill()
                await proc.wait()
        assert bytes(seen) == b"line 4999\nappended\nafter rotation\nnew file\n"


@pytest.mark.asyncio
async def test_events_follow_streams_ndjson_and_ends_when_the_client_goes(short_dir: Path, tmp_path: Path) -> None:
    fake = FakeController(tmp_path)
    async with running_server(short_dir / "s.sock", fake) as sock:
        async with await anyio.open_process(
            supctl_cmd("--socket", str(sock), "events", "-f", "-n", "1", "--json"), env=subprocess_env(), cwd=REPO
        ) as proc:
            assert proc.stdout is not None
            seen = bytearray()
            try:
                await read_until(proc.stdout, b"\n", seen)
                await wait_for(lambda: len(fake.subscribers) == 1, "the stream to subscribe")
                fake.emit("web", "frozen", "pressure")
                fake.emit("web", "running", "user")
                with anyio.fail_after(DEADLINE):
                    while bytes(seen).count(b"\n") < 3:
                        seen += await proc.stdout.receive()
            finally:
                proc.kill()
                await proc.wait()
        events = [json.loads(line) for line in bytes(seen).splitlines()]
        assert [(e["event"], e["reason"]) for e in events] == [("running", "user"), ("frozen", "pressure"), ("running", "user")]
        await wait_for(lambda: not fake.subscribers, "the server to notice the client left")


# -- supctl end to end ----------------------------------------------------------------


@pytest.mark.asyncio
async def test_supctl_exit_codes_and_output(short_dir: Path, tmp_path: Path) -> None:
    fake = FakeController(tmp_path)
    (tmp_path / "web.log").write_text("hello from web\n")
    async with running_server(short_dir / "s.sock", fake) as sock:
        s = ("--socket", str(sock))
        code, out, _ = await in_thread(run_supctl, *s, "status", "web")
        assert code == 0
        assert out.splitlines()[0] == "● web.toml - web unit"
        assert out.endswith("\nhello from web\n")
        assert (await in_thread(run_supctl, *s, "status", "batch"))[0] == 3
        assert await in_thread(run_supctl, *s, "status", "nope") == (4, "", "supctl: no such unit: nope\n")
        code, out, _ = await in_thread(run_supctl, *s, "status", "web", "--json")
        assert json.loads(out)["name"] == "web"
        code, out, _ = await in_thread(run_supctl, *s, "list")
        assert out.splitlines()[0].split() == ["UNIT", "STATE", "PID", "UPTIME", "RESTARTS", "DESCRIPTION"]
        assert out.endswith("\n2 units listed.\n")
        code, out, _ = await in_thread(run_supctl, *s, "list", "--json")
        assert [u["name"] for u in json.loads(out)] == ["batch", "web"]
        assert await in_thread(run_supctl, *s, "freeze", "web") == (0, "", "")
        assert (await in_thread(run_supctl, *s, "status", "web"))[0] == 0, "frozen counts as active"
        assert await in_thread(run_supctl, *s, "stop", "nope") == (4, "", "supctl: no such unit: nope\n")
        assert await in_thread(run_supctl, *s, "thaw", "batch") == (1, "", "supctl: batch is exited, not frozen\n")
        code, out, _ = await in_thread(run_supctl, *s, "reload")
        assert (code, out) == (1, "added: new\nerror: bad: bad.toml: oops\n"), "a unit-file error fails the reload"
        code, out, _ = await in_thread(run_supctl, *s, "events", "-n", "2")
        assert out.splitlines() == ["2026-11-29 23:50:01 web: running (user)", "2026-11-29 23:50:02 web: running (user)"]
        code, out, _ = await in_thread(run_supctl, *s, "tree")
        assert out.splitlines()[1].startswith("supd.slice")
        code, out, _ = await in_thread(run_supctl, *s, "image", "import", "/srv/alpine:3.20")
        assert code == 0 and fake.imported == [("/srv/alpine", "3.20")]
        code, out, _ = await in_thread(run_supctl, *s, "image", "list")
        assert out.splitlines()[1].startswith("/srv/alpine:3.20  abababababab  1")
        code, out, _ = await in_thread(run_supctl, *s, "info", "--json")
        assert json.loads(out)["driver"] == "fake"


@pytest.mark.asyncio
async def test_supctl_process_without_a_daemon_prints_one_line(short_dir: Path) -> None:
    result = await anyio.run_process(
        supctl_cmd("list"), env={**subprocess_env(), "SUPD_SOCKET": str(short_dir / "x.sock")}, check=False, cwd=REPO
    )
    assert result.returncode == 1
    assert result.stdout == b""
    assert result.stderr.decode() == f"supctl: cannot reach supd at {short_dir}/x.sock: No such file or directory (is supd running?)\n"


@pytest.mark.asyncio
async def test_supctl_into_a_closed_pipe_exits_quietly(short_dir: Path, tmp_path: Path) -> None:
    fake = FakeController(tmp_path)
    fake.events = [dict(fake.events[0], reason=f"user {i}") for i in range(20000)]
    async with running_server(short_dir / "s.sock", fake) as sock:
        read_end, write_end = os.pipe()
        os.close(read_end)  # like `supctl events | head -0`: nobody reads
        try:
            result = await anyio.run_process(
                supctl_cmd("--socket", str(sock), "events", "-n", "20000"),
                stdout=write_end, env=subprocess_env(), cwd=REPO, check=False,
            )
        finally:
            os.close(write_end)
    assert result.returncode == 1
    assert b"Traceback" not in result.stderr, result.stderr.decode()


class BrokenController(FakeController):
    def tree(self) -> dict[str, Any]:
        raise RuntimeError("cgroup vanished")


@pytest.mark.asyncio
async def test_a_controller_bug_is_a_500_and_the_server_keeps_serving(short_dir: Path, tmp_path: Path) -> None:
    async with running_server(short_dir / "s.sock", BrokenController(tmp_path)) as sock:

        def drive() -> None:
            with Client(sock) as c:
                status, body = c.request("GET", "/v1/tree")
                assert status == 500 and body["error"] == "internal error: RuntimeError: cgroup vanished"
                assert c.call("GET", "/v1/units/web")["name"] == "web"

        await in_thread(drive)


@pytest.mark.asyncio
async def test_follow_streams_are_limited_per_peer_and_freed_when_they_end(short_dir: Path, tmp_path: Path) -> None:
    # issue 10: ~130 `logs -f` of one group member took supd down
    fake = FakeController(tmp_path)
    (tmp_path / "web.log").write_bytes(b"hello\n")
    async with running_server(short_dir / "s.sock", fake, max_followers=2) as sock:
        followers: list[socket.socket] = []
        try:
            for target in (b"/v1/units/web/logs?follow=1", b"/v1/events?follow=1"):
                s = socket.socket(socket.AF_UNIX)
                s.settimeout(DEADLINE)
                s.connect(str(sock))
                s.sendall(b"GET " + target + b" HTTP/1.1\r\nHost: x\r\n\r\n")
                assert (await in_thread(s.recv, 65536)).startswith(b"HTTP/1.1 200")
                followers.append(s)
            third = await in_thread(
                raw_exchange, sock, b"GET /v1/units/web/logs?follow=1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            )
            assert third.startswith(b"HTTP/1.1 429"), third
            assert f"uid {os.getuid()} already follows 2 log or event streams".encode() in third
            # supd is fine, and other requests are not limited
            assert (await in_thread(call_once, sock, "/v1/units"))
        finally:
            for s in followers:
                s.close()
        # a stream that ended frees its place (once the server noticed the hang-up)
        with anyio.fail_after(DEADLINE):
            while True:
                s = socket.socket(socket.AF_UNIX)
                s.settimeout(DEADLINE)
                s.connect(str(sock))
                s.sendall(b"GET /v1/units/web/logs?follow=1 HTTP/1.1\r\nHost: x\r\n\r\n")
                head = await in_thread(s.recv, 65536)
                s.close()
                if head.startswith(b"HTTP/1.1 200"):
                    break
                await anyio.sleep(0.05)
