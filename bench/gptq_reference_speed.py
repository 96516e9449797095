#!/usr/bin/env python3
# The reference side of bench/ptq_speed.sh: the GPTQ authors' code (github.com/IST-DASLab/gptq, a
# checkout beside the project, never committed) run the way their llama.py runs it, and a PyTorch eager
# perplexity, on a Hugging Face Llama folder, float32 on the CPU. Run with Debian's /usr/bin/python3.
#
#   gptq_reference_speed.py --gptq-repo DIR --model DIR --calib FILE --eval FILE
#                           [--nsamples 128 --seqlen 256 --bits 3 --group 128 --act-order --threads 1]
#
# GPTQ: llama.py's llama_sequential with --true-sequential: per decoder layer and per group of linears
# (k/v/q, o, up/gate, down), forward hooks feed GPTQ.add_batch while every calibration window passes
# through the layer one at a time, then GPTQ.fasterquant; a last pass gives the next layer's inputs.
# The decoder layer is the Hugging Face Llama layer written in plain torch with nn.Linear modules (the
# model code of tests/train/torch_train_reference.py). Perplexity: the whole model on each
# non-overlapping window of --seqlen tokens of --eval, every token scored (the GPTQ paper's
# convention), one window per forward. Text is tokenized as one string by SentencePiece (Debian's
# python3-sentencepiece), which gives llmpress's ids.
# Prints one JSON line: {"gptq_seconds", "eval_seconds", "eval_windows", "perplexity"}.
import argparse
import importlib.util
import json
import math
import os
import sys
import time
import types

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


def load_reference_model_code():
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "train", "torch_train_reference.py")
    spec = importlib.util.spec_from_file_location("torch_train_reference", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_gptq(repo):
    # gptq.py imports transformers only for isinstance checks against Conv1D.
    sys.modules.setdefault("transformers", types.SimpleNamespace(Conv1D=type("Conv1D", (nn.Module,), {})))
    torch.cuda.synchronize = lambda *a, **k: None  # fasterquant times itself with it
    sys.path.insert(0, repo)
    import gptq
    import quant
    return gptq, quant


def tokenize(model_dir, path):
    import sentencepiece  # Debian's python3-sentencepiece
    processor = sentencepiece.SentencePieceProcessor(model_file=os.path.join(model_dir, "tokenizer.model"))
    with open(path, encoding="utf-8") as f:
        return torch.tensor(processor.encode(f.read()), dtype=torch.long)


class Layer(nn.Module):
    """One Llama decoder layer (Hugging Face's eager forward) with nn.Linear modules for GPTQ's hooks."""

    def __init__(self, config, params, index):
        super().__init__()
        self.c = config
        get = lambda name: params[f"model.layers.{index}.{name}.weight"].detach()
        self.input_norm, self.post_norm = get("input_layernorm"), get("post_attention_layernorm")
        self.self_attn, self.mlp = nn.Module(), nn.Module()
        for group, names in ((self.self_attn, ("q_proj", "k_proj", "v_proj", "o_proj")),
                             (self.mlp, ("gate_proj", "up_proj", "down_proj"))):
            for name in names:
                w = get(("self_attn." if group is self.self_attn else "mlp.") + name)
                linear = nn.Linear(w.shape[1], w.shape[0], bias=False)
                linear.weight.data = w.clone()
                setattr(group, name, linear)

    def forward(self, x, cos, sin, mask):
        c = self.c
        B, T, _ = x.shape
        H, KV = c["num_attention_heads"], c["num_key_value_heads"]
        D = c.get("head_dim") or c["hidden_size"] // H
        eps = c["rms_norm_eps"]
        h = ref.rms_norm(x, self.input_norm, eps)
        a = self.self_attn
        q = a.q_proj(h).view(B, T, H, D).transpose(1, 2)
        k = a.k_proj(h).view(B, T, KV, D).transpose(1, 2)
        v = a.v_proj(h).view(B, T, KV, D).transpose(1, 2)
        q = q * cos + ref.rotate_half(q) * sin
        k = k * cos + ref.rotate_half(k) * sin
        k = k.repeat_interleave(H // KV, dim=1)
        v = v.repeat_interleave(H // KV, dim=1)
        scores = (q @ k.transpose(-1, -2)) / math.sqrt(D)
        attn = torch.softmax(scores.masked_fill(~mask, float("-inf")).float(), dim=-1)
        x = x + a.o_proj((attn @ v).transpose(1, 2).reshape(B, T, H * D))
        h = ref.rms_norm(x, self.post_norm, eps)
        m = self.mlp
        return x + m.down_proj(F.silu(m.gate_proj(h)) * m.up_proj(h))


def rope_tables(config, T):
    H = config["num_attention_heads"]
    D = config.get("head_dim") or config["hidden_size"] // H
    inv_freq = 1.0 / (config.get("rope_theta", 10000.0) ** (torch.arange(0, D, 2).float() / D))
    angles = torch.arange(T).float()[:, None] * inv_freq
    emb = torch.cat((angles, angles), -1)
    return emb.cos()[None, None], emb.sin()[None, None]


def gptq_sequential(args, config, params, windows):
    gptq, quant = load_gptq(args.gptq_repo)
    T = windows.shape[1]
    cos, sin = rope_tables(config, T)
    mask = torch.ones(T, T, dtype=torch.bool).tril()[None, None]
    inps = F.embedding(windows, params["model.embed_tokens.weight"].detach())
    outs = torch.zeros_like(inps)
    sequential = [["self_attn.k_proj", "self_attn.v_proj", "self_attn.q_proj"], ["self_attn.o_proj"],
                  ["mlp.up_proj", "mlp.gate_proj"], ["mlp.down_proj"]]
    for i in range(config["num_hidden_layers"]):
        layer = Layer(config, params, i)
        modules = dict(layer.named_modules())
        for names in sequential:
            engines = {}
            for name in names:
                engines[name] = gptq.GPTQ(modules[name])
                engines[name].quantizer = quant.Quantizer()
                engines[name].quantizer.configure(args.bits, perchannel=True, sym=False, mse=False)
            hooks = [modules[n].register_forward_hook(lambda m, inp, out, n=n: engines[n].add_batch(inp[0].data, out.data))
                     for n in names]
            for j in range(windows.shape[0]):
                outs[j] = layer(inps[j].unsqueeze(0), cos, sin, mask)[0]
            for h in hooks:
                h.remove()
            for name in names:
                engines[name].fasterquant(percdamp=0.01, groupsize=args.group, actorder=args.act_order)
                engines[name].free()
        for j in range(windows.shape[0]):
            outs[j] = layer(inps[j].unsqueeze(0), cos, sin, mask)[0]
        inps, outs = outs, inps


def perplexity(config, params, tokens, T):
    n = tokens.numel() // T
    total = 0.0
    for w in range(n):
        window = tokens[w * T:(w + 1) * T].unsqueeze(0)
        logits = ref.forward(config, params, window)[0, :-1].float()
        total += F.cross_entropy(logits, window[0, 1:], reduction="sum").item()
    return n, math.exp(total / (n * (T - 1)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gptq-repo", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--calib", required=True)
    ap.add_argument("--eval", required=True)
    ap.add_argument("--nsamples", type=int, default=128)
    ap.add_argument("--seqlen", type=int, default=256)
    ap.add_argument("--bits", type=int, default=3)
    ap.add_argument("--group", type=int, default=128)
    ap.add_argument("--act-order", action="store_true")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    config, params = ref.load_model(args.model)

    calib = tokenize(args.model, args.calib)
    starts = torch.randint(0, calib.numel() - args.seqlen, (args.nsamples,))
    windows = torch.stack([calib[s:s + args.seqlen] for s in starts.tolist()])
    with torch.no_grad():
        tick = time.time()
        gptq_sequential(args, config, params, windows)
        gptq_seconds = time.time() - tick

        eval_tokens = tokenize(args.model, args.eval)
        tick = time.time()
        windows_scored, ppl = perplexity(config, params, eval_tokens, args.seqlen)
        eval_seconds = time.time() - tick
    print(json.dumps({"gptq_seconds": round(gptq_seconds, 2), "eval_seconds": round(eval_seconds, 2),
                      "eval_windows": windows_scored, "perplexity": round(ppl, 4)}))


ref = load_reference_model_code()

if __name__ == "__main__":
    main()
