"""The dependency graph of units: `after` (ordering) and `requires` (ordering
plus stopping together). Unknown names and cycles are per-unit errors; the
start order is topological and stable by name. Pure.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Mapping

from supervisor.units.model import Unit


def _edges(unit: Unit) -> tuple[str, ...]:
    """What `unit` waits for: after ∪ requires, in a stable order."""
    return tuple(sorted(set(unit.unit.after) | set(unit.unit.requires)))


def _known_edges(units: Mapping[str, Unit]) -> dict[str, tuple[str, ...]]:
    return {name: tuple(d for d in _edges(unit) if d in units) for name, unit in units.items()}


def check(units: Mapping[str, Unit]) -> dict[str, str]:
    """Per unit name, what is wrong with its dependencies (absent when nothing is)."""
    problems: dict[str, list[str]] = {}
    for name in sorted(units):
        section = units[name].unit
        for kind, targets in (("requires", section.requires), ("after", section.after)):
            for target in targets:
                if target not in units:
                    problems.setdefault(name, []).append(f'{kind} unknown unit "{target}"')
    graph = _known_edges(units)
    for component in _strongly_connected(graph):
        if len(component) == 1:
            (only,) = component
            if only not in graph[only]:
                continue
        for name in sorted(component):
            cycle = _shortest_cycle(graph, name, component)
            problems.setdefault(name, []).append("dependency cycle: " + " -> ".join(cycle))
    return {name: "; ".join(messages) for name, messages in problems.items()}


def _strongly_connected(graph: Mapping[str, tuple[str, ...]]) -> list[frozenset[str]]:
    """Tarjan's algorithm, iterative so that long chains can't hit the recursion limit."""
    index: dict[str, int] = {}
    lowlink: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[frozenset[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work: list[tuple[str, int]] = [(root, 0)]
        while work:
            node, child_pos = work.pop()
            if child_pos == 0:
                index[node] = lowlink[node] = counter
                counter += 1
                stack.append(node)
                on_stack.add(node)
            children = graph[node]
            if child_pos < len(children):
                work.append((node, child_pos + 1))
                child = children[child_pos]
                if child not in index:
                    work.append((child, 0))
                elif child in on_stack:
                    lowlink[node] = min(lowlink[node], index[child])
                continue
            if work:
                parent = work[-1][0]
                lowlink[parent] = min(lowlink[parent], lowlink[node])
            if lowlink[node] == index[node]:
                members: set[str] = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    members.add(member)
                    if member == node:
                        break
                components.append(frozenset(members))
    return components


def _shortest_cycle(graph: Mapping[str, tuple[str, ...]], start: str, within: frozenset[str]) -> list[str]:
    """The shortest path start -> ... -> start inside one strongly connected component."""
    previous: dict[str, str] = {}
    queue = deque([start])
    seen = {start}
    while queue:
        node = queue.popleft()
        for child in graph[node]:
            if child not in within:
                continue
            if child == start:
                path = [node]
                while path[-1] != start:
                    path.append(previous[path[-1]])
                return [start, *reversed(path[:-1]), start]
            if child not in seen:
                seen.add(child)
                previous[child] = node
                queue.append(child)
    raise AssertionError(f"{start} is in a strongly connected component without a cycle")


def start_order(units: Mapping[str, Unit]) -> list[str]:
    """Every unit, dependencies first; ties broken by name.

    Unknown dependencies are ignored here (`check` reports them); units caught
    in a cycle come last, by name, so the caller still sees every unit.
    """
    graph = _known_edges(units)
    waiting_on = {name: len(deps) for name, deps in graph.items()}
    dependents_of: dict[str, list[str]] = {name: [] for name in graph}
    for name, deps in graph.items():
        for dep in deps:
            dependents_of[dep].append(name)
    ready = [name for name, count in waiting_on.items() if count == 0]
    heapq.heapify(ready)
    order: list[str] = []
    while ready:
        name = heapq.heappop(ready)
        order.append(name)
        for dependent in dependents_of[name]:
            waiting_on[dependent] -= 1
            if waiting_on[dependent] == 0:
                heapq.heappush(ready, dependent)
    placed = set(order)
    return order + sorted(name for name in graph if name not in placed)


def dependents(units: Mapping[str, Unit], name: str) -> set[str]:
    """Units that require `name`, directly or through other units (not `name` itself)."""
    required_by: dict[str, set[str]] = {}
    for unit_name, unit in units.items():
        for target in unit.unit.requires:
            required_by.setdefault(target, set()).add(unit_name)
    found: set[str] = set()
    queue = deque([name])
    while queue:
        for dependent in required_by.get(queue.popleft(), ()):
            if dependent not in found and dependent != name:
                found.add(dependent)
                queue.append(dependent)
    return found
