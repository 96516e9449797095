"""Checks llmpress' compressed-tensors sparse tensors against compressed-tensors' own code.

Usage: compressed_tensors_reference.py CT_SOURCE WORK_DIR

CT_SOURCE is a checkout of neuralmagic/compressed-tensors (never part of llmpress). Its package
imports pydantic, safetensors, transformers and more, which Debian's python3-torch does not bring,
so the functions and classes this check needs are taken from their source files as they are
(parsed with `ast`, executed in a namespace with small stand-ins for their imports) instead of
importing the package. Nothing is re-implemented here.

WORK_DIR/manifest.json (written by test_compressed_tensors_reference.cpp) lists layers: the dense
weight llmpress compressed and the tensors llmpress stored for it, as raw little-endian files.
For each layer this runs their compressor on the dense weight and compares every tensor (name,
dtype, shape, bytes) with ours, then runs their decompressor on our tensors and compares with the
dense weight. It also compares our config.json keys with the fields their config classes dump.
Exit status 0 when everything agrees.
"""
import ast
import json
import logging
import os
import sys
import types
from dataclasses import dataclass
from enum import Enum, unique
from typing import Any, Dict, Generator, List, Optional, Set, Tuple, Union

import numpy
import torch

DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "I64": torch.int64, "U8": torch.uint8}
failures = []


def fail(message):
    failures.append(message)
    print("MISMATCH " + message)


def module_tree(root, relative):
    path = os.path.join(root, "src", "compressed_tensors", relative)
    with open(path) as f:
        return path, ast.parse(f.read())


def load_defs(root, relative, names, namespace):
    """Executes the named top-level functions / classes of one of their files in `namespace`."""
    path, tree = module_tree(root, relative)
    body = [n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef)) and n.name in names]
    missing = set(names) - {n.name for n in body}
    if missing:
        raise SystemExit(f"{path}: no definition of {sorted(missing)} (compressed-tensors changed?)")
    exec(compile(ast.Module(body=body, type_ignores=[]), path, "exec"), namespace)


def string_constants(root, relative):
    """NAME = "value" assignments at the top of one of their files."""
    _, tree = module_tree(root, relative)
    out = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    out[target.id] = node.value.value
    return out


def class_fields(root, relative, class_name):
    """Annotated attributes of a class, as pydantic turns them into fields."""
    _, tree = module_tree(root, relative)
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == class_name:
            return [n.target.id for n in node.body if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name)]
    raise SystemExit(f"{relative}: no class {class_name}")


def their_namespace(root):
    class BaseCompressor:  # stand-in: registry decorator and the config attribute
        def __init__(self, config=None):
            self.config = config

        @classmethod
        def register(cls, name=None, alias=None):
            return lambda c: c

    ns = {
        "torch": torch, "Tensor": torch.Tensor, "numpy": numpy, "dataclass": dataclass, "Enum": Enum,
        "unique": unique, "Any": Any, "Dict": Dict, "Generator": Generator, "List": List, "Optional": Optional,
        "Set": Set, "Tuple": Tuple, "Union": Union, "BaseCompressor": BaseCompressor,
        "tqdm": lambda iterable, **kwargs: iterable, "_LOGGER": logging.getLogger("compressed_tensors"),
        # torch 1.13 has no float8: a dtype no tensor here compares equal to
        "FP8_E4M3_DATA": types.SimpleNamespace(dtype=object()), "FP8_DTYPE": object(),
    }
    load_defs(root, "config/base.py", ["CompressionFormat", "SparsityStructure"], ns)
    load_defs(root, "utils/helpers.py", ["pack_bitmasks", "unpack_bitmasks"], ns)
    load_defs(root, "utils/safetensors_load.py", ["merge_names"], ns)
    load_defs(root, "compressors/sparse_compressors/base.py", ["BaseSparseCompressor"], ns)
    load_defs(root, "compressors/sparse_compressors/sparse_bitmask.py",
              ["BitmaskCompressor", "BitmaskTensor", "bitmask_compress", "bitmask_decompress"], ns)
    load_defs(root, "compressors/sparse_compressors/sparse_24_bitmask.py",
              ["Sparse24BitMaskCompressor", "Sparse24BitMaskTensor", "sparse24_bitmask_compress",
               "sparse24_bitmask_decompress", "get_24_bytemasks"], ns)
    return ns


def read_raw(work, entry):
    with open(os.path.join(work, entry["file"]), "rb") as f:
        data = bytearray(f.read())
    t = torch.frombuffer(data, dtype=DTYPES[entry["dtype"]]) if data else torch.empty(0, dtype=DTYPES[entry["dtype"]])
    return t.reshape(entry["shape"])


def bits(t):
    """The tensor's bit patterns (so -0.0 and 0.0 differ, and NaNs compare)."""
    same_size = {torch.float16: torch.int16, torch.bfloat16: torch.int16, torch.float32: torch.int32}
    return t.contiguous().view(same_size.get(t.dtype, t.dtype))


def same(a, b):
    return a.dtype == b.dtype and list(a.shape) == list(b.shape) and torch.equal(bits(a), bits(b))


def same_values(a, b):
    """Dense weights: pruned -0.0 comes back as 0.0 (both sides treat it as a zero)."""
    return a.dtype == b.dtype and list(a.shape) == list(b.shape) and torch.equal(a, b)


def check_layer(ns, work, layer):
    module, fmt = layer["module"], layer["format"]
    dense = read_raw(work, layer["dense"])
    ours = {name: read_raw(work, entry) for name, entry in layer["ours"].items()}
    if fmt == "sparse-bitmask":
        compressor = ns["BitmaskCompressor"](config=types.SimpleNamespace(sparsity_structure="unstructured"))
    else:
        compressor = ns["Sparse24BitMaskCompressor"](config=types.SimpleNamespace(sparsity_structure="2:4"))
    label = f"{fmt} {layer['dtype']} {module}"

    # Their compressor on the dense weight, through the state-dict entry point (names included).
    source = dense
    if fmt == "sparse-24-bitmask" and dense.dtype == torch.float16:
        source = dense.float()  # torch 1.13's CPU topk has no float16; the kept values are exact in float32
    theirs = compressor.compress({module + ".weight": source})
    if fmt == "sparse-24-bitmask" and dense.dtype == torch.float16:
        theirs[module + ".compressed"] = theirs[module + ".compressed"].half()
    if sorted(theirs) != sorted(ours):
        fail(f"{label}: tensor names {sorted(theirs)} (theirs) vs {sorted(ours)} (ours)")
        return
    for name in sorted(theirs):
        t, o = theirs[name], ours[name]
        if not layer["exact"] and name.endswith((".bitmask", ".compressed")):
            # Groups with fewer than two nonzeros: which zeros fill them is not specified (their topk).
            if t.dtype != o.dtype or list(t.shape) != list(o.shape):
                fail(f"{label}: {name} is {t.dtype} {list(t.shape)} (theirs) vs {o.dtype} {list(o.shape)} (ours)")
            continue
        if not same(t, o):
            fail(f"{label}: {name} differs: theirs {t.dtype} {list(t.shape)}, ours {o.dtype} {list(o.shape)}")

    # Their decompressor on our tensors gives back the dense weight, bit for bit.
    params = {name[len(module) + 1:]: value for name, value in ours.items()}
    back = compressor.decompress_weight(params)
    if not same_values(back, dense):
        fail(f"{label}: their decompression of our tensors differs from the dense weight")
    # ... and on theirs as well (a sanity check of this harness).
    theirs_back = compressor.decompress_weight({name[len(module) + 1:]: value for name, value in theirs.items()})
    if not same_values(theirs_back.to(dense.dtype), dense):
        fail(f"{label}: their own round trip differs from the dense weight")


def check_config(root, config):
    constants = string_constants(root, "base.py")
    quant_constants = string_constants(root, "quantization/quant_config.py")
    # ModelCompressor.update_config: config_data[QUANTIZATION_CONFIG_NAME] = {NAME: value, ...,
    # **qconfig_data}; qconfig_data is empty without quantization.
    path, tree = module_tree(root, "compressors/model_compressors/model_compressor.py")
    keys = None
    for node in ast.walk(tree):
        if (isinstance(node, ast.FunctionDef) and node.name == "update_config"):
            for inner in ast.walk(node):
                if isinstance(inner, ast.Assign) and isinstance(inner.value, ast.Dict) and isinstance(
                        inner.targets[0], ast.Subscript):
                    keys = [constants[k.id] for k in inner.value.keys if isinstance(k, ast.Name)]
    if keys is None:
        raise SystemExit(f"{path}: update_config's config dict not found (compressed-tensors changed?)")
    if sorted(keys) != sorted(config):
        fail(f"quantization_config keys {sorted(config)} (ours) vs {sorted(keys)} (update_config)")
    if config.get("quant_method") != quant_constants["DEFAULT_QUANTIZATION_METHOD"]:
        fail(f"quant_method {config.get('quant_method')} vs {quant_constants['DEFAULT_QUANTIZATION_METHOD']}")
    # sparsity_config = SparsityCompressionConfig.model_dump(): its fields and RegistryMixin's.
    fields = class_fields(root, "config/base.py", "SparsityCompressionConfig") + class_fields(
        root, "registry/registry.py", "RegistryMixin")
    sparsity = config["sparsity_config"]
    if sorted(fields) != sorted(sparsity):
        fail(f"sparsity_config keys {sorted(sparsity)} (ours) vs {sorted(fields)} (their config classes)")
    if sparsity.get("registry_requires_subclass") is not False:
        fail("registry_requires_subclass must be false")
    ns = {"Enum": Enum, "unique": unique}
    load_defs(root, "config/base.py", ["CompressionFormat", "SparsityStructure"], ns)
    formats = {f.value for f in ns["CompressionFormat"]}
    if sparsity["format"] not in formats:
        fail(f"format {sparsity['format']} is not one of theirs")
    structure = ns["SparsityStructure"](sparsity["sparsity_structure"]).value
    expected = "2:4" if sparsity["format"] == "sparse-24-bitmask" else "unstructured"
    if structure != expected:
        fail(f"sparsity_structure {structure} for {sparsity['format']}")
    print(f"config: quantization_config keys {sorted(config)}; sparsity_config keys {sorted(sparsity)}")


def main():
    root, work = sys.argv[1], sys.argv[2]
    with open(os.path.join(work, "manifest.json")) as f:
        manifest = json.load(f)
    ns = their_namespace(root)
    for config in manifest["configs"]:
        check_config(root, config)
    for layer in manifest["layers"]:
        check_layer(ns, work, layer)
    print(f"{len(manifest['layers'])} layers checked against compressed-tensors at {root}; "
          f"{len(failures)} mismatches")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
