"""PyTorch autograd on the fake-quant formulas of src/llmpress/quant/fake_quant.h, as an independent
reference for the C++ values and gradients. Usage: fake_quant_reference.py DIR. DIR/case.json names the
format and float32 tensors (raw little-endian .bin files); writes DIR/out_NAME.bin (float32) for the
values and the gradient of sum(values * upstream) with respect to every input tensor."""
import json
import sys

import numpy as np
import torch


def load(d, spec, name):
    t = spec["tensors"][name]
    a = np.fromfile(f"{d}/{name}.bin", dtype=np.float32).reshape(t)
    return torch.tensor(a, dtype=torch.float32)


def ste(x, rounded):
    return x + (rounded - x).detach()


def main(d):
    spec = json.load(open(f"{d}/case.json"))
    t = {n: load(d, spec, n) for n in spec["tensors"]}
    upstream = t.pop("upstream")
    units = {n[: -len("_unit")]: t.pop(n) for n in list(t) if n.endswith("_unit")}
    for v in t.values():
        v.requires_grad_(True)
    # A trained parameter is its value times its fixed unit (the value it started from).
    p = {n: v * units[n] if n in units else v for n, v in t.items()}
    if spec["format"] == "int":
        maxq = 2 ** spec["bits"] - 1
        s = ste(p["scale"], p["scale"].half().float())
        z = torch.clamp(ste(p["zero"], torch.round(p["zero"])), 0, maxq)
        g = torch.arange(t["latent"].shape[1]) // spec["group"]
        s, z = s[:, g], z[:, g]
        step = torch.where(s == 0, torch.ones_like(s), s)
        x = p["latent"] / step
        q = torch.clamp(ste(x, torch.round(x)) + z, 0, maxq)
        values = s * (q - z)
    else:  # k-quant with sub-block scales and mins (Q4_K / Q5_K / Q2_K layouts)
        rows, blocks, subs = p["sub_scale"].shape
        w = p["latent"].reshape(rows, blocks, subs, -1)
        d16 = ste(p["scale"], p["scale"].half().float()).reshape(rows, blocks, 1, 1)
        k = torch.clamp(ste(p["sub_scale"], torch.round(p["sub_scale"])), 0, spec["scale_max"])
        m = torch.clamp(ste(p["sub_min"], torch.round(p["sub_min"])), 0, spec["min_max"])
        dmin = ste(p["min"], p["min"].half().float()).reshape(rows, blocks, 1, 1)
        step = d16 * k.unsqueeze(-1)
        offset = -(dmin * m.unsqueeze(-1))
        x = (w - offset) / torch.where(step == 0, torch.ones_like(step), step)
        q = torch.clamp(ste(x, torch.round(x)), 0, spec["code_max"])
        values = (step * q + offset).reshape(rows, -1)
    (values * upstream).sum().backward()
    values.detach().numpy().astype(np.float32).tofile(f"{d}/out_values.bin")
    for name, v in t.items():
        v.grad.numpy().astype(np.float32).tofile(f"{d}/out_{name}.bin")


if __name__ == "__main__":
    main(sys.argv[1])
