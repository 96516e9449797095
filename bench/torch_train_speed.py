#!/usr/bin/env python3
# PyTorch eager baseline for the training-speed benchmark: AdamW (betas 0.9/0.95, weight decay 0.1 on
# the 2-D matrices other than the embedding), global grad-norm clip 1.0, one micro-batch per step,
# float32 on the CPU. Uses the model code of tests/train/torch_train_reference.py. Run with Debian's
# /usr/bin/python3 (python3-torch).
#
#   torch_train_speed.py --model DIR (--text FILE | --tokens FILE.bin) [--batch-size 8 --seqlen 256
#                        --steps 20 --warmup-steps 3 --threads 2 --lr 1e-3]
#
# --tokens: raw little-endian int32 ids. --text: tokenized by `spm_encode` (Debian's sentencepiece),
# which encodes line by line: newlines are dropped and every line gets the dummy-prefix "▁", so the
# ids differ from tokenizing the whole text at once (pass --tokens to compare losses with another tool).
# Runs --warmup-steps untimed steps, then --steps timed ones; step s (counting warm-up) takes batch b
# from the window of seqlen+1 tokens starting at ((s*B + b)*seqlen) mod (n_tokens - seqlen).
# Prints one JSON line.
import argparse
import importlib.util
import json
import os
import resource
import shutil
import subprocess
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

_path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "train", "torch_train_reference.py")
_spec = importlib.util.spec_from_file_location("torch_train_reference", _path)
ref = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ref)


def read_tokens(args):
    if args.tokens:
        return np.fromfile(args.tokens, dtype="<i4").astype(np.int64)
    if shutil.which("spm_encode") is None:
        sys.exit("--text needs spm_encode on PATH (Debian package sentencepiece); or pass --tokens")
    with open(args.text, "rb") as f:
        out = subprocess.run(["spm_encode", "--model", os.path.join(args.model, "tokenizer.model"), "--output_format=id"],
                             stdin=f, capture_output=True, check=True).stdout
    return np.array(out.split(), dtype=np.int64)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--text")
    src.add_argument("--tokens")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--seqlen", type=int, default=256)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup-steps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--bf16", action="store_true", help="torch.autocast(cpu, bfloat16) around forward and loss")
    args = ap.parse_args()
    if args.steps < 1:
        ap.error("--steps must be at least 1")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    ids = torch.from_numpy(read_tokens(args))
    B, T = args.batch_size, args.seqlen
    usable = len(ids) - T
    if usable <= 0:
        sys.exit(f"{len(ids)} tokens: need more than seqlen+1")
    config, params = ref.load_model(args.model)
    decay = [t for n, t in params.items() if t.dim() == 2 and n != "model.embed_tokens.weight"]
    no_decay = [t for n, t in params.items() if not (t.dim() == 2 and n != "model.embed_tokens.weight")]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.95), eps=1e-8)

    elapsed = 0.0
    for s in range(args.warmup_steps + args.steps):
        batch = torch.stack([ids[start:start + T + 1] for start in ((s * B + b) * T % usable for b in range(B))])
        t0 = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
            logits = ref.forward(config, params, batch[:, :-1])
            loss = F.cross_entropy(logits.flatten(0, 1).float(), batch[:, 1:].flatten())
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params.values(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        final_loss = loss.item()
        if s >= args.warmup_steps:
            elapsed += time.perf_counter() - t0

    print(json.dumps({"tokens_per_s": args.steps * B * T / elapsed, "step_s": elapsed / args.steps,
                      "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "final_loss": final_loss, "bf16": args.bf16, "threads": args.threads, "torch": torch.__version__}))


if __name__ == "__main__":
    main()
