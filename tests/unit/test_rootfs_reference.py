"""Docker reference parsing and normalisation, and how an image value is told
apart from an OCI layout (pure, no root)."""

from __future__ import annotations

from pathlib import Path

import pytest

from supervisor.rootfs.reference import ReferenceError, parse_reference
from supervisor.rootfs.source import image_source, is_layout, registry_reference

D = "sha256:" + "ab" * 32


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("busybox", "docker.io/library/busybox:latest"),
        ("busybox:1.36", "docker.io/library/busybox:1.36"),
        ("library/busybox", "docker.io/library/busybox:latest"),
        ("user/app:v2", "docker.io/user/app:v2"),
        ("docker.io/busybox", "docker.io/library/busybox:latest"),
        ("index.docker.io/busybox", "docker.io/library/busybox:latest"),
        ("quay.io/a/b/c:1", "quay.io/a/b/c:1"),
        ("localhost/app", "localhost/app:latest"),
        ("localhost:5000/app:x", "localhost:5000/app:x"),
        ("127.0.0.1:5000/a/b", "127.0.0.1:5000/a/b:latest"),
        ("[::1]:5000/app", "[::1]:5000/app:latest"),
        (f"busybox@{D}", f"docker.io/library/busybox@{D}"),
        (f"busybox:1@{D}", f"docker.io/library/busybox:1@{D}"),
        ("my-registry.example:443/a_b__c/d-e.f:T_1.x-y", "my-registry.example:443/a_b__c/d-e.f:T_1.x-y"),
        (f"busybox@sha256:{'AB' * 32}", f"docker.io/library/busybox@{D}"),
    ],
)
def test_normalised(ref: str, expected: str) -> None:
    assert str(parse_reference(ref)) == expected


def test_fields() -> None:
    r = parse_reference(f"127.0.0.1:5000/team/app:v1@{D}")
    assert (r.registry, r.repository, r.tag, r.digest) == ("127.0.0.1:5000", "team/app", "v1", D)
    assert r.host == "127.0.0.1" and r.is_local()
    assert parse_reference("localhost:1/a").is_local()
    assert parse_reference("[::1]:1/a").host == "::1" and parse_reference("[::1]:1/a").is_local()
    assert not parse_reference("busybox").is_local()
    assert not parse_reference("10.0.0.1:5000/a").is_local()
    assert parse_reference(f"a@{D}").tag is None


@pytest.mark.parametrize(
    ("ref", "cause"),
    [
        ("", "non-empty"),
        ("Busybox", "must be lowercase"),
        ("quay.io/Team/app", "must be lowercase"),
        ("busy box", "white space"),
        ("busybox:", "tag"),
        ("busybox:-x", 'tag "-x"'),
        ("busybox:" + "x" * 129, "tag"),
        ("busybox@", "expected a digest"),
        ("busybox@sha256:abc", "64 hex digits, not 3"),
        ("busybox@sha256:" + "g" * 64, "expected"),
        ("busybox@md5:" + "a" * 32, 'unsupported algorithm "md5"'),
        ("a//b", 'part ""'),
        ("a/-b", 'part "-b"'),
        ("a/b_", 'part "b_"'),
        ("127.0.0.1:99999/a", "port must be a number"),
        ("127.0.0.1:/a", "port number"),
        ("[::1/a", 'closing "]"'),
        ("[zz]:1/a", "not an IPv6 address"),
        ("docker://busybox", "transport prefix"),
        ("x.io/" + "a" * 300, "longer than"),
    ],
)
def test_bad_syntax_names_reference_and_cause(ref: str, cause: str) -> None:
    with pytest.raises(ReferenceError) as info:
        parse_reference(ref)
    assert f'image reference "{ref}"' in str(info.value)
    assert cause in str(info.value)


def test_sources(tmp_path: Path) -> None:
    layout = tmp_path / "images" / "alpine"
    layout.mkdir(parents=True)
    (layout / "oci-layout").write_text("{}")
    # an existing layout, relative to the unit's folder: a layout, as before
    assert image_source("images/alpine:3.20", tmp_path) == f"{layout}:3.20"
    assert is_layout(image_source("images/alpine:3.20", tmp_path))
    # explicit paths are layouts even when absent (the start then says so)
    assert image_source("./nope:1", tmp_path) == f"{tmp_path}/nope:1"
    assert image_source("/abs/x:1", tmp_path) == "/abs/x:1"
    assert image_source("oci:x:1", tmp_path) == f"{tmp_path}/x:1"
    # anything else is a registry reference
    assert image_source("busybox", tmp_path) == "docker://docker.io/library/busybox:latest"
    assert image_source("images/missing:1", tmp_path) == "docker://docker.io/images/missing:1"
    assert image_source("docker://localhost:5000/a", tmp_path) == "docker://localhost:5000/a:latest"
    assert registry_reference("docker://localhost:5000/a:latest") == "localhost:5000/a:latest"
    assert registry_reference(f"{tmp_path}/x:1") is None
    # archives and dir: go through skopeo, paths made absolute
    assert image_source("docker-archive:b.tar", tmp_path) == f"docker-archive:{tmp_path}/b.tar"
    assert image_source("oci-archive:b.tar:v1", tmp_path) == f"oci-archive:{tmp_path}/b.tar:v1"
    assert image_source("dir:/d", tmp_path) == "dir:/d"
    with pytest.raises(ReferenceError, match='"Upper/case"'):
        image_source("Upper/case", tmp_path)
