#!/usr/bin/env python3
# Runs the SparseGPT reference implementation (SparseGPT.fasterprune from a checkout of
# github.com/IST-DASLab/sparsegpt, never part of this repository) on one weight matrix and Hessian
# written by test_sparsegpt_reference.cpp, and writes the pruned weight back.
#
#   sparsegpt_reference.py REPO DIR PRUNEN PRUNEM SPARSITY BLOCKSIZE
#
# DIR holds meta.json {"rows", "cols"}, w.bin (float32 [rows, cols]) and h.bin (float64 [cols, cols]);
# the result goes to DIR/out.bin (float32 [rows, cols]). The reference imports transformers only
# for its Conv1D class and calls torch.cuda.synchronize(); both are stubbed so it runs on a CPU-only
# torch without transformers.
import json
import sys
import types

import numpy as np
import torch

repo, folder = sys.argv[1], sys.argv[2]
prunen, prunem, sparsity, blocksize = int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5]), int(sys.argv[6])

stub = types.ModuleType("transformers")
stub.Conv1D = type("Conv1D", (), {})
sys.modules["transformers"] = stub
torch.cuda.synchronize = lambda *args, **kwargs: None
sys.path.insert(0, repo)
import sparsegpt  # noqa: E402

meta = json.load(open(folder + "/meta.json"))
rows, cols = meta["rows"], meta["cols"]
w = torch.from_numpy(np.fromfile(folder + "/w.bin", dtype=np.float32).reshape(rows, cols).copy())
h = torch.from_numpy(np.fromfile(folder + "/h.bin", dtype=np.float64).reshape(cols, cols).copy())

layer = torch.nn.Linear(cols, rows, bias=False)
layer.weight.data = w.clone()
pruner = sparsegpt.SparseGPT(layer)
pruner.H = h.float()  # the reference accumulates its Hessian in float32
pruner.fasterprune(sparsity, prunen=prunen, prunem=prunem, blocksize=blocksize, percdamp=0.01)
layer.weight.data.float().contiguous().numpy().tofile(folder + "/out.bin")
