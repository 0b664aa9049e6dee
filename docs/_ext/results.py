"""Results pages generated from ``experiments/results/`` (and ``benchmarks/``) at build time.

Every Markdown file a committed script wrote becomes one page of the site that *includes* the
file, so a number on the site is the number in the file: nothing is retyped. The pages and the
list ``results/_list.md`` are rewritten on every build (``builder-inited``), so a new results
file appears on the site without editing the docs.
"""

from __future__ import annotations

from pathlib import Path

#: folders scanned for results files, relative to the repository root
SOURCES = ("experiments/results", "benchmarks")


def _title(path: Path) -> str:
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("# "):
            return line[2:].strip()
    return path.stem


def _slug(rel: Path) -> str:
    return "-".join(rel.with_suffix("").parts).replace(".", "_")


def write_pages(root: Path, out: Path) -> list[tuple[str, str, str]]:
    """Write one stub page per results file into ``out``; return (slug, source, title) rows."""
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("gen-*.md"):
        old.unlink()
    rows = []
    for source in SOURCES:
        for path in sorted((root / source).rglob("*.md")):
            rel = path.relative_to(root)
            slug = "gen-" + _slug(rel)
            include = Path("..", "..", *rel.parts).as_posix()  # relative to docs/results/
            (out / f"{slug}.md").write_text(
                f"```{{include}} {include}\n:relative-images:\n:relative-docs: ../..\n```\n\n"
                f"*Written by a committed script into* `{rel.as_posix()}`.\n",
                encoding="utf-8",
            )
            rows.append((slug, rel.as_posix(), _title(path)))
    lines = ["| results file | what it measured |", "|---|---|"]
    lines += [f"| [`{src}`]({slug}.md) | {title} |" for slug, src, title in rows]
    toc = "\n".join(slug for slug, _, _ in rows)
    (out / "_list.md").write_text(
        "\n".join(lines) + f"\n\n```{{toctree}}\n:hidden:\n\n{toc}\n```\n", encoding="utf-8"
    )
    return rows


def _generate(app) -> None:
    write_pages(Path(app.confdir).parent, Path(app.confdir) / "results")


def setup(app):
    app.connect("builder-inited", _generate)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
