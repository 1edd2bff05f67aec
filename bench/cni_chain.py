"""The CNI plugins alone: one ADD and one DEL of a conflist's chain for a
fresh network namespace, as a runtime runs them, with nothing else around
them. The start bench times this beside supd's and podman's bridge starts:
it is the floor any CNI runtime pays for the network.

Usage: python3 -I -S bench/cni_chain.py CONFLIST ID   (root)
Stdlib only, so that its own start costs as little as a shell script's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

PLUGIN_DIRS = ("/usr/lib/cni", "/opt/cni/bin")


def run_plugin(command: str, conf: dict, env: dict[str, str]) -> dict:
    plugin = next(os.path.join(d, conf["type"]) for d in PLUGIN_DIRS if os.path.exists(os.path.join(d, conf["type"])))
    res = subprocess.run([plugin], input=json.dumps(conf).encode(), capture_output=True,
                         env={**env, "CNI_COMMAND": command})
    if res.returncode != 0:
        raise SystemExit(f"{conf['type']} {command} failed: {res.stdout.decode()} {res.stderr.decode()}")
    return json.loads(res.stdout) if res.stdout.strip() else {}


def main() -> None:
    conflist, ident = json.load(open(sys.argv[1])), sys.argv[2]
    netns = f"supdbenchcni{os.getpid()}x{ident}"
    subprocess.run(["ip", "netns", "add", netns], check=True)
    env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"), "CNI_CONTAINERID": netns,
           "CNI_NETNS": f"/run/netns/{netns}", "CNI_IFNAME": "eth0", "CNI_PATH": ":".join(PLUGIN_DIRS)}
    try:
        confs = [{"cniVersion": conflist["cniVersion"], "name": conflist["name"], **p} for p in conflist["plugins"]]
        result: dict = {}
        for conf in confs:
            result = run_plugin("ADD", {**conf, "prevResult": result} if result else conf, env)
        for conf in reversed(confs):
            run_plugin("DEL", {**conf, "prevResult": result}, env)
    finally:
        subprocess.run(["ip", "netns", "delete", netns], check=True)


if __name__ == "__main__":
    main()
