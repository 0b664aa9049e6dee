"""The documentation site's sources: the API reference covers the public API, every tutorial is
listed, and the results pages are generated from every results file (``make docs`` builds and
executes them; these checks are the fast part)."""

import re
import sys
from pathlib import Path

import pyro_cvae

DOCS = Path(__file__).resolve().parents[1] / "docs"


def test_api_reference_documents_every_public_name():
    text = (DOCS / "api.rst").read_text()
    pattern = r"^\.\. (?:auto)?(?:function|class|exception|data):: (\w+)"
    documented = set(re.findall(pattern, text, re.M))
    assert documented == set(pyro_cvae.__all__)


def test_every_tutorial_is_in_the_index_and_executable():
    index = (DOCS / "tutorials" / "index.md").read_text()
    listed = re.search(r"```\{toctree\}\n(.*?)```", index, re.S).group(1).split()
    listed = [name for name in listed if not name.startswith(":") and not name.isdigit()]
    pages = sorted(p.stem for p in (DOCS / "tutorials").glob("*.md") if p.stem != "index")
    assert sorted(listed) == pages
    for name in pages:
        text = (DOCS / "tutorials" / f"{name}.md").read_text()
        assert text.startswith("---\njupytext:"), f"{name}.md lacks the notebook header"
        assert "```{code-cell} python" in text, f"{name}.md has no code cell to execute"


def test_results_pages_are_generated_from_every_results_file(tmp_path):
    sys.path.insert(0, str(DOCS / "_ext"))
    try:
        import results
    finally:
        sys.path.pop(0)
    rows = results.write_pages(DOCS.parent, tmp_path)
    sources = {src for _, src, _ in rows}
    root = DOCS.parent
    expected = {p.relative_to(root).as_posix()
                for folder in results.SOURCES for p in (root / folder).rglob("*.md")}  # fmt: skip
    assert sources == expected and "experiments/results/long/iwae_vs_elbo.md" in sources
    for slug, src, _ in rows:
        page = (tmp_path / f"{slug}.md").read_text()
        assert f"../../{src}" in page  # included, not copied: the numbers are the file's
    assert all(slug in (tmp_path / "_list.md").read_text() for slug, _, _ in rows)
