"""Small ONNX models built with the onnx package, for the model tests.

- `logistic(weights)`: a classifier, class 1's probability sigmoid(x · weights) in a
  ``probabilities`` [N, 2] output (beside a ``label`` output, as classifiers have).
- `linear(weights)`: a regressor, x · weights in one [N, 1] output.
- `lookup(n)`: a regressor that casts its inputs to indices into a table of 2 values and
  gives the largest: any input outside 0..1 (NaN included) makes onnxruntime raise.
- `batchwise(weights)`: a regressor whose number for a row depends on the other rows of
  the run: x · weights minus its mean over the run, plus 0.5 (0.5 for a row alone).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from onnx import TensorProto, helper, numpy_helper

OPSET = [helper.make_opsetid("", 17)]


def _save(graph: object, path: Path) -> Path:
    model = helper.make_model(graph, opset_imports=OPSET)  # type: ignore[arg-type]
    model.ir_version = 8
    path.write_bytes(model.SerializeToString())
    return path


def _input(n: int | None) -> object:
    return helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, n])


def _weights(weights: Sequence[float]) -> object:
    return numpy_helper.from_array(np.array(weights, dtype=np.float32).reshape(-1, 1), "w")


def logistic(path: Path, weights: Sequence[float], *, width: int | None = -1) -> Path:
    """`width` -1: the input's width is len(weights); None leaves it open."""
    n = len(weights) if width == -1 else width
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["z"]),
        helper.make_node("Sigmoid", ["z"], ["p1"]),
        helper.make_node("Sub", ["one", "p1"], ["p0"]),
        helper.make_node("Concat", ["p0", "p1"], ["probabilities"], axis=1),
        helper.make_node("ArgMax", ["probabilities"], ["label"], axis=1, keepdims=0),
    ]
    one = numpy_helper.from_array(np.array([[1.0]], dtype=np.float32), "one")
    graph = helper.make_graph(
        nodes, "logistic", [_input(n)],
        [helper.make_tensor_value_info("label", TensorProto.INT64, [None]),
         helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, 2])],
        initializer=[_weights(weights), one])
    return _save(graph, path)


def linear(path: Path, weights: Sequence[float]) -> Path:
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])], "linear", [_input(len(weights))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 1])],
        initializer=[_weights(weights)])
    return _save(graph, path)


def lookup(path: Path, n: int) -> Path:
    table = numpy_helper.from_array(np.array([0.25, 0.75], dtype=np.float32), "table")
    nodes = [
        helper.make_node("Cast", ["x"], ["i"], to=TensorProto.INT64),
        helper.make_node("Gather", ["table", "i"], ["g"]),
        helper.make_node("ReduceMax", ["g"], ["y"], axes=[1], keepdims=1),
    ]
    graph = helper.make_graph(
        nodes, "lookup", [_input(n)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 1])],
        initializer=[table])
    return _save(graph, path)


def batchwise(path: Path, weights: Sequence[float]) -> Path:
    half = numpy_helper.from_array(np.array([[0.5]], dtype=np.float32), "half")
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["z"]),
        helper.make_node("ReduceMean", ["z"], ["m"], axes=[0], keepdims=1),
        helper.make_node("Sub", ["z", "m"], ["d"]),
        helper.make_node("Add", ["d", "half"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes, "batchwise", [_input(len(weights))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 1])],
        initializer=[_weights(weights), half])
    return _save(graph, path)


def sigmoid(z: float) -> float:
    """float32 arithmetic is close to, not exactly, this: compare with a tolerance."""
    return 1.0 / (1.0 + math.exp(-z))
