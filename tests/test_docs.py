"""The docs stay true to the tree.

- Every citation of the protocol document in code, configs and docs is ``PROTOCOL.md#<anchor>``
  and the anchor is a heading of ``PROTOCOL.md`` (GitHub's heading slugs), so renaming a section
  without updating its citations fails here.
- Relative links in ``README.md``, ``PROTOCOL.md`` and the user docs ``docs/*.md`` point at files
  that exist (and, with an ``#anchor`` into a Markdown file, at one of its headings).
- Repository paths that ``PROTOCOL.md`` and the user docs name in backticks exist.
- The README stays a front page (about 150 lines); the rest lives in ``docs/``.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PROTOCOL = ROOT / "PROTOCOL.md"
# Where citations may live: the packages, tests, CI and the top-level docs and metadata.
SCANNED_DIRS = ("benchmark", "pretrain", "dassl_patches", "tests", "csrc", ".ci", "docs")
SCANNED_TOP = ("README.md", "setup.cfg", "pyproject.toml", "ruff.toml")
SUFFIXES = {".py", ".yaml", ".yml", ".md", ".cfg", ".toml", ".txt", ".sh", ""}
# "PROTOCOL.md" not used as a Markdown link text ("[PROTOCOL.md](...)"), with its anchor if any.
CITATION = re.compile(r"PROTOCOL\.md(?!\])(#[\w-]*)?")
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REPO_PATH = re.compile(r"`((?:benchmark|pretrain|dassl_patches|tests|csrc)/[\w./-]*)`")
USER_DOCS = ["README.md", *sorted(f"docs/{p.name}" for p in (ROOT / "docs").glob("*.md"))]


def slug(heading: str) -> str:
    """GitHub's anchor of a heading text: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"`", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def headings(path: Path) -> list[str]:
    """Heading texts of a Markdown file, in order (lines inside ``` fences are skipped)."""
    out: list[str] = []
    fenced = False
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        m = re.match(r"^(#{1,6})\s+(.*?)\s*#*\s*$", line)
        if m and not fenced:
            out.append(m.group(2))
    return out


def anchors(path: Path) -> set[str]:
    return {slug(h) for h in headings(path)}


def _strip_fences(text: str) -> str:
    """Markdown text without its fenced code blocks (links there are not links)."""
    return re.sub(r"^\s*```.*?^\s*```", "", text, flags=re.S | re.M)


def scanned_files() -> list[Path]:
    """Source, config and doc files that may cite the protocol (this test excluded)."""
    files = [ROOT / name for name in SCANNED_TOP if (ROOT / name).is_file()]
    for top in SCANNED_DIRS:
        for path in sorted((ROOT / top).rglob("*")):
            if (
                path.is_file()
                and path.suffix in SUFFIXES
                and "__pycache__" not in path.parts
                and path.resolve() != Path(__file__).resolve()
            ):
                files.append(path)
    return files


def citations() -> list[tuple[str, int, str]]:
    """``(file, line, anchor)`` of every protocol citation ("" = no anchor)."""
    found = []
    for path in scanned_files():
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        for n, line in enumerate(text.splitlines(), 1):
            for m in CITATION.finditer(line):
                anchor = (m.group(1) or "").lstrip("#")
                found.append((str(path.relative_to(ROOT)), n, anchor))
    return found


def test_protocol_headings_are_unique():
    slugs = [slug(h) for h in headings(PROTOCOL)]
    dupes = sorted({s for s in slugs if slugs.count(s) > 1})
    assert not dupes, f"PROTOCOL.md has duplicate section anchors: {dupes}"


def test_slug_matches_github_rules():
    assert slug("SAR-JEPA pretraining") == "sar-jepa-pretraining"
    assert slug("Comparability with the published runs") == "comparability-with-the-published-runs"
    assert slug("The authors' `GF` (v2)") == "the-authors-gf-v2"


def test_the_code_cites_the_protocol():
    # the project relies on these citations; an empty scan would make the next test vacuous
    cited = {anchor for _, _, anchor in citations()}
    assert {"sar-jepa-pretraining", "gf-target", "irpe", "split-random-call-order"} <= cited


def test_every_protocol_citation_names_an_existing_section():
    known = anchors(PROTOCOL)
    bad = [
        f"{file}:{line}: PROTOCOL.md#{anchor}" if anchor else f"{file}:{line}: no #section"
        for file, line, anchor in citations()
        if anchor not in known
    ]
    assert not bad, "citations of missing PROTOCOL.md sections:\n" + "\n".join(bad)


def test_the_user_docs_are_there():
    assert {"docs/data.md", "docs/grids.md", "docs/formats.md"} <= set(USER_DOCS)


@pytest.mark.parametrize("doc", [*USER_DOCS, "PROTOCOL.md"])
def test_relative_links_resolve(doc):
    path = ROOT / doc
    bad = []
    for target in LINK.findall(_strip_fences(path.read_text(encoding="utf-8"))):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto: ...
            continue
        file_part, _, anchor = target.partition("#")
        dest = (path.parent / file_part).resolve() if file_part else path
        if not dest.exists():
            bad.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            bad.append(f"{target}: no such heading in {dest.name}")
    assert not bad, f"broken links in {doc}:\n" + "\n".join(bad)


@pytest.mark.parametrize("doc", [*USER_DOCS, "PROTOCOL.md"])
def test_paths_named_in_the_docs_exist(doc):
    text = (ROOT / doc).read_text(encoding="utf-8")
    named = {p.rstrip(".") for p in REPO_PATH.findall(text) if "<" not in p and "*" not in p}
    missing = sorted(p for p in named if not (ROOT / p).exists())
    assert not missing, f"{doc} names paths that do not exist: {missing}"


def test_the_readme_is_a_front_page():
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 180, f"README.md has {len(lines)} lines; move details into docs/"
    linked = set(LINK.findall(_strip_fences("\n".join(lines))))
    pages = {d for d in USER_DOCS if d.startswith("docs/")}
    assert pages <= {t.partition("#")[0] for t in linked}, "README.md should link every docs page"


def test_the_checks_catch_a_renamed_section(tmp_path):
    """Independent of the tree: a citation of a heading that is gone is reported."""
    doc = tmp_path / "P.md"
    doc.write_text("# Title\n\n## Kept section\n\n```\n## not a heading\n```\n", encoding="utf-8")
    assert anchors(doc) == {"title", "kept-section"}
    line = "see PROTOCOL.md#old-name and PROTOCOL.md#kept-section, or [PROTOCOL.md](x)"
    found = [(m.group(1) or "").lstrip("#") for m in CITATION.finditer(line)]
    assert found == ["old-name", "kept-section"]
    assert [a for a in found if a not in anchors(doc)] == ["old-name"]
