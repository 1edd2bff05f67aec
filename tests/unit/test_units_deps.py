"""The after/requires graph: unknown names, cycles, start order, dependents."""

from __future__ import annotations

from pathlib import Path

from supervisor.units.deps import check, dependents, start_order
from supervisor.units.model import ExecSpec, Unit, UnitSection


def unit(name: str, after: tuple[str, ...] = (), requires: tuple[str, ...] = ()) -> Unit:
    return Unit(
        name=name,
        file=Path(f"/u/{name}.toml"),
        exec=ExecSpec(command=("/bin/true",)),
        unit=UnitSection(after=after, requires=requires),
    )


def graph(*units: Unit) -> dict[str, Unit]:
    return {u.name: u for u in units}


def test_no_problems() -> None:
    assert check(graph(unit("web", after=("db",), requires=("db",)), unit("db"))) == {}


def test_unknown_dependencies_are_named() -> None:
    problems = check(graph(unit("web", after=("cache",), requires=("db",))))
    assert problems == {"web": 'requires unknown unit "db"; after unknown unit "cache"'}


def test_two_cycle_every_member_gets_its_own_cycle() -> None:
    problems = check(graph(unit("a", after=("b",)), unit("b", requires=("a",)), unit("c", after=("a",))))
    assert problems == {"a": "dependency cycle: a -> b -> a", "b": "dependency cycle: b -> a -> b"}


def test_three_cycle_and_a_bystander() -> None:
    units = graph(unit("a", after=("b",)), unit("b", after=("c",)), unit("c", requires=("a",)), unit("d", after=("c",)))
    problems = check(units)
    assert problems == {
        "a": "dependency cycle: a -> b -> c -> a",
        "b": "dependency cycle: b -> c -> a -> b",
        "c": "dependency cycle: c -> a -> b -> c",
    }


def test_self_dependency_is_a_cycle() -> None:
    # The parser refuses this, but units built in code must still be caught.
    assert check(graph(unit("a", after=("a",)))) == {"a": "dependency cycle: a -> a"}


def test_cycle_and_unknown_together() -> None:
    problems = check(graph(unit("a", requires=("b", "zz")), unit("b", after=("a",))))
    assert problems["a"] == 'requires unknown unit "zz"; dependency cycle: a -> b -> a'


def test_long_chain_does_not_hit_the_recursion_limit() -> None:
    names = [f"u{i:05d}" for i in range(3000)]
    units = graph(*(unit(n, after=(names[i + 1],) if i + 1 < len(names) else ()) for i, n in enumerate(names)))
    assert check(units) == {}
    assert start_order(units) == list(reversed(names))


def test_start_order_puts_dependencies_first_and_is_stable_by_name() -> None:
    units = graph(
        unit("web", after=("db", "cache")),
        unit("db"),
        unit("cache", requires=("db",)),
        unit("batch"),
        unit("zeta"),
    )
    assert start_order(units) == ["batch", "db", "cache", "web", "zeta"]


def test_start_order_ignores_unknown_and_lists_cycle_members_last() -> None:
    units = graph(unit("a", after=("b",)), unit("b", after=("a",)), unit("c", after=("ghost",)))
    assert start_order(units) == ["c", "a", "b"]


def test_dependents_are_transitive_over_requires_only() -> None:
    units = graph(
        unit("db"),
        unit("api", requires=("db",)),
        unit("web", requires=("api",)),
        unit("metrics", after=("db",)),  # ordering only: does not stop with db
        unit("other"),
    )
    assert dependents(units, "db") == {"api", "web"}
    assert dependents(units, "web") == set()
    assert dependents(units, "ghost") == set()


def test_dependents_terminate_on_cycles() -> None:
    units = graph(unit("a", requires=("b",)), unit("b", requires=("a",)))
    assert dependents(units, "a") == {"b"}
