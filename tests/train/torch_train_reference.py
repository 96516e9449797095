#!/usr/bin/env python3
# Independent PyTorch reference for the trainer (src/llmpress/train/), run by the C++ tests with
# Debian's /usr/bin/python3 (python3-torch; no transformers, no safetensors package). The Llama
# forward is written from the Hugging Face LlamaForCausalLM definition in plain torch, float32.
#
#   torch_train_reference.py IN.json OUT.json [GRADS.safetensors]
#
# IN.json: {"model_dir", "threads", "optimizer": {"betas", "eps", "weight_decay"}, "no_decay": [names],
#           "frozen": [names] (optional), "clip" (0 or absent: none),
#           "steps": [{"lr", "micro_batches": [{"inputs", "labels", "positions"?, "segments"?}]}]}
# labels[b][t] is the target of the logits at position t (already shifted; -100 = not scored).
# A step's loss is the token average over all its micro-batches. OUT.json: {"losses", "grad_norms"
# (before clipping), "torch_version"}. GRADS: step 0's gradients (before clipping), F32 safetensors.
import json
import math
import struct
import sys

import numpy as np
import torch
import torch.nn.functional as F

DTYPES = {"F32": "<f4", "F16": "<f2"}


def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    header.pop("__metadata__", None)
    out = {}
    for name, info in header.items():
        a, b = info["data_offsets"]
        arr = np.frombuffer(data[8 + n + a:8 + n + b], dtype=DTYPES[info["dtype"]])
        out[name] = torch.from_numpy(arr.astype(np.float32).reshape(info["shape"]))
    return out


def write_safetensors(path, tensors):
    header, blobs, offset = {}, [], 0
    for name, t in tensors.items():
        blob = t.detach().contiguous().numpy().astype("<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def load_model(model_dir):
    """Returns (config dict, {safetensors name: nn.Parameter})."""
    config = json.load(open(model_dir + "/config.json"))
    params = {name: torch.nn.Parameter(t) for name, t in read_safetensors(model_dir + "/model.safetensors").items()}
    return config, params


def rms_norm(x, weight, eps):
    x = x.float()
    return weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))


def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), -1)


def forward(config, p, inputs, positions=None, segments=None):
    """inputs, positions, segments: [B, T] int64. Returns logits [B, T, vocab]."""
    B, T = inputs.shape
    H, KV = config["num_attention_heads"], config["num_key_value_heads"]
    D = config.get("head_dim") or config["hidden_size"] // H
    eps = config["rms_norm_eps"]
    if positions is None:
        positions = torch.arange(T).expand(B, T)
    if segments is None:
        segments = torch.zeros(B, T, dtype=torch.long)

    inv_freq = 1.0 / (config.get("rope_theta", 10000.0) ** (torch.arange(0, D, 2).float() / D))
    angles = positions[..., None].float() * inv_freq
    emb = torch.cat((angles, angles), -1)
    cos, sin = emb.cos()[:, None], emb.sin()[:, None]  # [B, 1, T, D], broadcast over heads
    # Packed sequences: causal and within the same document only. The diagonal is always allowed,
    # so no row is fully masked.
    allowed = torch.ones(T, T, dtype=torch.bool).tril() & (segments[:, :, None] == segments[:, None, :])
    allowed = allowed[:, None]

    x = F.embedding(inputs, p["model.embed_tokens.weight"])
    for layer in range(config["num_hidden_layers"]):
        w = lambda name: p[f"model.layers.{layer}.{name}.weight"]
        h = rms_norm(x, w("input_layernorm"), eps)
        q = F.linear(h, w("self_attn.q_proj")).view(B, T, H, D).transpose(1, 2)
        k = F.linear(h, w("self_attn.k_proj")).view(B, T, KV, D).transpose(1, 2)
        v = F.linear(h, w("self_attn.v_proj")).view(B, T, KV, D).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        # Query head h reads kv head h // (H / KV), as HF's repeat_kv.
        k = k.repeat_interleave(H // KV, dim=1)
        v = v.repeat_interleave(H // KV, dim=1)
        scores = (q @ k.transpose(-1, -2)) / math.sqrt(D)
        attn = torch.softmax(scores.masked_fill(~allowed, float("-inf")).float(), dim=-1)
        o = (attn @ v).transpose(1, 2).reshape(B, T, H * D)
        x = x + F.linear(o, w("self_attn.o_proj"))
        h = rms_norm(x, w("post_attention_layernorm"), eps)
        x = x + F.linear(F.silu(F.linear(h, w("mlp.gate_proj"))) * F.linear(h, w("mlp.up_proj")), w("mlp.down_proj"))
    return F.linear(rms_norm(x, p["model.norm.weight"], eps), p["lm_head.weight"])


def main():
    spec = json.load(open(sys.argv[1]))
    torch.set_num_threads(spec.get("threads", 1))
    torch.manual_seed(0)
    try:
        torch.use_deterministic_algorithms(True)
    except Exception:
        pass
    config, params = load_model(spec["model_dir"])
    frozen, no_decay = set(spec.get("frozen", [])), set(spec.get("no_decay", []))
    unknown = (frozen | no_decay) - params.keys()
    assert not unknown, f"names not in the model: {sorted(unknown)}"  # catches typos in the C++ test
    for name in frozen:
        params[name].requires_grad_(False)
    trainable = {n: t for n, t in params.items() if n not in frozen}
    opt_spec = spec["optimizer"]
    groups = [{"params": [t for n, t in trainable.items() if n not in no_decay], "weight_decay": opt_spec["weight_decay"]},
              {"params": [t for n, t in trainable.items() if n in no_decay], "weight_decay": 0.0}]
    opt = torch.optim.AdamW([g for g in groups if g["params"]], lr=0.0, betas=tuple(opt_spec["betas"]), eps=opt_spec["eps"])
    # clip_grad_norm_ returns the norm before clipping; with max_norm inf it scales by exactly 1.
    max_norm = spec.get("clip") or float("inf")

    losses, grad_norms = [], []
    for i, step in enumerate(spec["steps"]):
        opt.zero_grad(set_to_none=True)
        batches = [{k: torch.tensor(v, dtype=torch.long) for k, v in mb.items()} for mb in step["micro_batches"]]
        count = sum(int((mb["labels"] != -100).sum()) for mb in batches)
        assert count > 0, f"step {i} scores no token"
        total = 0.0
        for mb in batches:
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=spec.get("bf16", False)):
                logits = forward(config, params, mb["inputs"], mb.get("positions"), mb.get("segments"))
            ce = F.cross_entropy(logits.float().flatten(0, 1), mb["labels"].flatten(), ignore_index=-100, reduction="sum")
            (ce / count).backward()
            total += ce.item()
        losses.append(total / count)
        if i == 0 and len(sys.argv) > 3:
            write_safetensors(sys.argv[3], {n: t.grad for n, t in trainable.items()})
        grad_norms.append(torch.nn.utils.clip_grad_norm_(list(trainable.values()), max_norm).item())
        for group in opt.param_groups:
            group["lr"] = step["lr"]
        opt.step()

    with open(sys.argv[2], "w") as f:
        json.dump({"losses": losses, "grad_norms": grad_norms, "torch_version": torch.__version__}, f)


if __name__ == "__main__":
    main()
