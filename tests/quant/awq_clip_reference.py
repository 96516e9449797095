"""AWQ's clipping search as the reference writes it (llm-awq's auto_clip_layer, AutoAWQ's
_compute_best_clip), as an independent check of src/llmpress/quant/awq.cpp's search_awq_clip.
Usage: awq_clip_reference.py DIR. DIR/case.json gives the integer grid (bits, group, sym), n_grid,
max_shrink and the cases; DIR/NAME_weight.bin (float32 [rows, cols]) and DIR/NAME_hessian.bin
(float64 [cols, cols]) are each case's weight and input Hessian. Writes DIR/NAME_steps.bin (int32
[rows, groups]: the chosen i of ratio 1 - i/n_grid) and DIR/NAME_errors.bin (float64 [rows, groups]:
its error, per token).

Differences from the reference, all deliberate:
- The fake quantizer is ours (src/llmpress/quant/int_grid.cpp: range always containing 0, float16
  scales of at least 2^-14, zero = round(-lo/scale)), not the reference's pseudo_quantize_tensor.
- There are no samples, only H = mean x x^T. The reference's per-group error needs only the second
  moments of the group's columns, so the input features of group g are any X_g with
  X_g^T X_g = H_gg (n_token = group size; from the eigendecomposition of H_gg), and
  mean_t (X_g (q_g - w_g))^2 is d_g H_gg d_g^T / n_token. No n_sample_token subsampling and no
  output-channel batches (these only save memory).
- Errors in float64 (the reference: the weight's dtype); min_errs starts at +inf (there: 1e9).
"""
import json
import sys

import numpy as np
import torch


def fake_quantize(w, bits, group, sym):
    """Our RTN onto the integer grid, group by group of columns (int_grid.cpp fit_grid/grid_codes)."""
    rows, cols = w.shape
    maxq = 2**bits - 1
    g = group if group > 0 else cols
    out = torch.empty_like(w)
    for start in range(0, cols, g):
        x = w[:, start : start + g]
        lo = torch.clamp(x.min(1, keepdim=True).values, max=0.0)
        hi = torch.clamp(x.max(1, keepdim=True).values, min=0.0)
        if sym:
            hi = torch.maximum(lo.abs(), hi)
            lo = -hi
        empty = (lo == 0) & (hi == 0)
        lo = torch.where(empty, torch.full_like(lo, -1.0), lo)
        hi = torch.where(empty, torch.full_like(hi, 1.0), hi)
        scale = (hi - lo) / maxq
        scale = torch.clamp(scale, min=6.103515625e-05).half().float()
        if sym:
            zero = torch.full_like(scale, float(2 ** (bits - 1)))
        else:
            zero = torch.clamp(torch.round(-lo / scale), 0.0, float(maxq))
        q = torch.clamp(torch.round(x / scale) + zero, 0.0, float(maxq))
        out[:, start : start + g] = scale * (q - zero)
    return out


def auto_clip_layer(w, input_feat, spec, n_grid, max_shrink):
    """llm-awq auto_clip_layer: w [co, ci] float32, input_feat [n_token, ci] float64."""
    group_size = spec["group"] if spec["group"] > 0 else w.shape[1]
    n_token = input_feat.shape[0]
    input_feat = input_feat.reshape(n_token, -1, group_size)  # n_token, n_group, group size
    w_g = w.reshape(w.shape[0], -1, group_size)  # co, n_group, group size
    org_out = torch.einsum("tgj,ogj->otg", input_feat, w_g.double())  # co, n_token, n_group
    org_max_val = w_g.abs().amax(dim=-1, keepdim=True)  # co, n_group, 1
    min_errs = torch.full(org_max_val.shape[:2], float("inf"), dtype=torch.float64)
    best_step = torch.zeros(org_max_val.shape[:2], dtype=torch.int32)
    for i_s in range(int(max_shrink * n_grid)):
        max_val = org_max_val * (1 - i_s / n_grid)
        min_val = -max_val
        cur_w = torch.clamp(w_g, min_val, max_val)
        # The whole clipped matrix goes through the fake quantizer (its own groups).
        q_w = fake_quantize(cur_w.reshape(w.shape), spec["bits"], spec["group"], spec["sym"])
        q_w = q_w.reshape(w_g.shape).double()
        cur_out = torch.einsum("tgj,ogj->otg", input_feat, q_w)
        err = (cur_out - org_out).pow(2).mean(dim=1)  # co, n_group
        cur_best_idx = err < min_errs
        min_errs[cur_best_idx] = err[cur_best_idx]
        best_step[cur_best_idx] = i_s
    return best_step, min_errs


def main(d):
    spec = json.load(open(f"{d}/case.json"))
    torch.set_num_threads(1)
    for case in spec["cases"]:
        name, rows, cols = case["name"], case["rows"], case["cols"]
        w = torch.from_numpy(np.fromfile(f"{d}/{name}_weight.bin", dtype=np.float32).reshape(rows, cols))
        h = torch.from_numpy(np.fromfile(f"{d}/{name}_hessian.bin", dtype=np.float64).reshape(cols, cols))
        # Input features [n_token = group, n_group, group]: group g's are some X_g with
        # X_g^T X_g = H_gg, from its eigendecomposition (the per-group error needs no more of H).
        g = spec["group"] if spec["group"] > 0 else cols
        features = []
        for start in range(0, cols, g):
            block = h[start : start + g, start : start + g]
            eigenvalues, vectors = torch.linalg.eigh((block + block.T) / 2)
            features.append((vectors * eigenvalues.clamp(min=0).sqrt()).T)
        x = torch.stack(features, dim=1).reshape(g, cols)
        steps, errors = auto_clip_layer(w, x, spec, spec["n_grid"], spec["max_shrink"])
        steps.numpy().astype(np.int32).tofile(f"{d}/{name}_steps.bin")
        errors.numpy().astype(np.float64).tofile(f"{d}/{name}_errors.bin")


if __name__ == "__main__":
    main(sys.argv[1])
