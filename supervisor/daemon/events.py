"""The event bus: every state transition and policy action is an event.

Events are kept in a bounded ring (for `supctl events -n N`) and fanned out to
live subscribers (`supctl events -f`). A subscriber that does not keep up is
dropped rather than allowed to slow the daemon down.
"""

from __future__ import annotations

import contextlib
import time
from collections import deque
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

import anyio
import structlog
from anyio.abc import ObjectReceiveStream, ObjectSendStream

log = structlog.get_logger()

RING_SIZE = 2000
SUBSCRIBER_BUFFER = 1000


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).isoformat(timespec="milliseconds")


class EventBus:
    def __init__(self) -> None:
        self._ring: deque[dict[str, Any]] = deque(maxlen=RING_SIZE)
        self._subscribers: set[ObjectSendStream[dict[str, Any]]] = set()

    def emit(self, unit: str, event: str, reason: str, **fields: Any) -> dict[str, Any]:
        record = {"time": iso(time.time()), "unit": unit, "event": event, "reason": reason, **fields}
        self._ring.append(record)
        log.info("unit_" + event.replace("-", "_"), unit=unit, reason=reason, **fields)
        for send in list(self._subscribers):
            try:
                send.send_nowait(record)
            except (anyio.WouldBlock, anyio.BrokenResourceError, anyio.ClosedResourceError):
                self._subscribers.discard(send)
                send.close()
        return record

    def recent(self, n: int) -> list[dict[str, Any]]:
        if n <= 0:
            return []
        return list(self._ring)[-n:]

    @contextlib.contextmanager
    def subscribe(self) -> Iterator[ObjectReceiveStream[dict[str, Any]]]:
        send, receive = anyio.create_memory_object_stream[dict[str, Any]](SUBSCRIBER_BUFFER)
        self._subscribers.add(send)
        try:
            yield receive
        finally:
            self._subscribers.discard(send)
            send.close()
            receive.close()
