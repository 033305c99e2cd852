"""Prose and output cannot drift apart: every number a notebook's prose states is either printed by
a code cell beside it or named as a fact from a source.

Each notebook has ``notebooks/claims/NAME.toml``:

- ``[[computed]]``: ``prose`` is exact text of one markdown cell; its first number (or ``number``)
  is the claim. ``output`` is a regular expression searched in the stored outputs of the three code
  cells before and the three after that markdown cell; its first group is the value the notebook
  printed. Without ``tolerance`` the claim must equal that value rounded to the claim's decimals
  (``scale`` multiplies the printed value first, e.g. 100 for a fraction stated in %). A summary
  that restates a number names, in ``described_in``, text of the markdown cell beside its code.
- ``[[given]]``: a number the notebook does not compute (a config value, a paper's figure), with
  its ``source``.

``nbval`` re-runs every notebook and compares the fresh outputs with the stored ones, so a
computed claim checked here against a stored output is checked against the code.

The lint test finds every number in a markdown cell that carries a unit (×, %, KiB, ms, B, K …)
(model names such as 270M or 31B excepted) and requires it to lie inside the ``prose`` of some entry, so a new number cannot slip in
unaccounted for. Run ``python tests/test_claims.py`` for the count of entries per notebook.
"""

import json
import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
CLAIMS = ROOT / "notebooks" / "claims"
NEIGHBOURS = 3  # code cells searched on each side of the prose

NUMBER = re.compile(r"(?<![\w.^/-])-?\d[\d,]*(?:\.\d+)?")
# A number followed by a unit: what a reader takes as a measured or quoted quantity.
UNIT = re.compile(
    r"(?<![\w.^/-])(\d[\d,]*(?:\.\d+)?)(?:\s|\u202f|\u00a0)?"
    r"(×|%|KiB|MiB|GiB|KB|MB|GB|ms|µs|s|tokens?/s|tok/s|B|M|K|x)(?![\w])"
)
# Not prose: link targets, inline code, code blocks, LaTeX, HTML tags and images.
# Model names (the 270M, 26B-A4B, 31B) are names, not quantities.
MODEL_SIZES = {"270M", "1B", "2B", "4B", "9B", "12B", "26B", "27B", "31B"}
NOT_PROSE = re.compile(r"```.*?```|`[^`]*`|\$\$.*?\$\$|\$[^$]*\$|\]\([^)]*\)|<[^>]+>", re.S)


def _text(cell):
    source = cell["source"]
    return "".join(source) if isinstance(source, list) else source


def _outputs(cell):
    parts = []
    for out in cell.get("outputs", []):
        if "text" in out:
            parts.append(_text({"source": out["text"]}))
        data = out.get("data", {})
        if "text/plain" in data:
            parts.append(_text({"source": data["text/plain"]}))
    return "\n".join(parts)


def _number(text):
    return float(text.replace(",", ""))


def _decimals(text):
    return len(text.split(".")[1]) if "." in text else 0


def load(notebook: Path):
    cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
    path = CLAIMS / f"{notebook.stem}.toml"
    claims = tomllib.loads(path.read_text(encoding="utf-8")) if path.exists() else None
    return cells, claims


def _find_markdown(cells, prose):
    hits = [i for i, c in enumerate(cells) if c["cell_type"] == "markdown" and prose in _text(c)]
    assert hits, f"prose {prose!r} is in no markdown cell: the text changed, update the claim"
    return hits[0]


def _neighbour_outputs(cells, index):
    code = [i for i, c in enumerate(cells) if c["cell_type"] == "code"]
    before = [i for i in code if i < index][-NEIGHBOURS:]
    after = [i for i in code if i > index][:NEIGHBOURS]
    return "\n".join(_outputs(cells[i]) for i in before + after)


def check_computed(cells, claim):
    prose = claim["prose"]
    index = _find_markdown(cells, prose)
    wanted = claim.get("number") or (NUMBER.findall(prose) or [None])[0]
    assert wanted and wanted in prose, f"no number in prose {prose!r}"
    if "described_in" in claim:  # a summary restating a number computed elsewhere
        index = _find_markdown(cells, claim["described_in"])
    text = _neighbour_outputs(cells, index)
    match = re.search(claim["output"], text)
    assert match, (
        f"{prose!r}: no output of the {NEIGHBOURS} code cells on either side matches {claim['output']!r}; "
        "print the number in the cell the prose describes"
    )
    printed = _number(match.group(1)) * claim.get("scale", 1)
    stated = _number(wanted.lstrip("-")) * (-1 if wanted.startswith("-") else 1)
    if "tolerance" in claim:
        ok = abs(printed - stated) <= claim["tolerance"] * abs(printed)
    else:
        ok = abs(round(printed, _decimals(wanted)) - stated) < 1e-9 * max(1.0, abs(stated))
    assert ok, f"prose says {wanted} ({prose!r}) but the notebook printed {match.group(1)} ({match.group(0)!r})"


def unaccounted(cells, claims):
    """Numbers with a unit in markdown cells that no entry's prose covers, as (cell, text)."""
    entries = claims.get("computed", []) + claims.get("given", [])
    missing = []
    for i, cell in enumerate(cells):
        if cell["cell_type"] != "markdown":
            continue
        raw = _text(cell)
        covered = [(m.start(), m.end()) for e in entries for m in re.finditer(re.escape(e["prose"]), raw)]
        for m in UNIT.finditer(raw):
            inside_markup = any(s <= m.start() < e for s, e in ((n.start(), n.end()) for n in NOT_PROSE.finditer(raw)))
            if m.group(0) in MODEL_SIZES:
                continue
            if inside_markup or any(s <= m.start() and m.end() <= e for s, e in covered):
                continue
            missing.append((i, m.group(0)))
    return missing


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_notebook_has_claims(notebook):
    _, claims = load(notebook)
    assert claims is not None, f"notebooks/claims/{notebook.stem}.toml is missing"
    for kind in claims:
        assert kind in ("computed", "given"), f"unknown table [[{kind}]] in {notebook.stem}.toml"
    for given in claims.get("given", []):
        assert given.get("source", "").strip(), f"given {given['prose']!r} has no source"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_computed_claims_match_outputs(notebook):
    cells, claims = load(notebook)
    assert claims is not None, f"notebooks/claims/{notebook.stem}.toml is missing"
    errors = []
    for claim in claims.get("computed", []):
        try:
            check_computed(cells, claim)
        except AssertionError as e:
            errors.append(str(e))
    for given in claims.get("given", []):
        try:
            _find_markdown(cells, given["prose"])
        except AssertionError as e:
            errors.append(str(e))
    assert not errors, "\n".join(errors)


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_number_with_a_unit_is_accounted_for(notebook):
    cells, claims = load(notebook)
    assert claims is not None, f"notebooks/claims/{notebook.stem}.toml is missing"
    missing = unaccounted(cells, claims)
    assert not missing, "numbers in prose with no claim entry (cell index, text): " + ", ".join(
        f"[{i}] {t!r}" for i, t in missing
    )


def test_the_checker_catches_drift():
    cells = [
        {"cell_type": "code", "source": "print(r)", "outputs": [{"output_type": "stream", "text": "ratio 9.71×\n"}]},
        {"cell_type": "markdown", "source": "The error is about 9.7× wider, in 40 KiB [x](a/16x.png)."},
    ]
    check_computed(cells, {"prose": "about 9.7× wider", "output": r"ratio ([\d.]+)×"})
    drifted = [cells[0], {"cell_type": "markdown", "source": "about 16× wider"}]
    with pytest.raises(AssertionError, match="prose says 16"):
        check_computed(drifted, {"prose": "about 16× wider", "output": r"ratio ([\d.]+)×"})
    with pytest.raises(AssertionError, match="matches"):
        check_computed(cells, {"prose": "about 9.7× wider", "output": r"speed ([\d.]+)×"})
    with pytest.raises(AssertionError, match="in no markdown cell"):
        check_computed(cells, {"prose": "about 13× wider", "output": r"ratio ([\d.]+)×"})
    assert unaccounted(cells, {"computed": [{"prose": "about 9.7× wider"}]}) == [(1, "40 KiB")]


if __name__ == "__main__":
    for nb in NOTEBOOKS:
        _, c = load(nb)
        if c is None:
            print(f"{nb.stem:40s} no claims file")
        else:
            print(f"{nb.stem:40s} computed {len(c.get('computed', [])):3d}  given {len(c.get('given', [])):3d}")
