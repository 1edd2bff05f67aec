"""The .deb from packaging/build-deb.sh, checked without installing it:
lintian reports nothing but the overridden /opt venv tags, and the package
holds what packaging/README.md says it does (copyright for every bundled
distribution, changelog, docs, man pages, completions, no byte-code).

Installing it under a real systemd is tests/systemd/test_service.py.
"""

from __future__ import annotations

import gzip
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

from tests.helpers.deb import REPO, built_deb

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

# the only tags packaging/lintian-overrides may silence (the venv under /opt,
# packaging/README.md "Decisions")
OVERRIDDEN = {"dir-or-file-in-opt", "unusual-interpreter"}
LINTIAN_TIMEOUT = 600.0


@pytest.fixture(scope="module")
def deb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return built_deb(tmp_path_factory)


@pytest.fixture(scope="module")
def tree(deb: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("deb-tree")
    subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
    subprocess.run(["dpkg-deb", "-e", str(deb), str(root / "DEBIAN")], check=True)
    return root


def control(tree: Path) -> dict[str, str]:
    fields: dict[str, str] = {}
    for line in (tree / "DEBIAN" / "control").read_text().splitlines():
        if line and not line[0].isspace():
            key, _, value = line.partition(":")
            fields[key] = value.strip()
    return fields


def pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def test_lintian_reports_nothing_but_the_overridden_venv_tags(deb: Path) -> None:
    if shutil.which("lintian") is None:
        pytest.fail("lintian is missing: apt-get install lintian (make test installs it, Makefile APT_PACKAGES)")
    res = subprocess.run(
        # one run: overridden tags shown (as O:), the status only for lintian
        # failing to run; what it reports is judged from its output below
        ["lintian", "--tag-display-limit", "0", "--show-overrides", "--fail-on", "none", str(deb)],
        capture_output=True,
        text=True,
        timeout=LINTIAN_TIMEOUT,
        check=False,
    )
    lines = [line for line in res.stdout.splitlines() if re.match(r"^[EWIPXO]: ", line)]
    reported = [line for line in lines if line[0] in "EW"]
    assert res.returncode == 0, f"lintian exited {res.returncode}:\n{res.stdout[-4000:]}\n{res.stderr[-4000:]}"
    assert not reported, "lintian:\n" + "\n".join(reported)
    overridden = {line.split()[2] for line in lines if line.startswith("O: ")}
    # the override is for the venv and nothing else; and it is still needed
    assert overridden == OVERRIDDEN, overridden


def test_control_fields_come_from_pyproject(tree: Path) -> None:
    fields, project = control(tree), pyproject()
    author = project["authors"][0]
    assert fields["Maintainer"] == f"{author['name']} <{author['email']}>"
    assert "localhost" not in fields["Maintainer"]
    assert fields["Homepage"] == project["urls"]["Homepage"]
    assert "example.invalid" not in fields["Homepage"]
    assert fields["Version"] == project["version"]
    depends = [d.strip() for d in fields["Depends"].split(",")]
    # the compiled extensions' C library, computed by dpkg-shlibdeps
    assert any(re.fullmatch(r"libc6 \(>= [0-9.]+\)", d) for d in depends), depends
    # `[rootfs].image` pulls with skopeo: the README's container example needs it
    assert "skopeo" in depends


def test_no_byte_code_is_shipped(tree: Path) -> None:
    shipped = [p for p in tree.rglob("*") if p.name == "__pycache__" or p.suffix == ".pyc"]
    assert not shipped, shipped[:5]
    # postinst compiles the venv where it is installed (and prerm removes it)
    assert "compileall" in (tree / "DEBIAN" / "postinst").read_text()
    assert "__pycache__" in (tree / "DEBIAN" / "prerm").read_text()


def test_copyright_names_every_bundled_distribution(tree: Path) -> None:
    copyright = (tree / "usr/share/doc/supd/copyright").read_text()
    assert copyright.startswith("Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n")
    assert f"License: {pyproject()['license']}\n" in copyright
    site = next(tree.glob("opt/supd/lib/python3*/site-packages"))
    bundled = sorted(d.name for d in site.glob("*.dist-info") if not d.name.startswith("supd-"))
    assert bundled, "no dependency in the venv?"
    for dist_info in bundled:
        # each has a Files paragraph naming its dist-info, then a Copyright and a License
        paragraph = re.search(rf"^Files: .*?{re.escape(dist_info)}/\*.*?(?=^\n|\Z)", copyright, re.M | re.S)
        assert paragraph, f"{dist_info} has no Files paragraph"
        assert re.search(r"^Copyright: \S", paragraph.group(0), re.M), paragraph.group(0)[:400]
        assert re.search(r"^License: \S", paragraph.group(0), re.M), paragraph.group(0)[:400]
    # every path a Files paragraph names is in the package
    for pattern in re.findall(r"^(?:Files:)? ?(opt/\S+)$", copyright, re.M):
        assert list(tree.glob(pattern)) or (tree / pattern).exists(), pattern


def test_changelog_is_debian_format_for_this_version(tree: Path) -> None:
    with gzip.open(tree / "usr/share/doc/supd/changelog.gz", "rt") as f:
        first = f.readline()
    assert first.startswith(f"supd ({pyproject()['version']}) "), first


def test_docs_man_pages_and_completions_are_installed(tree: Path) -> None:
    doc = tree / "usr/share/doc/supd"
    assert (doc / "README.md").read_text() == (REPO / "README.md").read_text()
    assert (doc / "README.Debian").read_text() == (REPO / "packaging/README.md").read_text()
    for page in (REPO / "docs").glob("*.md"):
        assert (doc / "docs" / page.name).read_text() == page.read_text(), page.name
    for page in (REPO / "packaging/man").glob("*.[0-9]"):
        installed = tree / f"usr/share/man/man{page.suffix[1:]}/{page.name}.gz"
        with gzip.open(installed, "rt") as f:
            assert f.read() == page.read_text(), page.name
    assert (tree / "usr/share/bash-completion/completions/supctl").is_file()
    assert (tree / "usr/share/zsh/vendor-completions/_supctl").is_file()
    assert (tree / "usr/share/fish/vendor_completions.d/supctl.fish").is_file()


def test_packaging_readme_names_only_files_that_exist(deb: Path, tree: Path) -> None:
    readme = (REPO / "packaging/README.md").read_text()
    named: list[str] = []
    # the table's first column: `deb/postinst`, `prerm`, `postrm` means deb/prerm ...
    for cell in re.findall(r"^\| (`.+?) \|", readme, re.M):
        items = re.findall(r"`([^`]+)`", cell)
        folder = items[0].rpartition("/")[0]
        named += [items[0]] + [i if "/" in i or not folder else f"{folder}/{i}" for i in items[1:]]
    assert len(named) > 10, named
    for name in named:
        if "{" not in name:  # man/*.{1,5,8}: the folder is checked by the man page test
            assert list((REPO / "packaging").glob(name)), f"packaging/README.md names {name}, which does not exist"
    # the constraints example: a file the build writes beside the .deb (dist/ by default),
    # pinning exactly the distributions bundled in the venv
    constraints = re.findall(r"--constraint (\S+?)\"", readme)
    assert constraints
    site = next(tree.glob("opt/supd/lib/python3*/site-packages"))
    bundled = {norm(d.name.removesuffix(".dist-info")) for d in site.glob("*.dist-info") if not d.name.startswith("supd-")}
    for name in constraints:
        assert name.startswith("dist/"), name
        pins = (deb.parent / Path(name).name).read_text().split()
        assert {norm(pin.replace("==", "-", 1)) for pin in pins} == bundled, pins


def norm(name_version: str) -> str:
    return re.sub(r"[-_.]+", "-", name_version).lower()
