#!/usr/bin/env python3
# Unpacks an llmpress AWQ checkpoint with AutoAWQ's own code (awq/utils/packing_utils.py of a
# github.com/casper-hansen/AutoAWQ checkout: unpack_awq, then reverse_awq_order, as its exllama and
# Marlin repacking do) and dequantizes every layer as its GEMM kernels do, w = (q - z) * s; compares
# with the float32 weights of a dense folder of the same quantization. Run with Debian's python3-torch.
#
#   awq_reference_unpack.py AUTOAWQ_DIR AWQ_DIR DENSE_DIR   -> prints "layers N max_abs_diff D"
import importlib.util
import json
import os
import struct
import sys

import numpy as np
import torch

DTYPES = {"F32": "<f4", "F16": "<f2", "I32": "<i4"}


def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    header.pop("__metadata__", None)
    out = {}
    for name, info in header.items():
        a, b = info["data_offsets"]
        arr = np.frombuffer(data[8 + n + a:8 + n + b], dtype=DTYPES[info["dtype"]]).reshape(info["shape"])
        out[name] = torch.from_numpy(arr.copy())
    return out


class Torch113:
    """torch for packing_utils, whose permutation index is int32: Debian's torch 1.13 indexes with
    int64 only (newer torch accepts both), so that one arange is made int64. Values are unchanged."""

    def __getattr__(self, name):
        return getattr(torch, name)

    @staticmethod
    def arange(*args, dtype=None, **kwargs):
        return torch.arange(*args, dtype=torch.long if dtype == torch.int32 else dtype, **kwargs)


def main():
    repo, awq_dir, dense_dir = sys.argv[1:4]
    spec = importlib.util.spec_from_file_location("packing_utils", os.path.join(repo, "awq", "utils", "packing_utils.py"))
    packing = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(packing)
    packing.torch = Torch113()
    config = json.load(open(os.path.join(awq_dir, "config.json")))["quantization_config"]
    bits, group = config["bits"], config["group_size"]
    awq = read_safetensors(os.path.join(awq_dir, "model.safetensors"))
    dense = read_safetensors(os.path.join(dense_dir, "model.safetensors"))
    layers, worst = 0, 0.0
    for name in sorted(awq):
        if not name.endswith(".qweight"):
            continue
        module = name[:-len(".qweight")]
        iweight, izeros = packing.unpack_awq(awq[name], awq[module + ".qzeros"], bits)
        iweight, izeros = packing.reverse_awq_order(iweight, izeros, bits)
        mask = (1 << bits) - 1
        q = torch.bitwise_and(iweight, mask).float()   # [in, out]
        z = torch.bitwise_and(izeros, mask).float()    # [groups, out]
        s = awq[module + ".scales"].float()            # [groups, out]
        g = group if group > 0 else q.shape[0]
        w = (q - z.repeat_interleave(g, 0)) * s.repeat_interleave(g, 0)
        worst = max(worst, (w.t() - dense[module + ".weight"].float()).abs().max().item())
        layers += 1
    print(f"layers {layers} max_abs_diff {worst}")


if __name__ == "__main__":
    main()
