"""pyproject.toml builds its metadata without setuptools warnings (the license is an SPDX string)."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_metadata_builds_without_a_license_warning(tmp_path, monkeypatch):
    from setuptools.build_meta import prepare_metadata_for_build_wheel

    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, tmp_path / name)
    (tmp_path / "evoarena").mkdir()
    (tmp_path / "evoarena" / "__init__.py").write_text("")
    (tmp_path / "out").mkdir()
    monkeypatch.chdir(tmp_path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dist_info = prepare_metadata_for_build_wheel(str(tmp_path / "out"))
    assert not [w for w in caught if "license" in str(w.message).lower()], [str(w.message) for w in caught]
    metadata = (tmp_path / "out" / dist_info / "METADATA").read_text()
    assert "License-Expression: MIT" in metadata
