"""Bad input never stops supd or disturbs other units: each gets a clear error."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

from tests.e2e.conftest import Supd, wait_for

GOOD = '[exec]\ncommand = ["/bin/sleep", "1000"]\n'


def start_with_good_unit(supd: Supd) -> int:
    supd.write_unit("good", GOOD)
    supd.start()
    return supd.wait_state("good", "running")["pid"]


def assert_good_untouched(supd: Supd, pid: int) -> None:
    st = supd.status("good")
    assert st["state"] == "running" and st["pid"] == pid, st


def test_invalid_unit_files_put_only_that_unit_in_error(supd: Supd) -> None:
    pid = start_with_good_unit(supd)
    cases = {
        "nottoml": ("[exec\ncommand = ", "valid TOML"),
        "wrongtype": ('[exec]\ncommand = ["/bin/true"]\n[restart]\ndelay = 12\n', "[restart].delay"),
        "unknownkey": ('[exec]\ncomand = ["/bin/true"]\n', "[exec].comand"),
        "emptycmd": ("[exec]\ncommand = []\n", "[exec].command"),
    }
    for name, (text, _needle) in cases.items():
        supd.write_unit(name, text)
    for name, (_text, needle) in cases.items():
        st = supd.wait_state(name, "error")
        assert needle in st["error"], (name, st["error"])
        assert f"{name}.toml" in st["error"]
    assert_good_untouched(supd, pid)
    # `supctl status` of an errored unit shows the message and exits 3
    r = supd.ctl("status", "wrongtype")
    assert r.returncode == 3
    assert 'expected a duration like "500ms" or "10s", got 12' in r.stdout + r.stderr


def test_bad_names_huge_file_symlink_loop(supd: Supd) -> None:
    pid = start_with_good_unit(supd)
    (supd.units / "a..b.toml").write_text(GOOD)
    (supd.units / "UPPER.toml").write_text(GOOD)
    big = supd.units / "big.toml"
    with big.open("wb") as f:
        f.truncate(10 * 1024 * 1024)
    os.symlink("loop.toml", supd.units / "loop.toml")
    supd.ctl("reload")
    import json

    def errored() -> dict[str, str] | None:
        # listed, not addressed: "UPPER" is not a valid unit name for the API
        units = {u["name"]: u for u in json.loads(supd.ctl("list", "--json").stdout)}
        bad = {n: units[n]["error"] for n in ("a..b", "UPPER", "big", "loop") if n in units and units[n]["state"] == "error"}
        return bad if len(bad) == 4 else None

    bad = wait_for(errored, what="4 units in error")
    assert "big.toml" in bad["big"] and "at most 1048576 bytes" in bad["big"], bad["big"]
    assert "loop.toml" in bad["loop"], bad["loop"]
    assert "a..b.toml" in bad["a..b"] and "UPPER.toml" in bad["UPPER"]
    assert_good_untouched(supd, pid)


def test_unit_file_deleted_while_starting(supd: Supd) -> None:
    pid = start_with_good_unit(supd)
    for i in range(5):
        supd.write_unit(f"blink{i}", GOOD)
        (supd.units / f"blink{i}.toml").unlink()
    time.sleep(1.5)
    r = supd.ctl("list", "--json")
    assert r.returncode == 0
    import json

    names = [u["name"] for u in json.loads(r.stdout)]
    assert names == ["good"], names
    assert_good_untouched(supd, pid)


def raw_request(supd: Supd, data: bytes, read: bool = True) -> bytes:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(10)
        s.connect(str(supd.socket))
        s.sendall(data)
        if not read:
            return b""
        chunks = []
        while True:
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                break
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)


def test_malformed_http_and_json_on_the_socket(supd: Supd) -> None:
    pid = start_with_good_unit(supd)
    reply = raw_request(supd, b"THIS IS NOT HTTP\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 400")
    reply = raw_request(
        supd,
        b"POST /v1/images HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 5\r\nConnection: close\r\n\r\n{oops",
    )
    assert reply.startswith(b"HTTP/1.1 400"), reply
    assert_good_untouched(supd, pid)


def test_client_that_never_sends_does_not_block_others(supd: Supd) -> None:
    pid = start_with_good_unit(supd)
    silent = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    silent.connect(str(supd.socket))
    try:
        t0 = time.monotonic()
        r = supd.ctl("list")
        assert r.returncode == 0
        assert time.monotonic() - t0 < 5
        assert_good_untouched(supd, pid)
    finally:
        silent.close()


def request_as(uid: int, gid: int, path: Path, data: bytes) -> bytes:
    """Send raw bytes to the socket from a child that has dropped to uid/gid
    (no supplementary groups) and return the reply. A fork, not supctl: the
    interpreter may not be readable by `nobody`, the socket check is the point."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: only syscalls, then _exit
        try:
            os.close(r)
            os.setgroups([])
            os.setgid(gid)
            os.setuid(uid)
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.settimeout(10)
                s.connect(str(path))
                s.sendall(data)
                reply = b""
                while chunk := s.recv(65536):
                    reply += chunk
            os.write(w, reply)
        except BaseException as e:  # report, never return into pytest
            os.write(w, f"child error: {e!r}".encode())
        finally:
            os._exit(0)
    os.close(w)
    out = b""
    while chunk := os.read(r, 65536):
        out += chunk
    os.close(r)
    os.waitpid(pid, 0)
    return out


def test_user_without_rights_is_refused(supd: Supd, unique_name: str) -> None:
    start_with_good_unit(supd)
    # Let `nobody` reach the peer-credential check: a world-writable socket, and
    # a hard link to it outside pytest's private (0700) temp folders.
    os.chmod(supd.socket, 0o666)
    public = Path("/tmp") / f"{unique_name}.sock"
    os.link(supd.socket, public)
    try:
        reply = request_as(
            65534, 65534, public, b"POST /v1/units/good/stop HTTP/1.1\r\nHost: supd\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )
    finally:
        public.unlink()
    assert reply.startswith(b"HTTP/1.1 403"), reply
    assert supd.state_of("good") == "running"
    wait_for(lambda: "api_forbidden" in supd.daemon_log(), what="a log line for the refusal")
