import os
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np
import numpy.typing as npt

Inputs = Union[npt.NDArray[Any], Sequence[npt.NDArray[Any]], Dict[str, npt.NDArray[Any]]]
Progress = Callable[[int, int, str], Any]
PathLike = Union[str, os.PathLike[str]]

BACKENDS: Tuple[str, ...]

class CryptflowError(Exception): ...
class InputError(CryptflowError): ...
class ModelError(CryptflowError): ...
class ProgramError(CryptflowError): ...
class RunError(CryptflowError): ...
class OptionsError(CryptflowError): ...

class RunResult(NamedTuple):
    output: npt.NDArray[np.float32]
    metrics: Dict[str, Any]

class Program:
    def run(
        self,
        x: Inputs,
        backend: str = "cleartext",
        *,
        protocol: str = "compact",
        truncation: str = "faithful",
        inject_fault: Optional[str] = None,
        progress: Optional[Any] = None,
    ) -> RunResult: ...
    def save(self, dir: PathLike) -> None: ...
    @property
    def inputs(self) -> List[Dict[str, Any]]: ...
    @property
    def outputs(self) -> List[Dict[str, Any]]: ...
    @property
    def scale(self) -> int: ...
    @property
    def report(self) -> Dict[str, Any]: ...
    @property
    def log(self) -> List[str]: ...

def compile(
    model: Union[PathLike, bytes, Any],
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
) -> Program: ...
def load(dir: PathLike) -> Program: ...
def keygen(dir: PathLike, parties: int = 3, id: Optional[int] = None, force: bool = False) -> None: ...

class Party:
    id: int
    peers: List[str]
    program_dir: str
    keys: str
    backend: str
    protocol: str
    truncation: str
    def __init__(
        self,
        id: int,
        peers: Sequence[str],
        program_dir: PathLike,
        keys: PathLike = "keys",
        *,
        backend: str = "porthos",
        protocol: str = "compact",
        truncation: str = "faithful",
        connect_timeout: int = 60,
        peer_timeout: int = 10,
    ) -> None: ...
    def run(self, x: Optional[Inputs] = None, *, progress: Optional[Any] = None) -> RunResult: ...
