#!/usr/bin/env python3
"""Write the package's machine-readable copyright file (DEP-5) for a built venv.

supd itself is Apache-2.0 (pyproject.toml). The venv under /opt/supd also
carries its dependencies from PyPI, each under its own licence: this reads
every bundled distribution's metadata (License-Expression, else License or
the licence classifiers), its licence files (dist-info/licenses/, which
wheels ship since PEP 639, or the top of dist-info) and its RECORD (which
files are its), and writes one Files paragraph per distribution with the
licence text it ships. Generated at build time rather than checked in, so the
file names exactly the versions that went into this .deb.

A distribution whose licence cannot be read fails the build: a new
dependency must not ship without its licence.

Usage: copyright.py SITE_PACKAGES PACKAGE_ROOT PYPROJECT > copyright
  SITE_PACKAGES  the venv's site-packages in the staging tree
  PACKAGE_ROOT   the staging tree's root (paths are written relative to it)
"""

from __future__ import annotations

import email.parser
import json
import re
import sys
import tomllib
from dataclasses import dataclass
from email.message import Message
from pathlib import Path

FORMAT = "https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/"
# the licence classifiers of distributions that predate License-Expression
CLASSIFIERS = {
    "License :: OSI Approved :: MIT License": "MIT",
    "License :: OSI Approved :: Apache Software License": "Apache-2.0",
    "License :: OSI Approved :: BSD License": "BSD-3-Clause",
    "License :: OSI Approved :: Python Software Foundation License": "PSF-2.0",
    "License :: OSI Approved :: ISC License (ISCL)": "ISC",
}
APACHE_POINTER = "On Debian systems, the complete text of the Apache License 2.0 is in\n/usr/share/common-licenses/Apache-2.0."
COPYRIGHT_LINE = re.compile(r"^\s*(?:Copyright|\(c\)|©)\s*(?:\(c\)|©)?\s*(.+)$", re.IGNORECASE)


@dataclass(frozen=True)
class Bundled:
    name: str
    version: str
    licence: str  # in DEP-5 syntax ("MIT or Apache-2.0")
    copyright: tuple[str, ...]
    files: tuple[str, ...]  # DEP-5 patterns relative to the package root
    text: str  # the licence texts the distribution ships
    comment: str


def dep5_expression(spdx: str) -> str:
    """SPDX writes OR/AND; DEP-5 writes or/and (and keeps the short names)."""
    return re.sub(r"\b(OR|AND)\b", lambda m: m.group(1).lower(), spdx.strip())


def licence_of(meta: Message, where: Path) -> str:
    expression = meta.get("License-Expression")
    if expression:
        return dep5_expression(expression)
    declared = (meta.get("License") or "").strip()
    if declared and "\n" not in declared and len(declared) < 40:  # a name, not a pasted text
        return dep5_expression(declared)
    # several licence classifiers: read as a choice, as PyPI projects use them
    # (structlog's "MIT OR Apache-2.0"); the texts all go in the paragraph
    names = sorted({CLASSIFIERS[c] for c in meta.get_all("Classifier") or [] if c in CLASSIFIERS})
    if names:
        return " or ".join(names)
    raise SystemExit(f"copyright.py: {where}: no License-Expression, License or known licence classifier")


def licence_files(dist_info: Path, meta: Message) -> list[Path]:
    found: list[Path] = []
    for name in meta.get_all("License-File") or []:
        for candidate in (dist_info / "licenses" / name, dist_info / name):
            if candidate.is_file():
                found.append(candidate)
                break
    if not found:  # older wheels: LICENSE* at the top of dist-info
        found = sorted(p for p in dist_info.iterdir() if p.is_file() and re.match(r"(?i)(licen[cs]e|copying|notice)", p.name))
    return found


def common_or_text(text: str) -> str:
    """A licence Debian ships in /usr/share/common-licenses is referred to,
    not repeated (lintian: copyright-file-contains-full-apache-2-license)."""
    if "Apache License" in text and "Version 2.0, January 2004" in text and "TERMS AND CONDITIONS" in text:
        return APACHE_POINTER
    return text


def owned_files(dist_info: Path, site: Path, root: Path) -> tuple[str, ...]:
    """The top-level files and folders RECORD lists for this distribution."""
    tops: set[str] = set()
    for line in (dist_info / "RECORD").read_text().splitlines():
        rel = line.rsplit(",", 2)[0]
        if not rel or "__pycache__" in rel:
            continue
        path = (site / rel).resolve() if rel.startswith("..") else site / rel
        if not path.exists():  # a command build-deb.sh removed
            continue
        inside_site = path.relative_to(site) if path.is_relative_to(site) else None
        if inside_site is not None and len(inside_site.parts) > 1:
            tops.add(str(site.relative_to(root) / inside_site.parts[0]) + "/*")
        else:
            tops.add(str(path.relative_to(root)))
    return tuple(sorted(tops))


def rust_crates(dist_info: Path) -> list[str]:
    """Crates compiled into a Rust extension, from the wheel's CycloneDX SBOM."""
    lines = []
    for sbom in sorted((dist_info / "sboms").glob("*.json")) if (dist_info / "sboms").is_dir() else []:
        for component in json.loads(sbom.read_text()).get("components", []):
            names = [lic.get("expression") or lic.get("license", {}).get("id", "?") for lic in component.get("licenses", [])]
            lines.append(f"{component.get('name')} {component.get('version')} ({' / '.join(names) or 'unknown'})")
    return lines


def bundled(site: Path, root: Path, own: str) -> list[Bundled]:
    out = []
    for dist_info in sorted(site.glob("*.dist-info")):
        meta = email.parser.Parser().parsestr((dist_info / "METADATA").read_text())
        name = meta["Name"]
        if name.lower() == own:
            continue
        files = licence_files(dist_info, meta)
        if not files:
            raise SystemExit(f"copyright.py: {dist_info}: no licence file")
        texts = [common_or_text(f.read_text(errors="replace").strip()) for f in files]
        holders: list[str] = []
        for text in texts:
            for line in text.splitlines():
                m = COPYRIGHT_LINE.match(line)
                if m and m.group(1).strip() not in holders and any(ch.isdigit() for ch in line):
                    holders.append(m.group(1).strip())
        if not holders:
            author = meta.get("Author") or meta.get("Author-email") or meta.get("Maintainer-email") or f"the {name} authors"
            holders = [author]
        comment = f"{name} {meta['Version']}, from PyPI, installed in supd's venv."
        crates = rust_crates(dist_info)
        if crates:
            comment += " Its compiled extension statically links these Rust crates (from the wheel's SBOM):\n" + "\n".join(crates)
        out.append(
            Bundled(
                name=name,
                version=meta["Version"],
                licence=licence_of(meta, dist_info),
                copyright=tuple(holders),
                files=owned_files(dist_info, site, root),
                text="\n\n".join(texts),
                comment=comment,
            )
        )
    return out


def field(name: str, value: str) -> str:
    """A DEP-5 field: continuation lines indented, empty lines as ' .'."""
    first, *rest = value.split("\n")
    lines = [f"{name}: {first}".rstrip()]
    lines += [f" {line}".rstrip() if line.strip() else " ." for line in rest]
    return "\n".join(lines)


def render(project: dict, dists: list[Bundled]) -> str:
    author = project["authors"][0]
    contact = f"{author['name']} <{author['email']}>"
    homepage = project["urls"]["Homepage"]
    licence = project["license"]
    paragraphs = [
        "\n".join([
            f"Format: {FORMAT}",
            f"Upstream-Name: {project['name']}",
            f"Upstream-Contact: {contact}",
            f"Source: {homepage}",
        ]),
        "\n".join([
            "Files: *",
            f"Copyright: {author['name']}",
            f"License: {licence}",
        ]),
    ]
    for d in dists:
        paragraphs.append("\n".join([
            field("Files", "\n".join(d.files)),
            field("Copyright", "\n".join(d.copyright)),
            field("License", f"{d.licence}\n{d.text}"),
            field("Comment", d.comment),
        ]))
    if licence != "Apache-2.0":
        raise SystemExit(f"copyright.py: supd's licence is {licence}: write its License paragraph")
    paragraphs.append(field("License", f"{licence}\n{APACHE_POINTER}"))
    return "\n\n".join(paragraphs) + "\n"


def main(argv: list[str]) -> int:
    if len(argv) != 4:
        print(__doc__.strip().splitlines()[-3], file=sys.stderr)
        return 2
    site, root, pyproject = Path(argv[1]), Path(argv[2]), Path(argv[3])
    project = tomllib.loads(pyproject.read_text())["project"]
    sys.stdout.write(render(project, bundled(site, root, project["name"].lower())))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
