#pragma once
// llmpress's own work files (resume points, stage outputs): a little-endian u64 header length, a
// JSON header {"metadata": ..., "tensors": {NAME: {dtype, shape, offset, bytes, checksum}}}, then the
// raw bytes of every tensor. Written atomically; read back with every size and offset checked and each
// tensor's 64-bit checksum compared (a damaged resume file is an error, never a silently different output).
#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include <map>
#include <string>

namespace llmpress {

using TensorMap = std::map<std::string, at::Tensor>;

void save_tensor_file(const std::string& path, const TensorMap& tensors,
                      const nlohmann::json& metadata = nlohmann::json::object());
// Tensors are placed on `device`; `metadata` (optional) receives the header's metadata.
TensorMap load_tensor_file(const std::string& path, const at::Device& device = at::kCPU,
                           nlohmann::json* metadata = nullptr);

}  // namespace llmpress
