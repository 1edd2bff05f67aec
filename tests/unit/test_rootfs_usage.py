"""Who uses which stored image, shared sizes and the layers removal keeps (pure)."""

from __future__ import annotations

from supervisor.rootfs.oci import ImageConfig
from supervisor.rootfs.store import Image
from supervisor.rootfs.usage import UnitImage, image_rows, kept_layers, users_by_digest

L1, L2, L3, L4 = (f"sha256:{c * 64}" for c in "1234")


def image(tag: str, digest_char: str, layers: tuple[str, ...], sizes: tuple[int, ...] | None = None) -> Image:
    return Image(
        name=f"/srv/img:{tag}",
        tag=tag,
        digest=f"sha256:{digest_char * 64}",
        layers=layers,
        size=sum(sizes or ()),
        created=None,
        config=ImageConfig(),
        refs=(f"/srv/img:{tag}",),
        layer_sizes=sizes if sizes is not None else tuple(100 * (i + 1) for i in range(len(layers))),
    )


V1 = image("v1", "a", (L1, L2), (1000, 200))
V2 = image("v2", "b", (L1, L2, L3), (1000, 200, 30))
OTHER = image("other", "c", (L4,), (5,))


def test_shared_size_counts_layers_another_image_uses() -> None:
    rows = {row["tag"]: row for row in image_rows([V1, V2, OTHER], {})}
    assert rows["v1"]["shared_size"] == 1200
    assert rows["v2"]["shared_size"] == 1200
    assert rows["other"]["shared_size"] == 0
    assert all(row["units"] == [] for row in rows.values())


def test_a_record_without_layer_sizes_has_no_shared_size() -> None:
    old = image("old", "d", (L1,), ())
    rows = {row["tag"]: row for row in image_rows([V1, old], {})}
    assert rows["old"]["shared_size"] is None
    assert rows["v1"]["shared_size"] == 1000  # L1 is shared with the old record all the same


def test_units_go_by_the_digest_their_layout_names_now() -> None:
    units = [UnitImage("web", "/srv/img:v2", V2.digest), UnitImage("db", "/srv/img:v1", V1.digest),
             UnitImage("api", "/srv/img:v2", V2.digest)]
    users = users_by_digest([V1, V2], units)
    assert users == {V2.digest: ("api", "web"), V1.digest: ("db",)}
    rows = {row["tag"]: row for row in image_rows([V1, V2], users)}
    assert rows["v2"]["units"] == ["api", "web"] and rows["v1"]["units"] == ["db"]


def test_a_unit_whose_layout_is_unreadable_holds_every_image_recorded_under_its_name() -> None:
    retagged = image("v1", "e", (L4,), (1,))  # the tag moved: two records carry the name
    users = users_by_digest([V1, retagged, V2], [UnitImage("db", "/srv/img:v1", None)])
    assert users == {V1.digest: ("db",), retagged.digest: ("db",)}


def test_kept_layers_are_those_of_used_images_and_named_store_layers() -> None:
    users = {V1.digest: ("db",)}
    assert kept_layers([V1, V2, OTHER], users) == {L1, L2}
    assert kept_layers([V1, V2, OTHER], {}, [L4]) == {L4}
