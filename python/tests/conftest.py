import json
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "fixtures"


@pytest.fixture(scope="session")
def fixtures() -> pathlib.Path:
    return FIXTURES


@pytest.fixture(scope="session")
def manifest():
    return json.loads((FIXTURES / "onnx" / "manifest.json").read_text())


@pytest.fixture(scope="session")
def mnist():
    import numpy as np

    return np.load(FIXTURES / "data" / "mnist_samples_x.npy"), np.load(FIXTURES / "data" / "mnist_samples_y.npy")


@pytest.fixture(scope="session")
def lenet():
    import cryptflow

    return cryptflow.compile(FIXTURES / "models" / "lenet_mnist.onnx")
