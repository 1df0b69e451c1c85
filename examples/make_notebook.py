"""Writes secure_inference.ipynb (the notebook is committed; edit this and rerun to change it)."""

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

cells = [
    new_markdown_cell(
        "# Secure inference from a notebook\n\n"
        "Compile a trained LeNet (ONNX), run it in float, in fixed point in the clear, and securely "
        "under Porthos (three parties, here as threads of this process), then compare the three and "
        "plot what each layer costs in communication. Executed in CI (`.ci/run`), so it cannot rot."
    ),
    new_code_cell(
        "import pathlib\n"
        "import numpy as np\n"
        "import cryptflow\n\n"
        "root = pathlib.Path('..').resolve()\n"
        "x = np.load(root / 'fixtures/data/mnist_samples_x.npy')      # four MNIST digits [4, 1, 28, 28]\n"
        "labels = np.load(root / 'fixtures/data/mnist_samples_y.npy')\n"
        "program = cryptflow.compile(root / 'fixtures/models/lenet_mnist.onnx')\n"
        "program"
    ),
    new_markdown_cell("## Float, fixed point, secure"),
    new_code_cell(
        "y_float, m_float = program.run(x, backend='float')\n"
        "y_clear, m_clear = program.run(x, backend='cleartext')\n"
        "steps = []\n"
        "y_secure, m_secure = program.run(x, backend='porthos', progress=lambda done, total, layer: steps.append(done))\n"
        "print(f'Porthos: {m_secure[\"seconds\"]:.3f} s, {m_secure[\"bytes_total\"] / 1e6:.1f} MB, '\n"
        "      f'{m_secure[\"rounds\"]} rounds, {len(steps)} progress steps')"
    ),
    new_code_cell(
        "rows = [\n"
        "    ('float vs fixed point (cleartext)', np.abs(y_float - y_clear).max(), (y_float.argmax(1) == y_clear.argmax(1)).mean()),\n"
        "    ('fixed point vs secure (Porthos)', np.abs(y_clear - y_secure).max(), (y_clear.argmax(1) == y_secure.argmax(1)).mean()),\n"
        "    ('float vs secure', np.abs(y_float - y_secure).max(), (y_float.argmax(1) == y_secure.argmax(1)).mean()),\n"
        "]\n"
        "print(f'{\"\":34} {\"max |difference|\":>17} {\"same prediction\":>16}')\n"
        "for name, diff, agree in rows:\n"
        "    print(f'{name:34} {diff:17.2e} {agree:16.0%}')\n"
        "print('labels', labels, 'secure predictions', y_secure.argmax(1))\n"
        "# The notebook is a test too: it fails if the secure run disagrees with the cleartext one.\n"
        "assert (y_secure.argmax(1) == y_clear.argmax(1)).all()\n"
        "assert np.abs(y_float - y_clear).max() < 0.05"
    ),
    new_markdown_cell("## Per-layer cost\n\nBytes sent by all parties in each layer (the session set-up and the weight sharing first)."),
    new_code_cell(
        "%matplotlib inline\n"
        "import matplotlib.pyplot as plt\n\n"
        "layers = [l for l in m_secure['layers'] if l['bytes_sent'] > 0]\n"
        "fig, ax = plt.subplots(figsize=(9, 3.5))\n"
        "ax.bar(range(len(layers)), [l['bytes_sent'] / 1e6 for l in layers])\n"
        "ax.set_xticks(range(len(layers)), [l['layer'] for l in layers], rotation=60, ha='right', fontsize=8)\n"
        "ax.set_ylabel('MB sent (all parties)')\n"
        "ax.set_title(f'LeNet under Porthos, {len(x)} inferences')\n"
        "fig.tight_layout()\n"
        "assert len(layers) > 3"
    ),
]
nb = new_notebook(cells=cells, metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})
nbformat.write(nb, "secure_inference.ipynb")
