"""The Python package's overhead on a LeNet inference against the Rust API.

    python python/bench/bench_lenet.py [REPEATS]

Runs the Rust example `bench_lenet` (cargo, release) and the same calls through the Python
package (installed), each REPEATS times after two warm-up runs, and prints the medians side by
side. The Python time includes converting the NumPy input and the output; the Rust time the
library's own input handling (the input array is cloned outside the timed region). Nothing is
asserted: wall-clock figures belong in the README, not in tests.
"""

import json
import os
import pathlib
import platform
import subprocess
import sys
import time

import numpy as np

import cryptflow

root = pathlib.Path(__file__).resolve().parents[2]
repeats = int(sys.argv[1]) if len(sys.argv) > 1 else 30

rust = json.loads(
    subprocess.run(
        ["cargo", "run", "--quiet", "--release", "-p", "cryptflow", "--example", "bench_lenet", "--", str(repeats)],
        cwd=root,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
)

program = cryptflow.compile(root / "fixtures/models/lenet_mnist.onnx")
x = np.load(root / "fixtures/data/mnist_samples_x.npy")
python = {}
for backend in ["cleartext", "porthos"]:
    for batch in [1, 4]:
        times = []
        for _ in range(repeats + 2):
            started = time.perf_counter()
            y, metrics = program.run(x[:batch], backend=backend)
            times.append(time.perf_counter() - started)
            assert y.shape == (batch, 10)
        times = sorted(times[2:])
        python[f"{backend}/{batch}"] = times[len(times) // 2]

cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.processor())
simd = f"{metrics['simd_level']} (detected {metrics['simd_level_detected']}, CRYPTFLOW_SIMD={os.environ.get('CRYPTFLOW_SIMD', 'unset')})"
print(f"CPU: {cpu}; SIMD level: {simd}; {repeats} runs each, medians")
print(f"{'backend/batch':16} {'Rust API (ms)':>14} {'Python (ms)':>12} {'overhead':>9}")
for key in rust:
    r, p = rust[key] * 1e3, python[key] * 1e3
    print(f"{key:16} {r:14.2f} {p:12.2f} {100 * (p - r) / r:8.1f}%")
