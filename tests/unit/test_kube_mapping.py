"""The conversions export and import share (supervisor/kube/mapping.py), the
passwd look-up of a named user, and the export route's query."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from supervisor.api.commands import BadRequestError, ExportKubeQuery, parse_export_kube_query
from supervisor.api.routes import export_kube_path
from supervisor.kube import mapping as m
from supervisor.kube.passwd import lookup_user, passwd_ids


@pytest.mark.parametrize(
    ("text", "value"),
    [("64Mi", 64 * 2**20), ("1Gi", 2**30), ("500m", Decimal("0.5")), ("2", 2), (2, 2), ("1.5", Decimal("1.5")),
     ("1k", 1000), ("1M", 10**6), ("1e3", 1000), ("0.5Ki", 512)],
)  # fmt: skip
def test_quantities(text: object, value: object) -> None:
    assert m.parse_quantity(text) == value


@pytest.mark.parametrize("bad", ["", "Mi", "1 Gi", "-1", "1Xi", True, None, [1]])
def test_bad_quantities(bad: object) -> None:
    with pytest.raises(ValueError, match="a quantity"):
        m.parse_quantity(bad)


def test_sizes_cpu_and_names() -> None:
    assert m.memory_quantity(64 * 2**20) == "64Mi" and m.memory_quantity(1000) == "1000"
    assert m.size_text(128 * 2**20) == "128M" and m.size_text(1000) == 1000
    assert m.cpu_quota_quantity(1.5) == "1500m" and m.cpu_quota_quantity(0.0001) == "1m"
    assert m.cpu_weight_quantity(100) == "1000m"
    assert m.weight_from_millicores(1000) == 100 and m.weight_from_millicores(1) == 1 and m.weight_from_millicores(10**7) == 10000
    assert m.percent_from_millicores(1500) == "150%" and m.percent_from_millicores(1) == "0.1%" and m.percent_from_millicores(100) == "10%"
    assert m.kube_name("my_app.v2") == "my-app-v2" and m.kube_name("web-") == "web"
    assert m.duration_text(10.0) == "10s" and m.duration_text(0.1) == "100ms"
    assert m.signal_word(3) == "QUIT" and m.signal_word(34 + 3) == "RTMIN+3"


def test_a_named_user_in_the_topmost_passwd(tmp_path: Path) -> None:
    lower, upper, empty = tmp_path / "lower", tmp_path / "upper", tmp_path / "empty"
    for layer in (lower, upper):
        (layer / "etc").mkdir(parents=True)
    empty.mkdir()
    (lower / "etc" / "passwd").write_text("root:x:0:0::/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n")
    (upper / "etc" / "passwd").write_text("root:x:0:0::/root:/bin/sh\napp:x:2000:2001::/home/app:/bin/sh\n")
    assert lookup_user([lower], "app") == (1000, 1000)
    assert lookup_user([lower, upper, empty], "app") == (2000, 2001)  # the overlay shows upper's
    assert lookup_user([lower, upper], "app:staff") == (2000, 2001)
    assert lookup_user([lower], "bob") is None
    assert lookup_user([empty], "app") is None
    assert passwd_ids("broken\napp:x:notanumber:1\n", "app") is None


def test_the_export_route_query() -> None:
    assert parse_export_kube_query({}) == ExportKubeQuery("pod", None, None)
    assert parse_export_kube_query({"kind": "deployment", "namespace": "shop", "image": "r:5000/a:latest@sha256:ab"}) == ExportKubeQuery(
        "deployment", "shop", "r:5000/a:latest@sha256:ab"
    )
    for query, message in (
        ({"kind": "job"}, "kind: expected pod or deployment"),
        ({"namespace": "Shop"}, "namespace: expected a DNS label"),
        ({"image": "a b"}, "image: expected an image reference"),
        ({"color": "1"}, "unknown query parameters"),
    ):
        with pytest.raises(BadRequestError, match=message):
            parse_export_kube_query(query)
    path = export_kube_path("web", "pod", "shop", "r:5000/web:latest@sha256:ab")
    assert path == "/v1/units/web/kube?kind=pod&namespace=shop&image=r%3A5000%2Fweb%3Alatest%40sha256%3Aab"
