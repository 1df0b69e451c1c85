#!/usr/bin/env python3
"""Freeze Keras ResNet50 and DenseNet121 (random weights, `weights=None`) into TensorFlow
GraphDefs for the TensorFlow front end's compile-time and accuracy figures.

Writes into bench-out/ (git-ignored), for NAME in resnet50, densenet121:

* NAME.pb: the frozen graph (tf.function with input signature [1, 224, 224, 3] float32,
  `convert_variables_to_constants_v2`, serialized deterministically);
* NAME.input.npy: a seeded random input (N(0, 1), float32);
* NAME.logits.npy: TensorFlow's output of the tensor feeding the final Softmax, computed by
  running the frozen graph itself (the importer compiles the Softmax away, so the imported
  graph outputs these logits);
* NAME.probs.npy: TensorFlow's Softmax output.

Then, from the repository root:

    python3 bench/keras_models.py
    cargo run --release -p cryptflow-tensorflow --example tf_compile -- \\
        bench-out/resnet50.pb bench-out/resnet50.input.npy bench-out/resnet50.logits.npy

Takes about a minute on 2 cores (most of it TensorFlow building and freezing the models).
"""

import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ["TF_ENABLE_ONEDNN_OPTS"] = "0"

from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import keras  # noqa: E402
from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2  # noqa: E402

OUT = Path(__file__).resolve().parent.parent / "bench-out"
SHAPE = [1, 224, 224, 3]


def freeze(model):
    fn = tf.function(lambda x: model(x, training=False))
    concrete = fn.get_concrete_function(tf.TensorSpec(SHAPE, tf.float32, name="input"))
    return convert_variables_to_constants_v2(concrete).graph.as_graph_def()


def run(gd, x, names):
    g = tf.Graph()
    with g.as_default():
        tf.compat.v1.import_graph_def(gd, name="")
    with tf.compat.v1.Session(graph=g) as sess:
        return sess.run([g.get_tensor_by_name(n + ":0") for n in names], {g.get_tensor_by_name("input:0"): x})


def main(argv):
    OUT.mkdir(exist_ok=True)
    wanted = argv[1:] or ["resnet50", "densenet121"]
    builders = {
        "resnet50": lambda: keras.applications.ResNet50(weights=None),
        "densenet121": lambda: keras.applications.DenseNet121(weights=None),
    }
    for name in wanted:
        keras.utils.set_random_seed(20200518)
        t = time.time()
        model = builders[name]()
        gd = freeze(model)
        softmax = [n for n in gd.node if n.op == "Softmax"]
        assert len(softmax) == 1, f"{name}: expected one Softmax"
        logits_name = softmax[0].input[0].split(":")[0]
        x = np.random.default_rng(7).standard_normal(SHAPE).astype(np.float32)
        outputs = [n.name for n in gd.node if n.op == "Identity" and n.input and n.input[0] == softmax[0].name]
        probs_name = outputs[0] if outputs else softmax[0].name
        logits, probs = run(gd, x, [logits_name, probs_name])
        data = gd.SerializeToString(deterministic=True)
        (OUT / f"{name}.pb").write_bytes(data)
        np.save(OUT / f"{name}.input.npy", x)
        np.save(OUT / f"{name}.logits.npy", logits.astype(np.float32))
        np.save(OUT / f"{name}.probs.npy", probs.astype(np.float32))
        ops = sorted({n.op for n in gd.node})
        print(f"{name}: {model.count_params():,} parameters, {len(gd.node)} nodes, {len(data) / 1e6:.1f} MB, "
              f"{time.time() - t:.1f} s; logits `{logits_name}` (max |logit| {np.abs(logits).max():.3g}); ops: {' '.join(ops)}")


if __name__ == "__main__":
    main(sys.argv)
