"""Render the man pages supd(8), supd.toml(5), supd.unit(5) and supctl(1)
from docs/*.md with pandoc.

docs/ is the one source: its pages already follow the man layout (Name,
Synopsis, Description, ..., See also). This script picks a page's sections
from a doc, replaces the Name section with the one-line `name - summary`
that man-db's index (whatis, apropos) parses, turns links to other docs into
man references (`units.md` -> supd.unit(5)) and lets pandoc write roff.

The pages are checked in under packaging/man/ (tests/docs checks they are
up to date), so building the .deb (also in the offline test VM) needs no
pandoc.

Usage: python3 packaging/manpages.py [--out DIR]     (default: packaging/man)
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO / "packaging" / "man"


@dataclass(frozen=True)
class Page:
    name: str
    section: int
    summary: str
    source: str  # a file under docs/
    sections: tuple[str, ...]  # the doc's `##` sections to take, in order

    @property
    def file_name(self) -> str:
        return f"{self.name}.{self.section}"


PAGES = (
    Page("supd", 8, "small, fast container supervisor for one Linux host", "configuration.md",
         ("Synopsis", "Description", "Keys and flags", "Errors", "Signals", "Live restore",
          "Running under systemd", "Files", "See also")),
    Page("supd.toml", 5, "configuration file of the supd daemon", "configuration.md",
         ("The configuration file", "Keys and flags", "Errors", "Files", "See also")),
    Page("supd.unit", 5, "supd unit files: how supd runs one service", "units.md",
         ("Synopsis", "Description", "Value types", "[unit]", "[exec]", "[rootfs]", "[resources]",
          "[restart]", "[stop]", "[health]", "[freeze]", "Unit states", "Files", "Examples", "See also")),
    Page("supctl", 1, "ask a running supd for status and send it commands", "supctl.md",
         ("Synopsis", "Description", "Options", "Environment", "Exit status", "Commands",
          "Status object", "Events", "HTTP API", "See also")),
)

# A link to another doc becomes a man reference; a link to anything else
# (architecture.md, README, a web page) keeps only its text.
MAN_REFERENCES = {
    "units.md": "**supd.unit**(5)",
    "supctl.md": "**supctl**(1)",
    "configuration.md": "**supd.toml**(5)",
}
LINK = re.compile(r"\[([^\]]+)\]\(([^)\s]+)\)")
BARE_DOC = re.compile(r"(?<![\w/`.])(?:docs/)?(units|supctl|configuration)\.md\b(?!`)")
FENCE = re.compile(r"^(```|~~~)")
TABLE_RULE = re.compile(r"^\|?\s*:?-{3,}:?\s*(\|\s*:?-{3,}:?\s*)*\|?\s*$")
CELL_SEPARATOR = re.compile(r"(?<!\\)\|")


def split_sections(markdown: str) -> dict[str, str]:
    """The doc's `## Heading` sections by heading (fenced code is skipped:
    a `# comment` inside a TOML example is not a heading)."""
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    in_fence = False
    for line in markdown.splitlines():
        if FENCE.match(line):
            in_fence = not in_fence
        if not in_fence and line.startswith("## "):
            current = sections.setdefault(line[3:].strip(), [])
            continue
        if current is not None:
            current.append(line)
    return {heading: "\n".join(lines).strip("\n") for heading, lines in sections.items()}


def _link(match: re.Match[str]) -> str:
    text, target = match.group(1), match.group(2)
    doc = target.split("#", 1)[0].rsplit("/", 1)[-1]
    if doc not in MAN_REFERENCES:
        return text
    if text.strip("`") == target:  # [units.md](units.md): the file name stands for the page
        return MAN_REFERENCES[doc]
    return f"{text} (see {MAN_REFERENCES[doc]})"


def _promote(body: str) -> str:
    """`###` -> `##` and so on, outside fenced code: a doc's `##` is a man `.SH`."""
    out, in_fence = [], False
    for line in body.splitlines():
        if FENCE.match(line):
            in_fence = not in_fence
        if not in_fence and re.match(r"^#{3,6} ", line):
            line = line[1:]
        out.append(line)
    return "\n".join(out)


def _cells(row: str) -> list[str]:
    return [cell.strip() for cell in CELL_SEPARATOR.split(row.strip().strip("|"))]


def tables_to_lists(body: str) -> str:
    """Pipe tables as definition lists: the first column is the term, the
    others its text. A man page is read at 80 columns, where tbl cannot fit
    the docs' tables (groff warns, and cells wrap a word per line)."""
    lines = body.splitlines()
    out: list[str] = []
    i = 0
    while i < len(lines):
        stripped = lines[i].lstrip()
        if stripped.startswith("|") and i + 1 < len(lines) and TABLE_RULE.match(lines[i + 1].strip()):
            indent = lines[i][: len(lines[i]) - len(stripped)]  # a table inside a list item stays there
            headers = _cells(lines[i])
            i += 2
            while i < len(lines) and lines[i].lstrip().startswith("|"):
                first, *rest = _cells(lines[i])
                text = "; ".join(f"{h}: {c}" if h else c for h, c in zip(headers[1:], rest) if c)
                out += [indent + (first or "(empty)"), indent + (f":   {text}" if text else ":   -"), ""]
                i += 1
            continue
        out.append(lines[i])
        i += 1
    return "\n".join(out)


def page_markdown(page: Page, docs: Path, version: str) -> str:
    """The pandoc input for one page: a title block, NAME, then the chosen sections."""
    sections = split_sections((docs / page.source).read_text())
    missing = [s for s in page.sections if s not in sections]
    if missing:
        raise SystemExit(f"manpages.py: docs/{page.source} has no section(s) {', '.join(missing)} "
                         f"(wanted for {page.file_name}; update PAGES in {Path(__file__).name})")
    parts = [
        "---",
        f"title: {page.name.upper()}",
        f"section: {page.section}",
        f"header: supd {version}",
        f"footer: supd {version}",
        "---",
        "",
        "# NAME",
        "",
        f"{page.name} - {page.summary}",
    ]
    for heading in page.sections:
        body = LINK.sub(_link, tables_to_lists(_promote(sections[heading])))
        body = BARE_DOC.sub(lambda m: MAN_REFERENCES[f"{m.group(1)}.md"], body)  # "see units.md"
        parts += ["", f"# {heading.upper()}", "", body]
    return "\n".join(parts) + "\n"


def render(markdown: str) -> str:
    done = subprocess.run(["pandoc", "--standalone", "--from", "markdown", "--to", "man"],
                          input=markdown, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"manpages.py: pandoc failed: {done.stderr.strip()}")
    # Left-aligned and not hyphenated: justifying lines with long code words
    # makes groff warn "cannot adjust line", and a hyphen inside a path or a
    # key (<run-time_dir>) reads as part of it.
    roff = re.sub(r"^(\.TH .*)$", r"\1\n.ad l", done.stdout, count=1, flags=re.M)
    return re.sub(r"^\.hy$", ".nh", roff, flags=re.M)


def project_version() -> str:
    with open(REPO / "pyproject.toml", "rb") as f:
        return str(tomllib.load(f)["project"]["version"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Render supd's man pages from docs/*.md with pandoc.")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"folder to write into (default: {DEFAULT_OUT})")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    version = project_version()
    for page in PAGES:
        (args.out / page.file_name).write_text(render(page_markdown(page, REPO / "docs", version)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
