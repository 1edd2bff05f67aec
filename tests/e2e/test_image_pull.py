"""`supctl image pull` and `[rootfs].image = "REF"` against a real registry
(Debian's docker-registry) started here: once plain on 127.0.0.1, once with
htpasswd auth over TLS with a test CA. Images are built with umoci and pushed
with skopeo; supd pulls with skopeo and imports with its own importer."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import REPO, Supd
from tests.e2e.test_containers import container_unit, sh, start_unit
from tests.e2e.test_images import image_list
from tests.helpers.oci import BuiltImage, add_raw_layer, build_busybox_image, umoci
from tests.helpers.registry import Registry, auth_json, make_ca_and_cert


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> BuiltImage:
    return build_busybox_image(tmp_path_factory.mktemp("oci") / "layout", "v1")


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory, image: BuiltImage) -> Iterator[Registry]:
    reg = Registry(tmp_path_factory.mktemp("registry")).start()
    try:
        reg.push(f"oci:{image.layout}:v1", "test/bb:v1")
        yield reg
    finally:
        reg.stop()


@pytest.fixture
def secure(tmp_path: Path, image: BuiltImage) -> Iterator[Registry]:
    reg = Registry(tmp_path / "secure-registry", tls=True, auth=True).start()
    try:
        reg.push(f"oci:{image.layout}:v1", "private/bb:v1")
        yield reg
    finally:
        reg.stop()


def pulled(supd: Supd, *args: str) -> subprocess.CompletedProcess[str]:
    return supd.ctl("image", "pull", *args, timeout=120)


def assert_nothing_left(supd: Supd) -> None:
    """No image record, no unpacked layer, no scratch copy."""
    assert image_list(supd) == []
    layers = supd.state / "layers" / "sha256"
    assert not layers.is_dir() or list(layers.iterdir()) == []
    pulls = supd.state / "pulls"
    assert not pulls.is_dir() or list(pulls.iterdir()) == []


def manifest_digest(registry: Registry, name: str) -> str:
    out = subprocess.run(
        ["skopeo", "inspect", "--tls-verify=false", "--format", "{{.Digest}}", f"docker://{registry.host}/{name}"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()
    assert out.startswith("sha256:")
    return out


def test_pull_by_tag_and_by_digest(supd: Supd, registry: Registry) -> None:
    supd.start()
    ref = f"{registry.host}/test/bb:v1"
    r = pulled(supd, ref)
    assert r.returncode == 0, r.stderr
    digest = manifest_digest(registry, "test/bb:v1")
    assert r.stdout.split() == [f"docker://{ref}", digest]
    assert r.stderr == f"pulling docker://{ref}\n"  # not a terminal: plain lines
    # on a terminal: a progress line that the result replaces
    tty = subprocess.run(
        ["script", "-qec", shlex.join([sys.executable, "-m", "supervisor.cli.main", "image", "pull", ref]), "/dev/null"],
        capture_output=True, env=supd.env(), cwd=REPO, timeout=120,
    )
    assert tty.returncode == 0, tty
    shown = tty.stdout.decode()
    assert f"pulling docker://{ref} …\r\x1b[K" in shown and f"docker://{ref} {digest}" in shown, shown
    [img] = image_list(supd)
    assert img["digest"] == digest and img["name"] == f"docker://{ref}"
    r = supd.ctl("image", "inspect", ref, "--json")  # found by the reference as typed
    assert r.returncode == 0 and json.loads(r.stdout)["digest"] == digest, r.stderr
    assert len(img["layers"]) == 3  # type: ignore[arg-type]
    # by digest, and by tag@digest: the same image, nothing new stored
    for pinned in (f"{registry.host}/test/bb@{digest}", f"{ref}@{digest}"):
        r = pulled(supd, pinned, "--json")
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["digest"] == digest
    [img] = image_list(supd)
    assert set(img["refs"]) >= {f"docker://{ref}", f"docker://{registry.host}/test/bb@{digest}"}  # type: ignore[arg-type]
    assert list((supd.state / "pulls").iterdir()) == []


def test_a_unit_pulls_on_first_start(supd: Supd, registry: Registry) -> None:
    start_unit(supd, "pulled", container_unit(image=f"{registry.host}/test/bb:v1"))
    assert sh(supd, "pulled", "cat /opt/old/c /etc/motd") == "c\nlayered\n"
    assert len(image_list(supd)) == 1
    # pull = "never" on an image that is not there: a clear start failure
    supd.write_unit("never", container_unit(image=f"{registry.host}/test/bb:other", extra_rootfs='pull = "never"'))
    st = supd.wait_state("never", "failed", timeout=30)
    assert "[rootfs].image" in st["error"] and 'pull = "never"' in st["error"], st
    assert f"{registry.host}/test/bb:other" in st["error"], st


def test_bad_reference_in_a_unit_names_file_and_key(supd: Supd) -> None:
    supd.start()
    supd.write_unit("badref", container_unit(image="Busy/Box:1"))
    st = supd.wait_state("badref", "error", timeout=20)
    assert "badref.toml" in st["error"] and "[rootfs].image" in st["error"], st
    assert 'image reference "Busy/Box:1"' in st["error"] and "lowercase" in st["error"], st
    r = pulled(supd, "Busy/Box:1")
    assert r.returncode != 0 and 'image reference "Busy/Box:1"' in r.stderr and "lowercase" in r.stderr, r.stderr


def test_auth_refused_then_accepted_over_tls(supd: Supd, secure: Registry, tmp_path: Path) -> None:
    wrong = auth_json(tmp_path / "wrong.json", secure.host, password="nope")
    right = auth_json(tmp_path / "right.json", secure.host)
    config = tmp_path / "supd.toml"
    config.write_text(f'certs_dir = "{secure.certs_dir()}"\nauth_file = "{tmp_path / "absent.json"}"\n')
    supd.start("--config", str(config))
    ref = f"{secure.host}/private/bb:v1"
    r = pulled(supd, ref)
    assert r.returncode == 1 and ref in r.stderr and "authentication required" in r.stderr, r.stderr
    r = pulled(supd, ref, "--authfile", str(wrong))
    assert r.returncode == 1 and ref in r.stderr and "unauthorized" in r.stderr.lower(), r.stderr
    assert_nothing_left(supd)
    r = pulled(supd, ref, "--authfile", str(right))
    assert r.returncode == 0, r.stderr
    assert len(image_list(supd)) == 1
    # supd.toml's auth_file, once it exists, is what a unit's pull logs in with
    auth_json(tmp_path / "absent.json", secure.host)
    start_unit(supd, "private", container_unit(image=f"{secure.host}/private/bb:v1", extra_rootfs='pull = "always"'))
    assert sh(supd, "private", "cat /opt/old/c") == "c\n"


def test_tls_is_verified_against_the_configured_ca(supd: Supd, secure: Registry, tmp_path: Path) -> None:
    """A CA folder for the registry means verified TLS, even on loopback: a
    CA that did not sign the registry's certificate is refused."""
    wrong_ca, _crt, _key = make_ca_and_cert(tmp_path / "wrong-ca", "127.0.0.1")
    certs = tmp_path / "certs.d"
    (certs / secure.host).mkdir(parents=True)
    (certs / secure.host / "ca.crt").write_bytes(wrong_ca.read_bytes())
    config = tmp_path / "supd.toml"
    config.write_text(f'certs_dir = "{certs}"\n')
    supd.start("--config", str(config))
    right = auth_json(tmp_path / "right.json", secure.host)
    r = pulled(supd, f"{secure.host}/private/bb:v1", "--authfile", str(right))
    assert r.returncode == 1 and secure.host in r.stderr, r.stderr
    assert "certificate signed by unknown authority" in r.stderr, r.stderr
    assert_nothing_left(supd)


def _index_tag(layout: Path, tag: str, source_tag: str, platforms: list[tuple[str, str]]) -> None:
    """Add `tag` to an OCI layout: an image index whose entries all point at
    `source_tag`'s manifest, one per (os, arch)."""
    import hashlib

    index = json.loads((layout / "index.json").read_text())
    [desc] = [m for m in index["manifests"] if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == source_tag]
    body = json.dumps({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {"mediaType": desc["mediaType"], "digest": desc["digest"], "size": desc["size"],
             "platform": {"os": os_name, "architecture": arch}}
            for os_name, arch in platforms
        ],
    }).encode()
    digest = hashlib.sha256(body).hexdigest()
    (layout / "blobs" / "sha256" / digest).write_bytes(body)
    index["manifests"].append({
        "mediaType": "application/vnd.oci.image.index.v1+json", "digest": f"sha256:{digest}", "size": len(body),
        "annotations": {"org.opencontainers.image.ref.name": tag},
    })
    (layout / "index.json").write_text(json.dumps(index))


def test_manifest_list_picks_this_platform_and_other_platforms_only_fail(
    supd: Supd, registry: Registry, image: BuiltImage
) -> None:
    _index_tag(image.layout, "multi", "v1", [("linux", "arm64"), ("linux", "amd64")])
    _index_tag(image.layout, "armonly", "v1", [("linux", "arm64")])
    registry.push(f"oci:{image.layout}:multi", "test/multi:1", "--all")
    registry.push(f"oci:{image.layout}:armonly", "test/armonly:1", "--all")
    supd.start()
    list_digest = manifest_digest(registry, "test/multi:1")
    r = pulled(supd, f"{registry.host}/test/multi@{list_digest}", "--json")
    assert r.returncode == 0, r.stderr
    # pinned to the list, landed as its amd64 entry (the v1 manifest)
    assert json.loads(r.stdout)["digest"] == manifest_digest(registry, "test/bb:v1")
    before = image_list(supd)
    r = pulled(supd, f"{registry.host}/test/armonly:1")
    assert r.returncode == 1 and f"{registry.host}/test/armonly:1" in r.stderr, r.stderr
    assert "amd64" in r.stderr, r.stderr
    assert image_list(supd) == before and list((supd.state / "pulls").iterdir()) == []


def test_docker_archive_oci_archive_and_dir(supd: Supd, image: BuiltImage, tmp_path: Path) -> None:
    tar = tmp_path / "saved.tar"
    subprocess.run(["skopeo", "copy", "--quiet", f"oci:{image.layout}:v1", f"docker-archive:{tar}:test/bb:v1"], check=True)
    oci_tar = tmp_path / "oci.tar"
    subprocess.run(["skopeo", "copy", "--quiet", f"oci:{image.layout}:v1", f"oci-archive:{oci_tar}:v1"], check=True)
    folder = tmp_path / "dir"
    subprocess.run(["skopeo", "copy", "--quiet", f"oci:{image.layout}:v1", f"dir:{folder}"], check=True)
    start_unit(supd, "fromtar", container_unit(image=f"docker-archive:{tar}"))
    assert sh(supd, "fromtar", "cat /opt/old/c") == "c\n"
    r = pulled(supd, f"oci-archive:{oci_tar}:v1")
    assert r.returncode == 0, r.stderr
    start_unit(supd, "fromdir", container_unit(image=f"dir:{folder}"))
    assert sh(supd, "fromdir", "cat /opt/old/c") == "c\n"
    refs = {ref for img in image_list(supd) for ref in img["refs"]}  # type: ignore[attr-defined]
    assert {f"docker-archive:{tar}", f"oci-archive:{oci_tar}:v1", f"dir:{folder}"} <= refs, refs


def test_bad_pulls_are_clear_and_leave_nothing(supd: Supd, registry: Registry, tmp_path: Path) -> None:
    supd.start()
    cases = [
        (f"{registry.host}/test/bb:nope", "manifest unknown"),
        (f"{registry.host}/test/nothing:v1", "manifest unknown"),
        (f"127.0.0.1:{registry.port + 1 if registry.port < 65535 else 1}/test/bb:v1", "connection refused"),
        (f"{registry.host}/test/bb@sha256:{'0' * 64}", "manifest unknown"),
    ]
    for ref, cause in cases:
        r = pulled(supd, ref)
        assert r.returncode == 1, r
        assert ref in r.stderr and cause in r.stderr, (ref, r.stderr)
        assert "Traceback" not in r.stderr
    assert_nothing_left(supd)
    assert supd.ctl("list").returncode == 0


def test_corrupt_blob_and_corrupt_manifest(supd: Supd, tmp_path: Path, image: BuiltImage) -> None:
    reg = Registry(tmp_path / "corrupt-registry").start()
    try:
        reg.push(f"oci:{image.layout}:v1", "test/bb:v1")
        digest = manifest_digest(reg, "test/bb:v1")
        supd.start()
        blobs = {p.parent.name: p for p in reg.blob_files()}
        manifest = blobs.pop(digest.split(":")[1])
        # a layer blob truncated in the registry's storage: skopeo's digest check refuses it
        layer = max(blobs.values(), key=lambda p: p.stat().st_size)
        original = layer.read_bytes()
        layer.write_bytes(original[: len(original) // 2])
        r = pulled(supd, f"{reg.host}/test/bb:v1")
        assert r.returncode == 1 and f"{reg.host}/test/bb:v1" in r.stderr, r.stderr
        assert_nothing_left(supd)
        layer.write_bytes(original)
        # a manifest that is not what its digest says: a pinned pull refuses it
        text = manifest.read_bytes()
        manifest.write_bytes(text.replace(b'"schemaVersion": 2', b'"schemaVersion":2 ') if b'"schemaVersion": 2' in text else text + b" ")
        r = pulled(supd, f"{reg.host}/test/bb@{digest}")
        assert r.returncode == 1 and digest in r.stderr, r.stderr
        assert "digest" in r.stderr.lower(), r.stderr
        assert_nothing_left(supd)
    finally:
        reg.stop()


def test_disk_full_during_a_pull(supd: Supd, registry: Registry) -> None:
    supd.start()
    pulls = supd.state / "pulls"
    pulls.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "supdtest-pulls", str(pulls)], check=True)
    try:
        r = pulled(supd, f"{registry.host}/test/bb:v1")
        assert r.returncode == 1 and f"{registry.host}/test/bb:v1" in r.stderr, r.stderr
        assert "no space left on device" in r.stderr, r.stderr
        assert_nothing_left(supd)
    finally:
        subprocess.run(["umount", str(pulls)], check=True)
    # the copy fits, the unpacked layers do not: no image recorded
    layers = supd.state / "layers"
    layers.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k", "supdtest-layers", str(layers)], check=True)
    try:
        r = pulled(supd, f"{registry.host}/test/bb:v1")
        assert r.returncode == 1 and f"{registry.host}/test/bb:v1" in r.stderr, r.stderr
        assert "No space left on device" in r.stderr, r.stderr
        assert image_list(supd) == [] and list((supd.state / "pulls").iterdir()) == []
        assert list((layers / "tmp").iterdir()) == []  # the half-unpacked layer is gone
    finally:
        subprocess.run(["umount", str(layers)], check=True)
    assert supd.ctl("list").returncode == 0


def test_pull_always_follows_a_moved_tag_and_layouts_are_imported_not_pulled(
    supd: Supd, registry: Registry, image: BuiltImage
) -> None:
    add_raw_layer(image.layout, "v1", {"moved/": None, "moved/yes": b"v2\n"}, image.layout.parent / "work", new_tag="moved")
    registry.push(f"oci:{image.layout}:v1", "test/moving:1")
    ref = f"{registry.host}/test/moving:1"
    start_unit(supd, "always", container_unit(image=ref, extra_rootfs='pull = "always"'))
    assert sh(supd, "always", "ls /moved 2>&1 || echo none").strip().endswith("none")
    registry.push(f"oci:{image.layout}:moved", "test/moving:1")
    r = supd.ctl("restart", "always", timeout=60)
    assert r.returncode == 0, r.stderr
    supd.wait_state("always", "running", timeout=30)
    assert sh(supd, "always", "cat /moved/yes") == "v2\n"
    # the name moved: one image answers to it
    named = [img for img in image_list(supd) if f"docker://{ref}" in img["refs"]]  # type: ignore[operator]
    assert len(named) == 1 and named[0]["digest"] == manifest_digest(registry, "test/moving:1")
    r = pulled(supd, str(image.layout) + ":v1")
    assert r.returncode == 2 and "supctl image import" in r.stderr, r.stderr


def test_a_pulled_images_config_runs_when_the_unit_gives_no_command(
    supd: Supd, registry: Registry, image: BuiltImage
) -> None:
    umoci(
        "config", "--image", f"{image.layout}:v1", "--tag", "withcmd",
        "--config.cmd", "/bin/sh", "--config.cmd", "-c", "--config.cmd", "echo $GREETING > /tmp/said; exec sleep 1000",
        "--config.env", "GREETING=from the registry",
    )
    registry.push(f"oci:{image.layout}:withcmd", "test/withcmd:1")
    unit = f'[rootfs]\nimage = "{registry.host}/test/withcmd:1"\nwritable = "ephemeral"\n[stop]\ntimeout = "5s"\n'
    start_unit(supd, "fromcmd", unit)
    assert sh(supd, "fromcmd", "cat /tmp/said") == "from the registry\n"
