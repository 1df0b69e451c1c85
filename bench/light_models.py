"""Turns the ONNX zoo's "light" models (weights replaced by ConstantOfShape nodes, shipped in the
`onnx` PyPI package) into benchmark models with seeded random weights of sensible scale, so that
activations stay in a realistic range. Benchmark models are generated, never committed.

    python3 bench/light_models.py resnet50 bench-out/resnet50.onnx
"""
import os
import sys

import numpy as np
import onnx
from onnx import numpy_helper


def randomize(name: str, out: str, seed: int = 0) -> None:
    path = os.path.join(os.path.dirname(onnx.__file__), "backend/test/data/light", f"light_{name}.onnx")
    model = onnx.load(path)
    rng = np.random.default_rng(seed)
    graph = model.graph
    shapes = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    consumers = {}
    for node in graph.node:
        for k, i in enumerate(node.input):
            consumers.setdefault(i, []).append((node, k))
    keep, new_inits = [], []
    for node in graph.node:
        if node.op_type != "ConstantOfShape":
            keep.append(node)
            continue
        shape = tuple(int(d) for d in shapes[node.input[0]])
        target = node.output[0]
        users = consumers.get(target, [])
        op, slot = users[0] if users else (None, 0)
        if op is not None and op.op_type in ("Conv", "Gemm") and slot == 1:
            fan_in = int(np.prod(shape[1:])) if op.op_type == "Conv" else shape[-1]
            value = rng.normal(0.0, np.sqrt(2.0 / fan_in), shape)
        elif op is not None and op.op_type == "BatchNormalization":
            value = {1: rng.uniform(0.2, 0.5, shape), 2: rng.normal(0, 0.05, shape),
                     3: rng.normal(0, 0.05, shape), 4: rng.uniform(0.8, 1.2, shape)}[slot]
        else:
            value = rng.normal(0.0, 0.01, shape)
        new_inits.append(numpy_helper.from_array(value.astype(np.float32), target))
    used = {i for n in keep for i in n.input}
    inits = [i for i in graph.initializer if i.name in used] + new_inits
    del graph.node[:]
    graph.node.extend(keep)
    del graph.initializer[:]
    graph.initializer.extend(inits)
    # The light models list their weights as graph inputs (IR 3); keep only the real input.
    data_inputs = [i for i in graph.input if i.name not in {t.name for t in inits}][:1]
    del graph.input[:]
    graph.input.extend(data_inputs)
    model.ir_version = max(model.ir_version, 4)
    onnx.checker.check_model(model)
    os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
    onnx.save(model, out)
    x = np.random.default_rng(seed + 1).normal(0, 1, (1, 3, 224, 224)).astype(np.float32)
    np.save(out.replace(".onnx", ".input.npy"), x)


if __name__ == "__main__":
    randomize(sys.argv[1], sys.argv[2])
