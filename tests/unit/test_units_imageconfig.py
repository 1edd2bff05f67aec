"""The image's config under a unit's own definition (docker's rules): pure."""

from __future__ import annotations

import signal
from dataclasses import replace
from pathlib import Path

import pytest

from supervisor.rootfs.oci import Healthcheck, ImageConfig
from supervisor.units.imageconfig import ImageConfigError, effective_unit, health_from_image, merge_environment
from supervisor.units.model import ExecSpec, HealthSpec, RootfsSpec, StopSpec, Unit

FILE = Path("/srv/units/web.toml")
IMAGE = ImageConfig(
    env=("PATH=/opt/bin:/usr/bin", "LANG=C.UTF-8", "FROM_IMAGE=yes", "JUST_A_NAME"),
    cmd=("--port", "6379"),
    entrypoint=("/usr/bin/redis-server",),
    working_dir="/data",
    user="redis:redis",
    stop_signal="SIGQUIT",
    healthcheck=Healthcheck(
        test=("CMD-SHELL", "redis-cli ping | grep PONG"),
        interval_ns=5_000_000_000,
        timeout_ns=2_500_000_000,
        start_period_ns=1_000_000_000,
        retries=4,
    ),
)


def image_unit(**exec_fields: object) -> Unit:
    return Unit(
        name="web",
        file=FILE,
        exec=ExecSpec(**{"command": (), **exec_fields}),  # type: ignore[arg-type]
        rootfs=RootfsSpec(image="/srv/images/redis:7"),
    )


def test_entrypoint_and_cmd_run_when_the_unit_gives_no_command() -> None:
    eff = effective_unit(image_unit(), IMAGE)
    assert eff.exec.command == ("/usr/bin/redis-server", "--port", "6379")
    assert eff.exec.argv == eff.exec.command and eff.exec.entrypoint is None


def test_the_units_command_replaces_cmd_and_keeps_the_entrypoint() -> None:
    eff = effective_unit(image_unit(command=("--save", "")), IMAGE)
    assert eff.exec.command == ("/usr/bin/redis-server", "--save", "")


def test_an_entrypoint_without_a_command_drops_the_images_cmd() -> None:
    eff = effective_unit(image_unit(entrypoint=("/bin/sh", "-c", "echo hi")), IMAGE)
    assert eff.exec.command == ("/bin/sh", "-c", "echo hi")


def test_entrypoint_and_command_both_from_the_unit() -> None:
    eff = effective_unit(image_unit(entrypoint=("/bin/echo",), command=("a", "")), IMAGE)
    assert eff.exec.command == ("/bin/echo", "a", "")


def test_an_empty_entrypoint_clears_the_images_and_runs_the_command() -> None:
    eff = effective_unit(image_unit(entrypoint=(), command=("/bin/true",)), IMAGE)
    assert eff.exec.command == ("/bin/true",)


def test_nothing_to_run_names_the_file_and_key() -> None:
    with pytest.raises(ImageConfigError, match=r"^/srv/units/web.toml: \[exec\].command: expected a command"):
        effective_unit(image_unit(), ImageConfig())
    with pytest.raises(ImageConfigError, match=r"\[exec\].command"):
        effective_unit(image_unit(entrypoint=()), IMAGE)


def test_env_lies_under_the_units_environment() -> None:
    eff = effective_unit(image_unit(environment=(("LANG", "de_DE.UTF-8"), ("MINE", "1"))), IMAGE)
    assert dict(eff.exec.environment) == {
        "PATH": "/opt/bin:/usr/bin",
        "LANG": "de_DE.UTF-8",
        "FROM_IMAGE": "yes",
        "MINE": "1",
    }
    assert list(eff.exec.environment) == sorted(eff.exec.environment)


def test_merge_environment_keeps_values_with_equals_signs() -> None:
    assert merge_environment(("A=b=c", "=x", "B="), ()) == (("A", "b=c"), ("B", ""))


def test_user_and_working_dir_apply_unless_the_unit_sets_them() -> None:
    eff = effective_unit(image_unit(), IMAGE)
    assert (eff.exec.user, eff.exec.working_directory) == ("redis:redis", "/data")
    eff = effective_unit(image_unit(user="1000:1000", working_directory="/srv"), IMAGE)
    assert (eff.exec.user, eff.exec.working_directory) == ("1000:1000", "/srv")


def test_defaults_without_an_image() -> None:
    unit = Unit(name="plain", file=FILE, exec=ExecSpec(command=("/bin/true",)))
    eff = effective_unit(unit, None)
    assert eff.exec.command == ("/bin/true",)
    assert (eff.exec.user, eff.exec.working_directory) == (None, "/")
    assert eff.stop.signal == signal.SIGTERM and eff.health is None
    assert eff.exec.environment == ()


def test_relative_working_dir_is_taken_from_the_root() -> None:
    assert effective_unit(image_unit(), replace(IMAGE, working_dir="app")).exec.working_directory == "/app"


def test_bad_image_user_is_an_error_naming_the_image() -> None:
    with pytest.raises(ImageConfigError, match=r"\[rootfs\].image /srv/images/redis:7: config User: .*'bad user'"):
        effective_unit(image_unit(), replace(IMAGE, user="bad user"))


def test_stop_signal_applies_unless_the_unit_sets_one() -> None:
    assert effective_unit(image_unit(), IMAGE).stop.signal == signal.SIGQUIT
    assert effective_unit(image_unit(), replace(IMAGE, stop_signal="9")).stop.signal == signal.SIGKILL
    assert effective_unit(image_unit(), replace(IMAGE, stop_signal="")).stop.signal == signal.SIGTERM
    unit = replace(image_unit(), stop=StopSpec(signal=int(signal.SIGINT), timeout=3.0))
    eff = effective_unit(unit, IMAGE)
    assert eff.stop == StopSpec(signal=int(signal.SIGINT), timeout=3.0)


def test_bad_stop_signal_names_the_image_and_key() -> None:
    with pytest.raises(ImageConfigError, match=r"config StopSignal: expected a signal.*'SIGNOPE'"):
        effective_unit(image_unit(), replace(IMAGE, stop_signal="SIGNOPE"))


def test_healthcheck_applies_unless_the_unit_has_health() -> None:
    eff = effective_unit(image_unit(), IMAGE)
    assert eff.health == HealthSpec(
        command=("/bin/sh", "-c", "redis-cli ping | grep PONG"),
        interval=5.0,
        timeout=2.5,
        retries=4,
        start_period=1.0,
        on_failure="none",
    )
    own = HealthSpec(command=("/bin/true",), interval=1.0)
    assert effective_unit(replace(image_unit(), health=own), IMAGE).health == own


def test_healthcheck_forms_and_docker_defaults() -> None:
    assert health_from_image(Healthcheck(test=("NONE",)), "x") is None
    assert health_from_image(Healthcheck(test=()), "x") is None
    check = health_from_image(Healthcheck(test=("CMD", "/bin/check", "")), "x")
    assert check == HealthSpec(command=("/bin/check", ""), interval=30.0, timeout=30.0, retries=3, start_period=0.0)


@pytest.mark.parametrize("test", [("CMD",), ("CMD", ""), ("CMD-SHELL",), ("CMD-SHELL", "a", "b"), ("RUN", "x")])
def test_bad_healthcheck_test_names_the_key(test: tuple[str, ...]) -> None:
    with pytest.raises(ImageConfigError, match=r"^where: config Healthcheck.Test: expected"):
        health_from_image(Healthcheck(test=test), "where")


def test_image_config_json_round_trip_and_type_errors() -> None:
    assert ImageConfig.from_json(IMAGE.to_json()) == IMAGE
    assert ImageConfig.from_json({}) == ImageConfig()
    with pytest.raises(ValueError, match=r"^Env: expected a list of strings"):
        ImageConfig.from_json({"Env": "A=b"})
    with pytest.raises(ValueError, match=r"^Healthcheck.Interval: expected a count"):
        ImageConfig.from_json({"Healthcheck": {"Test": ["NONE"], "Interval": "5s"}})
