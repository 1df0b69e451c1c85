"""The Python API against the fixtures the Rust tests use (crates/cli/tests/onnx_fixtures.rs,
secure.rs): float within 1e-4 of onnxruntime's saved outputs, secure predictions equal to the
cleartext executor's."""

import numpy as np
import pytest

import cryptflow


def close_to_onnxruntime(got, expected):
    """The Rust fixture test's tolerance: 1e-4 relative with a 1e-5 absolute floor."""
    return np.abs(got - expected) <= 1e-4 * np.abs(expected) + 1e-5


def test_float_matches_onnxruntime_on_every_fixture(fixtures, manifest):
    checked, failures = 0, []
    for entry in manifest:
        name = entry["name"]
        if name.startswith("unsupported"):
            with pytest.raises(cryptflow.ModelError):
                cryptflow.compile(fixtures / "onnx" / f"{name}.onnx")
            continue
        shapes = {entry["input_name"]: entry["input_shape"]} if entry.get("input_shape") else None
        program = cryptflow.compile(fixtures / "onnx" / f"{name}.onnx", input_shapes=shapes)
        x = np.load(fixtures / "onnx" / f"{name}.input.npy")
        expected = np.load(fixtures / "onnx" / f"{name}.output.npy")
        y, metrics = program.run(x, backend="float")
        assert metrics["backend"] == "float"
        if y.size != expected.size:
            failures.append(f"{name}: {y.shape} vs {expected.shape}")
            continue
        ok = close_to_onnxruntime(y.reshape(expected.shape), expected)
        if not ok.all():
            failures.append(f"{name}: max error {np.abs(y.reshape(expected.shape) - expected).max()}")
        checked += 1
    assert not failures, failures
    assert checked > 150


def test_lenet_float_matches_onnxruntime_live(fixtures, mnist, lenet):
    ort = pytest.importorskip("onnxruntime")
    x, _ = mnist
    session = ort.InferenceSession(str(fixtures / "models" / "lenet_mnist.onnx"))
    name = session.get_inputs()[0].name
    expected = np.concatenate([session.run(None, {name: x[k : k + 1]})[0] for k in range(len(x))])
    y, _ = lenet.run(x, backend="float")
    assert y.shape == expected.shape
    assert close_to_onnxruntime(y, expected).all(), np.abs(y - expected).max()


@pytest.mark.parametrize("backend", ["porthos", "2pc", "aramis"])
def test_secure_predictions_equal_cleartext(mnist, lenet, backend):
    x, labels = mnist
    clear, _ = lenet.run(x, backend="cleartext")
    secure, metrics = lenet.run(x, backend=backend)
    assert secure.shape == clear.shape == (len(x), 10)
    assert (secure.argmax(1) == clear.argmax(1)).all()
    # Porthos and 2PC agree with cleartext up to truncation error (cf. assert_near_cleartext).
    assert np.abs(secure - clear).max() < 0.05
    assert metrics["inferences"] == len(x)
    assert metrics["bytes_total"] > 0 and metrics["rounds"] > 0
    assert len(metrics["bytes_sent"]) == (2 if backend == "2pc" else 3)
    assert any(layer["bytes_sent"] > 0 for layer in metrics["layers"])
    if backend == "aramis":
        assert metrics["aramis"]["aramis_bytes_total"] > 0


@pytest.mark.parametrize("backend", ["porthos", "2pc", "aramis"])
def test_exact_truncation_computes_what_cleartext_does(mnist, lenet, backend):
    x, _ = mnist
    clear, _ = lenet.run(x, backend="cleartext")
    secure, _ = lenet.run(x, backend=backend, truncation="exact")
    assert np.array_equal(secure, clear)


def test_securenn_and_float_predictions(mnist, lenet):
    x, labels = mnist
    float_y, _ = lenet.run(x, backend="float")
    securenn, metrics = lenet.run(x, backend="porthos", protocol="securenn")
    assert metrics["backend"] == "porthos-securenn"
    assert (securenn.argmax(1) == float_y.argmax(1)).all()


def test_onnx_modelproto_bytes_and_path_compile_alike(fixtures, mnist):
    onnx = pytest.importorskip("onnx")
    path = fixtures / "models" / "mlp_mnist.onnx"
    from_proto = cryptflow.compile(onnx.load(str(path)))
    from_bytes = cryptflow.compile(path.read_bytes())
    from_path = cryptflow.compile(str(path))
    x, _ = mnist
    outs = [p.run(x, backend="cleartext").output for p in (from_proto, from_bytes, from_path)]
    assert np.array_equal(outs[0], outs[1]) and np.array_equal(outs[1], outs[2])


def test_tensorflow_graph(fixtures, mnist):
    program = cryptflow.compile(fixtures / "models" / "lenet_mnist.pb")
    x = np.load(fixtures / "data" / "mnist_samples_x_nhwc.npy")
    y, _ = program.run(x, backend="float")
    # TensorFlow's own outputs, saved when the fixture was made.
    expected = np.load(fixtures / "models" / "lenet_mnist_pb.expected_probs.npy")
    assert y.shape == expected.shape
    assert close_to_onnxruntime(y, expected).all(), np.abs(y - expected).max()


def test_multi_input_by_name_float_cleartext_porthos(fixtures):
    """transformers.rs' BERT classifier: three named inputs (dict in any order, or a list in
    the program's order); float within 1e-4 of onnxruntime, Porthos' classes equal cleartext's."""
    program = cryptflow.compile(fixtures / "models" / "tiny_bert_cls.onnx")
    names = [i["name"] for i in program.inputs]
    assert set(names) == {"input_ids", "attention_mask", "token_type_ids"}
    feeds = {n: np.load(fixtures / "models" / f"tiny_bert_cls.{n}.npy") for n in reversed(names)}
    expected = np.load(fixtures / "models" / "tiny_bert_cls.expected_logits.npy")
    y_float, _ = program.run(feeds, backend="float")
    assert close_to_onnxruntime(y_float.reshape(expected.shape), expected).all()
    a, _ = program.run(feeds, backend="cleartext")
    b, _ = program.run([feeds[n] for n in names], backend="cleartext")
    assert np.array_equal(a, b)
    secure, _ = program.run(feeds, backend="porthos")
    assert (secure.reshape(expected.shape).argmax(-1) == a.reshape(expected.shape).argmax(-1)).all()


def test_calibration_and_save_load(tmp_path, fixtures, mnist):
    x, labels = mnist
    program = cryptflow.compile(fixtures / "models" / "mlp_mnist.onnx", calibrate=x, labels=labels)
    assert any("chosen" in line for line in program.log)
    program.save(tmp_path / "mlp")
    loaded = cryptflow.load(tmp_path / "mlp")
    assert loaded.scale == program.scale
    assert loaded.report["scale"] == program.scale
    a, _ = program.run(x, backend="porthos")
    b, _ = loaded.run(x, backend="porthos")
    assert (a.argmax(1) == b.argmax(1)).all()
    # The saved folder is what `cryptflow compile -o` writes.
    assert (tmp_path / "mlp" / "program.json").is_file() and (tmp_path / "mlp" / "model-owner").is_dir()


def test_dtypes_are_accepted(mnist, lenet):
    x, _ = mnist
    a, _ = lenet.run(x, backend="cleartext")
    b, _ = lenet.run(x.astype(np.float64), backend="cleartext")
    c, _ = lenet.run(np.asfortranarray(x), backend="cleartext")
    assert np.array_equal(a, b) and np.array_equal(a, c)
    ints = np.round(x * 4).astype(np.int64)
    d, _ = lenet.run(ints, backend="cleartext")
    e, _ = lenet.run(ints.astype(np.float32), backend="cleartext")
    assert np.array_equal(d, e)


def test_comparison_domain(fixtures):
    """The compiled comparison domain (33 bits at scale 12 by default) narrows the compact
    protocol's comparisons; comparison_bits=64 compares all 64 bits; both predict alike."""
    model = fixtures / "models" / "lenet_mnist.onnx"
    narrow = cryptflow.compile(model)
    full = cryptflow.compile(model, comparison_bits=64)
    assert any("comparisons: on 33-bit values" in line for line in narrow.log)
    assert any("comparisons: on all 64 bits" in line for line in full.log)
    x = np.load(fixtures / "data" / "mnist_samples_x.npy")[:1]
    y_narrow, m_narrow = narrow.run(x, backend="porthos")
    y_full, m_full = full.run(x, backend="porthos")
    assert np.argmax(y_narrow) == np.argmax(y_full)
    assert m_narrow["bytes_total"] < m_full["bytes_total"]
    with pytest.raises(cryptflow.OptionsError, match="outside 1..=64"):
        cryptflow.compile(model, comparison_bits=0)
