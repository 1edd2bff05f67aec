"""Bad input never stops supd or disturbs other units: each gets a clear error."""

from __future__ import annotations

import os
import socket
import subprocess
import time

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
    for name in ("a..b", "UPPER", "big", "loop"):
        st = supd.wait_state(name, "error")
        assert st["error"], name
    assert "big.toml" in supd.status("big")["error"]
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


def test_user_without_rights_is_refused(supd: Supd) -> None:
    start_with_good_unit(supd)
    os.chmod(supd.socket, 0o666)  # let `nobody` reach the peer-credential check
    r = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *_supctl(), "--socket", str(supd.socket), "stop", "good"],
        capture_output=True,
        text=True,
        env=supd.env(),
    )
    assert r.returncode != 0
    assert "403" in r.stderr or "forbidden" in r.stderr.lower() or "not allowed" in r.stderr.lower(), r.stderr
    assert supd.state_of("good") == "running"
    wait_for(lambda: "api_forbidden" in supd.daemon_log(), what="a log line for the refusal")


def _supctl() -> list[str]:
    import sys

    return [sys.executable, "-m", "supervisor.cli.main"]
