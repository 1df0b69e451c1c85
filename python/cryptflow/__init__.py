"""cryptflow: secure inference for ONNX and TensorFlow models (CrypTFlow) from Python.

Three lines from a notebook::

    import cryptflow
    program = cryptflow.compile("lenet.onnx")            # or an onnx.ModelProto, or bytes
    y, metrics = program.run(x, backend="porthos")        # x: a NumPy array [N, ...] or one item

``run`` returns a :class:`RunResult` ``(output, metrics)``: the model's first output
(float32, stacked like the input) and the run's metrics (the JSON ``cryptflow run --metrics``
writes: time, bytes per party, rounds, the per-layer breakdown under ``"layers"``).

Errors are raised as :class:`CryptflowError` subclasses carrying the command line's messages:
:class:`InputError` (shape, dtype, names, values), :class:`ModelError` (import, compile),
:class:`ProgramError` (reading or writing a compiled program), :class:`RunError` (a party or
the session failed), :class:`OptionsError` (unknown backend, protocol, ...).

Copies: an input array is copied once into Rust-owned memory (C-contiguous arrays with one
memcpy); splitting a stack into inferences and encoding in fixed point make the backends' own
copies; the output is handed to NumPy without a copy. Runs release the GIL. A distributed
party (:class:`Party`) exchanges its input and output through .npy files in a temporary folder,
as ``cryptflow party`` does.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Sequence, Union

import numpy as np

from . import _cryptflow
from ._cryptflow import CryptflowError, InputError, ModelError, OptionsError, ProgramError, RunError

__all__ = [
    "compile",
    "load",
    "keygen",
    "Program",
    "Party",
    "RunResult",
    "BACKENDS",
    "CryptflowError",
    "InputError",
    "ModelError",
    "ProgramError",
    "RunError",
    "OptionsError",
]

#: The backends of ``Program.run`` (as ``cryptflow run --backend``).
BACKENDS = ("float", "cleartext", "porthos", "2pc", "aramis")

Inputs = Union[np.ndarray, Sequence[np.ndarray], Dict[str, np.ndarray]]
Progress = Callable[[int, int, str], Any]


class RunResult(NamedTuple):
    """What a run returns; unpacks as ``output, metrics = program.run(...)``."""

    output: np.ndarray
    """The model's first output, dequantised (float32), stacked like the first input."""
    metrics: Dict[str, Any]
    """Time, communication and per-layer cost (the ``cryptflow run --metrics`` JSON)."""


def _progress(progress: Any) -> Optional[Progress]:
    """A callable ``f(done, total, layer)``; a tqdm bar is driven to ``total``."""
    if progress is None or callable(progress) and not hasattr(progress, "update"):
        return progress
    if hasattr(progress, "update"):  # a tqdm-like bar

        def step(done: int, total: int, layer: str, bar=progress) -> None:
            if getattr(bar, "total", None) != total:
                bar.total = total
                if hasattr(bar, "refresh"):
                    bar.refresh()
            bar.update(done - getattr(bar, "n", done - 1))
            if hasattr(bar, "set_postfix_str"):
                bar.set_postfix_str(layer, refresh=False)

        return step
    raise OptionsError(f"progress must be a callable f(done, total, layer) or a tqdm bar, not {type(progress).__name__}")


def _inputs(x: Inputs) -> Any:
    if isinstance(x, dict):
        return {str(k): _array(v, str(k)) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_array(v, f"input {k}") for k, v in enumerate(x)]
    return _array(x, "the input")


def _array(x: Any, what: str) -> np.ndarray:
    if isinstance(x, np.ndarray):
        return x
    try:
        return np.asarray(x)
    except Exception as e:  # noqa: BLE001 - reported as an input error
        raise InputError(f"{what} is not an array: {e}") from None


class Program:
    """A compiled program (from :func:`compile` or :func:`load`)."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def run(
        self,
        x: Inputs,
        backend: str = "cleartext",
        *,
        protocol: str = "compact",
        truncation: str = "faithful",
        inject_fault: Optional[str] = None,
        progress: Optional[Any] = None,
    ) -> RunResult:
        """Runs the program with every party in this process (as ``cryptflow run``).

        ``x``: one array (a one-input model), a list in the order of :attr:`inputs`, or a dict
        by input name; each holds one item of the input's shape or a stack ``[N, ...]``.
        ``backend``: ``"float"``, ``"cleartext"``, ``"porthos"``, ``"2pc"`` or ``"aramis"``.
        ``protocol`` (porthos and aramis): ``"compact"`` (the default), ``"porthos"`` (the
        paper's) or ``"securenn"``.
        ``truncation``: ``"faithful"`` (the default), ``"exact"`` (the floor: secure outputs
        equal the cleartext executor's bit for bit, at more communication) or ``"local"`` (the
        paper's, free, with a small chance of a wrong value).
        ``progress``: ``f(done, total, layer)`` or a tqdm bar.
        """
        outputs, metrics = self._inner.run(
            _inputs(x), backend, protocol, truncation, inject_fault, _progress(progress)
        )
        return RunResult(outputs[0], metrics)

    def save(self, dir: Union[str, os.PathLike]) -> None:
        """Writes ``dir/program.json`` (public) and ``dir/model-owner/`` (private weights)."""
        self._inner.save(os.fspath(dir))

    @property
    def inputs(self) -> List[Dict[str, Any]]:
        """The client's inputs: ``{"name", "shape", "integer"}`` each, in order."""
        return self._inner.inputs

    @property
    def outputs(self) -> List[Dict[str, Any]]:
        """The outputs: ``{"name", "shape"}`` each; a run returns the first."""
        return self._inner.outputs

    @property
    def scale(self) -> int:
        """The fixed-point scale (fractional bits)."""
        return self._inner.scale

    @property
    def report(self) -> Dict[str, Any]:
        """The compiler's report (as in ``program.json``)."""
        return self._inner.report

    @property
    def log(self) -> List[str]:
        """The compiler's messages (what ``cryptflow compile`` prints)."""
        return self._inner.log

    def __repr__(self) -> str:
        ins = ", ".join(f"{i['name']}{list(i['shape'])}" for i in self.inputs)
        return f"<cryptflow.Program inputs=[{ins}] scale={self.scale}>"


def compile(
    model: Any,
    *,
    scale: Optional[int] = None,
    calibrate: Optional[Inputs] = None,
    labels: Optional[Any] = None,
    input_shapes: Optional[Dict[str, Sequence[int]]] = None,
    strip_output_softmax: bool = False,
    next_token: bool = False,
    rounding: str = "nearest",
    eager_scale_down: bool = False,
    relu_maxpool_switch: bool = True,
    batch_norm_folding: bool = True,
    liveness: bool = True,
    format: Optional[str] = None,
    name: Optional[str] = None,
    comparison_bits: Optional[int] = None,
) -> Program:
    """Compiles a model into a fixed-point program (as ``cryptflow compile``).

    ``model``: a path (``.onnx`` or ``.pb``), an ``onnx.ModelProto``, or the bytes of one
    (``format="tensorflow"`` for a serialized GraphDef). ``scale`` or ``calibrate`` (inputs
    over which the scale is chosen, optionally with integer ``labels``). ``comparison_bits``
    (``--comparison-bits``): the range of the compared values in bits, 1 to 64 (default: the
    compiler's, ``scale + 21``).
    """
    if hasattr(model, "SerializeToString"):
        # an onnx.ModelProto (a TensorFlow GraphDef needs format="tensorflow")
        model = model.SerializeToString()
    elif isinstance(model, (bytearray, memoryview)):
        model = bytes(model)
    elif isinstance(model, os.PathLike):
        model = os.fspath(model)
    shapes = [(str(k), [int(d) for d in v]) for k, v in (input_shapes or {}).items()]
    labels_array = None if labels is None else np.asarray(labels, dtype=np.int64)
    inner = _cryptflow.compile(
        model,
        format,
        scale,
        None if calibrate is None else _inputs(calibrate),
        labels_array,
        shapes,
        strip_output_softmax,
        next_token,
        rounding,
        eager_scale_down,
        relu_maxpool_switch,
        batch_norm_folding,
        liveness,
        name,
        comparison_bits,
    )
    return Program(inner)


def load(dir: Union[str, os.PathLike]) -> Program:
    """Loads a program written by ``cryptflow compile -o DIR`` or :meth:`Program.save`."""
    return Program(_cryptflow.load(os.fspath(dir)))


def keygen(dir: Union[str, os.PathLike], parties: int = 3, id: Optional[int] = None, force: bool = False) -> None:
    """Writes key pairs and certificates (as ``cryptflow keygen``): every party's into one
    folder (local tests only) or, with ``id``, that party's."""
    _cryptflow.keygen(os.fspath(dir), parties, id, force)


class Party:
    """One party of a distributed session over mutually authenticated TLS (as
    ``cryptflow party``): party 0 is the model owner (its ``program_dir`` has
    ``model-owner/``), party 1 the client (gives the input to :meth:`run`), party 2 the helper.
    ``peers`` lists every party's ``HOST:PORT`` in id order; ``keys`` is the folder written by
    :func:`keygen`."""

    def __init__(
        self,
        id: int,
        peers: Sequence[str],
        program_dir: Union[str, os.PathLike],
        keys: Union[str, os.PathLike] = "keys",
        *,
        backend: str = "porthos",
        protocol: str = "compact",
        truncation: str = "faithful",
        connect_timeout: int = 60,
        peer_timeout: int = 10,
    ) -> None:
        self.id = id
        self.peers = [str(p) for p in peers]
        self.program_dir = os.fspath(program_dir)
        self.keys = os.fspath(keys)
        self.backend = backend
        self.protocol = protocol
        self.truncation = truncation
        self.connect_timeout = connect_timeout
        self.peer_timeout = peer_timeout

    def run(self, x: Optional[Inputs] = None, *, progress: Optional[Any] = None) -> RunResult:
        """Joins the session and runs it. The client passes ``x`` and gets the output; the
        other parties pass nothing and get ``None`` as the output. Metrics are this party's."""
        with tempfile.TemporaryDirectory(prefix="cryptflow-party-") as tmp:
            input_args: Optional[List[str]] = None
            output: Optional[str] = None
            if x is not None:
                arrays = _inputs(x)
                if isinstance(arrays, np.ndarray):
                    arrays = [arrays]
                if isinstance(arrays, dict):
                    items = list(arrays.items())
                else:
                    items = [(None, a) for a in arrays]
                input_args = []
                for k, (name, a) in enumerate(items):
                    path = os.path.join(tmp, f"input{k}.npy")
                    np.save(path, np.ascontiguousarray(a))
                    input_args.append(path if name is None else f"{name}={path}")
                output = os.path.join(tmp, "output.npy")
            metrics = _cryptflow.run_party(
                self.id,
                self.peers,
                self.program_dir,
                self.keys,
                self.backend,
                input_args,
                output,
                self.protocol,
                self.truncation,
                self.connect_timeout,
                self.peer_timeout,
                _progress(progress),
            )
            y = np.load(output) if output is not None else None
        return RunResult(y, metrics)
