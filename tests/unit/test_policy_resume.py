"""policy.resume: what a starting supd does with each recorded unit. Pure:
the boot ids and what /proc said are inputs."""

from __future__ import annotations

from typing import Any

import pytest

from supervisor.policy.resume import Resume, decide, same_boot

BOOT = "8c1f0a6e-0000-4000-8000-000000000001"
OTHER_BOOT = "8c1f0a6e-0000-4000-8000-000000000002"


def plan(**changes: Any) -> Resume:
    facts: dict[str, Any] = {
        "state": "running",
        "user_stopped": False,
        "shutdown_stopped": False,
        "restarts": 3,
        "recorded_boot": BOOT,
        "current_boot": BOOT,
        "process": "adopt",
    }
    facts.update(changes)
    return decide(**facts)


def test_same_boot_live_process_is_adopted_with_its_counter() -> None:
    assert plan() == Resume("adopt", 3, False, "same process, same scope")


def test_same_boot_process_gone_is_ended_while_away() -> None:
    assert plan(process="ended").action == "ended"
    assert plan(process="ended").restarts == 3  # the caller counts the restart, if any


def test_launch_recorded_before_exec_is_adopted_or_started_again() -> None:
    # the record written just before the exec: the process, if it is there, is ours
    assert plan(state="starting").action == "adopt"
    # gone: it never ran as far as anyone saw, whatever its restart policy says
    assert plan(state="starting", process="ended") == Resume("start", 3, False, "was starting when supd stopped")


def test_unit_stopped_at_supd_shutdown_starts_again() -> None:
    # issue 10: it stayed `exited` ("ended while supd was not running")
    got = plan(state="inactive", shutdown_stopped=True, process="none")
    assert got.action == "start" and got.restarts == 3 and not got.user_stopped


def test_user_stop_and_failed_are_kept_within_a_boot() -> None:
    assert plan(state="inactive", user_stopped=True, process="none").action == "stopped"
    assert plan(state="failed", process="none").action == "failed"


def test_restarting_unit_starts_again_and_settled_ones_follow_enabled() -> None:
    assert plan(state="restarting", process="none").action == "start"
    assert plan(state="exited", process="none").action == "as_enabled"
    assert plan(state="inactive", process="none").action == "as_enabled"


@pytest.mark.parametrize(
    "facts",
    [
        {},
        {"process": "ended"},
        {"state": "failed", "process": "none"},
        {"state": "inactive", "user_stopped": True, "process": "none"},
        {"state": "inactive", "shutdown_stopped": True, "process": "none"},
        {"state": "restarting", "process": "none"},
    ],
)
def test_new_boot_starts_every_unit_fresh(facts: dict[str, Any]) -> None:
    got = plan(recorded_boot=OTHER_BOOT, **facts)
    # never adopted, never "ended while away"; counter reset; a stop forgotten;
    # [unit].enabled decides, as systemd does at boot
    assert got == Resume("as_enabled", 0, False, "new boot")


def test_unknown_boot_ids_count_as_the_same_boot() -> None:
    # records of supd 0.1.0 have none; a kernel without boot_id gives none
    assert same_boot("", BOOT) and same_boot(BOOT, "") and same_boot(BOOT, BOOT)
    assert not same_boot(BOOT, OTHER_BOOT)
    assert plan(recorded_boot="").action == "adopt"


def test_a_new_pid_1_on_the_same_kernel_is_a_new_boot() -> None:
    # a rebooted container or systemd sandbox: same kernel, new PID 1
    assert not same_boot(f"{BOOT}@100", f"{BOOT}@900")
    assert same_boot(f"{BOOT}@100", f"{BOOT}@100")
    # records written with the kernel's id alone compare on that part
    assert same_boot(BOOT, f"{BOOT}@900") and not same_boot(OTHER_BOOT, f"{BOOT}@900")
