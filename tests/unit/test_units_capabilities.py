"""Capability names and a unit's set (pure)."""

from __future__ import annotations

import pytest

from supervisor.units.capabilities import (
    ALL_CAPS,
    CAPABILITIES,
    CONTAINER_DEFAULT,
    DOCKER_DEFAULT,
    UnknownCapability,
    canonical_name,
    names_of,
    parse_names,
    unit_caps,
)


def caps(*names: str) -> frozenset[int]:
    return frozenset(CAPABILITIES[n] for n in names)


def test_names_are_accepted_with_or_without_cap_and_in_any_case() -> None:
    assert canonical_name("NET_RAW") == canonical_name("cap_net_raw") == canonical_name(" Cap_Net_Raw ") == "NET_RAW"
    assert canonical_name("all") == "ALL"
    with pytest.raises(ValueError):
        canonical_name("NET_RAWR")


def test_parse_names_dedups_and_names_the_unknown_one() -> None:
    assert parse_names(["net_raw", "CAP_NET_RAW", "SYS_ADMIN"]) == ("NET_RAW", "SYS_ADMIN")
    with pytest.raises(UnknownCapability) as info:
        parse_names(["NET_RAW", "CAP_SYS_ADMN"])
    assert (info.value.index, info.value.name) == (1, "CAP_SYS_ADMN")
    with pytest.raises(ValueError, match="a list of capability names"):
        parse_names("NET_RAW")
    with pytest.raises(ValueError, match="a list of capability names"):
        parse_names([13])


def test_the_container_default_is_podmans() -> None:
    assert unit_caps(True, (), ()) == CONTAINER_DEFAULT == caps(
        "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "NET_BIND_SERVICE",
        "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT",
    )  # fmt: skip
    # docker's has three more
    assert caps(*DOCKER_DEFAULT) - CONTAINER_DEFAULT == caps("AUDIT_WRITE", "MKNOD", "NET_RAW")


def test_add_and_drop_like_docker() -> None:
    assert unit_caps(True, ("NET_RAW",), ("CHOWN",)) == (CONTAINER_DEFAULT | caps("NET_RAW")) - caps("CHOWN")
    assert unit_caps(True, ("NET_BIND_SERVICE",), ("ALL",)) == caps("NET_BIND_SERVICE")
    assert unit_caps(True, (), ("ALL",)) == frozenset()
    assert unit_caps(True, ("ALL",), ("SYS_ADMIN",)) == ALL_CAPS - caps("SYS_ADMIN")


def test_plain_units_keep_root_unless_told() -> None:
    assert unit_caps(False, (), ()) is None
    assert unit_caps(False, (), ("NET_RAW", "SYS_ADMIN")) == ALL_CAPS - caps("NET_RAW", "SYS_ADMIN")
    assert unit_caps(False, ("NET_RAW",), ("ALL",)) == caps("NET_RAW")


def test_names_of() -> None:
    assert names_of(caps("KILL", "CHOWN")) == ("CAP_CHOWN", "CAP_KILL")
