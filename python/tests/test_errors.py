"""Bad input raises clear exceptions carrying the command line's messages."""

import numpy as np
import pytest

import cryptflow


def test_wrong_shape(lenet):
    with pytest.raises(cryptflow.InputError, match=r"has shape \[2, 1, 28, 27\]; the model's input has shape \[1, 1, 28, 28\]"):
        lenet.run(np.zeros((2, 1, 28, 27), np.float32), backend="porthos")


def test_unknown_backend_protocol_truncation_fault(lenet):
    x = np.zeros((1, 1, 28, 28), np.float32)
    with pytest.raises(cryptflow.OptionsError, match="unknown backend `gpu`: choose float, cleartext, porthos, 2pc or aramis"):
        lenet.run(x, backend="gpu")
    with pytest.raises(cryptflow.OptionsError, match="unknown protocol"):
        lenet.run(x, backend="porthos", protocol="spdz")
    with pytest.raises(cryptflow.OptionsError, match="unknown truncation"):
        lenet.run(x, backend="porthos", truncation="rounded")
    with pytest.raises(cryptflow.OptionsError, match="unknown fault `melt`"):
        lenet.run(x, backend="porthos", inject_fault="2:melt")
    with pytest.raises(cryptflow.RunError, match="--inject-fault applies to secure backends"):
        lenet.run(x, backend="float", inject_fault="2:crash")


def test_missing_files(tmp_path):
    with pytest.raises(cryptflow.ModelError, match="cannot import .*missing.onnx"):
        cryptflow.compile(tmp_path / "missing.onnx")
    with pytest.raises(cryptflow.ModelError, match="unknown model format"):
        (tmp_path / "model.txt").write_text("x")
        cryptflow.compile(tmp_path / "model.txt")
    with pytest.raises(cryptflow.ProgramError, match="does not exist: compile the model first"):
        cryptflow.load(tmp_path / "nothing")
    with pytest.raises(cryptflow.ModelError, match="cannot import the ONNX model"):
        cryptflow.compile(b"not a model")
    with pytest.raises(cryptflow.ModelError, match="give a path, the bytes of a model or an onnx.ModelProto"):
        cryptflow.compile(42)


def test_bad_values_and_types(lenet):
    x = np.zeros((1, 1, 28, 28), np.float32)
    x[0, 0, 3, 4] = np.nan
    with pytest.raises(cryptflow.InputError, match=r"element \[0, 0, 3, 4\] is NaN"):
        lenet.run(x, backend="porthos")
    with pytest.raises(cryptflow.InputError, match="unsupported array type bool"):
        lenet.run(np.zeros((1, 1, 28, 28), bool), backend="cleartext")
    with pytest.raises(cryptflow.InputError, match="the model has no input `image`"):
        lenet.run({"image": np.zeros((1, 1, 28, 28), np.float32)}, backend="cleartext")
    with pytest.raises(cryptflow.InputError, match="the model takes 1 input"):
        lenet.run([x, x], backend="cleartext")
    big = np.full((1, 1, 28, 28), 1e30, np.float32)
    with pytest.raises(cryptflow.CryptflowError, match="beyond the 64-bit ring"):
        lenet.run(big, backend="porthos")


def test_options_contradict(fixtures, mnist):
    x, _ = mnist
    with pytest.raises(cryptflow.OptionsError, match="not both"):
        cryptflow.compile(fixtures / "models" / "mlp_mnist.onnx", scale=12, calibrate=x)
    with pytest.raises(cryptflow.OptionsError, match="unknown rounding"):
        cryptflow.compile(fixtures / "models" / "mlp_mnist.onnx", rounding="up")


def test_a_failing_party_is_reported(lenet):
    x = np.zeros((1, 1, 28, 28), np.float32)
    with pytest.raises(cryptflow.RunError, match=r"the secure computation failed \(no output was released\)"):
        lenet.run(x, backend="aramis", inject_fault="2:tamper")


def test_exception_hierarchy():
    for e in (cryptflow.InputError, cryptflow.ModelError, cryptflow.ProgramError, cryptflow.RunError, cryptflow.OptionsError):
        assert issubclass(e, cryptflow.CryptflowError) and issubclass(e, Exception)
