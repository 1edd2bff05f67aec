"""What a unit's output costs supd: one unit writing lines at 50 MB/s, and
the CPU used over a steady window by supd, by the unit's log relay (the
per-unit process of the spawner that timestamps every line), and for the
journald driver by journald itself, per driver (issue 14).

    sudo python3 bench/log_throughput.py [--rate-mb 50] [--seconds 12]

- `file`: supd on this host (the cgroupfs driver, a scratch state folder),
  the unit's log file on the scratch folder's disk.
- `journald`: this host has no journald on its root, so supd runs as a
  transient service (`LogRateLimitIntervalSec=0`, so nothing is dropped by
  journald's rate limit) inside the nspawn sandbox of tests/systemd (systemd
  and journald 252, their journal on the sandbox's tmpfs-backed overlay).

The writer sends 100-byte lines in 4000-byte writes, paced to the rate; when
the relay cannot keep up the pipe fills and the writer is held back, so the
rate reached is reported beside the CPU. CPU: utime+stime from /proc over
the window, in % of one core. Figures, not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import figures  # noqa: E402
import procfs  # noqa: E402
from figures import Table  # noqa: E402
from scratch import scratch_dir  # noqa: E402
from supd_instance import REPO, SupdInstance  # noqa: E402

NAME = "log_throughput"
LINE = 100
WRITER = r"""
import os, sys, time
rate, seconds = int(sys.argv[1]), float(sys.argv[2])
chunk = (b"x" * 99 + b"\n") * 40
start = time.monotonic()
sent = 0
while (now := time.monotonic()) - start < seconds:
    while sent < (now - start) * rate:
        os.write(1, chunk)
        sent += len(chunk)
    time.sleep(0.002)
os.write(2, b"done %d\n" % sent)
time.sleep(100000)
"""
WARMUP = 2.0  # seconds before the window: the unit starting, the pipe filling


def unit_text(rate: int, seconds: float, driver: str) -> str:
    argv = [sys.executable, "-I", "-S", "-c", WRITER, str(rate), str(seconds)]
    return f"[exec]\ncommand = {json.dumps(argv)}\nlog_driver = \"{driver}\"\n"


def relay_of(supd_pid: int) -> int | None:
    for pid in procfs.children(supd_pid):
        if procfs.comm(pid).startswith("supd-log"):
            return pid
    return None


def window(pids: dict[str, int], seconds: float, progress: callable) -> tuple[dict[str, float], float]:  # type: ignore[valid-type]
    """% of a core per process over `seconds`, and the output rate (bytes/s) from `progress()`."""
    cpu0 = {name: procfs.cpu_seconds(pid) for name, pid in pids.items()}
    bytes0, t0 = progress(), time.monotonic()
    time.sleep(seconds)
    cpu1 = {name: procfs.cpu_seconds(pid) for name, pid in pids.items()}
    bytes1, t1 = progress(), time.monotonic()
    took = t1 - t0
    return {name: 100 * (cpu1[name] - cpu0[name]) / took for name in pids}, (bytes1 - bytes0) / took


def file_driver(rate: int, seconds: float) -> tuple[dict[str, float], float]:
    with scratch_dir(NAME) as work:
        (work / "units").mkdir()
        (work / "units" / "w.toml").write_text(unit_text(rate, seconds + WARMUP + 5, "file"))
        with SupdInstance(work, extra_args=("--log-driver", "file", "--log-max-bytes", str(1 << 40))) as supd:
            supd.wait_ready()
            deadline = time.monotonic() + 30
            while (relay := relay_of(supd.pid)) is None:
                if time.monotonic() > deadline:
                    raise RuntimeError("no log relay under supd after 30 s")
                time.sleep(0.05)
            time.sleep(WARMUP)
            log = supd.state_dir / "logs" / "w.log"
            # a record adds ~40 bytes of time and stream to each 100-byte line
            cpu, written = window({"supd": supd.pid, "relay": relay}, seconds, lambda: log.stat().st_size)
            return cpu, written * LINE / (LINE + len("2026-12-02T17:00:00.123456789Z stdout F "))


def journald_driver(rate: int, seconds: float) -> tuple[dict[str, float], float]:
    sys.path.insert(0, str(REPO))
    from tests.systemd.sandbox import boot

    with scratch_dir(NAME + "-journald") as work:
        box = boot(work)
        try:
            base = "/var/lib/supdbench-logs"
            inner = Path(f"/proc/{box.leader_pid}/root")
            for folder in ("units", "state", "run"):
                (inner / base.lstrip("/") / folder).mkdir(parents=True, exist_ok=True)
            (inner / base.lstrip("/") / "units" / "w.toml").write_text(unit_text(rate, seconds + WARMUP + 5, "journald"))
            run = box.exec([
                "systemd-run", "--unit=supdbench-logs", "-p", "Delegate=yes", "-p", "LogRateLimitIntervalSec=0",
                "-p", f"WorkingDirectory={REPO}", "-E", f"PYTHONPATH={REPO}",
                sys.executable, "-m", "supervisor", "--units", f"{base}/units", "--state-dir", f"{base}/state",
                "--runtime-dir", f"{base}/run", "--log-format", "json", "--no-live-restore", "--log-driver", "journald",
            ])  # fmt: skip
            if run.returncode != 0:
                raise RuntimeError(f"systemd-run: {run.stderr}")
            deadline = time.monotonic() + 60
            supd = relay = journald = None
            while relay is None:
                if time.monotonic() > deadline:
                    raise RuntimeError("supd or its log relay did not show up in the sandbox within 60 s")
                time.sleep(0.1)
                for pid in procfs.descendants(box.leader_pid):
                    argv = procfs.cmdline(pid)
                    if procfs.comm(pid) == "systemd-journal":
                        journald = pid
                    elif "supervisor" in argv and f"{base}/state" in argv:
                        supd = pid
                relay = relay_of(supd) if supd is not None else None
            assert supd is not None and journald is not None
            time.sleep(WARMUP)

            def entries() -> float:
                # journald's own count would cost a journalctl run inside the window: use the
                # relay's reads instead (rchar: bytes it took from the pipes)
                for line in Path(f"/proc/{relay}/io").read_text().splitlines():
                    if line.startswith("rchar:"):
                        return float(line.split()[1])
                return 0.0

            return window({"supd": supd, "relay": relay, "journald": journald}, seconds, entries)
        finally:
            box.down()


def run(rate_mb: int = 50, seconds: float = 12.0) -> Table:
    rate = rate_mb * 1000 * 1000
    rows = []
    raw: dict[str, object] = {}
    for driver, measure in (("file", file_driver), ("journald", journald_driver)):
        cpu, reached = measure(rate, seconds)
        raw[driver] = {"cpu_percent": cpu, "bytes_per_second": reached}
        rows.append((driver, reached / 1e6, cpu["supd"], cpu["relay"], cpu.get("journald")))
    return Table(
        name=NAME,
        title=f"a unit writing {rate_mb} MB/s of {LINE}-byte lines: CPU (% of one core) over {seconds:.0f} s",
        columns=("driver", "MB/s of lines reached", "supd %", "log relay %", "journald %"),
        rows=tuple(rows),
        notes=(
            "supd is out of the data path with both drivers: its figure is its idle work while the unit writes.",
            "journald: supd and its relay as a transient service in the systemd 252 sandbox of tests/systemd, "
            "LogRateLimitIntervalSec=0.",
            f"load average at the end: {' '.join(f'{x:.1f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs "
            "(the writer itself competes for them: a rate below the target with the relay under 100 % is the writer's).",
        ),
        raw=raw,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate-mb", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=12.0)
    args = parser.parse_args()
    print(figures.render_text(run(args.rate_mb, args.seconds)))


if __name__ == "__main__":
    main()
