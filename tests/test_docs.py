"""The documentation stays true to the code: the README is a front door (at most 200 lines, every link resolves),
and the config reference lists exactly the keys the config models have."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def relative_links(markdown: str) -> list[str]:
    """The targets of Markdown links and images that are not web addresses (anchors dropped)."""
    targets = re.findall(r"!?\[[^\]]*\]\(([^)\s]+)\)", markdown)
    return [t.split("#", 1)[0] for t in targets if not re.match(r"[a-z]+://|mailto:|#", t)]


def test_the_readme_is_short_and_every_link_resolves():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 200
    links = relative_links(readme)
    assert links, "the README links into the docs"
    missing = [t for t in links if not (ROOT / t).exists()]
    assert not missing, missing


def test_the_link_finder_sees_links_and_skips_web_addresses():
    text = "[a](docs/x.md#part) ![b](img.png) [c](https://example.org) [d](#here)"
    assert relative_links(text) == ["docs/x.md", "img.png"]


def test_the_config_reference_lists_every_key_of_the_config_models():
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "config_reference.py"), "--check"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    page = (ROOT / "docs" / "guide" / "config-reference.md").read_text()
    from evoarena.config import PPOConfig, TrainConfig

    for model in (TrainConfig, PPOConfig):
        section = page.split(f"## {model.__name__}\n", 1)[1].split("\n## ", 1)[0]
        assert {f"`{name}`" for name in model.model_fields} <= set(re.findall(r"^\| (`\w+`) \|", section, re.M))
