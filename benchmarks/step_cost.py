"""The two numbers of one denoising step: FLOPs and bytes moved, counted on the ONNX graph.

    python benchmarks/step_cost.py [--onnx build/model.onnx] [--seconds 5] [--gflops 210] [--gbps 44]

Fixes the graph's inputs to batch 1 and the frames of ``--seconds``, infers every tensor's
shape, and counts per node: FLOPs (2 per multiply-add in Conv / ConvTranspose / Gemm /
MatMul, 1 per output element elsewhere) and bytes (every non-constant input read once,
every output written once, weights read once). That is what an executor that runs one
operator at a time moves through memory when nothing stays in cache: an upper bound for
ONNX Runtime (which fuses a few operators), the exact count for eager PyTorch. With the
machine's measured GEMM rate and copy bandwidth it prints the two floors of a 6-step call.
Without ``--onnx`` a random-weight base model is exported to a temporary file.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper, shape_inference

MAC_OPS = {"Conv", "ConvTranspose", "Gemm", "MatMul"}


def fixed_shapes(model: onnx.ModelProto, frames: int, hop: int) -> onnx.ModelProto:
    """The graph with batch 1, ``frames`` frames and frames × hop samples, shapes inferred."""
    sizes = {"batch": 1, "frames": frames, "samples": frames * hop}
    for value in model.graph.input:
        for dim in value.type.tensor_type.shape.dim:
            if dim.dim_param:
                dim.dim_value = sizes[dim.dim_param]
    return shape_inference.infer_shapes(model, strict_mode=True, data_prop=True)


def tensor_elements(model: onnx.ModelProto) -> dict[str, int]:
    shapes: dict[str, int] = {}
    for value in [*model.graph.input, *model.graph.value_info, *model.graph.output]:
        dims = value.type.tensor_type.shape.dim
        if all(d.HasField("dim_value") for d in dims):
            shapes[value.name] = math.prod(d.dim_value for d in dims)
    return shapes


def count(model: onnx.ModelProto) -> tuple[dict[str, float], dict[str, float]]:
    """FLOPs and bytes per operator type for one evaluation of the graph."""
    elements = tensor_elements(model)
    weights = {init.name: numpy_helper.to_array(init) for init in model.graph.initializer}
    flops: dict[str, float] = defaultdict(float)
    moved: dict[str, float] = defaultdict(float)
    for node in model.graph.node:
        out = sum(elements.get(name, 0) for name in node.output)
        if node.op_type in MAC_OPS:
            w = weights.get(node.input[1])
            if w is None:
                raise ValueError(f"{node.name}: {node.op_type} without a constant weight")
            if node.op_type == "Conv":  # out channels × (in/groups × kernel) MACs per output position
                macs = out * math.prod(w.shape[1:])
            elif node.op_type == "ConvTranspose":  # every input element meets the whole kernel
                macs = elements[node.input[0]] * math.prod(w.shape[1:])
            else:
                macs = out * (w.shape[0] if node.op_type == "MatMul" else w.shape[1])
            flops[node.op_type] += 2.0 * macs
        else:
            flops[node.op_type] += out
        reads = sum(elements.get(name, 0) if name not in weights else weights[name].size for name in node.input if name)
        moved[node.op_type] += 4.0 * (reads + out)  # float32 throughout
    return flops, moved


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--onnx", type=Path)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--gflops", type=float, help="the machine's measured GEMM rate, GFLOP/s")
    parser.add_argument("--gbps", type=float, help="the machine's measured copy bandwidth, GB/s")
    args = parser.parse_args(argv)
    from probe import (
        export_random_base,  # this folder is on sys.path when run as a script
    )

    from runtime.bundle import BundleMetadata

    with tempfile.TemporaryDirectory() as tmp:
        path = args.onnx or export_random_base(Path(tmp))
        meta = BundleMetadata.read(path.parent)
        model = onnx.load(str(path))
    frames = round(args.seconds * meta.sample_rate / meta.hop_samples)
    samples = frames * meta.hop_samples
    flops, moved = count(fixed_shapes(model, frames, meta.hop_samples))
    total_flops, total_bytes = sum(flops.values()), sum(moved.values())
    print(f"one step on {frames} frames ({samples} samples), per output sample:")
    print(f"  {'operator':14s} {'FLOP':>12s} {'bytes':>10s}")
    for op in sorted(flops, key=lambda k: -flops[k] - moved[k]):
        print(f"  {op:14s} {flops[op] / samples:12,.0f} {moved[op] / samples:10,.0f}")
    print(f"  {'total':14s} {total_flops / samples:12,.0f} {total_bytes / samples:10,.0f}"
          f"   ({total_flops / total_bytes:.1f} FLOP/byte)")
    call_flops, call_bytes = args.steps * total_flops, args.steps * total_bytes
    print(f"{args.steps} steps, {args.seconds:g} s: {call_flops / 1e12:.3f} TFLOP, {call_bytes / 1e9:.1f} GB moved")
    if args.gflops:
        print(f"  compute floor at {args.gflops:g} GFLOP/s: {call_flops / args.gflops / 1e9:.2f} s")
    if args.gbps:
        print(f"  traffic floor at {args.gbps:g} GB/s (nothing cached): {call_bytes / args.gbps / 1e9:.2f} s")


if __name__ == "__main__":
    np.set_printoptions(suppress=True)
    main(sys.argv[1:])
