"""Build the course notebooks from their ``# %%`` sources and run them, storing the outputs.

    python notebooks/build.py                 # every notebook in notebooks/src/
    python notebooks/build.py 01_tokenizer    # just one
    python notebooks/build.py --prose 01_tokenizer   # only markdown changed: update it, run nothing

A source is a plain Python file: ``# %% [markdown]`` starts a markdown cell (its lines begin with
``# ``), ``# %%`` starts a code cell. The built ``.ipynb`` beside this file is what learners open
and what ``pytest --nbval`` re-runs and compares.
"""

import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

HERE = Path(__file__).resolve().parent


def parse(source: str):
    cells, kind, lines = [], None, []

    def flush():
        text = "\n".join(lines).strip("\n")
        if kind == "markdown":
            text = "\n".join(line[2:] if line.startswith("# ") else line.lstrip("#") for line in text.splitlines())
            cells.append(nbformat.v4.new_markdown_cell(text))
        elif kind == "code" and text.strip():
            cells.append(nbformat.v4.new_code_cell(text))

    for line in source.splitlines():
        if line.startswith("# %%"):
            flush()
            kind, lines = ("markdown" if "[markdown]" in line else "code"), []
        else:
            lines.append(line)
    flush()
    return cells


def build(name: str):
    src = HERE / "src" / f"{name}.py"
    nb = nbformat.v4.new_notebook()
    nb.cells = parse(src.read_text(encoding="utf-8"))
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    start = time.time()
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(HERE)}}).execute()
    nb.metadata.pop("widgets", None)  # widget state is large and random; the static figures stay
    nbformat.write(nb, HERE / f"{name}.ipynb")
    print(f"{name}: {len(nb.cells)} cells, ran in {time.time() - start:.0f} s")


def update_prose(name: str):
    """Copy the source's markdown into the built notebook, keeping the stored outputs. Refuses if
    any code cell changed (or cells were added or removed): then the notebook must run again."""
    built = nbformat.read(HERE / f"{name}.ipynb", as_version=4)
    cells = parse((HERE / "src" / f"{name}.py").read_text(encoding="utf-8"))
    kinds = lambda cs: [c.cell_type for c in cs]  # noqa: E731
    if kinds(cells) != kinds(built.cells) or any(
        new.source != old.source for new, old in zip(cells, built.cells) if new.cell_type == "code"
    ):
        sys.exit(f"{name}: code cells changed; run `python notebooks/build.py {name}`")
    for new, old in zip(cells, built.cells):
        old.source = new.source
    nbformat.write(built, HERE / f"{name}.ipynb")
    print(f"{name}: prose updated, outputs kept")


if __name__ == "__main__":
    args = sys.argv[1:]
    prose_only = "--prose" in args
    names = [a for a in args if a != "--prose"] or sorted(p.stem for p in (HERE / "src").glob("*.py"))
    for n in names:
        update_prose(n) if prose_only else build(n)
