#!/usr/bin/env bash
# The whole test suite (the README's test command; CI runs it through .ci/run):
#   1. the Rust workspace: cargo test --workspace --release (needs no Python);
#   2. aarch64, cross-compiled (.ci/aarch64): `cargo check` of the whole workspace (all
#      targets) for aarch64-unknown-linux-gnu; where the cross linker (Debian's
#      gcc-aarch64-linux-gnu) and qemu-user are installed, the SIMD kernel tests (the unit
#      tests of cryptflow-tensor and cryptflow-porthos) built for aarch64 and run under
#      qemu-aarch64. A missing target std (and no rustup to add it), linker or qemu skips that
#      part with a notice;
#   3. the Python package: a virtual environment (target/python-venv) with maturin, pytest and
#      the notebook tools from PyPI; the extension built once in release (maturin, sharing
#      Cargo's target/); pytest on python/tests; the example notebooks executed (nbclient).
# CRYPTFLOW_SKIP_RUST=1 skips steps 1 and 2 (to rerun only the Python part);
# CRYPTFLOW_SKIP_AARCH64=1 skips step 2.
set -euo pipefail
cd "$(dirname "$0")"
if [ "${CRYPTFLOW_SKIP_RUST:-0}" != 1 ]; then
    cargo test --workspace --release
fi
if [ "${CRYPTFLOW_SKIP_RUST:-0}" != 1 ] && [ "${CRYPTFLOW_SKIP_AARCH64:-0}" != 1 ]; then
    ./.ci/aarch64
fi
target="${CARGO_TARGET_DIR:-$PWD/target}"
venv="$target/python-venv"
python="${PYTHON:-python3}"
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check -r python/requirements-test.txt
rm -rf "$target/wheels"
(cd python && CARGO_TARGET_DIR="$target" "$venv/bin/maturin" build --release --quiet -o "$target/wheels")
"$venv/bin/pip" install --quiet --disable-pip-version-check --force-reinstall --no-deps "$target"/wheels/cryptflow-*.whl
"$venv/bin/pytest" -q python/tests
"$venv/bin/python" examples/run_notebooks.py
