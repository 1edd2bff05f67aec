"""What the pure cgroup v2 tier runs in the guest, and how its results read.

The tier is the tests marked `purev2` (tests/conftest.py marks
tests/integration, tests/e2e and tests/systemd) less those in `EXCLUDED`: the
ones whose behaviour does not depend on the cgroup layout or on systemd as
PID 1, left out by value to keep CI within its hour. The unit tier does no I/O
and stays on the host.

The guest emulates its CPUs (TCG, about 3-5 times slower than the host), so
per-test timeouts are scaled. A module whose fixtures alone take minutes runs
as its own pytest session with a timeout of its own.
"""

from __future__ import annotations

import os
import shlex
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

MARKER = "purev2"
TIER_PATHS = ("tests/integration", "tests/e2e", "tests/systemd")  # as tests/conftest.py's PUREV2_DIRS
HOST_TIMEOUT = 120  # pyproject's `timeout`, sized for the host
TIMEOUT_SCALE = 4
GUEST_RESULTS = "/root/results"
# Every session's environment: tells the tests' own waits how much slower
# this machine is than the host they were sized on (helpers may multiply by it).
TIME_SCALE_ENV = {"SUPD_TEST_TIME_SCALE": str(TIMEOUT_SCALE)}
# The whole tier's wall-clock budget, so that `make test` stays within CI's
# hour on a 2-core host: a session still running when it is spent gets SIGINT
# (pytest then stops, reports and writes its JUnit XML); later ones are skipped.
BUDGET_SECONDS = int(os.environ.get("SUPD_VM_BUDGET", str(40 * 60)))

# Modules that need more than the scaled timeout, run in a session of their own
# (none today: test_service.py, which would, is left out below).
LONG_MODULES: dict[str, int] = {}

# Sessions run a second time with another cgroup driver for supd (the e2e
# supds use cgroupfs unless told otherwise; on a systemd host the systemd
# driver is what a packaged supd picks): name -> (environment, paths).
DRIVER_REPEATS: dict[str, tuple[dict[str, str], list[str]]] = {
    "e2e_systemd_driver": ({"SUPD_TEST_CGROUP_DRIVER": "systemd"}, [
        "tests/e2e/test_cgroups_e2e.py",
        # device rules as systemd enforces them (DevicePolicy=closed, DeviceAllow=)
        "tests/e2e/test_container_devices.py::test_image_shipped_nodes_refused_to_nobody_and_root",
        "tests/e2e/test_container_devices.py::test_devices_key_creates_and_allows_the_node",
    ]),
}

# Tests left out of the VM by value: what they would cost there (an e2e test
# takes 15-40 s under TCG) against what they find that the host tiers do not.
# A test belongs in the VM when its behaviour depends on the cgroup layout or on
# systemd as PID 1: scopes, limits, freeze, kill, OOM, memory and PSI watches,
# adoption of scopes, the ownership lock, cgroup namespaces, the systemd driver.
# Each entry: a module (left out whole) or a node id -> why.
_SAME_EVERYWHERE = "no cgroup or systemd in what it checks; the host tier covers it"
EXCLUDED: dict[str, str] = {
    "tests/integration/test_runtime_plain.py": "spawning plain processes: " + _SAME_EVERYWHERE,
    "tests/integration/test_api_server.py": "the control socket (HTTP, peer credentials): " + _SAME_EVERYWHERE,
    "tests/integration/test_api_server_logtail.py": "log following over the socket: " + _SAME_EVERYWHERE,
    "tests/integration/test_rootfs_images.py": "the layer store and OCI import: " + _SAME_EVERYWHERE,
    "tests/integration/test_rootfs_layers.py": "layer folders: " + _SAME_EVERYWHERE,
    "tests/integration/test_rootfs_overlay.py": "overlay mounts (the same kernel feature on every layout): " + _SAME_EVERYWHERE,
    "tests/integration/test_state_store_fs.py": "state records on disk: " + _SAME_EVERYWHERE,
    "tests/integration/test_statewriter.py": "state records on disk: " + _SAME_EVERYWHERE,
    "tests/integration/test_daemon_logs.py": "per-unit log files: " + _SAME_EVERYWHERE,
    "tests/integration/test_userns_upper.py": "shifting a userns unit's upper dir (lchown): " + _SAME_EVERYWHERE,
    "tests/e2e/test_bad_input.py": "unit-file and API validation, before any cgroup exists: " + _SAME_EVERYWHERE,
    "tests/e2e/test_containers_bad_input.py": "container unit-file validation: " + _SAME_EVERYWHERE,
    "tests/e2e/test_containers_teardown.py": "mount teardown: " + _SAME_EVERYWHERE,
    "tests/e2e/test_images.py": "image import and listing: " + _SAME_EVERYWHERE,
    "tests/e2e/test_image_pull.py": "pulls from a registry the tests start (skopeo, TLS, auth): " + _SAME_EVERYWHERE,
    "tests/e2e/test_image_push.py": "pushes to a registry the tests start (OCI layout, skopeo): " + _SAME_EVERYWHERE,
    "tests/e2e/test_kube.py": "Kubernetes manifests out of and into unit files: " + _SAME_EVERYWHERE,
    "tests/integration/test_rootfs_layertar.py": "layer folders tarred for a push: " + _SAME_EVERYWHERE,
    "tests/e2e/test_exec_tty.py": "exec with a terminal (ptys, raw mode, resize): " + _SAME_EVERYWHERE,
    "tests/integration/test_exec_terminal.py": "supctl's end of a terminal session: " + _SAME_EVERYWHERE,
    "tests/e2e/test_image_store.py": "image list, rm, prune and removal killed half way (store files only): " + _SAME_EVERYWHERE,
    "tests/e2e/test_sessions.py": "exec sessions and follow streams (process groups, inotify): " + _SAME_EVERYWHERE,
    "tests/e2e/test_logs.py": "unit output records, run markers, since/until (the log relay, files): " + _SAME_EVERYWHERE,
    "tests/systemd/test_journald_logs.py": (
        "log_driver journald: runs on the host tier against the journald of the nspawn sandbox's systemd 252; "
        "the journal protocol does not depend on the cgroup layout"
    ),
    "tests/systemd/test_sandbox.py": "the nspawn sandbox's own checks: in the VM the driver scenarios use the real PID 1",
    "tests/systemd/test_service.py": (
        "supd.service under a real systemd: runs on the host tier inside the nspawn sandbox, itself a pure "
        "cgroup2 systemd 252; in the VM its .deb build alone costs 10 minutes of TCG"
    ),
    # e2e modules of which only the layout-dependent tests run in the VM
    **{f"tests/e2e/test_supervision.py::{name}": "supd's lifecycle: " + _SAME_EVERYWHERE for name in (
        "test_unit_file_lifecycle_drop_edit_delete", "test_status_exit_codes_and_user_stop_start",
        "test_crash_loop_backs_off_then_hits_start_limit", "test_unit_exit_recorded_and_policy_no",
        "test_killed_by_signal_restarts_on_abnormal", "test_sighup_and_reload_rescan",
        "test_editor_temp_files_ignored", "test_daemon_not_running_is_one_clear_line",
        "test_repeated_sigterm_does_not_abandon_units")},
    **{f"tests/e2e/test_policies.py::{name}": "health checks and dependencies: " + _SAME_EVERYWHERE for name in (
        "test_failing_health_check_restarts_the_unit", "test_hanging_health_check_is_killed_at_its_timeout",
        "test_dependency_chain_starts_in_order_and_stops_together", "test_dependency_cycle_is_a_unit_file_error",
        "test_a_oneshot_is_done_when_it_exits_0_and_what_needs_it_runs_on",
        "test_max_frozen_fails_a_policy_frozen_unit_but_not_a_user_frozen_one")},
    "tests/e2e/test_container_devices.py::test_bad_devices_entries_fail_clearly_and_leave_nothing": (
        "device entries are checked before any scope exists: " + _SAME_EVERYWHERE
    ),
    **{f"tests/e2e/test_containers.py::{name}": "rootfs, identity and network setup: " + _SAME_EVERYWHERE for name in (
        "test_image_unit_whiteouts_and_opaque_dir", "test_persistent_upper_survives_restart_ephemeral_does_not",
        "test_readonly_writable_and_binds", "test_user_nobody_no_new_privs_and_podman_caps",
        "test_network_none_has_only_loopback", "test_web_example_serves_the_host")},
    **{f"tests/e2e/test_live_restore.py::{name}": "state records and their checks: " + _SAME_EVERYWHERE for name in (
        "test_reused_pid_is_not_adopted", "test_corrupt_and_future_state_files_are_reported_not_fatal",
        "test_live_socket_refused_stale_socket_taken_over", "test_unit_made_invalid_while_supd_was_down_is_stopped",
        "test_unit_added_while_running_starts_again_after_a_stopping_shutdown",
        "test_a_stopping_shutdown_brings_back_a_unit_a_user_started")},
    **{f"tests/e2e/test_faults.py::{name}": "fault containment in the daemon: " + _SAME_EVERYWHERE for name in (
        "test_every_failpoint_is_contained", "test_malformed_failpoints_stop_supd_with_a_clear_message",
        "test_a_slow_stop_does_not_delay_other_files", "test_reload_to_an_invalid_file_ends_in_error")},
    "tests/e2e/test_real_debian_services.py": (
        "redis and nginx from a Debian rootfs under the default confinement: seccomp, capabilities and paths "
        "behave the same on every layout (the device rules on pure v2 are tested by test_container_devices), and "
        "building that rootfs with mmdebstrap under TCG would cost many minutes"
    ),
    # CNI networks: the plugins, iptables and the netns are the same on every
    # layout. Kept in the VM: the smoke test of a bridge unit with a published
    # port, and re-adoption (a scope adopted under systemd, whose udevd re-MACs
    # host-side veths, which CHECK must survive).
    **{f"tests/e2e/test_networks.py::{name}": "CNI networks and their clean-up: " + _SAME_EVERYWHERE for name in (
        "test_on_the_default_network_host_interfaces_are_invisible_and_traffic_cannot_be_captured",
        "test_a_container_on_none_reaches_nothing", "test_pid1_killed_leaves_nothing",
        "test_supd_killed_then_restarted_removes_what_ended_meanwhile", "test_reboot_reconciles_at_the_next_start",
        "test_port_taken_by_a_host_process_fails_clearly_and_leaves_nothing",
        "test_unknown_network_is_a_unit_file_error",
        "test_conflist_that_does_not_parse_is_a_unit_file_error_then_fails_the_start",
        "test_missing_plugin_names_it_and_the_package", "test_two_containers_on_one_network_reach_each_other")},
    "tests/e2e/test_networks.py::test_two_containers_on_the_same_network_talk_by_name": (
        "names in /etc/hosts over a CNI network: " + _SAME_EVERYWHERE + "; and its Debian rootfs would cost "
        "many minutes of mmdebstrap under TCG"
    ),
    "tests/e2e/test_socket_access.py": "who may do what on the control socket: " + _SAME_EVERYWHERE,
    "tests/integration/test_etcfiles.py": "/etc/hosts, resolv.conf and hostname bound into a root: " + _SAME_EVERYWHERE,
    "tests/e2e/test_etcfiles.py": "/etc/hosts, resolv.conf and hostname of a container unit: " + _SAME_EVERYWHERE,
    "tests/e2e/test_image_config.py": (
        "an image's Entrypoint/Cmd/Env/User/WorkingDir/StopSignal/Healthcheck and tmpfs scratch: " + _SAME_EVERYWHERE
    ),
    "tests/e2e/test_soak_smoke.py": (
        "the soak smoke: ~60 s on the host, many minutes under TCG; its operations are the ones the e2e "
        "modules that run here test one by one (make soak is the soak itself)"
    ),
}
# The systemd driver's scenarios run against the VM's own PID 1 ("host-…");
# the same ones against an nspawn sandbox booted inside the VM would repeat them
# on the same systemd and cgroup2.
KEYWORDS = "not sandbox"


@dataclass(frozen=True)
class Session:
    name: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)

    def shell_line(self, venv: str, src: str, budget: int) -> str:
        # unbuffered: pytest's progress reaches the CI log as it happens, not in 8 KiB lumps
        env = {"PYTHONUNBUFFERED": "1", **TIME_SCALE_ENV, **self.env}
        command = ["env", *(f"{k}={v}" for k, v in env.items()),
                   "timeout", "-s", "INT", "-k", "60", str(budget), f"{venv}/bin/python", "-m", "pytest", *self.argv]
        return f"cd {src} && {shlex.join(command)}"


def sessions(extra_args: list[str]) -> list[Session]:
    """The pytest sessions of the tier. With `extra_args` (a developer's own
    selection), one session with those arguments and the scaled timeout."""
    scaled = HOST_TIMEOUT * TIMEOUT_SCALE

    def common(name: str, timeout: int) -> list[str]:
        return [f"--timeout={timeout}", "-o", f"faulthandler_timeout={timeout}", "-p", "no:cacheprovider",
                f"--junitxml={GUEST_RESULTS}/{name}.xml"]

    if extra_args:
        return [Session("selected", [*common("selected", scaled), *extra_args])]
    # the marked folders named, so pytest does not import the unit tier only to deselect it
    main = [*common("main", scaled), "-m", MARKER, *TIER_PATHS]
    main += [f"--ignore={module}" for module in LONG_MODULES]
    main += [f"--ignore={what}" if "::" not in what else f"--deselect={what}" for what in EXCLUDED]
    main += ["-k", KEYWORDS]
    # the short sessions first: under the budget, the long one is the one cut short
    found = []
    for module, timeout in LONG_MODULES.items():
        name = Path(module).stem
        found.append(Session(name, [*common(name, timeout), "-m", MARKER, module]))
    for name, (env, paths) in DRIVER_REPEATS.items():
        found.append(Session(name, [*common(name, scaled), "-m", MARKER, *paths], env))
    found.append(Session("main", main))
    return found


@dataclass(frozen=True)
class Summary:
    tests: int = 0
    failures: int = 0
    errors: int = 0
    skipped: int = 0
    seconds: float = 0.0
    failed: tuple[str, ...] = ()

    def __add__(self, other: Summary) -> Summary:
        return Summary(self.tests + other.tests, self.failures + other.failures, self.errors + other.errors,
                       self.skipped + other.skipped, self.seconds + other.seconds, self.failed + other.failed)

    def line(self) -> str:
        passed = self.tests - self.failures - self.errors - self.skipped
        return (f"purev2 junit: tests={self.tests} passed={passed} failures={self.failures} "
                f"errors={self.errors} skipped={self.skipped} time={self.seconds:.0f}s")


def read_junit(path: Path) -> Summary:
    total = Summary()
    root = ET.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
    for suite in suites:
        failed = tuple(
            f"[{path.stem}] {case.get('classname')}::{case.get('name')}"
            for case in suite.iter("testcase")
            if case.find("failure") is not None or case.find("error") is not None
        )
        total += Summary(int(suite.get("tests", 0)), int(suite.get("failures", 0)), int(suite.get("errors", 0)),
                         int(suite.get("skipped", 0)), float(suite.get("time", 0.0)), failed)
    return total
