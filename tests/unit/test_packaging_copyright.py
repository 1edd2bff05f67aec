"""packaging/copyright.py: the DEP-5 copyright file written from a venv's
distributions (licence names, texts, the files each one owns)."""

from __future__ import annotations

import email.parser
from pathlib import Path

import pytest

from tests.docs.generators import load

copyright = load("copyright")

PROJECT = {
    "name": "supd",
    "license": "Apache-2.0",
    "authors": [{"name": "supd developers", "email": "supd-devel@lists.supd.dev"}],
    "urls": {"Homepage": "https://supd.dev"},
}
MIT = "MIT License\n\nCopyright (c) 2019 Jane Doe\n\nPermission is hereby granted, free of charge ...\n"


def meta(text: str) -> email.message.Message:
    return email.parser.Parser().parsestr(text)


def test_spdx_operators_become_dep5_ones() -> None:
    assert copyright.dep5_expression("MIT OR Apache-2.0") == "MIT or Apache-2.0"
    assert copyright.dep5_expression("(MIT OR Apache-2.0) AND BSD-3-Clause") == "(MIT or Apache-2.0) and BSD-3-Clause"


def test_licence_from_expression_then_field_then_classifiers(tmp_path: Path) -> None:
    assert copyright.licence_of(meta("License-Expression: BSD-3-Clause\nLicense: MIT\n\n"), tmp_path) == "BSD-3-Clause"
    assert copyright.licence_of(meta("License: MIT\n\n"), tmp_path) == "MIT"
    classified = "Classifier: License :: OSI Approved :: MIT License\nClassifier: License :: OSI Approved :: Apache Software License\n\n"
    assert copyright.licence_of(meta(classified), tmp_path) == "Apache-2.0 or MIT"
    with pytest.raises(SystemExit, match="no License-Expression"):
        copyright.licence_of(meta("Name: mystery\n\n"), tmp_path)


def test_a_pasted_licence_text_in_the_license_field_is_not_taken_for_a_name(tmp_path: Path) -> None:
    pasted = "License: Copyright 2010 someone. Permission is hereby granted to anyone\n\n"
    with pytest.raises(SystemExit):
        copyright.licence_of(meta(pasted), tmp_path)


def test_the_full_apache_text_is_replaced_by_debians_copy() -> None:
    apache = "Apache License\nVersion 2.0, January 2004\n\nTERMS AND CONDITIONS FOR USE ...\n"
    assert copyright.common_or_text(apache) == copyright.APACHE_POINTER
    assert copyright.common_or_text(MIT) == MIT


def test_fields_continue_indented_with_dots_for_empty_lines() -> None:
    assert copyright.field("License", "MIT\nline one\n\nline two") == "License: MIT\n line one\n .\n line two"


def fake_venv(root: Path) -> Path:
    site = root / "opt/supd/lib/python3.11/site-packages"
    dist = site / "tiny-1.0.dist-info"
    (dist / "licenses").mkdir(parents=True)
    (site / "tiny").mkdir()
    (site / "tiny" / "__init__.py").write_text("")
    (root / "opt/supd/bin").mkdir(parents=True)
    (root / "opt/supd/bin/tiny").write_text("#!/opt/supd/bin/python\n")
    (dist / "METADATA").write_text("Metadata-Version: 2.4\nName: tiny\nVersion: 1.0\nLicense-Expression: MIT\nLicense-File: LICENSE\n\n")
    (dist / "licenses" / "LICENSE").write_text(MIT)
    (dist / "RECORD").write_text(
        "tiny/__init__.py,sha256=x,0\n"
        "tiny-1.0.dist-info/METADATA,,\n"
        "../../../bin/tiny,sha256=y,1\n"
        "../../../bin/removed,sha256=z,1\n"  # a command build-deb.sh deleted
    )
    own = site / "supd-0.1.0.dist-info"
    own.mkdir()
    (own / "METADATA").write_text("Metadata-Version: 2.4\nName: supd\nVersion: 0.1.0\nLicense-Expression: Apache-2.0\n\n")
    return site


def test_each_bundled_distribution_gets_its_files_holders_and_text(tmp_path: Path) -> None:
    site = fake_venv(tmp_path)
    [tiny] = copyright.bundled(site, tmp_path, "supd")  # supd itself is the Files: * paragraph
    assert tiny.licence == "MIT"
    assert tiny.copyright == ("2019 Jane Doe",)
    assert tiny.files == (
        "opt/supd/bin/tiny",
        "opt/supd/lib/python3.11/site-packages/tiny-1.0.dist-info/*",
        "opt/supd/lib/python3.11/site-packages/tiny/*",
    )
    text = copyright.render(PROJECT, [tiny])
    assert text.startswith(f"Format: {copyright.FORMAT}\nUpstream-Name: supd\n")
    assert "Files: *\nCopyright: supd developers\nLicense: Apache-2.0\n" in text
    assert "License: MIT\n MIT License\n .\n Copyright (c) 2019 Jane Doe\n" in text
    assert text.endswith(f"License: Apache-2.0\n {copyright.APACHE_POINTER.replace(chr(10), chr(10) + ' ')}\n")


def test_a_distribution_without_a_licence_file_fails_the_build(tmp_path: Path) -> None:
    site = fake_venv(tmp_path)
    (site / "tiny-1.0.dist-info" / "licenses" / "LICENSE").unlink()
    with pytest.raises(SystemExit, match="no licence file"):
        copyright.bundled(site, tmp_path, "supd")
