#include "llmpress/calib/engine.h"

#include <nlohmann/json.hpp>

#include <cstdlib>
#include <filesystem>
#include <map>
#include <regex>

#include "llmpress/core/error.h"
#include "llmpress/core/progress.h"
#include "llmpress/data/text.h"
#include "llmpress/distributed/communicator.h"
#include "llmpress/io/atomic_file.h"
#include "llmpress/core/log.h"
#include "llmpress/io/tensor_file.h"
#include "llmpress/model/layer_file.h"
#include "llmpress/model/observed_weight.h"

namespace llmpress {

namespace fs = std::filesystem;

std::string engine_layer_file(const std::string& dir, int64_t i) { return dir + "/layer-" + std::to_string(i) + ".bin"; }

void remove_saved_activations(const std::string& work_dir) {
  static const std::regex saved_inputs(R"(inputs-[0-9]+\.bin)");  // the names inputs_file() writes, nothing else
  std::error_code ec;
  std::vector<fs::path> saved;
  for (const auto& entry : fs::directory_iterator(work_dir, ec))
    if (std::regex_match(entry.path().filename().string(), saved_inputs)) saved.push_back(entry.path());
  for (const fs::path& path : saved) fs::remove(path, ec);
}

namespace {

std::string inputs_file(const std::string& dir, int64_t i) { return dir + "/inputs-" + std::to_string(i) + ".bin"; }

// Crash test point: with LLMPRESS_TEST_KILL_AFTER_LAYERS=N the process ends abruptly (as under
// kill -9: no cleanup, exit status 137) right after the N-th layer it finished has been saved,
// so tests can check that --resume continues a job killed at any layer of any stage.
void crash_test_point() {
  static const long limit = [] {
    const char* env = std::getenv("LLMPRESS_TEST_KILL_AFTER_LAYERS");
    return env && *env ? std::atol(env) : 0L;
  }();
  static long finished = 0;
  if (limit > 0 && ++finished >= limit) std::_Exit(137);
}

// What identifies a job, so --resume refuses a work directory left by a different one.
std::string fingerprint(const LayerSource& source, const at::Tensor& tokens, const Compressor& compressor,
                        const EngineOptions& options) {
  const at::Tensor t = tokens.to(at::kCPU).to(at::kLong).flatten();
  const at::Tensor weights = at::arange(1, t.numel() + 1, at::kLong).remainder(1000003);
  const int64_t checksum = (t * weights).sum().item<int64_t>();
  const std::string ranks = options.group ? strprintf("|rank %d of %d", options.group->rank(),
                                                     options.group->world_size()) : "";
  return source.identity() + "|" + compressor.describe() + "|" + std::to_string(tokens.size(0)) + "x" +
         std::to_string(tokens.size(1)) + "|" + std::to_string(checksum) + "|" +
         (options.true_sequential ? "sequential" : "parallel") + ranks;
}

// Every rank's share of the samples' hidden states, in rank order: [nsamples, seqlen, hidden] on
// every rank (a gather as a sum: each rank fills its own rows of a zero buffer).
at::Tensor gather_samples(const Communicator& group, const at::Tensor& mine, int64_t nsamples) {
  const auto [begin, end] = share_of(nsamples, group.rank(), group.world_size());
  std::vector<int64_t> shape = mine.sizes().vec();
  shape[0] = nsamples;
  at::Tensor all = at::zeros(shape, mine.options().device(at::kCPU));
  all.narrow(0, begin, end - begin).copy_(mine);
  group.all_reduce(all);
  return all.to(mine.device());
}

// ---- Capturing linear inputs --------------------------------------------------------------------

std::vector<std::unique_ptr<Observer>> make_observers(const StatsRequest& request) {
  std::vector<std::unique_ptr<Observer>> observers;
  if (request.hessian) observers.push_back(std::make_unique<HessianObserver>(request.hessian_float32_batches));
  if (request.input_norms) observers.push_back(std::make_unique<InputNormObserver>());
  if (request.input_samples > 0) observers.push_back(std::make_unique<InputSampleObserver>(request.input_samples));
  return observers;
}

struct LayerRunner {
  const Transformer& shell;
  int64_t batch_samples;
  const Communicator* group;

  // Which part of the layer a pass runs: `hidden` holds the layer's inputs (whole, attention) or the
  // attention half's outputs (mlp).
  enum class Part { whole, attention, mlp };

  at::Tensor forward(const DecoderLayer& layer, const at::Tensor& batch, Part part) const {
    switch (part) {
      case Part::attention: return layer.attention_half(batch, shell.config, shell.rope, 0);
      case Part::mlp: return layer.mlp_half(batch, shell.config);
      default: return layer.forward(batch, shell.config, shell.rope, 0);
    }
  }

  // The layer (or a part) applied to every sample, in batches of whole samples (positions start at 0
  // in each). Each batch's outputs overwrite its inputs (a sample's output depends on that sample
  // only), so the activations of all samples are held once, not twice.
  void run(const DecoderLayer& layer, at::Tensor& hidden, Part part = Part::whole) const {
    for (int64_t s = 0; s < hidden.size(0); s += batch_samples) {
      const int64_t n = std::min(batch_samples, hidden.size(0) - s);
      hidden.narrow(0, s, n).copy_(forward(layer, hidden.narrow(0, s, n), part));
    }
  }

  // Statistics of the input of each group (keyed by the group's first linear), from one pass. Each
  // batch's forward stops once every group's input has been seen: what follows would be thrown away
  // (with true-sequential groups this saves more than half of the calibration's matrix products).
  std::map<std::string, InputStats> capture(DecoderLayer& layer, at::Tensor& hidden,
                                            const std::vector<std::vector<std::string>>& groups,
                                            const StatsRequest& request, Part part = Part::whole) const {
    struct AllInputsSeen {};
    std::map<std::string, std::vector<std::unique_ptr<Observer>>> observers;
    std::map<std::string, std::shared_ptr<LinearWeight>> originals;
    size_t seen = 0;  // groups whose input the current batch has shown
    const size_t wanted = groups.size();
    for (const auto& group : groups) {
      const std::string& first = group.front();
      observers[first] = make_observers(request);
      originals[first] = layer.linear(first).weight;
      std::vector<std::unique_ptr<Observer>>* slot = &observers[first];
      layer.linear(first).weight =
          std::make_shared<ObservedWeight>(originals[first], [slot, &seen, wanted](const at::Tensor& x) {
            const at::Tensor rows = x.reshape({-1, x.size(-1)});
            for (auto& observer : *slot) observer->observe(rows);
            if (++seen == wanted) throw AllInputsSeen{};
          });
    }
    try {
      for (int64_t s = 0; s < hidden.size(0); s += batch_samples) {
        const int64_t n = std::min(batch_samples, hidden.size(0) - s);
        seen = 0;
        try {
          forward(layer, hidden.narrow(0, s, n), part);
        } catch (const AllInputsSeen&) {
        }
      }
    } catch (...) {
      for (auto& [name, weight] : originals) layer.linear(name).weight = weight;
      throw;
    }
    std::map<std::string, InputStats> stats;
    for (auto& [name, weight] : originals) {
      layer.linear(name).weight = weight;
      for (const auto& observer : observers[name]) {
        if (group) observer->reduce(*group);
        observer->finish(stats[name]);
      }
    }
    return stats;
  }
};

bool all_finite(const at::Tensor& t) { return at::isfinite(t).all().item<bool>(); }

}  // namespace

EngineResult compress_sequential(const LayerSource& source, const Transformer& shell, const at::Tensor& tokens,
                                 Compressor& compressor, const EngineOptions& options) {
  if (tokens.dim() != 2) throw Error("calibration tokens must be [nsamples, seqlen]");
  at::NoGradGuard no_grad;  // compression never differentiates through the model
  const int64_t num_layers = shell.config.num_layers;
  const at::Device device = options.device;
  const Communicator* group = options.group;
  const bool writes = !group || group->writes();
  EngineResult result;
  Progress progress("compress", num_layers, "tok", options.progress && writes);
  at::Tensor share = tokens;  // the samples this rank runs
  if (group) {
    if (compressor.trains_layers())
      throw Error(compressor.describe() + " trains each layer on its calibration inputs, which is not data-parallel "
                  "yet: run it as one process (without --nproc / --world-size)");
    if (tokens.size(0) < group->world_size())
      throw Error(strprintf("%lld calibration samples cannot be shared by %d processes: use more --nsamples or fewer "
                            "processes", (long long)tokens.size(0), group->world_size()));
    const auto [begin, end] = share_of(tokens.size(0), group->rank(), group->world_size());
    share = tokens.narrow(0, begin, end - begin);
  }

  int64_t first_layer = 0;
  at::Tensor hidden;  // inputs of the current layer, all samples: [nsamples, seqlen, hidden]
  const bool trains = compressor.trains_layers();
  at::Tensor uncompressed;  // trains: the same through the layers as loaded
  const std::string state_path = options.work_dir.empty() ? "" : options.work_dir + "/state.json";
  const std::string job = fingerprint(source, tokens, compressor, options);
  result.job = job;
  if (!options.work_dir.empty()) fs::create_directories(options.work_dir);
  if (options.resume) {
    if (state_path.empty()) throw Error("--resume needs a work directory");
    if (fs::exists(state_path)) {
      const nlohmann::json state = nlohmann::json::parse(read_text_file(state_path), nullptr, false);
      const bool valid = state.is_object() && state.contains("job") && state["job"].is_string() &&
                         state.value("finished_layers", nlohmann::json()).is_number_integer();
      if (!valid) throw file_error(state_path, "is not a resume state (corrupt JSON); remove the work directory");
      if (state["job"] != job)
        throw file_error(state_path, "was written by a different job (model, method or calibration data); "
                                     "use another work directory or remove this one");
      first_layer = state["finished_layers"].get<int64_t>();
      if (first_layer < 0 || first_layer > num_layers) throw file_error(state_path, "bad finished_layers");
      // Damaged or missing saved activations of this job cost a recomputation of the stage, never a
      // wrong output (a damaged finished layer file is an error where it is read: its checksum).
      try {
        const std::string inputs = inputs_file(options.work_dir, first_layer);
        if (fs::exists(inputs)) {
          const TensorMap saved = load_tensor_file(inputs, device);
          hidden = saved.at("hidden");
          if (trains) {
            if (!saved.count("uncompressed")) throw file_error(inputs, "has no uncompressed-model inputs");
            uncompressed = saved.at("uncompressed");
          }
        } else {  // also after the last layer: its outputs are the stage's final hidden states
          throw file_error(state_path, "has no saved inputs for layer " + std::to_string(first_layer));
        }
      } catch (const Error& e) {
        log_warning(std::string(e.what()) + "; redoing this stage from its first layer");
        first_layer = 0;
        hidden = uncompressed = at::Tensor();
      }
    }
    // Data-parallel ranks resume together or not at all (a kill can fall between two ranks' saves).
    if (group && !group->agree(first_layer)) {
      if (writes) log_warning("the processes stopped at different layers; redoing this stage from its first layer");
      first_layer = 0;
      hidden = uncompressed = at::Tensor();
    }
    if (first_layer > 0) {
      for (int64_t i = 0; i < first_layer && options.on_layer; ++i)
        options.on_layer(i, load_layer_file(engine_layer_file(options.work_dir, i), device), at::Tensor());
      result.resumed_layers = first_layer;
      log_info(strprintf("resuming after %lld finished layers from %s", (long long)first_layer,
                           options.work_dir.c_str()));
    }
  }
  if (!hidden.defined() && first_layer == 0) hidden = shell.embed(share.to(device)).to(at::kFloat);
  if (trains && !uncompressed.defined() && hidden.defined()) uncompressed = hidden.clone();

  StatsRequest request = compressor.needs();
  if (options.measure_errors) request.hessian = true;
  const bool wants_stats = request.hessian || request.input_norms || request.input_samples > 0;
  const LayerRunner runner{shell, std::max<int64_t>(1, options.batch_samples), group};
  const int64_t tokens_per_layer = tokens.numel();

  for (int64_t i = first_layer; i < num_layers; ++i) {
    DecoderLayer layer = source.load_layer(i, device);
    const std::string prefix = "model.layers." + std::to_string(i) + ".";

    auto compress_group = [&](const std::vector<std::string>& group, const InputStats& stats) {
      for (const std::string& name : group) {
        Linear& linear = layer.linear(name);
        const std::string full = prefix + name;
        std::shared_ptr<LinearWeight> replacement = compressor.compress(full, linear, stats);
        if (!replacement) throw Error(full + ": " + compressor.describe() + " returned no weight");
        const at::Tensor after = replacement->dense().to(device, at::kDouble);
        if (!all_finite(after)) throw Error(full + ": " + compressor.describe() + " produced NaN or Inf weights");
        LinearReport report{full, replacement->kind(), after.numel(), replacement->storage_bits()};
        if (options.measure_errors && stats.hessian.defined()) {
          const at::Tensor before = linear.weight->dense().to(device, at::kDouble);
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

    if (trains) runner.run(layer, uncompressed);  // the targets, before any compression
    using Part = LayerRunner::Part;
    Part rest = Part::whole;  // what of the layer is still to run on `hidden`
    if (wants_stats && compressor.prepares_layers()) {
      const auto captured = runner.capture(layer, hidden, linear_groups(), request);
      std::vector<InputStats> group_stats;
      for (const auto& group : linear_groups()) group_stats.push_back(captured.at(group.front()));
      compressor.prepare_layer(i, layer, shell.config, group_stats);
    }
    if (!wants_stats) {
      for (const auto& group : linear_groups()) compress_group(group, InputStats{});
    } else if (options.true_sequential) {
      // Once the attention's linears are compressed, its half of the layer runs once and the MLP's
      // groups are calibrated on its outputs (not from the layer's inputs again, for each group).
      // A layer that trains needs its inputs kept, so it runs whole passes.
      for (const auto& group : linear_groups()) {
        const bool mlp = group.front().rfind("mlp.", 0) == 0;
        if (mlp && !trains && rest == Part::whole) {
          runner.run(layer, hidden, Part::attention);
          rest = Part::mlp;
        }
        const auto stats = runner.capture(layer, hidden, {group}, request, rest);
        compress_group(group, stats.at(group.front()));
      }
    } else {
      const auto stats = runner.capture(layer, hidden, linear_groups(), request);
      for (const auto& group : linear_groups()) compress_group(group, stats.at(group.front()));
    }

    if (trains) compressor.train_layer(i, layer, shell, hidden, uncompressed);
    runner.run(layer, hidden, rest);
    if (!all_finite(hidden))
      throw Error("layer " + std::to_string(i) + " (" + prefix + "*): outputs contain NaN or Inf after " +
                  compressor.describe() + "; the job stops here");

    if (!options.work_dir.empty()) {
      save_layer_file(engine_layer_file(options.work_dir, i), layer);
      if (options.save_inputs) {
        TensorMap saved = {{"hidden", hidden}};
        if (trains) saved["uncompressed"] = uncompressed;
        save_tensor_file(inputs_file(options.work_dir, i + 1), saved);
      }
      write_file_atomic(state_path, nlohmann::json{{"job", job}, {"finished_layers", i + 1}}.dump(2) + "\n");
      std::error_code ec;
      fs::remove(inputs_file(options.work_dir, i), ec);
      if (group) group->barrier();  // every rank has saved this layer (kills then leave the ranks in step)
      crash_test_point();
    }
    if (options.on_layer) options.on_layer(i, layer, hidden);
    progress.update(i + 1, (i + 1 - first_layer) * tokens_per_layer, "layer " + std::to_string(i));
  }
  progress.finish();
  result.final_hidden = group && hidden.defined() ? gather_samples(*group, hidden, tokens.size(0)) : hidden;
  result.seconds = progress.elapsed_seconds();
  return result;
}

}  // namespace llmpress
