"""Teaching statistics of the course notebooks, computed from the built ``.ipynb`` files.

    python notebooks/stats.py                 # every notebook beside this file
    python notebooks/stats.py 02_gemma_decoder

Per notebook: the share of prose (markdown characters ÷ all cell source characters), the longest
code cell in lines, the number of distinct linked references (http/https links in markdown), and
the number of cells. The course's floors are >= 50 % prose, no code cell over 25 lines and at
least two linked references; a line that misses one is marked with "!".
"""

import re
import sys
from pathlib import Path

import nbformat

HERE = Path(__file__).resolve().parent
LINK = re.compile(r"https?://[^\s)\]>\"'`]+")


def stats(path):
    nb = nbformat.read(path, as_version=4)
    md = sum(len(c.source) for c in nb.cells if c.cell_type == "markdown")
    total = sum(len(c.source) for c in nb.cells)
    longest = max((len(c.source.splitlines()) for c in nb.cells if c.cell_type == "code"), default=0)
    links = {m.rstrip(".,;:") for c in nb.cells if c.cell_type == "markdown" for m in LINK.findall(c.source)}
    return {"prose": md / total if total else 0.0, "longest": longest, "refs": len(links), "cells": len(nb.cells)}


def main(names):
    paths = [HERE / f"{n}.ipynb" for n in names] if names else sorted(HERE.glob("[0-9][0-9]*_*.ipynb"))
    print(f"{'notebook':<36} {'prose':>6} {'longest code cell':>18} {'references':>11} {'cells':>6}")
    for p in paths:
        s = stats(p)
        flag = lambda bad: "!" if bad else " "
        print(f"{p.stem:<36} {s['prose']:>5.0%}{flag(s['prose'] < 0.5)} {s['longest']:>12} lines{flag(s['longest'] > 25)}"
              f" {s['refs']:>10}{flag(s['refs'] < 2)} {s['cells']:>6}")


if __name__ == "__main__":
    main(sys.argv[1:])
