"""The emotion classifier: an int8 TFLite CNN on 48x48 gray faces.

Contract (ARCHITECTURE.md): the model's float input is pixel/255 in [0, 1], shape
(1, 48, 48, 1), quantized to int8; its int8 output dequantizes to 7 probabilities in the
order of :data:`relaxd.core.labels.EMOTIONS`. The runtime is ``ai_edge_litert`` on every Python
(the Pi's included); TensorFlow is never imported here. The delegate is chosen explicitly
(:data:`DELEGATES`): XNNPACK's int8 kernels round some ties differently from the built-in ones,
within :data:`AGREEMENT_MIN` and :data:`ACCURACY_TOLERANCE` on FER2013 val.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from relaxd.core.errors import RelaxdError
from relaxd.core.labels import EMOTIONS

#: ``delegate`` choices: ``xnnpack``, the runtime's XNNPACK delegate (its int8 kernels: the
#: default, about 5x faster), or ``none``, its built-in kernels only (the reference answers the
#: model card's figures and the calibration come from).
DELEGATES = ("xnnpack", "none")

#: How far XNNPACK's int8 answers may differ from the built-in kernels' (its rounding of ties
#: differs): top-1 agreement on FER2013 val faces, and accuracy, in points (the shipped model's
#: measured figures are in its card).
AGREEMENT_MIN = 0.99
ACCURACY_TOLERANCE = 0.2

#: The runtime's distribution and module.
RUNTIME = ("ai-edge-litert", "ai_edge_litert")


@dataclass(frozen=True)
class Runtime:
    """The TFLite runtime in use: its ``Interpreter`` class, name and version."""

    interpreter: Any
    name: str
    version: str


def check_delegate(delegate: str) -> bool:
    """Whether ``delegate`` is XNNPACK; an unknown name raises :class:`RelaxdError`."""
    if delegate not in DELEGATES:
        raise RelaxdError(f"unknown delegate {delegate!r}: use one of {', '.join(DELEGATES)}")
    return delegate == "xnnpack"


def runtime() -> Runtime:
    """ai-edge-litert's ``Interpreter``, name and version. Only its interpreter module is
    imported (with the package's ``__version__``): importlib.metadata would pull in the email
    and zipfile packages, about 45 modules the daemon never uses."""
    name, module = RUNTIME
    try:
        interpreter = importlib.import_module(f"{module}.interpreter").Interpreter
    except ImportError:
        raise RelaxdError(f"no TFLite runtime: install {name} (pip install {name})") from None
    return Runtime(interpreter, name, str(getattr(sys.modules[module], "__version__", "?")))


def load_interpreter(path: str | Path, num_threads: int = 1, interpreter_cls: Any = None,
                     xnnpack: bool = False) -> Any:
    """A TFLite ``Interpreter`` for ``path``, tensors allocated, with the runtime's default
    delegates (XNNPACK) or, by default, its built-in kernels only.

    ``interpreter_cls`` replaces the runtime's ``Interpreter`` (the training tools pass
    TensorFlow's own: they need no second runtime beside TensorFlow).
    A missing or unloadable file raises :class:`RelaxdError` naming it.
    """
    path = Path(path)
    if not path.is_file():
        raise RelaxdError("model file not found", path)
    interpreter_cls = interpreter_cls or runtime().interpreter
    resolver = _resolver_type(interpreter_cls, xnnpack)
    try:
        with _quiet_native_info():
            interpreter = interpreter_cls(model_path=str(path), num_threads=num_threads,
                                          **resolver)
            interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as exc:
        raise RelaxdError(f"not a usable TFLite model ({str(exc).splitlines()[0]})", path) from None
    return interpreter


def _resolver_type(interpreter_cls: Any, xnnpack: bool) -> dict[str, Any]:
    """The ``experimental_op_resolver_type`` argument, where the interpreter takes one."""
    module = importlib.import_module(interpreter_cls.__module__)
    kinds = getattr(module, "OpResolverType", None)
    if kinds is None:
        return {}
    kind = kinds.AUTO if xnnpack else kinds.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    return {"experimental_op_resolver_type": kind}


#: What the runtime prints to the process's stderr on creating a delegate, on normal runs.
_NATIVE_INFO = "INFO: Created TensorFlow Lite XNNPACK delegate for CPU."


@contextlib.contextmanager
def _quiet_native_info() -> Iterator[None]:
    """Keep the runtime's native INFO line off stderr; any other native output goes through."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as caught:
        os.dup2(caught.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            caught.seek(0)
            other = [line for line in caught.read().decode(errors="replace").splitlines()
                     if line.strip() != _NATIVE_INFO]
            if other:
                print("\n".join(other), file=sys.stderr)


def spec_path(model_path: str | Path) -> Path:
    """The input spec JSON that goes with a model: ``emotion_int8.tflite`` -> ``emotion_int8.json``."""
    return Path(model_path).with_suffix(".json")


class EmotionClassifier:
    """Classifies 48x48 gray uint8 faces into 7 emotion probabilities.

    ``input_size`` is the face side the model takes; ``labels`` the output order (from the
    spec JSON next to the model when present, which must agree with ``EMOTIONS``).
    """

    def __init__(self, model_path: str | Path, num_threads: int = 1, interpreter_cls: Any = None,
                 delegate: str = "xnnpack"):
        self.model_path = Path(model_path)
        self.num_threads = num_threads
        xnnpack = check_delegate(delegate)
        kernels = "XNNPACK" if xnnpack else "built-in kernels"
        if interpreter_cls is None:
            rt = runtime()
            interpreter_cls = rt.interpreter
            #: Which runtime and kernels produce this classifier's answers (for every figure).
            self.runtime = f"{rt.name} {rt.version}, {kernels}"
        else:
            self.runtime = f"{interpreter_cls.__module__}, {kernels}"
        self._interp = load_interpreter(self.model_path, num_threads, interpreter_cls, xnnpack)
        inp = self._interp.get_input_details()[0]
        out = self._interp.get_output_details()[0]
        shape = tuple(int(s) for s in inp["shape"])
        if len(shape) != 4 or shape[1] != shape[2] or shape[3] != 1 or out["shape"][-1] != len(EMOTIONS):
            raise RelaxdError(f"model input {shape} / output {tuple(out['shape'])} is not "
                              f"(1, S, S, 1) -> (1, {len(EMOTIONS)})", self.model_path)
        self.input_size: int = shape[1]
        self.spec: dict[str, Any] = self._read_spec()
        self.labels: tuple[str, ...] = tuple(self.spec.get("labels", EMOTIONS))
        if self.labels != EMOTIONS:
            raise RelaxdError(f"model labels {self.labels} differ from {EMOTIONS}",
                              spec_path(self.model_path))
        self._in_index, self._out_index = inp["index"], out["index"]
        self._in_dtype = np.dtype(inp["dtype"])
        # uint8 pixel -> model input value, one table lookup per pixel.
        self._lut = self._input_lut(inp)
        self._out_scale, self._out_zero = out["quantization"]
        self._in_buf = np.zeros(shape, dtype=self._in_dtype)
        self._batch = 1
        self._max_batch = 1 << 30

    def _read_spec(self) -> dict[str, Any]:
        path = spec_path(self.model_path)
        if not path.is_file():
            return {}
        try:
            spec = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise RelaxdError(f"unreadable model spec ({exc})", path) from None
        if not isinstance(spec, dict):
            raise RelaxdError("model spec is not a JSON object", path)
        return spec

    def _input_lut(self, inp: dict[str, Any]) -> np.ndarray:
        x = np.arange(256, dtype=np.float64) / 255.0
        scale, zero = inp["quantization"]
        if self._in_dtype.kind == "f":
            return x.astype(self._in_dtype)
        info = np.iinfo(self._in_dtype)
        return np.clip(np.round(x / scale + zero), info.min, info.max).astype(self._in_dtype)

    def _dequantize(self, q: np.ndarray) -> np.ndarray:
        if self._out_scale:
            p = (q.astype(np.float32) - self._out_zero) * self._out_scale
        else:
            p = q.astype(np.float32)
        p = np.maximum(p, 0.0)
        total = p.sum(axis=-1, keepdims=True)
        return np.divide(p, total, out=np.full_like(p, 1.0 / p.shape[-1]), where=total > 0)

    def _check(self, faces: np.ndarray, ndim: int) -> None:
        s = self.input_size
        if faces.ndim != ndim or faces.shape[-2:] != (s, s) or faces.dtype != np.uint8:
            want = ("N, " if ndim == 3 else "") + f"{s}, {s}"
            raise ValueError(f"expected uint8 faces of shape ({want}), got {faces.dtype} {faces.shape}")

    def classify(self, face: np.ndarray) -> np.ndarray:
        """7 probabilities (order ``EMOTIONS``, sum 1) for one ``input_size``² uint8 gray face."""
        self._check(face, 2)
        if self._batch != 1:
            self._resize(1)
        np.take(self._lut, face, out=self._in_buf[0, :, :, 0])
        self._interp.set_tensor(self._in_index, self._in_buf)
        self._interp.invoke()
        return self._dequantize(self._interp.get_tensor(self._out_index)[0])

    def classify_batch(self, faces: np.ndarray, batch_size: int = 256,
                       mirror: bool = False) -> np.ndarray:
        """(N, 7) probabilities for uint8 faces of shape (N, S, S), run in batches; with
        ``mirror``, each face's averaged with its mirror image's (two inferences per face)."""
        self._check(faces, 3)
        if mirror:
            return (self.classify_batch(faces, batch_size)
                    + self.classify_batch(faces[:, :, ::-1], batch_size)) / 2
        out = np.empty((len(faces), len(EMOTIONS)), dtype=np.float32)
        start = 0
        while start < len(faces):
            chunk = faces[start:start + min(batch_size, self._max_batch)]
            if len(chunk) != self._batch and not self._resize(len(chunk)):
                continue  # the model takes one face at a time
            self._interp.set_tensor(self._in_index, self._lut[chunk][..., None])
            self._interp.invoke()
            out[start:start + len(chunk)] = self._dequantize(self._interp.get_tensor(self._out_index))
            start += len(chunk)
        return out

    def _resize(self, n: int) -> bool:
        """Give the input ``n`` faces; False, back at one, where the model's shapes are fixed
        (a flatten layer's reshape), after which batches are one face."""
        s = self.input_size
        try:
            self._interp.resize_tensor_input(self._in_index, [n, s, s, 1])
            self._interp.allocate_tensors()
        except RuntimeError:
            if n == 1:
                raise
            self._max_batch = 1
            self._resize(1)
            return False
        self._in_buf = np.zeros((n, s, s, 1), dtype=self._in_dtype)
        self._batch = n
        return True
