"""An ONNX model in process: one onnxruntime session, scoring one row at a time.

The model takes one float32 tensor input of shape ``[N, k]``, ``k`` being the number of
inputs the config names (checked at load when the model fixes ``k``). What is read from
its outputs (`output` of the model's config):

- ``probability``: the output named ``probabilities`` if there is one, else the second of
  two outputs (the ONNX-ML classifier convention: label, probabilities), else the only
  one. It must hold two classes per row — a ``[N, 2]`` tensor or, as skl2onnx's ZipMap
  gives it, a map per row with the key 1 — and the score is class 1's probability.
- ``value``: the first output; it must hold one number per row (``[N]`` or ``[N, 1]``).

Loading runs the model once on a row of zeros, so a model whose outputs do not fit is
refused at load, not at the first event. Sessions run on the calling thread (one intra-op
thread, sequential execution): a decision scores one row, where a thread pool only costs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from riskengine.exceptions import ModelError

__all__ = ["OnnxScorer"]

_FLOAT = "tensor(float)"


def _class1_of_tensor(out: Any) -> float:
    return float(out[0, 1])


def _class1_of_map(out: Any) -> float:
    return float(out[0][1])


def _first_value(out: Any) -> float:
    return float(out.reshape(-1)[0])


class OnnxScorer:
    """One model version: `score(row)` is the model's number for one row of inputs."""

    def __init__(self, content: bytes, n_inputs: int, output: str, what: str) -> None:
        import onnxruntime  # type: ignore[import-untyped]

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
        options.log_severity_level = 3
        try:
            session = onnxruntime.InferenceSession(content, options,
                                                   providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own kinds for every bad file
            raise ModelError(f"{what}: not a loadable ONNX model: {_short(exc)}") from None
        inputs = session.get_inputs()
        if len(inputs) != 1 or inputs[0].type != _FLOAT or len(inputs[0].shape) != 2:
            found = ", ".join(f"{i.name} {i.type} {i.shape}" for i in inputs)
            raise ModelError(f"{what}: the model must take one float tensor of shape [N, k] "
                             f"(the inputs in order); it takes {found or 'nothing'}")
        width = inputs[0].shape[1]
        if isinstance(width, int) and width != n_inputs:
            raise ModelError(f"{what}: the model takes {width} inputs, the config names "
                             f"{n_inputs}")
        self.n_inputs = n_inputs
        self.input_name = inputs[0].name
        name, self._pick = _choose_output(session, output, what)
        self.output_names = [name]
        self._run = session.run
        try:
            self.score([0.0] * n_inputs)
        except Exception as exc:
            raise ModelError(f"{what}: the model fails on a row of zeros or its {output!r} "
                             f"output is not the expected shape: {_short(exc)}") from None

    def score(self, row: Sequence[Any]) -> float:
        """The model's number for one row of numbers (NaN marks a missing input)."""
        out = self._run(self.output_names, {self.input_name: np.array((row,), np.float32)})
        return self._pick(out[0])


def _choose_output(session: Any, output: str, what: str) -> tuple[str, Callable[[Any], float]]:
    outputs = session.get_outputs()
    if output == "value":
        chosen = outputs[0]
        shape = chosen.shape
        if chosen.type != _FLOAT or not (len(shape) == 1 or (len(shape) == 2
                                                              and _width(shape) in (1, None))):
            raise ModelError(f"{what}: output 'value' reads the first output as one number per "
                             f"row, but it is {chosen.type} {shape}")
        return chosen.name, _first_value
    named = [o for o in outputs if o.name == "probabilities"]
    chosen = named[0] if named else outputs[1] if len(outputs) == 2 else outputs[0]
    if chosen.type.startswith("seq(map("):
        return chosen.name, _class1_of_map
    if chosen.type == _FLOAT and len(chosen.shape) == 2 and _width(chosen.shape) in (2, None):
        return chosen.name, _class1_of_tensor
    raise ModelError(f"{what}: output 'probability' reads two class probabilities per row, "
                     f"but output {chosen.name!r} is {chosen.type} {chosen.shape}; a "
                     "regressor takes output: value")


def _width(shape: Sequence[Any]) -> int | None:
    """The second dimension of a shape; None when the model leaves it open."""
    return shape[1] if isinstance(shape[1], int) else None


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:300] + ("…" if len(text) > 300 else "")
