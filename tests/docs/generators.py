"""The generators under packaging/ (a folder of scripts, not a package: its
name would shadow PyPI's `packaging`), loaded by path."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[2]


def load(name: str) -> ModuleType:
    path = REPO / "packaging" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"supd_packaging_{name}", path)
    assert spec is not None and spec.loader is not None, path
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module
