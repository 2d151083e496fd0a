"""The documentation as an entry: the README stays short, and every relative link in the project's
Markdown files points at a file (and, with ``#anchor``, a heading) that exists."""
import re
from pathlib import Path

from tests.helpers import REPO

LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def _markdown_files() -> list[Path]:
    return sorted([REPO / "README.md", *REPO.glob("docs/*.md"), *REPO.glob("assets/*.md")])


def _anchors(text: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    headings = re.findall(r"^#+\s+(.*)$", text, flags=re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


def broken_links(path: Path) -> list[str]:
    """The relative links of one Markdown file that resolve to no file or no heading."""
    text, broken = path.read_text(), []
    for target in LINK.findall(text):
        if re.match(r"[a-z]+:", target):  # http:, https:, mailto:
            continue
        file, _, anchor = target.partition("#")
        dest = (path.parent / file).resolve() if file else path
        if not dest.exists():
            broken.append(target)
        elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest.read_text()):
            broken.append(target)
    return broken


def test_every_relative_link_resolves():
    files = _markdown_files()
    assert len(files) >= 10
    broken = {str(p.relative_to(REPO)): b for p in files if (b := broken_links(p))}
    assert broken == {}


def test_the_check_sees_a_broken_link(tmp_path):
    (tmp_path / "there.md").write_text("# A heading\n")
    doc = tmp_path / "doc.md"
    doc.write_text("[ok](there.md) [ok](there.md#a-heading) [web](https://example.org/x) "
                   "[gone](missing.md) [bad anchor](there.md#nowhere)\n")
    assert broken_links(doc) == ["missing.md", "there.md#nowhere"]


def test_readme_is_an_entry_not_a_manual():
    lines = (REPO / "README.md").read_text().splitlines()
    assert len(lines) <= 250
    for command in ("make demo", "make test"):
        assert any(command in line for line in lines), command
