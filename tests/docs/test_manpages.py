"""The man pages: checked in under packaging/man, rendered from docs/*.md by
packaging/manpages.py with pandoc; groff must read them without a warning."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.docs.generators import REPO, load

manpages = load("manpages")
CHECKED_IN = REPO / "packaging" / "man"
PAGE_FILES = [page.file_name for page in manpages.PAGES]


def test_the_four_pages_are_there() -> None:
    assert sorted(PAGE_FILES) == ["supctl.1", "supd.8", "supd.toml.5", "supd.unit.5"]
    assert sorted(p.name for p in CHECKED_IN.iterdir()) == sorted(PAGE_FILES)


def test_checked_in_pages_match_the_docs(tmp_path: Path) -> None:
    if shutil.which("pandoc") is None:
        pytest.fail("pandoc is missing (make test installs it)")
    manpages.main(["--out", str(tmp_path)])
    stale = [name for name in PAGE_FILES if (tmp_path / name).read_text() != (CHECKED_IN / name).read_text()]
    assert not stale, f"packaging/man is out of date with docs/ for {stale}: run `make man` and commit"


@pytest.mark.parametrize("name", PAGE_FILES)
def test_groff_reads_the_page_without_warnings(name: str) -> None:
    done = subprocess.run(["man", "--warnings", "-l", str(CHECKED_IN / name)], capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin", "MANWIDTH": "80", "LC_ALL": "C.UTF-8"}, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stderr == "", f"{name}: groff warnings:\n{done.stderr}"
    assert "NAME" in done.stdout and "SEE ALSO" in done.stdout


@pytest.mark.parametrize("page", manpages.PAGES, ids=PAGE_FILES)
def test_whatis_finds_the_name_line(page) -> None:  # type: ignore[no-untyped-def]
    # lexgrog parses NAME as mandb does for whatis(1) and apropos(1)
    done = subprocess.run(["lexgrog", str(CHECKED_IN / page.file_name)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f'"{page.name} - {page.summary}"' in done.stdout
