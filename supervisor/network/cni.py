"""Running CNI plugins (spec 1.0): supd is the runtime.

A plugin is an executable in CNI_PATH that reads its configuration on stdin,
takes the operation and the container from its environment, and prints a
result (or an error object) on stdout. For a network configuration list the
runtime runs the plugins in order for ADD and CHECK, and in reverse for DEL,
handing each the previous result; a plugin known to do nothing without a
runtime value it is not given (portmap for a container that publishes no
port) is not started at all.

The daemon is multi-threaded and a child subreaper with its own Reaper: a
plugin is started with posix_spawn (no Python between fork and exec) and its
pid is tracked before anything can await, so the Reaper never reaps it
before we collect its status.
"""

from __future__ import annotations

import json
import os
import re
import signal
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import structlog

from supervisor.network.conflist import NetworkConfig, plugin_has_work, plugin_input
from supervisor.runtime.reaper import Reaper

DEFAULT_CNI_PATH: tuple[str, ...] = ("/usr/lib/cni", "/opt/cni/bin")
PLUGIN_PACKAGE = "containernetworking-plugins"
log = structlog.get_logger()

PLUGIN_TIMEOUT = 60.0
# portmap and firewall run iptables
PLUGIN_PATH_ENV = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
MAX_OUTPUT = 1024 * 1024


class CniError(Exception):
    """A plugin failed, or could not be run; the message names the network and plugin.
    `result`: what the plugins before it in an ADD returned (DEL needs it to
    find what they made), or None."""

    def __init__(self, message: str, result: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.result = result


class PluginMissing(CniError):
    pass


@dataclass(frozen=True)
class Sandbox:
    """The container as CNI sees it."""

    container_id: str
    netns: str  # path of the network namespace ("" when it is gone, DEL only)
    ifname: str = "eth0"


# portmap (containernetworking-plugins 1.1) CHECKs its IPv6 DNAT chain even
# when the container has no IPv6 address, so it never made one.
_PORTMAP_IPV6_BUG = re.compile(r"could not check ipv6 dnat: chain CNI-DN-[0-9a-f]+ not found in iptables table nat")


def portmap_ipv6_check_bug(kind: str, message: str, result: dict[str, Any]) -> bool:
    """That bug and nothing else: portmap, that message, no IPv6 address."""
    if kind != "portmap" or not _PORTMAP_IPV6_BUG.search(message):
        return False
    return not any(":" in str(ip.get("address", "")) for ip in result.get("ips") or [])


def find_plugin(kind: str, search: Sequence[str]) -> str:
    for folder in search:
        path = os.path.join(folder, kind)
        if os.access(path, os.X_OK):
            return path
    raise PluginMissing(
        f"CNI plugin {kind!r} not found in {':'.join(search)} (install the {PLUGIN_PACKAGE} package)"
    )


class CniRunner:
    def __init__(self, reaper: Reaper, search: Sequence[str] = DEFAULT_CNI_PATH) -> None:
        self.reaper = reaper
        self.search = tuple(search)

    def check_plugins(self, network: NetworkConfig) -> None:
        """Every plugin of `network` is installed (PluginMissing names the first that is not)."""
        for kind in network.plugin_types:
            try:
                find_plugin(kind, self.search)
            except PluginMissing as e:
                raise PluginMissing(f"network {network.name!r} ({network.file}): {e}") from None

    async def add(self, network: NetworkConfig, box: Sandbox, runtime_config: dict[str, Any]) -> dict[str, Any]:
        """ADD every plugin in order; the last one's result is the network's."""
        result: dict[str, Any] | None = None
        for index, kind in enumerate(network.plugin_types):
            if result is not None and not plugin_has_work(network, index, runtime_config):
                continue  # it would hand `result` on as it is
            stdin = plugin_input(network, index, result, runtime_config)
            try:
                out = await self._exec(network, kind, "ADD", box, stdin)
            except CniError as e:
                e.result = result
                raise
            if out is None:
                raise CniError(f"network {network.name!r}: plugin {kind!r} ADD printed no result", result)
            result = out
        assert result is not None
        return result

    async def check(
        self, network: NetworkConfig, box: Sandbox, runtime_config: dict[str, Any], result: dict[str, Any]
    ) -> None:
        for index, kind in enumerate(network.plugin_types):
            if not plugin_has_work(network, index, runtime_config):
                continue
            stdin = plugin_input(network, index, result, runtime_config)
            try:
                await self._exec(network, kind, "CHECK", box, stdin)
            except CniError as e:
                if not portmap_ipv6_check_bug(kind, str(e), result):
                    raise
                log.info("cni_check_ipv6_bug_ignored", network=network.name, plugin=kind, error=str(e))

    async def delete(
        self, network: NetworkConfig, box: Sandbox, runtime_config: dict[str, Any], result: dict[str, Any] | None
    ) -> list[str]:
        """DEL every plugin in reverse order, each whatever the others did;
        returns the errors (empty: all of it is gone)."""
        errors: list[str] = []
        for index in reversed(range(len(network.plugins))):
            if not plugin_has_work(network, index, runtime_config):
                continue
            kind = network.plugin_types[index]
            stdin = plugin_input(network, index, result, runtime_config)
            try:
                await self._exec(network, kind, "DEL", box, stdin)
            except CniError as e:
                errors.append(str(e))
        return errors

    async def _exec(
        self, network: NetworkConfig, kind: str, command: str, box: Sandbox, stdin: bytes
    ) -> dict[str, Any] | None:
        try:
            path = find_plugin(kind, self.search)
        except PluginMissing as e:
            raise PluginMissing(f"network {network.name!r}: {e}") from None
        env = {
            "CNI_COMMAND": command,
            "CNI_CONTAINERID": box.container_id,
            "CNI_NETNS": box.netns,
            "CNI_IFNAME": box.ifname,
            "CNI_PATH": ":".join(self.search),
            "PATH": PLUGIN_PATH_ENV,
        }
        status, out, err = await self._spawn(path, env, stdin)
        where = f"network {network.name!r}: plugin {kind!r} {command}"
        if status != 0:
            raise CniError(f"{where} failed: {_error_message(out, err, status)}")
        if not out.strip():
            return None
        try:
            data = json.loads(out)
        except json.JSONDecodeError:
            raise CniError(f"{where} printed something that is not JSON: {out[:200]!r}") from None
        if not isinstance(data, dict):
            raise CniError(f"{where} printed {type(data).__name__}, expected an object")
        return data

    async def _spawn(self, path: str, env: dict[str, str], stdin: bytes) -> tuple[int, bytes, bytes]:
        in_r, in_w = os.pipe()
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        try:
            pid = os.posix_spawn(
                path,
                [path],
                env,
                file_actions=[
                    (os.POSIX_SPAWN_DUP2, in_r, 0),
                    (os.POSIX_SPAWN_DUP2, out_w, 1),
                    (os.POSIX_SPAWN_DUP2, err_w, 2),
                ],
                setsigdef=(signal.SIGPIPE,),
            )
            # before any await: the Reaper must leave this child to us
            self.reaper.track(pid)
        except OSError as e:
            for fd in (in_r, in_w, out_r, out_w, err_r, err_w):
                os.close(fd)
            raise CniError(f"cannot run {path}: {e.strerror}") from None
        for fd in (in_r, out_w, err_w):
            os.close(fd)
        outputs: dict[int, bytearray] = {out_r: bytearray(), err_r: bytearray()}
        still_open = {in_w, out_r, err_r}
        try:
            async with self.reaper.killed_on_error(pid):
                with anyio.move_on_after(PLUGIN_TIMEOUT) as timer:
                    async with anyio.create_task_group() as tg:
                        tg.start_soon(_write_all, in_w, stdin, still_open)
                        for fd, buffer in outputs.items():
                            tg.start_soon(_read_all, fd, buffer)
                if timer.cancelled_caught:
                    _kill(pid)
                status = await self.reaper.wait(pid)
        finally:
            for fd in still_open:
                os.close(fd)
        if timer.cancelled_caught:
            raise CniError(f"{path} did not finish within {PLUGIN_TIMEOUT:.0f}s (killed)")
        code = status.code if status.code is not None else 128 + (status.signal or 0)
        return code, bytes(outputs[out_r]), bytes(outputs[err_r])


async def _write_all(fd: int, data: bytes, still_open: set[int]) -> None:
    """Write `data` and close `fd`: the plugin reads its stdin to EOF."""
    os.set_blocking(fd, False)
    view = memoryview(data)
    try:
        while view:
            try:
                n = os.write(fd, view)
            except BlockingIOError:
                await anyio.wait_writable(fd)
                continue
            except BrokenPipeError:
                return  # the plugin did not read it all: its exit status says why
            view = view[n:]
    finally:
        still_open.discard(fd)
        os.close(fd)


async def _read_all(fd: int, buffer: bytearray) -> None:
    os.set_blocking(fd, False)
    while True:
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            await anyio.wait_readable(fd)
            continue
        if not chunk:
            return
        if len(buffer) < MAX_OUTPUT:
            buffer.extend(chunk)


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _error_message(out: bytes, err: bytes, status: int) -> str:
    """A plugin's error object ({"code", "msg", "details"}), else its stderr."""
    try:
        data = json.loads(out)
        if isinstance(data, dict) and data.get("msg"):
            details = f": {data['details']}" if data.get("details") else ""
            return f"{data['msg']}{details}"
    except (json.JSONDecodeError, UnicodeDecodeError):
        pass
    text = err.decode(errors="replace").strip() or out.decode(errors="replace").strip()
    return text[:500] or f"exit status {status}"
