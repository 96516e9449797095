#include "llmpress/calib/engine.h"

#include <nlohmann/json.hpp>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>

#include "llmpress/core/error.h"
#include "llmpress/core/progress.h"
#include "llmpress/data/text.h"
#include "llmpress/io/atomic_file.h"
#include "llmpress/io/checkpoint.h"

namespace llmpress {

namespace fs = std::filesystem;
using TensorMap = std::map<std::string, at::Tensor>;

// ---- Default (dense) save/restore of a compressor's weights -------------------------------------

TensorMap Compressor::save(const LinearWeight& weight) const { return {{"weight", weight.dense()}}; }

std::shared_ptr<LinearWeight> Compressor::restore(const std::string& kind, const TensorMap& state) const {
  if (kind != "dense" || !state.count("weight"))
    throw Error(describe() + ": cannot restore a saved linear weight of kind '" + kind + "'");
  return std::make_shared<DenseWeight>(state.at("weight"));
}

const std::vector<std::vector<std::string>>& linear_groups() {
  static const std::vector<std::vector<std::string>> groups = {
      {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"},
      {"self_attn.o_proj"},
      {"mlp.gate_proj", "mlp.up_proj"},
      {"mlp.down_proj"}};
  return groups;
}

namespace {

// ---- Resume files: a JSON header (names, dtypes, shapes, offsets, metadata) + raw CPU bytes -----

void save_tensor_file(const std::string& path, const TensorMap& tensors, const nlohmann::json& metadata) {
  nlohmann::json header = {{"metadata", metadata}, {"tensors", nlohmann::json::object()}};
  std::vector<at::Tensor> data;
  uint64_t offset = 0;
  for (const auto& [name, tensor] : tensors) {
    const at::Tensor cpu = tensor.to(at::kCPU).contiguous();
    const uint64_t bytes = uint64_t(cpu.numel()) * cpu.element_size();
    header["tensors"][name] = {{"dtype", int(cpu.scalar_type())}, {"shape", cpu.sizes().vec()},
                               {"offset", offset}, {"bytes", bytes}};
    offset += bytes;
    data.push_back(cpu);
  }
  const std::string text = header.dump();
  const uint64_t length = text.size();
  AtomicFile file(path);
  file.write(&length, sizeof length);
  file.write(text);
  for (const at::Tensor& t : data) file.write(t.data_ptr(), size_t(t.numel()) * t.element_size());
  file.commit();
}

TensorMap load_tensor_file(const std::string& path, const at::Device& device, nlohmann::json* metadata) {
  const std::string bytes = read_text_file(path);
  uint64_t length = 0;
  if (bytes.size() < sizeof length) throw file_error(path, "truncated resume file");
  std::memcpy(&length, bytes.data(), sizeof length);
  if (length > bytes.size() - sizeof length) throw file_error(path, "truncated resume file header");
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(bytes.substr(sizeof length, length));
  } catch (const nlohmann::json::exception& e) {
    throw file_error(path, std::string("bad resume file header: ") + e.what());
  }
  const uint64_t base = sizeof length + length;
  TensorMap tensors;
  for (const auto& [name, info] : header["tensors"].items()) {
    const uint64_t offset = info["offset"], size = info["bytes"];
    if (offset > bytes.size() - base || size > bytes.size() - base - offset)
      throw file_error(path, "tensor " + name + " runs past the end of the file");
    const auto dtype = at::ScalarType(info["dtype"].get<int>());
    at::Tensor t = at::empty(info["shape"].get<std::vector<int64_t>>(), at::TensorOptions().dtype(dtype));
    if (uint64_t(t.numel()) * t.element_size() != size) throw file_error(path, "tensor " + name + " has a bad size");
    std::memcpy(t.data_ptr(), bytes.data() + base + offset, size);
    tensors[name] = t.to(device);
  }
  if (metadata) *metadata = header["metadata"];
  return tensors;
}

std::string layer_file(const std::string& dir, int64_t i) { return dir + "/layer-" + std::to_string(i) + ".bin"; }
std::string inputs_file(const std::string& dir, int64_t i) { return dir + "/inputs-" + std::to_string(i) + ".bin"; }

void save_layer(const std::string& path, const DecoderLayer& layer, const Compressor& compressor) {
  TensorMap tensors = {{"input_norm", layer.input_norm}, {"post_attention_norm", layer.post_attention_norm}};
  nlohmann::json kinds;
  for (const std::string& name : DecoderLayer::linear_names()) {
    const Linear& linear = layer.linear(name);
    kinds[name] = linear.weight->kind();
    for (const auto& [key, tensor] : compressor.save(*linear.weight)) tensors[name + "." + key] = tensor;
    if (linear.bias.defined()) tensors[name + ".bias"] = linear.bias;
  }
  save_tensor_file(path, tensors, {{"kinds", kinds}});
}

DecoderLayer restore_layer(const std::string& path, const Compressor& compressor, const at::Device& device) {
  nlohmann::json metadata;
  TensorMap tensors = load_tensor_file(path, device, &metadata);
  DecoderLayer layer;
  layer.input_norm = tensors.at("input_norm");
  layer.post_attention_norm = tensors.at("post_attention_norm");
  for (const std::string& name : DecoderLayer::linear_names()) {
    TensorMap state;
    for (const auto& [key, tensor] : tensors) {
      if (key.rfind(name + ".", 0) == 0 && key != name + ".bias") state[key.substr(name.size() + 1)] = tensor;
    }
    Linear& linear = layer.linear(name);
    linear.weight = compressor.restore(metadata["kinds"][name].get<std::string>(), state);
    if (tensors.count(name + ".bias")) linear.bias = tensors.at(name + ".bias");
  }
  return layer;
}

// What identifies a job, so --resume refuses a work directory left by a different one.
std::string fingerprint(const Checkpoint& checkpoint, const at::Tensor& tokens, const Compressor& compressor,
                        const EngineOptions& options) {
  const at::Tensor t = tokens.to(at::kCPU).to(at::kLong).flatten();
  const at::Tensor weights = at::arange(1, t.numel() + 1, at::kLong).remainder(1000003);
  const int64_t checksum = (t * weights).sum().item<int64_t>();
  return checkpoint.path + "|" + compressor.describe() + "|" + std::to_string(tokens.size(0)) + "x" +
         std::to_string(tokens.size(1)) + "|" + std::to_string(checksum) + "|" +
         (options.true_sequential ? "sequential" : "parallel");
}

// ---- Capturing linear inputs --------------------------------------------------------------------

// Wraps a slot's weight for one capture pass: hands every input to the observers, then computes
// exactly what the wrapped weight computes.
class ObservingWeight : public LinearWeight {
 public:
  ObservingWeight(std::shared_ptr<LinearWeight> inner, std::vector<std::unique_ptr<Observer>>* observers)
      : inner_(std::move(inner)), observers_(observers) {}
  at::Tensor forward(const at::Tensor& x) const override {
    const at::Tensor rows = x.reshape({-1, x.size(-1)});
    for (auto& observer : *observers_) observer->observe(rows);
    return inner_->forward(x);
  }
  int64_t in_features() const override { return inner_->in_features(); }
  int64_t out_features() const override { return inner_->out_features(); }
  int64_t storage_bits() const override { return inner_->storage_bits(); }
  at::Tensor dense() const override { return inner_->dense(); }
  std::string kind() const override { return inner_->kind(); }

 private:
  std::shared_ptr<LinearWeight> inner_;
  std::vector<std::unique_ptr<Observer>>* observers_;
};

std::vector<std::unique_ptr<Observer>> make_observers(const StatsRequest& request) {
  std::vector<std::unique_ptr<Observer>> observers;
  if (request.hessian) observers.push_back(std::make_unique<HessianObserver>());
  if (request.input_norms) observers.push_back(std::make_unique<InputNormObserver>());
  if (request.input_samples > 0) observers.push_back(std::make_unique<InputSampleObserver>(request.input_samples));
  return observers;
}

struct LayerRunner {
  const Transformer& shell;
  int64_t batch_samples;

  // The layer applied to every sample, in batches of whole samples (positions start at 0 in each).
  at::Tensor run(const DecoderLayer& layer, const at::Tensor& hidden) const {
    at::Tensor outputs = at::empty_like(hidden);
    for (int64_t s = 0; s < hidden.size(0); s += batch_samples) {
      const int64_t n = std::min(batch_samples, hidden.size(0) - s);
      outputs.narrow(0, s, n).copy_(layer.forward(hidden.narrow(0, s, n), shell.config, shell.rope, 0));
    }
    return outputs;
  }

  // Statistics of the input of each group (keyed by the group's first linear), from one pass.
  std::map<std::string, InputStats> capture(DecoderLayer& layer, const at::Tensor& hidden,
                                            const std::vector<std::vector<std::string>>& groups,
                                            const StatsRequest& request) const {
    std::map<std::string, std::vector<std::unique_ptr<Observer>>> observers;
    std::map<std::string, std::shared_ptr<LinearWeight>> originals;
    for (const auto& group : groups) {
      const std::string& first = group.front();
      observers[first] = make_observers(request);
      originals[first] = layer.linear(first).weight;
      layer.linear(first).weight = std::make_shared<ObservingWeight>(originals[first], &observers[first]);
    }
    try {
      // The last group's output is not needed, but the pass is cheap next to the statistics.
      run(layer, hidden);
    } catch (...) {
      for (auto& [name, weight] : originals) layer.linear(name).weight = weight;
      throw;
    }
    std::map<std::string, InputStats> stats;
    for (auto& [name, weight] : originals) {
      layer.linear(name).weight = weight;
      for (const auto& observer : observers[name]) observer->finish(stats[name]);
    }
    return stats;
  }
};

bool all_finite(const at::Tensor& t) { return at::isfinite(t).all().item<bool>(); }

}  // namespace

EngineResult compress_sequential(const Checkpoint& checkpoint, const Transformer& shell, const at::Tensor& tokens,
                                 Compressor& compressor, const EngineOptions& options) {
  if (tokens.dim() != 2) throw Error("calibration tokens must be [nsamples, seqlen]");
  const int64_t num_layers = shell.config.num_layers;
  const at::Device device = options.device;
  EngineResult result;
  Progress progress("compress", num_layers, "tok", options.progress);

  int64_t first_layer = 0;
  at::Tensor hidden;  // inputs of the current layer, all samples: [nsamples, seqlen, hidden]
  const std::string state_path = options.work_dir.empty() ? "" : options.work_dir + "/state.json";
  const std::string job = fingerprint(checkpoint, tokens, compressor, options);
  if (!options.work_dir.empty()) fs::create_directories(options.work_dir);
  if (options.resume) {
    if (state_path.empty()) throw Error("--resume needs a work directory");
    if (fs::exists(state_path)) {
      const nlohmann::json state = nlohmann::json::parse(read_text_file(state_path));
      if (state.value("job", "") != job)
        throw file_error(state_path, "was written by a different job (model, method or calibration data); "
                                     "use another work directory or remove this one");
      first_layer = state["finished_layers"].get<int64_t>();
      for (int64_t i = 0; i < first_layer; ++i) {
        const DecoderLayer layer = restore_layer(layer_file(options.work_dir, i), compressor, device);
        if (options.on_layer) options.on_layer(i, layer, at::Tensor());
      }
      hidden = load_tensor_file(inputs_file(options.work_dir, first_layer), device, nullptr).at("hidden");
      result.resumed_layers = first_layer;
      std::fprintf(stderr, "resuming after %lld finished layers from %s\n", (long long)first_layer,
                   options.work_dir.c_str());
    }
  }
  if (!hidden.defined()) hidden = shell.embed(tokens.to(device)).to(at::kFloat);

  StatsRequest request = compressor.needs();
  if (options.measure_errors) request.hessian = true;
  const bool wants_stats = request.hessian || request.input_norms || request.input_samples > 0;
  const LayerRunner runner{shell, std::max<int64_t>(1, options.batch_samples)};
  const int64_t tokens_per_layer = tokens.numel();

  for (int64_t i = first_layer; i < num_layers; ++i) {
    DecoderLayer layer = Transformer::load_layer(checkpoint, i, device);
    const std::string prefix = "model.layers." + std::to_string(i) + ".";

    auto compress_group = [&](const std::vector<std::string>& group, const InputStats& stats) {
      for (const std::string& name : group) {
        Linear& linear = layer.linear(name);
        const std::string full = prefix + name;
        std::shared_ptr<LinearWeight> replacement = compressor.compress(full, linear, stats);
        if (!replacement) throw Error(full + ": " + compressor.describe() + " returned no weight");
        const at::Tensor after = replacement->dense().to(at::kDouble);
        if (!all_finite(after)) throw Error(full + ": " + compressor.describe() + " produced NaN or Inf weights");
        LinearReport report{full, replacement->kind(), after.numel(), replacement->storage_bits()};
        if (options.measure_errors && stats.hessian.defined()) {
          const at::Tensor before = linear.weight->dense().to(at::kDouble);
          const at::Tensor delta = before - after;
          const double n = double(stats.tokens);
          report.output_error = (at::matmul(delta, stats.hessian) * delta).sum().item<double>() * n;
          const double base = (at::matmul(before, stats.hessian) * before).sum().item<double>() * n;
          report.relative_error = base > 0 ? report.output_error / base : 0.0;
        }
        result.linears.push_back(report);
        linear.weight = replacement;
      }
    };

    if (wants_stats && compressor.prepares_layers()) {
      const auto captured = runner.capture(layer, hidden, linear_groups(), request);
      std::vector<InputStats> group_stats;
      for (const auto& group : linear_groups()) group_stats.push_back(captured.at(group.front()));
      compressor.prepare_layer(i, layer, shell.config, group_stats);
    }
    if (!wants_stats) {
      for (const auto& group : linear_groups()) compress_group(group, InputStats{});
    } else if (options.true_sequential) {
      for (const auto& group : linear_groups()) {
        const auto stats = runner.capture(layer, hidden, {group}, request);
        compress_group(group, stats.at(group.front()));
      }
    } else {
      const auto stats = runner.capture(layer, hidden, linear_groups(), request);
      for (const auto& group : linear_groups()) compress_group(group, stats.at(group.front()));
    }

    at::Tensor outputs = runner.run(layer, hidden);
    if (!all_finite(outputs))
      throw Error("layer " + std::to_string(i) + " (" + prefix + "*): outputs contain NaN or Inf after " +
                  compressor.describe() + "; the job stops here");
    hidden = outputs;

    if (!options.work_dir.empty()) {
      save_layer(layer_file(options.work_dir, i), layer, compressor);
      save_tensor_file(inputs_file(options.work_dir, i + 1), {{"hidden", hidden}}, nlohmann::json::object());
      write_file_atomic(state_path, nlohmann::json{{"job", job}, {"finished_layers", i + 1}}.dump(2) + "\n");
      std::error_code ec;
      fs::remove(inputs_file(options.work_dir, i), ec);
    }
    if (options.on_layer) options.on_layer(i, layer, hidden);
    progress.update(i + 1, (i + 1 - first_layer) * tokens_per_layer, "layer " + std::to_string(i));
  }
  progress.finish();
  result.final_hidden = hidden;
  result.seconds = progress.elapsed_seconds();
  return result;
}

}  // namespace llmpress
