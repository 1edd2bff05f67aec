"""Which socket supctl asks when --socket is not given: $SUPD_SOCKET, a
packaged supd's /run/supd/supd.sock, then a checkout's own socket."""

from __future__ import annotations

from pathlib import Path

import pytest

from supervisor.api import client


@pytest.fixture
def sockets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    packaged, checkout = tmp_path / "run-supd.sock", tmp_path / "checkout.sock"
    monkeypatch.setattr(client, "DEFAULT_SOCKET", str(packaged))
    monkeypatch.setattr(client, "CHECKOUT_SOCKET", str(checkout))
    monkeypatch.delenv(client.SOCKET_ENV, raising=False)
    return packaged, checkout


def test_the_environment_wins(sockets: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    packaged, checkout = sockets
    packaged.touch()
    checkout.touch()
    monkeypatch.setenv(client.SOCKET_ENV, "/elsewhere.sock")
    assert client.default_socket_path() == "/elsewhere.sock"


def test_a_packaged_supd_wins_over_the_checkout(sockets: tuple[Path, Path]) -> None:
    packaged, checkout = sockets
    packaged.touch()
    checkout.touch()
    assert client.default_socket_path() == str(packaged)


def test_the_checkout_socket_when_no_packaged_one(sockets: tuple[Path, Path]) -> None:
    _packaged, checkout = sockets
    checkout.touch()
    assert client.default_socket_path() == str(checkout)


def test_neither_names_the_packaged_default(sockets: tuple[Path, Path]) -> None:
    packaged, _checkout = sockets
    assert client.default_socket_path() == str(packaged)


def test_no_checkout_no_fallback(sockets: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    packaged, checkout = sockets
    checkout.touch()
    monkeypatch.setattr(client, "CHECKOUT_SOCKET", None)
    assert client.default_socket_path() == str(packaged)
