"""Every relative link in the repository's Markdown resolves to a file inside the repository.

A link into ``../shared`` or any other path outside the repository root works on one machine and nowhere
else (a user's clone, the installed package, GitHub), so it fails here. Web links (``http(s)://``,
``mailto:``) are not fetched: tests never use the network. A ``#anchor`` must name a heading of the
Markdown file it points into (GitHub's slug rules).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import unicodedata
from pathlib import Path
from urllib.parse import unquote

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SKIPPED_DIRS = {".git", ".venv", "venv", "build", "dist", "node_modules", ".pytest_cache", ".ruff_cache", "runs"}
EXTERNAL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")  # http:, https:, mailto:, ftp:, ...
FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
CODE_SPAN = re.compile(r"(`+)(?!`).*?(?<!`)\1")
# The target of an inline link or image: whatever follows "](" up to whitespace or ")" (an optional title
# follows the whitespace); <...> allows spaces. Matching on "](" also finds a link wrapped around an image.
INLINE_TARGET = re.compile(r"\]\(\s*(?:<([^>]*)>|([^)\s]*))")
REFERENCE_DEFINITION = re.compile(r"^ {0,3}\[[^\]]+\]:\s*(?:<([^>]*)>|(\S+))")
HEADING = re.compile(r"^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
HTML_ANCHOR = re.compile(r"""<a\s[^>]*(?:name|id)\s*=\s*["']([^"']+)["']""", re.IGNORECASE)


def markdown_files(root: Path) -> list[Path]:
    """The Markdown files git tracks under ``root``; without git, every ``*.md`` outside build folders."""
    tracked = tracked_files(root)
    if tracked is not None:
        return sorted(root / name for name in tracked if name.endswith(".md") and (root / name).is_file())
    found = []
    for directory, subdirs, files in os.walk(root):
        subdirs[:] = sorted(d for d in subdirs if d not in SKIPPED_DIRS and not d.endswith(".egg-info"))
        found.extend(Path(directory) / name for name in files if name.endswith(".md"))
    return sorted(found)


def tracked_files(root: Path) -> set[str] | None:
    """Paths (relative, '/'-separated) that git tracks in ``root``; None when git or the repository is absent."""
    if shutil.which("git") is None:
        return None
    result = subprocess.run(
        ["git", "-C", str(root), "ls-files", "-z"], capture_output=True, check=False, timeout=60
    )
    if result.returncode != 0:
        return None
    return {name for name in result.stdout.decode("utf-8").split("\0") if name}


def prose_lines(text: str) -> list[tuple[int, str]]:
    """(line number, line) of every line outside fenced code blocks."""
    lines, fence = [], None
    for number, line in enumerate(text.splitlines(), start=1):
        opening = FENCE.match(line)
        if fence is None and opening:
            fence = opening.group(1)
            continue
        if fence is not None:
            if opening and opening.group(1)[0] == fence[0] and len(opening.group(1)) >= len(fence):
                fence = None
            continue
        lines.append((number, line))
    return lines


def link_targets(text: str) -> list[tuple[int, str]]:
    """(line number, target) of every inline link, image and reference definition outside code."""
    targets = []
    for number, raw_line in prose_lines(text):
        line = CODE_SPAN.sub(lambda match: " " * len(match.group(0)), raw_line)
        definition = REFERENCE_DEFINITION.match(line)
        if definition:
            targets.append((number, definition.group(1) or definition.group(2)))
            continue
        for match in INLINE_TARGET.finditer(line):
            targets.append((number, match.group(1) if match.group(1) is not None else match.group(2)))
    return targets


def github_slug(heading: str) -> str:
    """The anchor GitHub gives a heading: rendered text, lower case, punctuation dropped, spaces to '-'."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link's text stays, its target goes
    text = re.sub(r"<[^>]+>", "", text).strip().lower()
    kept = "".join(char for char in text if char in " -_" or unicodedata.category(char)[0] in "LNM")
    return kept.replace(" ", "-")


def anchors(text: str) -> set[str]:
    """Every anchor a Markdown file defines: its headings' slugs (repeats numbered as GitHub does), HTML anchors."""
    found: set[str] = set()
    seen: dict[str, int] = {}
    for _number, line in prose_lines(text):
        heading = HEADING.match(line)
        if heading:
            slug = github_slug(heading.group(2))
            count = seen.get(slug, 0)
            seen[slug] = count + 1
            found.add(slug if count == 0 else f"{slug}-{count}")
        found.update(HTML_ANCHOR.findall(line))
    return found


def broken_links(path: Path, root: Path, tracked: set[str] | None) -> list[str]:
    """One message per link of ``path`` that does not resolve to a file (or folder) inside ``root``."""
    text = path.read_text(encoding="utf-8")
    where = path.relative_to(root).as_posix()
    problems = []
    for number, raw in link_targets(text):
        target = raw.strip()
        if not target:
            problems.append(f"{where}:{number}: empty link target")
            continue
        if EXTERNAL.match(target):
            continue
        file_part, _, anchor = target.partition("#")
        file_part = unquote(file_part.split("?", 1)[0])
        if file_part.startswith("/"):
            problems.append(f"{where}:{number}: {raw}: absolute path; use a path relative to {where}")
            continue
        resolved = (path.parent / file_part).resolve() if file_part else path.resolve()
        if not resolved.is_relative_to(root.resolve()):
            problems.append(f"{where}:{number}: {raw}: points outside the repository")
            continue
        relative = resolved.relative_to(root.resolve()).as_posix()
        if not resolved.exists():
            problems.append(f"{where}:{number}: {raw}: {relative} does not exist")
            continue
        if tracked is not None and resolved.is_file() and relative not in tracked:
            problems.append(f"{where}:{number}: {raw}: {relative} is not tracked by git (a clone would lack it)")
            continue
        if tracked is not None and resolved.is_dir() and not any(name.startswith(f"{relative}/") for name in tracked):
            problems.append(f"{where}:{number}: {raw}: folder {relative} holds no tracked file")
            continue
        if anchor and resolved.suffix == ".md" and resolved.is_file():
            defined = anchors(text) if resolved == path.resolve() else anchors(resolved.read_text(encoding="utf-8"))
            if unquote(anchor).lower() not in defined:
                problems.append(f"{where}:{number}: {raw}: no heading #{anchor} in {relative}")
    return problems


TRACKED = tracked_files(REPO_ROOT)
MARKDOWN = markdown_files(REPO_ROOT)


def test_the_repository_has_markdown_to_check():
    names = {path.relative_to(REPO_ROOT).as_posix() for path in MARKDOWN}
    assert {"README.md", "docs/labels.md", "data/SOURCES.md"} <= names


@pytest.mark.parametrize("path", MARKDOWN, ids=lambda path: path.relative_to(REPO_ROOT).as_posix())
def test_every_relative_link_resolves_inside_the_repository(path):
    problems = broken_links(path, REPO_ROOT, TRACKED)
    assert not problems, "broken links:\n" + "\n".join(problems)


# -- the checker itself, on a tiny tree in tmp_path ----------------------------------------------------------


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "repo"
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text, encoding="utf-8")
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "LABELS.md").write_text("# Labels\n", encoding="utf-8")
    return root


def test_the_checker_accepts_links_that_resolve(tmp_path):
    root = _tree(
        tmp_path,
        {
            "README.md": (
                "# Tonewatch: the `fast` model\n\n## Install\n\n## Install\n\n"
                "[guide](docs/labels.md#escalation-一个-yesno) ![shot](docs/pic.png) [self](#install-1)\n"
                "[top](#tonewatch-the-fast-model) [web](https://example.invalid/x) [mail](mailto:a@example.invalid)\n"
                "[folder](docs/) [spaced](<docs/a b.md>) [titled](docs/labels.md \"The guide\")\n"
                "[![badge](docs/pic.png)](docs/labels.md)\n\n[ref]: docs/labels.md\n"
            ),
            "docs/labels.md": "# Labels\n\n## Escalation: 一个 yes/no\n\n[back](../README.md#install)\n",
            "docs/pic.png": "",
            "docs/a b.md": "",
        },
    )
    for name in ("README.md", "docs/labels.md"):
        assert broken_links(root / name, root, None) == [], name


def test_the_checker_refuses_links_outside_missing_or_untracked(tmp_path):
    root = _tree(
        tmp_path,
        {
            "README.md": (
                "# Title\n\n[guide](../shared/LABELS.md)\n[gone](docs/missing.md)\n[bad anchor](#nothing-here)\n"
                "[abs](/etc/hostname)\n[other anchor](docs/labels.md#no-such-heading)\n![img](docs/gone.png)\n"
                "[untracked](docs/extra.md)\n\n[ref]: ../shared/LABELS.md\n"
            ),
            "docs/labels.md": "# Labels\n",
            "docs/extra.md": "# Extra\n",
        },
    )
    problems = broken_links(root / "README.md", root, tracked={"README.md", "docs/labels.md"})
    assert [problem.split(":")[1] for problem in problems] == ["3", "4", "5", "6", "7", "8", "9", "11"]
    assert "outside the repository" in problems[0] and "outside the repository" in problems[-1]
    assert "does not exist" in problems[1]
    assert "#nothing-here" in problems[2]
    assert "absolute path" in problems[3]
    assert "#no-such-heading" in problems[4]
    assert "not tracked" in problems[6]


def test_links_inside_code_are_not_links(tmp_path):
    root = _tree(
        tmp_path,
        {
            "README.md": (
                "# Title\n\n```toml\n[[extra_data]](missing.md)\n```\n\n"
                "~~~\n[a](../shared/LABELS.md)\n~~~\n\nInline `[a](missing.md)` is code.\n"
                "```\n# not a heading\n```\n[x](#not-a-heading)\n"
            ),
        },
    )
    problems = broken_links(root / "README.md", root, None)
    assert len(problems) == 1 and "#not-a-heading" in problems[0]


@pytest.mark.parametrize(
    ("heading", "slug"),
    [
        ("The default model", "the-default-model"),
        ("Speed: the `fast` model", "speed-the-fast-model"),
        ("Trigger conversations, eight seeds on a GPU, and model version 5", "trigger-conversations-eight-seeds-on-a-gpu-and-model-version-5"),  # noqa: E501
        ("Architecture `turns`: each turn encoded once", "architecture-turns-each-turn-encoded-once"),
        ("Escalation: one yes/no per customer turn", "escalation-one-yesno-per-customer-turn"),
        ("[Link](x.md) and _under_score", "link-and-_under_score"),
        ("Выход 模型", "выход-模型"),
    ],
)
def test_github_slugs(heading, slug):
    assert github_slug(heading) == slug
