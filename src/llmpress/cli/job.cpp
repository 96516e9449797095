#include "llmpress/cli/job.h"

#include <ATen/Parallel.h>

#include <cstdio>
#include <map>
#include <set>

#include "llmpress/core/error.h"
#include "llmpress/core/log.h"
#include "llmpress/data/text.h"
#include "llmpress/eval/perplexity.h"
#include "llmpress/io/atomic_file.h"
#include "llmpress/pipeline/method.h"

namespace llmpress::cli {

void add_job_flags(CLI::App& command, JobFlags& flags, const std::string& output_help) {
  add_model_options(command, flags.model);
  if (!output_help.empty()) command.add_option("-o,--output", flags.output, output_help)->required();
  command.add_option("--calib", flags.calib_file, "calibration text (plain text or .jsonl with a \"text\" field)");
  command.add_option("--nsamples", flags.calib.nsamples, "calibration windows")->capture_default_str();
  command.add_option("--seqlen", flags.calib.seqlen, "tokens per window (capped at the model's context)")
      ->capture_default_str();
  command.add_option("--seed", flags.calib.seed, "seed of the window draw")->capture_default_str();
  command.add_option("--batch", flags.batch_samples, "calibration windows per forward pass")->capture_default_str();
  command.add_option("--work-dir", flags.work_dir,
                     "keep each stage's finished layers and the calibration activations here (for --resume)");
  command.add_flag("--resume", flags.resume, "continue the job in --work-dir from where it stopped");
  command.add_flag("--verbose", flags.verbose, "per-layer table: kind, size, sparsity and output error ||(W-W')X||^2");
  command.add_flag("--no-progress", flags.no_progress, "no progress line on stderr");
  command.add_option("--save-recipe", flags.save_recipe, "also write this command as a recipe (YAML) for llmpress run");
  command.add_option("--eval", flags.eval_file,
                     "afterwards, measure the perplexity of the input and of the output on this text, side by side");
  command.add_option("--eval-ctx", flags.eval_context, "--eval: tokens per window")->capture_default_str();
  command.add_option("--eval-chunks", flags.eval_chunks, "--eval: windows evaluated (-1: the whole text)")
      ->capture_default_str();
  add_distributed_flags(command, flags.distributed);
}

void MethodFlags::add(CLI::App& command, const std::string& family, const std::set<std::string>& skip) {
  std::map<std::string, std::string> helps;
  std::map<std::string, OptionType> types;
  std::map<std::string, std::vector<std::string>> users;
  for (const MethodSpec* m : registered_methods(family)) {
    for (const OptionSpec& o : m->options) {
      if (skip.count(o.name)) continue;
      types[o.name] = o.type;
      users[o.name].push_back(m->name);
      if (helps[o.name].empty()) {
        std::string help = o.help;
        if (!o.default_value.is_null() && o.type != OptionType::Boolean) help += " (default " + o.default_value.dump() + ")";
        helps[o.name] = help;
      }
    }
  }
  const size_t methods = registered_methods(family).size();
  for (const auto& [name, type] : types) {
    std::string flag = "--" + name;
    for (char& c : flag) c = c == '_' ? '-' : c;
    std::string help = helps[name];
    if (users[name].size() < methods) {
      std::string list;
      for (const std::string& u : users[name]) list += (list.empty() ? "" : ", ") + u;
      help = list + ": " + help;
    }
    auto f = std::make_unique<Flag>();
    f->type = type;
    if (type == OptionType::Boolean) f->option = command.add_flag(flag, f->flag, help);
    else if (type == OptionType::StringList) f->option = command.add_option(flag, f->list, help + " (repeatable)");
    else f->option = command.add_option(flag, f->text, help);
    flags_[name] = std::move(f);
  }
}

nlohmann::json MethodFlags::given() const {
  nlohmann::json options = nlohmann::json::object();
  for (const auto& [name, f] : flags_) {
    if (f->option->count() == 0) continue;
    const std::string flag = f->option->get_name();
    switch (f->type) {
      case OptionType::Boolean: options[name] = f->flag; break;
      case OptionType::StringList: options[name] = f->list; break;
      case OptionType::String: options[name] = f->text; break;
      case OptionType::Integer:
      case OptionType::Number: options[name] = parse_flag_number(flag, f->text, f->type == OptionType::Integer); break;
    }
  }
  return options;
}

nlohmann::json parse_flag_number(const std::string& flag, const std::string& text, bool integer) {
  size_t used = 0;
  nlohmann::json value;
  try {
    if (integer) value = int64_t(std::stoll(text, &used));
    else value = std::stod(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used == 0 || used != text.size())
    throw Error(flag + ": '" + text + "' is not " + (integer ? "an integer" : "a number"));
  return value;
}

Recipe recipe_from_flags(const JobFlags& flags) {
  Recipe recipe;
  recipe.model = flags.model.model;
  recipe.tokenizer = flags.model.tokenizer;
  recipe.calibration = flags.calib;
  recipe.calibration.file = flags.calib_file;
  recipe.output.path = flags.output;
  return recipe;
}

namespace {

double mib(double bytes) { return bytes / 1048576.0; }

void print_linear_table(const PipelineReport& report) {
  std::map<std::string, const LinearReport*> errors;
  for (const StageReport& stage : report.stages)
    for (const LinearReport& r : stage.linears) errors[r.name] = &r;  // the last stage's error wins
  std::printf("%-40s %-8s %-22s %9s %12s %10s\n", "layer", "kind", "detail", "zeros", "||dWX||^2", "relative");
  for (const LinearSummary& s : report.output.linears) {
    const auto e = errors.find(s.name);
    std::printf("%-40s %-8s %-22s %8.2f%%", s.name.c_str(), s.kind.c_str(), s.detail.c_str(),
                100.0 * double(s.zeros) / double(s.out * s.in));
    if (e != errors.end() && e->second->output_error >= 0)
      std::printf(" %12.5g %10.3e\n", e->second->output_error, e->second->relative_error);
    else
      std::printf(" %12s %10s\n", "-", "-");
  }
}

void print_report(const PipelineReport& report, bool verbose) {
  for (size_t k = 0; k < report.stages.size(); ++k) {
    const StageReport& stage = report.stages[k];
    std::printf("stage %zu: %s (%.1f s%s)\n", k + 1, stage.description.c_str(), stage.seconds,
                stage.resumed_layers > 0 ? strprintf(", %lld layers resumed", (long long)stage.resumed_layers).c_str() : "");
    for (const std::string& note : stage.notes) std::printf("%s%s", note.c_str(), note.empty() || note.back() != '\n' ? "\n" : "");
  }
  if (verbose) print_linear_table(report);

  const OutputSummary& out = report.output;
  std::map<std::string, int> kinds;
  int64_t dense_params = 0, stored_params = 0, bits = 0, zeros = 0, factorized = 0;
  int64_t pruned_zeros = 0, pruned_total = 0, groups = 0, compliant = 0;
  std::set<std::string> patterns;
  for (const LinearSummary& s : out.linears) {
    kinds[s.kind + (s.detail.empty() ? "" : " " + s.detail)]++;
    dense_params += s.out * s.in;
    stored_params += s.parameters;
    bits += s.storage_bits;
    zeros += s.zeros;
    if (s.kind == "sparse") {
      pruned_zeros += s.zeros;
      pruned_total += s.out * s.in;
    }
    groups += s.groups;
    compliant += s.compliant_groups;
    if (s.m > 0) patterns.insert(std::to_string(s.n) + ":" + std::to_string(s.m));
    if (s.rank > 0 || s.kind == "tucker" || s.kind == "cp") ++factorized;
  }
  std::string kind_list;
  for (const auto& [kind, count] : kinds) kind_list += (kind_list.empty() ? "" : ", ") + std::to_string(count) + " " + kind;
  std::printf("decoder linear layers: %zu (%s)\n", out.linears.size(), kind_list.c_str());
  if (pruned_total > 0) {
    std::printf("pruned linear layers: %lld of %lld weights zero (%.2f%%)\n", (long long)pruned_zeros,
                (long long)pruned_total, 100.0 * double(pruned_zeros) / double(pruned_total));
    std::printf("all decoder linear layers: %.2f%% zero\n", 100.0 * double(zeros) / double(dense_params));
  }
  if (groups > 0)
    std::printf("%s compliance of pruned layers: %lld of %lld groups (%s)\n",
                patterns.size() == 1 ? patterns.begin()->c_str() : "N:M", (long long)compliant, (long long)groups,
                compliant == groups ? "all" : "NOT all");
  if (factorized > 0)
    std::printf("factorized linear layers: %lld of %zu; linear parameters %lld -> %lld (ratio %.4f)\n",
                (long long)factorized, out.linears.size(), (long long)dense_params, (long long)stored_params,
                double(stored_params) / double(dense_params));
  std::printf("linear weights as stored: %.3f bits/weight (%.2f MiB)\n",
              dense_params > 0 ? double(bits) / double(dense_params) : 0.0, mib(double(bits) / 8));
  const double removed = 100.0 * double(report.parameters_before - out.parameters) / double(report.parameters_before);
  std::printf("model parameters: %lld -> %lld (%.2f%% removed)\n", (long long)report.parameters_before,
              (long long)out.parameters, removed);
  // As stored: linear weights at their packed size (what a packed format holds), the rest at 16 bits.
  const double stored = double(bits) / 8 + double(out.parameters - stored_params) * 2;
  std::printf("model size: %.3f MiB at 16 bits -> %.3f MiB as stored, %.3f MiB written (%.2f bits/parameter on disk)\n",
              mib(double(report.parameters_before) * 2), mib(stored), mib(double(out.bytes)),
              double(out.bytes) * 8 / double(report.parameters_before));
  for (const std::string& note : out.notes) std::printf("note: %s\n", note.c_str());
  std::printf("time: %.1f s\n", report.seconds);
  std::printf("wrote %s (%s)\n", out.path.c_str(), out.description.c_str());
}

// Perplexity (GPTQ convention) of a model file on the first `chunks` windows of a text.
PerplexityResult measure(const std::string& path, const JobFlags& flags, const std::string& tokenizer) {
  OpenOptions open;
  open.tokenizer = tokenizer;
  const Checkpoint checkpoint = open_checkpoint(path, open);
  const Transformer model = Transformer::load(checkpoint, parse_device(flags.model.device));
  const auto tok = load_tokenizer(checkpoint);
  PerplexityOptions options;
  options.context = flags.eval_context;
  options.max_chunks = flags.eval_chunks;
  options.bos_id = tok->bos_id();
  options.progress = !flags.no_progress;
  return perplexity(model, tok->encode(read_text_file(flags.eval_file)), options);
}

void print_evaluation(const Recipe& recipe, const PipelineReport& report, const JobFlags& flags) {
  log_info("evaluating the input and the output on " + flags.eval_file);
  const PerplexityResult before = measure(recipe.model, flags, recipe.tokenizer);
  const PerplexityResult after = measure(report.output.path, flags, "");
  const double input_mib = mib(double(report.parameters_before) * 2);
  std::printf("\n%-12s %12s %12s %10s\n", "", "perplexity", "size MiB", "bits/param");
  std::printf("%-12s %12.4f %12.2f %10.2f   (at 16 bits)\n", "input", before.perplexity, input_mib, 16.0);
  std::printf("%-12s %12.4f %12.2f %10.2f   (%s)\n", "output", after.perplexity, mib(double(report.output.bytes)),
              double(report.output.bytes) * 8 / double(report.parameters_before), report.output.description.c_str());
  std::printf("perplexity %+.2f%% for %.1fx smaller (%lld windows of %lld tokens of %s)\n",
              100 * (after.perplexity / before.perplexity - 1), input_mib / mib(double(report.output.bytes)),
              (long long)before.chunks, (long long)flags.eval_context, flags.eval_file.c_str());
}

}  // namespace

void run_job(const Recipe& recipe, const JobFlags& flags) {
  if (flags.model.threads > 0) at::set_num_threads(flags.model.threads);
  RunOptions options;
  options.device = parse_device(flags.model.device);
  options.batch_samples = flags.batch_samples;
  options.work_dir = flags.work_dir;
  options.resume = flags.resume;
  options.progress = !flags.no_progress;
  options.measure_errors = flags.verbose;
  if (options.batch_samples < 1) throw Error("--batch must be at least 1");
  if (!flags.eval_file.empty()) read_text_file(flags.eval_file);  // a missing file fails before the work
  const int processes = std::max(flags.distributed.nproc, flags.distributed.group.world_size);
  if (!recipe.calibration.file.empty() && recipe.calibration.nsamples < processes)
    throw Error(strprintf("--nsamples %lld cannot be shared by %d processes: use more samples or fewer processes",
                          (long long)recipe.calibration.nsamples, processes));
  const std::unique_ptr<Communicator> group = start_data_parallel(flags.distributed, flags.model.threads);
  options.group = group.get();
  if (group && !group->writes()) {
    options.progress = false;
    run_pipeline(recipe, options);
    return;  // rank 0 reports
  }
  if (!flags.save_recipe.empty()) {
    write_file_atomic(flags.save_recipe, recipe_to_yaml(recipe));
    log_info("wrote the recipe of this command to " + flags.save_recipe + " (llmpress run " + flags.save_recipe + ")");
  }
  const PipelineReport report = run_pipeline(recipe, options);
  print_report(report, flags.verbose);
  if (!flags.eval_file.empty()) print_evaluation(recipe, report, flags);
}

}  // namespace llmpress::cli
