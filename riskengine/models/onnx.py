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

Many rows at once (`score_many`: a stream worker's batch) cost a fraction of a run each,
but only a model whose number for a row does not depend on the other rows of the run
may be scored so: tree ensembles are (each row walks the trees alone), a matrix product
may sum in another order for a block of rows than for one. Loading checks it on probe
rows (`batch_exact`: every probe row's number alone equals its number in runs of several
sizes, bit for bit); a model that fails the check is scored one row at a time.
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


def _class1_of_tensors(out: Any) -> list[float]:
    return out[:, 1].tolist()  # type: ignore[no-any-return]


def _class1_of_maps(out: Any) -> list[float]:
    return [float(row[1]) for row in out]


def _values(out: Any) -> list[float]:
    return out.reshape(-1).tolist()  # type: ignore[no-any-return]


_MANY: dict[Callable[[Any], float], Callable[[Any], list[float]]] = {
    _class1_of_tensor: _class1_of_tensors, _class1_of_map: _class1_of_maps,
    _first_value: _values}
"""Each one-row reader's reader of a run's rows."""
PROBE_ROWS = 64
PROBE_RUNS = (2, 3, 7, 16, PROBE_ROWS)


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
        self._pick_many = _MANY[self._pick]
        self._run = session.run
        try:
            self.score([0.0] * n_inputs)
        except Exception as exc:
            raise ModelError(f"{what}: the model fails on a row of zeros or its {output!r} "
                             f"output is not the expected shape: {_short(exc)}") from None
        quiet = onnxruntime.RunOptions()
        quiet.log_severity_level = 4  # a probe row the model refuses is no error to log
        self.batch_exact = self._scores_rows_alone(quiet)
        """Whether `score_many` gives each row the number `score` gives it."""

    def score(self, row: Sequence[Any], options: Any = None) -> float:
        """The model's number for one row of numbers (NaN marks a missing input)."""
        out = self._run(self.output_names, {self.input_name: np.array((row,), np.float32)},
                        options)
        return self._pick(out[0])

    def score_many(self, rows: Sequence[Sequence[Any]], options: Any = None) -> list[float]:
        """The model's numbers for `rows` in one run (see `batch_exact`)."""
        out = self._run(self.output_names, {self.input_name: np.array(rows, np.float32)},
                        options)
        return self._pick_many(out[0])

    def _scores_rows_alone(self, options: Any) -> bool:
        """Probe rows (seeded: every process decides alike) scored one at a time and in
        runs of several sizes give the same numbers, bit for bit."""
        rng = np.random.default_rng(20260105)
        scales = 10.0 ** rng.integers(-3, 5, size=(PROBE_ROWS, self.n_inputs))
        probe = (rng.standard_normal((PROBE_ROWS, self.n_inputs)) * scales).tolist()
        probe[0] = [0.0] * self.n_inputs
        try:
            alone = [self.score(row, options) for row in probe]
            for size in PROBE_RUNS:
                together: list[float] = []
                for start in range(0, PROBE_ROWS, size):
                    together += self.score_many(probe[start:start + size], options)
                if not all(a == b or (a != a and b != b)  # NaN: the same missing number
                           for a, b in zip(alone, together, strict=True)):
                    return False
        except Exception:  # a model that cannot score these rows is scored row by row
            return False
        return True


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
