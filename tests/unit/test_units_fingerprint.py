"""A unit definition's fingerprint, and what a restarted supd makes of a
recorded one (restore.definition_it_ran_on). Pure: no root, no I/O."""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import asdict, replace
from pathlib import Path

from supervisor.daemon.restore import definition_it_ran_on
from supervisor.daemon.state_store import UnitRecord
from supervisor.units.fingerprint import fingerprint, is_comparable
from supervisor.units.model import Resources, Unit
from supervisor.units.parse import parse_unit

FILE = Path("/etc/supd/units/web.toml")
TEXT = """
[exec]
command = ["/bin/httpd", "-f"]
environment = { MODE = "prod" }
[rootfs]
image = "docker.io/library/busybox:latest"
ports = ["8080:80"]
[resources]
memory_max = "64M"
"""


def unit(text: str = TEXT) -> Unit:
    return parse_unit("web", tomllib.loads(text), FILE)


def record(definition: str, resources: Resources | None = None) -> UnitRecord:
    return UnitRecord(
        name="web", state="running", since=0.0, pid=4242, definition=definition,
        resources=asdict(resources) if resources is not None else None,
    )  # fmt: skip


def test_a_field_added_at_its_default_leaves_the_fingerprint_alone() -> None:
    """What an upgrade of supd does to the model: a new key, defaulted."""
    old_model = dataclasses.make_dataclass("Spec", [("command", str), ("nice", int, dataclasses.field(default=0))], frozen=True)
    new_model = dataclasses.make_dataclass(
        "Spec",
        [("command", str), ("nice", int, dataclasses.field(default=0)),
         ("oom_score", int, dataclasses.field(default=0)),
         ("groups", tuple, dataclasses.field(default_factory=tuple))],
        frozen=True,
    )  # fmt: skip
    assert repr(old_model("/bin/x")) != repr(new_model("/bin/x"))
    assert fingerprint(old_model("/bin/x")) == fingerprint(new_model("/bin/x"))
    assert fingerprint(old_model("/bin/x", nice=5)) == fingerprint(new_model("/bin/x", nice=5))
    # a value the user set is part of it, even one a later default happens to equal
    assert fingerprint(new_model("/bin/x", oom_score=100)) != fingerprint(new_model("/bin/x"))
    assert fingerprint(new_model("/bin/x", groups=("audio",))) != fingerprint(new_model("/bin/x"))


def test_every_value_of_a_real_unit_counts() -> None:
    base = fingerprint(unit())
    assert base == fingerprint(unit()) and is_comparable(base)
    for edited in (
        TEXT.replace('"-f"', '"-v"'),
        TEXT.replace('"prod"', '"dev"'),
        TEXT.replace("8080:80", "8081:80"),
        TEXT.replace("64M", "65M"),
        TEXT + "[restart]\npolicy = \"always\"\n",
    ):
        assert fingerprint(unit(edited)) != base, edited
    # the same values written another way are the same definition
    assert fingerprint(unit(TEXT.replace('environment = { MODE = "prod" }', 'environment.MODE = "prod"'))) == base


def test_an_edit_made_while_away_is_seen() -> None:
    running = unit()
    edited = unit(TEXT.replace('"-f"', '"-v"'))
    assert definition_it_ran_on(running, record(fingerprint(running), running.resources)) is None
    # not only [resources]: the old definition is unknown, the new one stands in (and restarts it)
    assert definition_it_ran_on(edited, record(fingerprint(running), running.resources)) is edited


def test_a_resources_edit_made_while_away_applies_live() -> None:
    running = unit()
    edited = unit(TEXT.replace("64M", "128M"))
    ran_on = definition_it_ran_on(edited, record(fingerprint(running), running.resources))
    assert ran_on == replace(edited, resources=running.resources) == running


def test_a_record_of_the_old_repr_hash_keeps_the_process() -> None:
    """supd 0.1 hashed its own model's repr, which any upgrade changes: its
    record cannot say whether the file changed, and an upgrade must not
    restart every container, so the adopted process stays."""
    legacy = "0123456789abcdef"
    assert not is_comparable(legacy)
    assert definition_it_ran_on(unit(), record(legacy, unit().resources)) is None
