#!/usr/bin/env python3
# PyTorch reference for the distillation losses (src/llmpress/distill/losses.h), run by
# test_kd_losses_reference.cpp with Debian's /usr/bin/python3 (python3-torch). Written from the
# definitions (Hinton et al. 2015; TRL GKDTrainer.generalized_jsd_loss; DistiLLM distillm/losses.py),
# mostly in probability space with torch.nn.functional, not from the C++ (which works in log space).
#
#   kd_losses_reference.py DIR
#
# DIR/meta.json: {"tensors": {name: {"file", "dtype", "shape"}}, "cases": [...], "hidden_cases": [...]}
# Writes DIR/results.json ({"cases": [{"loss", "kd", "ce"}], "hidden": [{"loss"}]}) and, per case i,
# DIR/grad_i.bin (d loss / d student logits, float64 [B, T, V]); per hidden case i, DIR/hgrad_i_s.bin
# (d loss / d student hidden, float64) and, with a projection, DIR/hgrad_i_p.bin.
#
# -inf logits (masked vocabulary entries): probability space has no exact zeros to offer, so after the
# temperature each -inf is replaced by (the row's largest logit - 600). Its probability is then about
# 1e-261: positive, so every log and gradient stays finite, and far below the comparison tolerance. The
# C++ gives exactly 0; the two agree in the limit, which is what is checked.
import json
import math
import sys

import numpy as np
import torch
import torch.nn.functional as F

folder = sys.argv[1]
meta = json.load(open(folder + "/meta.json"))
DTYPES = {"float64": np.float64, "float32": np.float32, "int64": np.int64, "uint8": np.uint8}


def load(name):
    info = meta["tensors"][name]
    data = np.fromfile(folder + "/" + info["file"], dtype=DTYPES[info["dtype"]]).reshape(info["shape"])
    return torch.from_numpy(data.copy())


def save(name, tensor):
    tensor.detach().to(torch.float64).contiguous().numpy().tofile(folder + "/" + name)


def finite_stand_in(z):
    """-inf -> row max - 600 (see the header)."""
    finite = torch.isfinite(z)
    row_max = torch.where(finite, z, torch.full_like(z, -1e300)).amax(-1, keepdim=True).detach()
    return torch.where(finite, z, row_max - 600.0)


def probs(z, temperature):
    logp = F.log_softmax(finite_stand_in(z / temperature), dim=-1)
    return logp.exp(), logp


# Divergences per row from their definitions; p, q probability vectors (all entries > 0).
def kl(p, q):
    return (p * (p.log() - q.log())).sum(-1)


def divergence(case, pS, pT):
    kind = case["divergence"]
    if kind == "fkl":
        return kl(pT, pS)
    if kind == "rkl":
        return kl(pS, pT)
    if kind == "tvd":
        return 0.5 * (pT - pS).abs().sum(-1)
    if kind == "skl":  # DistiLLM skewed_forward_kl: mixed = a * teacher + (1 - a) * student, KL(teacher || mixed)
        a = case["alpha"]
        return kl(pT, a * pT + (1 - a) * pS)
    if kind == "srkl":  # DistiLLM skewed_reverse_kl: mixed = (1 - a) * teacher + a * student, KL(student || mixed)
        a = case["alpha"]
        return kl(pS, a * pS + (1 - a) * pT)
    if kind == "jsd":  # TRL: beta 0 -> KL(teacher || student), 1 -> KL(student || teacher)
        beta = case["beta"]
        if beta == 0:
            return kl(pT, pS)
        if beta == 1:
            return kl(pS, pT)
        m = beta * pT + (1 - beta) * pS
        ours = beta * kl(pT, m) + (1 - beta) * kl(pS, m)
        # TRL's own formulation (log space, F.kl_div(input, target) = KL(target || input)) must agree.
        lS, lT = pS.log(), pT.log()
        b = torch.tensor(beta, dtype=lS.dtype)
        lm = torch.logsumexp(torch.stack([lS + torch.log1p(-b), lT + torch.log(b)]), dim=0)
        trl = (b * F.kl_div(lm, lT, reduction="none", log_target=True)
               + (1 - b) * F.kl_div(lm, lS, reduction="none", log_target=True)).sum(-1)
        assert torch.allclose(ours, trl, rtol=1e-9, atol=1e-12), "JSD: probability space and TRL's form disagree"
        return ours
    raise ValueError(kind)


def scale(case):
    if not case["scale"]:
        return 1.0
    t = case["temperature"]
    return t if case["divergence"] == "tvd" else t * t


student = load("student").to(torch.float64)
teacher = load("teacher").to(torch.float64)
mask = load("mask").to(torch.bool)
labels = load("labels")
B, T, V = student.shape

results = {"cases": [], "hidden": []}
for i, case in enumerate(meta["cases"]):
    z = student.clone().requires_grad_(True)
    zs, zt = z[mask], teacher[mask]  # [N, V]: scored positions only
    pS, _ = probs(zs, case["temperature"])
    pT, _ = probs(zt, case["temperature"])
    if case.get("topk"):
        # Buckets: the cache's K teacher ids, plus one for the rest of the vocabulary (teacher: the
        # cache's tail mass; student: its probability outside the K ids). The cache itself is checked
        # against this script's own teacher distribution first.
        ids, lp, log_tail = load("topk_ids")[mask], load("topk_logprobs")[mask], load("topk_log_tail")[mask]
        in_top = torch.zeros_like(pT, dtype=torch.bool).scatter_(1, ids, True)
        assert torch.allclose(pT.gather(1, ids).log(), lp.to(torch.float64), rtol=1e-5, atol=1e-6), "top-k values"
        assert (pT.masked_fill(~in_top, 2).amin(-1) >= pT.masked_fill(in_top, -1).amax(-1)).all(), "not the top k"
        tail_t = pT.masked_fill(in_top, 0).sum(-1)
        assert torch.allclose(tail_t.log(), log_tail.to(torch.float64), rtol=1e-5, atol=1e-6), "top-k tail"
        bT = torch.cat([lp.to(torch.float64).exp(), log_tail.to(torch.float64).exp().unsqueeze(1)], 1)
        bT = bT / bT.sum(-1, keepdim=True)
        bS = torch.cat([pS.gather(1, ids), pS.masked_fill(in_top, 0).sum(-1, keepdim=True)], 1)
        pS, pT = bS, bT
    n = max(int(mask.sum()), 1)
    kd = divergence(case, pS, pT).sum() / n * scale(case)
    w = case["ce_weight"]
    entry = {"kd": kd.item(), "ce": None}
    loss = kd
    if w > 0:
        ce = F.cross_entropy(finite_stand_in(zs), labels[mask], reduction="sum") / n  # untempered
        entry["ce"] = ce.item()
        loss = w * ce + (1 - w) * kd
    loss.backward()
    entry["loss"] = loss.item()
    results["cases"].append(entry)
    save(f"grad_{i}.bin", z.grad)

for i, case in enumerate(meta.get("hidden_cases", [])):
    hs = load(case["student"]).to(torch.float64).requires_grad_(True)
    ht = load(case["teacher"]).to(torch.float64)
    proj = None
    x = hs
    if case.get("projection"):
        proj = load(case["projection"]).to(torch.float64).requires_grad_(True)
        x = F.linear(hs, proj)  # x @ proj^T: [d_teacher, d_student] as a Linear weight
    if case["kind"] == "mse":
        per_token = F.mse_loss(x, ht, reduction="none").mean(-1)
    else:
        per_token = 1 - F.cosine_similarity(x, ht, dim=-1, eps=1e-8)
    loss = per_token[mask].sum() / max(int(mask.sum()), 1)
    loss.backward()
    results["hidden"].append({"loss": loss.item()})
    save(f"hgrad_{i}_s.bin", hs.grad)
    if proj is not None:
        save(f"hgrad_{i}_p.bin", proj.grad)

json.dump(results, open(folder + "/results.json", "w"))
print(f"reference: {len(results['cases'])} loss cases, {len(results['hidden'])} hidden cases, "
      f"torch {torch.__version__}")
