"""The documentation works in a fresh clone: every relative link lands on a file in the repository.

Checked in README.md, docs/*.md and every README.md under client/:
- Markdown links (inline and reference-style) relative to the document;
- file paths in code spans: one that climbs out of the document's folder
  (`../...`) or names a Markdown file must exist inside the repository,
  relative to the document or to the repository's root;
- Markdown files named bare in the text ("docs/protocol.md section 2") must be
  files of the repository.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTS = sorted(
    [ROOT / "README.md", *(ROOT / "docs").glob("*.md"), *(ROOT / "client").rglob("README.md")]
)

_FENCE = re.compile(r"^(```|~~~).*?^\1", re.MULTILINE | re.DOTALL)
_INLINE_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_REFERENCE = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$", re.MULTILINE)
_CODE_SPAN = re.compile(r"`([^`\n]+)`")
_PATH = re.compile(r"[\w.*-]+(?:/[\w.*-]+)+|[\w-]+\.md")
_BARE_MARKDOWN_NAME = re.compile(r"(?<![\w./-])([\w-]+\.md)\b")
_EXTERNAL = re.compile(r"^(?:[a-z][a-z0-9+.-]*:|//|#)", re.IGNORECASE)


def prose(text: str) -> str:
    """The text without fenced code blocks (shell examples are not links)."""
    return _FENCE.sub("", text)


def links(text: str) -> list[str]:
    """The relative targets of the Markdown links in `text`, without their #fragment."""
    targets = [*_INLINE_LINK.findall(text), *_REFERENCE.findall(text)]
    return [t.split("#", 1)[0] for t in targets if not _EXTERNAL.match(t) and t.split("#", 1)[0]]


def named_paths(text: str) -> list[str]:
    """Code spans that are one path climbing out of the document's folder or naming a .md file."""
    spans = [span.strip() for span in _CODE_SPAN.findall(text)]
    return [
        span
        for span in spans
        if _PATH.fullmatch(span) and (span.startswith("../") or span.endswith(".md"))
    ]


def bare_markdown_names(text: str) -> set[str]:
    """Markdown file names written without a folder, in the text outside code spans and links."""
    return set(_BARE_MARKDOWN_NAME.findall(_CODE_SPAN.sub("", text)))


def inside_repository(path: Path) -> bool:
    return path.resolve().is_relative_to(ROOT)


def _id(path: Path) -> str:
    return str(path.relative_to(ROOT))


def test_the_checks_find_what_they_look_for():
    # GIVEN a document with links, a fenced example, code spans and a bare file name
    text = (
        "See [a](docs/a.md#part), [web](https://x.org) and [top](#top).\n"
        "[ref]: ../b.md\n"
        "```sh\ncat [c](ignored.md)\n```\n"
        "The contract is `../shared/PROTOCOL.md` (`../shared/seeds/001_*`), see `docs/x.md`,\n"
        "run `python -m local --port 0`, read STYLE.md section 2 and a/cited-file.md.\n"
    )
    # THEN relative links, paths in code spans and bare Markdown names are found, nothing else
    assert links(prose(text)) == ["docs/a.md", "../b.md"]
    assert named_paths(prose(text)) == [
        "../shared/PROTOCOL.md",
        "../shared/seeds/001_*",
        "docs/x.md",
    ]
    assert bare_markdown_names(prose(text)) == {"STYLE.md"}


@pytest.mark.parametrize("document", DOCUMENTS, ids=_id)
def test_every_relative_link_resolves_to_a_file_in_the_repository(document: Path):
    # GIVEN a document of the repository
    text = prose(document.read_text(encoding="utf-8"))
    # THEN each relative link names a file that exists inside the repository
    for target in links(text):
        resolved = document.parent / target
        assert inside_repository(resolved), f"{_id(document)}: {target} is outside the repository"
        assert resolved.exists(), f"{_id(document)}: {target} does not exist"


@pytest.mark.parametrize("document", DOCUMENTS, ids=_id)
def test_every_path_named_in_code_is_a_file_in_the_repository(document: Path):
    # GIVEN the paths a document names in code spans
    text = prose(document.read_text(encoding="utf-8"))
    for path in named_paths(text):
        # THEN each is a file inside the repository, relative to the document or the root
        candidates = [document.parent / path, ROOT / path]
        found = [c for c in candidates if inside_repository(c) and any(c.parent.glob(c.name))]
        assert found, f"{_id(document)}: `{path}` is not a file of the repository"


@pytest.mark.parametrize("document", DOCUMENTS, ids=_id)
def test_every_markdown_file_named_is_one_of_the_repository(document: Path):
    # GIVEN the Markdown files of the repository, by name
    files = {path.name for path in ROOT.rglob("*.md") if "node_modules" not in path.parts}
    # THEN a document names no Markdown file that a clone does not have
    text = prose(document.read_text(encoding="utf-8"))
    missing = sorted(name for name in bare_markdown_names(text) if name not in files)
    assert not missing, f"{_id(document)} names files that are not in the repository: {missing}"
