"""Executes every notebook in examples/ (nbclient); fails on the first cell that raises.
`--write` saves the executed notebooks (with their outputs) back."""

import pathlib
import sys

import nbformat
from nbclient import NotebookClient

here = pathlib.Path(__file__).resolve().parent
notebooks = sorted(here.glob("*.ipynb"))
if not notebooks:
    sys.exit("no notebook in examples/")
for path in notebooks:
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(here)}}).execute()
    images = sum(1 for c in nb.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {}))
    if images == 0:
        sys.exit(f"{path.name}: no plot was produced")
    if "--write" in sys.argv:
        nbformat.write(nb, path)
    print(f"{path.name}: executed {len(nb.cells)} cells, {images} plot(s)")
