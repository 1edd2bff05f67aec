"""Pure OCI parsing: index/tag selection, nested index platforms, manifests,
configs, member-name safety and image references."""

from __future__ import annotations

from typing import Any

import pytest

from supervisor.rootfs.errors import ImageError
from supervisor.rootfs.oci import (
    MEDIA_DOCKER_LAYER_GZIP,
    MEDIA_LAYER_GZIP,
    MEDIA_OCI_MANIFEST,
    REF_NAME_ANNOTATION,
    Healthcheck,
    ImageConfig,
    clean_member_name,
    layer_ids_for,
    parse_config,
    parse_descriptor,
    parse_index,
    parse_manifest,
    select_by_tag,
    select_platform,
)
from supervisor.rootfs.store import parse_image_ref

D1 = "sha256:" + "1" * 64
D2 = "sha256:" + "2" * 64
D3 = "sha256:" + "3" * 64


def desc(digest: str, media: str = MEDIA_OCI_MANIFEST, tag: str | None = None, plat: tuple[str, str] | None = None) -> dict[str, Any]:
    d: dict[str, Any] = {"mediaType": media, "digest": digest, "size": 10}
    if tag:
        d["annotations"] = {REF_NAME_ANNOTATION: tag}
    if plat:
        d["platform"] = {"os": plat[0], "architecture": plat[1]}
    return d


def test_select_by_tag_finds_the_annotated_manifest() -> None:
    index = parse_index({"schemaVersion": 2, "manifests": [desc(D1, tag="a"), desc(D2, tag="b")]}, "index.json")
    assert select_by_tag(index, "b", "index.json").digest == D2


def test_missing_tag_lists_available_tags() -> None:
    index = parse_index({"manifests": [desc(D1, tag="v1"), desc(D2, tag="v2")]}, "img/index.json")
    with pytest.raises(ImageError) as info:
        select_by_tag(index, "v3", "img/index.json")
    assert str(info.value) == 'img/index.json: tag "v3" not found; available tags: v1, v2'


def test_nested_index_picks_linux_of_the_host_arch() -> None:
    nested = parse_index(
        {"manifests": [desc(D1, plat=("linux", "arm64")), desc(D2, plat=("linux", "amd64"))]}, "blob"
    )
    assert select_platform(nested, "amd64", "blob", D3).digest == D2
    with pytest.raises(ImageError, match="no manifest for linux/s390x; platforms: linux/arm64, linux/amd64"):
        select_platform(nested, "s390x", "blob", D3)


def test_bad_digest_in_a_descriptor_is_refused() -> None:
    with pytest.raises(ImageError, match=r"manifests\[0\].digest: expected"):
        parse_index({"manifests": [desc("sha256:../../etc/passwd")]}, "index.json")


def test_negative_size_is_refused() -> None:
    with pytest.raises(ImageError, match="size: expected a byte count"):
        parse_descriptor({"mediaType": "x", "digest": D1, "size": -1}, "f", "config")


def test_manifest_with_gzip_and_docker_layers() -> None:
    m = parse_manifest(
        {"config": desc(D1, "application/vnd.oci.image.config.v1+json"), "layers": [desc(D2, MEDIA_LAYER_GZIP), desc(D3, MEDIA_DOCKER_LAYER_GZIP)]},
        D1,
        "blob",
    )
    assert [layer.digest for layer in m.layers] == [D2, D3]


def test_manifest_with_an_unknown_layer_type_is_refused() -> None:
    with pytest.raises(ImageError, match=r"layers\[0\].mediaType: expected one of"):
        parse_manifest({"config": desc(D1), "layers": [desc(D2, "application/x-squashfs")]}, D1, "blob")


def test_config_exposes_env_cmd_entrypoint_workdir_user() -> None:
    config, diff_ids, created = parse_config(
        {
            "created": "2024-01-01T00:00:00Z",
            "config": {"Env": ["PATH=/bin"], "Cmd": ["sh"], "Entrypoint": ["/init"], "WorkingDir": "/srv", "User": "app"},
            "rootfs": {"type": "layers", "diff_ids": [D2]},
        },
        "blob",
        D1,
    )
    assert config == ImageConfig(env=("PATH=/bin",), cmd=("sh",), entrypoint=("/init",), working_dir="/srv", user="app")
    assert ImageConfig.from_json(config.to_json()) == config
    assert diff_ids == (D2,) and created == "2024-01-01T00:00:00Z"


def test_config_stop_signal_and_healthcheck() -> None:
    check = {"Test": ["CMD", "/bin/check"], "Interval": 5_000_000_000, "Timeout": 0, "StartPeriod": 0, "Retries": 2}
    config, _diff_ids, _created = parse_config({"config": {"StopSignal": "SIGQUIT", "Healthcheck": check}}, "blob", D1)
    assert config.stop_signal == "SIGQUIT"
    assert config.healthcheck == Healthcheck(test=("CMD", "/bin/check"), interval_ns=5_000_000_000, retries=2)
    assert config.to_json()["Healthcheck"] == check


@pytest.mark.parametrize(
    ("runtime", "message"),
    [
        ({"Env": "PATH=/bin"}, "config.Env: expected a list of strings"),
        ({"Cmd": ["sh", 1]}, "config.Cmd: expected a list of strings"),
        ({"User": 0}, "config.User: expected a string"),
        ({"Healthcheck": ["CMD", "x"]}, "config.Healthcheck: expected an object"),
        ({"Healthcheck": {"Retries": -1}}, "config.Healthcheck.Retries: expected a count"),
    ],
)
def test_config_values_of_the_wrong_type_name_the_key(runtime: dict[str, object], message: str) -> None:
    with pytest.raises(ImageError) as info:
        parse_config({"config": runtime}, "blob", D1)
    assert message in str(info.value) and info.value.digest == D1


def test_layer_ids_prefer_diff_ids_when_complete() -> None:
    m = parse_manifest({"config": desc(D1), "layers": [desc(D2, MEDIA_LAYER_GZIP)]}, D1, "blob")
    assert layer_ids_for(m, [D3]) == (D3,)
    assert layer_ids_for(m, []) == (D2,)


@pytest.mark.parametrize("name", ["/etc/passwd", "../x", "a/../../x", "a/b/../../../x"])
def test_escaping_member_names_are_refused(name: str) -> None:
    with pytest.raises(ValueError):
        clean_member_name(name)


def test_member_names_are_normalised() -> None:
    assert clean_member_name("./etc//passwd") == ("etc", "passwd")
    assert clean_member_name("./") == ()


def test_image_ref_splits_dir_and_tag() -> None:
    assert str(parse_image_ref("/var/lib/images/alpine:3.20")[0]) == "/var/lib/images/alpine"
    assert parse_image_ref("/var/lib/images/alpine:3.20")[1] == "3.20"
    for bad in ("alpine:3.20", "/var/lib/images/alpine", "/a:b/c"):
        with pytest.raises(ImageError, match="expected"):
            parse_image_ref(bad)
