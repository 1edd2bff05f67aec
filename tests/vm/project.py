"""Put the project into the guest: the working tree as git sees it (uncommitted
edits included), and a venv with supd installed editable from a wheelhouse.

The wheelhouse is downloaded on the host, where the package index is reachable,
and cached by the requirements' hash. The guest installs only from it.
Nothing is built or written in the host's checkout.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

from image import GUEST_PYTHON, log
from machine import Machine

GUEST_SRC = "/root/src"
GUEST_VENV = "/root/venv"
# Test requirements only host-tier tests use: not in the guest's venv
# (kubernetes-validate's schemas are 108 MB, and the Kubernetes manifest tests
# do not depend on the cgroup layout, so tier.EXCLUDED leaves them on the host).
HOST_ONLY = {"kubernetes-validate"}
GUEST_WHEELHOUSE = "/root/wheelhouse"  # the image's /etc/pip.conf points here
EXTRAS = ("test",)


def requirements(repo: Path) -> list[str]:
    """pip, the build backend (the editable install runs without build
    isolation), the dependencies and the test extra."""
    meta = tomllib.loads((repo / "pyproject.toml").read_text())
    project = meta.get("project", {})
    reqs = ["pip", *meta.get("build-system", {}).get("requires", ["setuptools"]), *project.get("dependencies", [])]
    for extra in EXTRAS:
        reqs += project.get("optional-dependencies", {}).get(extra, [])
    return [r for r in reqs if re.split(r"[<>=!~\[ ;]", r, maxsplit=1)[0] not in HOST_ONLY]


def wheelhouse(cache: Path, repo: Path) -> Path:
    reqs = requirements(repo)
    key = hashlib.sha256(f"{GUEST_PYTHON}\n{chr(10).join(reqs)}".encode()).hexdigest()[:16]
    folder = cache / "wheelhouse" / key
    if folder.is_dir():
        return folder
    partial = folder.with_name(key + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    (partial / "requirements.txt").write_text("\n".join(reqs) + "\n")
    started = time.monotonic()
    # Wheels for the guest's interpreter and platform, whatever the host runs.
    subprocess.run([
        sys.executable, "-m", "pip", "download", "-q", "--disable-pip-version-check", "--only-binary=:all:",
        "--python-version", GUEST_PYTHON, "--implementation", "cp",
        "--abi", "cp" + GUEST_PYTHON.replace(".", ""), "--abi", "abi3", "--abi", "none",
        "--platform", "manylinux_2_36_x86_64", "--platform", "manylinux_2_17_x86_64",
        "--platform", "manylinux2014_x86_64", "--platform", "any",
        "-d", str(partial), "-r", str(partial / "requirements.txt"),
    ], check=True)
    partial.rename(folder)
    log(f"wheelhouse {folder}: {len(list(folder.glob('*.whl')))} wheels in {time.monotonic() - started:.0f} s")
    return folder


def _tar_into_guest(vm: Machine, producer: subprocess.Popen[bytes], target: str) -> None:
    assert producer.stdout is not None
    received = subprocess.run(vm.ssh_argv() + [f"rm -rf {target} && mkdir -p {target} && tar -C {target} -xf -"],
                              stdin=producer.stdout, check=False)
    producer.stdout.close()
    if producer.wait() != 0 or received.returncode != 0:
        raise SystemExit(f"purev2: copying into the guest's {target} failed")


def ship_tree(vm: Machine, repo: Path) -> None:
    started = time.monotonic()
    listing = subprocess.run(["git", "-C", str(repo), "ls-files", "-z", "-co", "--exclude-standard"],
                             check=True, capture_output=True).stdout
    with tempfile.NamedTemporaryFile(prefix="purev2-files-") as names:
        names.write(listing)
        names.flush()
        # a tracked file deleted in the working tree is left out, as git would
        tar = subprocess.Popen(["tar", "-C", str(repo), "--null", "-T", names.name, "--ignore-failed-read", "-cf", "-"],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        _tar_into_guest(vm, tar, GUEST_SRC)
    # supd, the spawner and supctl start many times per test: compile them once
    vm.ssh(["python3", "-m", "compileall", "-q", "-j", "0", f"{GUEST_SRC}/supervisor", f"{GUEST_SRC}/tests",
            ">/dev/null"], check=False)
    log(f"shipped the working tree to {GUEST_SRC} in {time.monotonic() - started:.0f} s")


def install(vm: Machine, cache: Path, repo: Path, image_key: str) -> None:
    """The wheelhouse goes in every time (packaging/build-deb.sh installs from
    it too); the venv is built in the guest once per (image, requirements,
    pyproject) and then reused from a tarball: pip under TCG costs minutes."""
    started = time.monotonic()
    wheels = wheelhouse(cache, repo)
    _tar_into_guest(vm, subprocess.Popen(["tar", "-C", str(wheels), "-cf", "-", "."], stdout=subprocess.PIPE),
                    GUEST_WHEELHOUSE)
    key = hashlib.sha256(f"{image_key}\n{wheels.name}\n".encode() + (repo / "pyproject.toml").read_bytes())
    saved = cache / "venvs" / f"{key.hexdigest()[:16]}.tar"
    if saved.is_file():
        _tar_into_guest(vm, subprocess.Popen(["cat", str(saved)], stdout=subprocess.PIPE), GUEST_VENV)
        log(f"venv {GUEST_VENV} from {saved} in {time.monotonic() - started:.0f} s")
        return
    # ensurepip and byte-compiling cost a minute under TCG: a venv without pip,
    # pip run from its own wheel, nothing compiled ahead (imports compile what they use)
    script = f"""set -e
[ -x {GUEST_VENV}/bin/python ] || python3 -m venv --without-pip {GUEST_VENV}
pip_wheel=$(ls {GUEST_WHEELHOUSE}/pip-*.whl | head -n 1)
pip() {{ {GUEST_VENV}/bin/python "$pip_wheel/pip" "$@"; }}
pip install -q --no-compile -r {GUEST_WHEELHOUSE}/requirements.txt
# setuptools warns at length while building an editable install: keep it for failures only
pip install -q --no-compile --no-deps --no-build-isolation -e {GUEST_SRC} 2>/root/pip-editable.log \\
  || {{ cat /root/pip-editable.log >&2; exit 1; }}
"""
    _run_script(vm, script)
    # compiled once here and kept in the tarball: otherwise every boot's first
    # imports would compile pytest, hypothesis, anyio... again, under TCG
    _run_script(vm, f"{GUEST_VENV}/bin/python -m compileall -q -j 0 {GUEST_VENV}/lib >/dev/null")
    log(f"venv {GUEST_VENV} with supd[{','.join(EXTRAS)}] built in {time.monotonic() - started:.0f} s")
    saved.parent.mkdir(parents=True, exist_ok=True)
    for old in saved.parent.glob("*.tar"):
        old.unlink()  # one venv is kept: the newest recipe's
    with open(saved.with_suffix(".partial"), "wb") as out:
        got = subprocess.run(vm.ssh_argv() + ["tar", "-C", GUEST_VENV, "-cf", "-", "."], stdout=out, check=False)
    if got.returncode == 0:
        saved.with_suffix(".partial").rename(saved)


def _run_script(vm: Machine, script: str) -> None:
    done = subprocess.run(vm.ssh_argv() + ["bash", "-s"], input=script, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit("purev2: installing the project in the guest failed")
