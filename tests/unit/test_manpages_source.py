"""packaging/manpages.py's markdown preparation (no pandoc: what it feeds pandoc)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.docs.generators import load

manpages = load("manpages")


def test_sections_split_on_level_two_headings_outside_code() -> None:
    doc = "# title\n\n## Name\n\nx\n\n## Synopsis\n\n```toml\n## not a heading\n```\n\n### sub\ntext\n"
    sections = manpages.split_sections(doc)
    assert list(sections) == ["Name", "Synopsis"]
    assert "## not a heading" in sections["Synopsis"] and "### sub" in sections["Synopsis"]


def test_tables_become_definition_lists_keeping_their_indent() -> None:
    body = "before\n\n  | peer | level | may |\n  |---|---|---|\n  | uid 0 | admin | all \\| some |\n\nafter"
    assert manpages.tables_to_lists(body) == "before\n\n  uid 0\n  :   level: admin; may: all \\| some\n\n\nafter"


def test_links_to_docs_become_man_references_and_others_keep_their_text() -> None:
    text = "see [units.md](units.md), [the states](units.md#unit-states), [design](architecture.md)"
    assert manpages.LINK.sub(manpages._link, text) == (
        "see **supd.unit**(5), the states (see **supd.unit**(5)), design"
    )


def test_a_page_lists_name_then_its_sections_with_code_headings_untouched(tmp_path: Path) -> None:
    (tmp_path / "x.md").write_text("# X\n\n## Name\n\nold\n\n## Synopsis\n\n```\n# comment\n```\n\n### deeper\n")
    page = manpages.Page("x", 1, "does x", "x.md", ("Synopsis",))
    text = manpages.page_markdown(page, tmp_path, "9.9")
    assert text.startswith("---\ntitle: X\nsection: 1\nheader: supd 9.9\nfooter: supd 9.9\n---\n")
    assert "# NAME\n\nx - does x\n\n# SYNOPSIS\n\n```\n# comment\n```\n\n## deeper\n" in text
    assert "old" not in text


def test_a_missing_section_names_the_doc_and_the_page(tmp_path: Path) -> None:
    (tmp_path / "x.md").write_text("## Synopsis\n")
    with pytest.raises(SystemExit, match=r"docs/x.md has no section\(s\) Files \(wanted for x.1"):
        manpages.page_markdown(manpages.Page("x", 1, "does x", "x.md", ("Synopsis", "Files")), tmp_path, "1")


def test_bare_doc_names_become_man_references_but_code_and_paths_do_not() -> None:
    text = "see units.md, (docs/configuration.md); `units.md` and examples/units.md stay"
    out = manpages.BARE_DOC.sub(lambda m: manpages.MAN_REFERENCES[f"{m.group(1)}.md"], text)
    assert out == "see **supd.unit**(5), (**supd.toml**(5)); `units.md` and examples/units.md stay"
