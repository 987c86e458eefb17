"""The documentation's links and repository paths point at things that exist."""

from __future__ import annotations

import functools
import itertools
import re
from pathlib import Path

import pytest
from markdown_it import MarkdownIt

ROOT = Path(__file__).resolve().parents[1]
DOCS = [
    "README.md",
    "CONTRACTS.md",
    "docs/experiments.md",
    "workflows/README.md",
    "docker/README.md",
    "scripts/gpu/README.md",
]
#: Paths under these folders are checked; others (runs/, results/) are made by the user.
TRACKED = ("benchmarks/", "checkpoints/", "docs/", "model/", "scripts/", "workflows/", "tests/")
#: The docs' short form of the training experiments' folder.
SHORT = {"experiments/": "workflows/train/experiments/"}
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
PATH = re.compile(r"(?<![\w/.-])((?:" + "|".join([*TRACKED, *SHORT]) + r")[\w./{},-]*)")


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def heading_anchors(text: str) -> set[str]:
    """Anchors of every heading of markdown ``text``, as a CommonMark parser finds them (so
    ``#`` lines inside code blocks are not headings)."""
    tokens = MarkdownIt("commonmark").parse(text)
    return {
        github_anchor(tokens[i + 1].content)
        for i, token in enumerate(tokens)
        if token.type == "heading_open"
    }


@functools.cache
def anchors(path: Path) -> set[str]:
    """Anchors of every heading of a markdown file (read once per file)."""
    return heading_anchors(path.read_text())


def expand_braces(text: str) -> list[str]:
    """``a{b,c}d`` -> ``[abd, acd]``, as the shell expands the paths the docs give."""
    parts = re.split(r"\{([^{}]*)\}", text)
    options = [[p] if i % 2 == 0 else p.split(",") for i, p in enumerate(parts)]
    return ["".join(combo) for combo in itertools.product(*options)]


def links(doc: str) -> list[tuple[str, str]]:
    """``(doc, target)`` of every relative link in ``doc``."""
    text = (ROOT / doc).read_text()
    return [
        (doc, t)
        for t in LINK.findall(text)
        if not re.match(r"[a-z]+:", t) and not t.startswith("<")
    ]


def repo_paths(doc: str) -> list[tuple[str, str]]:
    """``(doc, path)`` of every path under a tracked folder that ``doc`` names, braces expanded.

    Paths broken across lines (ending in ``-``) and placeholders (``<name>``, ``*``) are skipped.
    """
    found = []
    for token in PATH.findall((ROOT / doc).read_text()):
        token = token.rstrip(".,:;")
        for short, full in SHORT.items():
            token = full + token.removeprefix(short) if token.startswith(short) else token
        if token.endswith("-") or re.search(r"[<>*]", token):
            continue
        found += [(doc, path) for path in expand_braces(token)]
    return sorted(set(found))


@pytest.mark.parametrize(("doc", "target"), [pair for doc in DOCS for pair in links(doc)])
def test_relative_links_resolve(doc: str, target: str) -> None:
    path_part, _, anchor = target.partition("#")
    path = (ROOT / doc).parent / path_part if path_part else ROOT / doc
    assert path.exists(), f"{doc}: link to {target}: no such file"
    if anchor:
        assert anchor in anchors(path), f"{doc}: link to {target}: no heading with that anchor"


@pytest.mark.parametrize(("doc", "path"), [pair for doc in DOCS for pair in repo_paths(doc)])
def test_named_repository_paths_exist(doc: str, path: str) -> None:
    assert (ROOT / path).exists(), f"{doc} names {path}, which is not in the repository"


def test_helpers() -> None:
    text = "see `experiments/a.yaml` and workflows/train/b{,-c}.yaml, not runs/x.pt or /opt/model/y"
    assert PATH.findall(text) == ["experiments/a.yaml", "workflows/train/b{,-c}.yaml,"]
    assert github_anchor(" The model package (`model/definet`)") == "the-model-package-modeldefinet"
    assert heading_anchors("# Top\n```bash\n# a comment\n```\n## Next one\n") == {"top", "next-one"}
    assert expand_braces("a/{b,c}/d{,-e}.yaml") == [
        "a/b/d.yaml",
        "a/b/d-e.yaml",
        "a/c/d.yaml",
        "a/c/d-e.yaml",
    ]
