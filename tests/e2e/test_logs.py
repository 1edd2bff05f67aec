"""Unit output end to end with a real supd and the real supctl: every line
timestamped and marked stdout/stderr in the log file, run markers between
runs, `supctl logs -t/--since/--until`, a line without its newline kept, and
output that keeps flowing (with its timestamps) while supd restarts."""

from __future__ import annotations

import json
import re
import time
from datetime import datetime, timezone

from supervisor.api.client import Client
from tests.e2e.conftest import Supd, wait_for

STAMP = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z"


def shell_unit(script: str, restart: str = "no", extra: str = "") -> str:
    quoted = script.replace("\\", "\\\\").replace('"', '\\"')
    return f"""
[exec]
command = ["/bin/sh", "-c", "{quoted}"]
{extra}
[restart]
policy = "{restart}"
delay = "100ms"
"""


def test_lines_are_timestamped_and_marked_by_stream(supd: Supd) -> None:
    supd.write_unit("talk", shell_unit("echo to-out; echo to-err >&2; printf no-newline; exit 3"))
    supd.start()
    supd.wait_state("talk", "exited", "failed")
    raw = (supd.state / "logs" / "talk.log").read_bytes().decode()
    lines = raw.splitlines()
    assert re.fullmatch(rf"{STAMP} supd F -- started pid \d+ --", lines[0]), raw
    body = [line.split(" ", 1)[1] for line in lines[1:-1]]
    assert sorted(body) == sorted(["stdout F to-out", "stderr F to-err", "stdout P no-newline"]), raw
    assert re.fullmatch(rf"{STAMP} supd F -- exited: exit 3 --", lines[-1]), raw
    assert all(re.match(STAMP + " ", line) for line in lines)

    plain = supd.ctl("logs", "talk")
    assert plain.returncode == 0, plain.stderr
    out = plain.stdout.splitlines()
    assert out[0].startswith("-- started pid ") and out[-1] == "-- exited: exit 3 --"
    assert set(out[1:-1]) == {"to-out", "to-err", "no-newline"}

    stamped = supd.ctl("logs", "-t", "talk").stdout.splitlines()
    assert all(re.fullmatch(rf"{STAMP} .+", line) for line in stamped), stamped
    assert [line.split(" ", 1)[1] for line in stamped] == out

    # `status UNIT` gets the last lines with the status, in one request (?logs=N)
    with Client(str(supd.socket)) as client:
        with_logs = client.call("GET", "/v1/units/talk?logs=2")
        assert with_logs["log_text"] == "\n".join(lines[-2:]) + "\n"
        assert "log_text" not in client.call("GET", "/v1/units/talk")
    status = supd.ctl("status", "talk").stdout
    assert "no-newline" in status and "-- exited: exit 3 --" in status, status

    as_json = [json.loads(line) for line in supd.ctl("logs", "--json", "talk").stdout.splitlines()]
    assert {(o["stream"], o["line"], o["partial"]) for o in as_json} >= {
        ("stdout", "to-out", False), ("stderr", "to-err", False), ("stdout", "no-newline", True)
    }


def test_run_markers_separate_runs_and_since_until_pick_them(supd: Supd) -> None:
    supd.write_unit("flaky", shell_unit("echo run; sleep 0.3; exit 1", restart="on-failure"))
    supd.start()
    wait_for(lambda: supd.ctl("logs", "flaky").stdout.count("-- exited: exit 1 --") >= 3, timeout=30, what="3 runs")
    supd.ctl("stop", "flaky")
    supd.wait_state("flaky", "inactive", "exited", "failed")
    out = supd.ctl("logs", "-n", "1000", "flaky").stdout.splitlines()
    starts = [i for i, line in enumerate(out) if re.fullmatch(r"-- started pid \d+ --", line)]
    ends = [i for i, line in enumerate(out) if line.startswith("-- exited: ")]
    assert len(starts) >= 3 and len(ends) >= 3
    # every run: started, its line, exited — in that order
    for s in starts[:3]:
        assert out[s + 1] == "run" and out[s + 2].startswith("-- exited: "), out

    stamped = supd.ctl("logs", "-t", "-n", "1000", "flaky").stdout.splitlines()
    times = [line.split(" ", 1)[0] for line in stamped]
    second_start = times[starts[1]]
    since = supd.ctl("logs", "-n", "1000", "--since", second_start, "flaky").stdout.splitlines()
    assert since == out[starts[1]:], since
    until = supd.ctl("logs", "-n", "1000", "--until", times[ends[0]], "flaky").stdout.splitlines()
    assert until == out[: ends[0] + 1], until
    # relative: everything is younger than an hour, nothing is in the future
    assert supd.ctl("logs", "-n", "1000", "--since", "1h", "flaky").stdout.splitlines() == out
    assert supd.ctl("logs", "--since", "-1h", "flaky").returncode == 2
    future = datetime.fromtimestamp(time.time() + 3600, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert supd.ctl("logs", "--since", future, "flaky").stdout == ""
    bad = supd.ctl("logs", "--since", "yesterday", "flaky")
    assert bad.returncode == 2 and "--since" in bad.stderr and "RFC 3339" in bad.stderr


def test_output_flows_while_supd_restarts(supd: Supd) -> None:
    supd.extra_args = ["--live-restore"]
    supd.write_unit("ticker", shell_unit("i=0; while true; do i=$((i+1)); echo tick $i; sleep 0.1; done"))
    supd.start()
    supd.wait_state("ticker", "running")
    log = supd.state / "logs" / "ticker.log"
    wait_for(lambda: "tick 3" in log.read_text(), timeout=10, what="ticks")
    supd.stop()
    before = log.read_text().count("stdout F tick")
    time.sleep(1.0)  # no supd: the relay still writes, with its timestamps
    during = log.read_text().count("stdout F tick")
    assert during >= before + 5, (before, during)
    supd.start()
    supd.wait_state("ticker", "running")
    lines = supd.ctl("logs", "-n", "5", "ticker").stdout.splitlines()
    assert all(line.startswith("tick ") for line in lines), lines
    supd.ctl("stop", "ticker")
    supd.wait_state("ticker", "inactive", "exited")
    assert supd.ctl("logs", "-n", "1", "ticker").stdout.startswith("-- exited: ")
    supd.extra_args = ["--no-live-restore"]


def test_exit_marker_names_the_signal(supd: Supd) -> None:
    supd.write_unit("killed", shell_unit("echo before; kill -9 $$"))
    supd.start()
    supd.wait_state("killed", "exited", "failed")
    out = supd.ctl("logs", "killed").stdout.splitlines()
    assert out[1:] == ["before", "-- exited: signal SIGKILL --"], out



def test_a_start_that_fails_before_its_go_leaves_no_run_in_the_log(supd: Supd) -> None:
    supd.write_unit("missing", '[exec]\ncommand = ["/nonexistent/program"]\n[restart]\npolicy = "no"\n')
    supd.start()
    st = supd.wait_state("missing", "failed")
    assert "/nonexistent/program" in (st["error"] or ""), st
    # the shim found no program before the go: nothing ran, so no marker
    assert supd.ctl("logs", "missing").stdout == ""
