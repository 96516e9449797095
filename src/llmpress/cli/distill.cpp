// llmpress distill: standard knowledge distillation of a student (any compressed model, a shallower copy
// of the teacher, or the teacher's own pruned / factorized / quantized version) from a teacher.
#include <cctype>
#include <filesystem>
#include <optional>
#include <sstream>

#include "llmpress/cli/training.h"
#include "llmpress/core/error.h"
#include "llmpress/core/log.h"
#include "llmpress/distill/distiller.h"
#include "llmpress/train/parameters.h"

namespace llmpress::cli {

namespace {

struct DistillCommand {
  TrainFlags flags;
  ModelOptions teacher;
  std::string loss = "fkl";
  DistillOptions distill;
  std::string cache;
  int64_t cache_topk = 64;
  std::string init_layers;
  std::string init_config;
  std::string hidden_loss = "mse";
  std::string teacher_dtype = "F32";
};

std::vector<int64_t> parse_layers(const std::string& text) {
  std::vector<int64_t> layers;
  std::stringstream in(text);
  std::string item;
  while (std::getline(in, item, ',')) {
    try {
      size_t used = 0;
      layers.push_back(std::stoll(item, &used));
      if (used != item.size()) throw std::invalid_argument(item);
    } catch (const std::exception&) {
      throw Error("--init-from-teacher takes teacher layer indices separated by commas (e.g. 0,1,2,5), not '" + text + "'");
    }
  }
  return layers;
}

// Every row the run reads, for the cache.
std::vector<int64_t> rows_read(const TrainingData& data, const TrainOptions& t) {
  std::vector<int64_t> rows;
  for (int64_t i = 0; i < t.steps * t.grad_accum; ++i)
    for (int64_t r : data.rows_for(i, t.batch_size, t.seed)) rows.push_back(r);
  return rows;
}

void run(DistillCommand& command) {
  TrainFlags& flags = command.flags;
  DistillOptions& d = command.distill;
  if (int(!flags.model.model.empty()) + int(!command.init_layers.empty()) + int(!command.init_config.empty()) != 1)
    throw Error("give the student with -m STUDENT, make it from chosen teacher layers with --init-from-teacher 0,2,4, "
                "or a new one from a Hugging Face config with --init-config CONFIG.json (one of the three)");
  d.cross_entropy_only = command.loss == "ce";
  if (!d.cross_entropy_only) d.kd.divergence = parse_kd_divergence(command.loss);
  d.checkpoint_layers = flags.train.checkpoint_layers;
  for (char& c : command.teacher_dtype) c = char(std::toupper(static_cast<unsigned char>(c)));
  if (command.teacher_dtype != "F32" && command.teacher_dtype != "BF16" && command.teacher_dtype != "F16")
    throw Error("--teacher-dtype must be F32, BF16 or F16, not '" + command.teacher_dtype + "'");
  if (command.hidden_loss != "mse" && command.hidden_loss != "cosine")
    throw Error("--hidden-loss must be mse or cosine, not '" + command.hidden_loss + "'");
  d.hidden_loss = command.hidden_loss == "mse" ? HiddenLoss::Mse : HiddenLoss::Cosine;
  prepare_training(flags);
  const at::Device device = parse_device(flags.model.device);
  const Checkpoint teacher_checkpoint = open_model(command.teacher);
  Checkpoint origin;
  Transformer student;
  if (!command.init_config.empty())
    std::tie(origin, student) = new_model(command.init_config, flags.model.tokenizer.empty()
                                                                   ? teacher_checkpoint.tokenizer_file
                                                                   : flags.model.tokenizer, flags.train.seed);
  else
    origin = command.init_layers.empty() ? open_model(flags.model) : teacher_checkpoint;
  const auto teacher_tokenizer = load_tokenizer(teacher_checkpoint);
  const auto tokenizer = load_tokenizer(origin);
  check_vocabularies(*tokenizer, origin.config.vocab_size, *teacher_tokenizer, teacher_checkpoint.config.vocab_size);
  const TrainingData data = TrainingData::load(flags.data, *tokenizer, flags.seqlen);
  check_distill_options(d);

  // The teacher stays as stored (a GGUF or GPTQ teacher keeps its quantized weights) and frozen; plain
  // fine-tuning of a given student, or KD from an existing cache, does not load it.
  // Data-parallel ranks other than 0 read the cache rank 0 builds.
  const bool cached = !command.cache.empty() && (std::filesystem::exists(command.cache) || !flags.writes());
  const bool needs_teacher = (!d.cross_entropy_only && !cached) || !command.init_layers.empty() || d.sequence_kd ||
                             d.on_policy > 0 || d.hidden_weight > 0;
  Transformer teacher = needs_teacher ? Transformer::load(teacher_checkpoint, device) : Transformer{};
  if (!command.init_layers.empty())
    student = copy_layers(teacher, parse_layers(command.init_layers));
  else if (command.init_config.empty())
    student = deep_copy(Transformer::load(origin, device));
  if (needs_teacher && command.teacher_dtype != "F32") {  // after the student copied what it needs
    const int64_t saved = hold_weights_in(teacher, command.teacher_dtype == "BF16" ? at::kBFloat16 : at::kHalf);
    log_info(strprintf("teacher held in %s: %.1f MiB less memory", command.teacher_dtype.c_str(), double(saved) / 1048576.0));
  }
  std::optional<TeacherCache> cache;
  if (!command.cache.empty() && !d.cross_entropy_only) {
    if (!cached) {
      log_info("building the teacher cache " + command.cache + " (top " + std::to_string(command.cache_topk) + ")");
      TeacherCache::build(command.cache, teacher, data, rows_read(data, flags.train), command.cache_topk,
                          d.kd.temperature, flags.train.batch_size, !flags.no_progress);
    }
    if (flags.group) flags.group->barrier();  // rank 0 has written the cache the others read
    cache = TeacherCache::open(command.cache, data);
    log_info(strprintf("teacher cache %s: top %lld of %lld, %.1f MiB", command.cache.c_str(), (long long)cache->k(),
                       (long long)cache->vocab(), double(cache->bytes()) / 1048576.0));
  }
  flags.train.eval_tokens = eval_tokens(flags, *tokenizer);
  const std::vector<Parameter> projection =
      needs_teacher ? hidden_projection(student, teacher, d, flags.train.seed) : std::vector<Parameter>{};
  if (!projection.empty())
    log_info(strprintf("hidden-state loss through a learned %lld x %lld projection (trained, then discarded)",
                       (long long)teacher.config.hidden_size, (long long)student.config.hidden_size));
  const LossFunction loss = distillation_loss(student, needs_teacher ? &teacher : nullptr, cache ? &*cache : nullptr,
                                              tokenizer->vocab_size(), d, flags.train.seed, projection);
  const TrainResult result = train(student, data, loss, flags.train, projection);
  write_trained_model(student, origin, flags, result);
}

}  // namespace

void register_distill(CLI::App& app) {
  auto command = std::make_shared<DistillCommand>();
  CLI::App* sub = app.add_subcommand("distill", "knowledge distillation: train a student to match a teacher's next-token distribution");
  add_train_flags(*sub, command->flags);
  sub->get_option("--model")->required(false)->description("student model (any llmpress output, or -m the teacher's compressed copy)");
  DistillOptions& d = command->distill;
  sub->add_option("--teacher", command->teacher.model, "teacher model (Hugging Face folder, .gguf, llama2.c .bin)")->required();
  sub->add_option("--teacher-dtype", command->teacher_dtype,
                  "hold the teacher's dense matrices and embeddings in F32, BF16 or F16 (half the memory; a quantized "
                  "teacher stays quantized)")->capture_default_str();
  sub->add_option("--loss", command->loss,
                  "ce (plain fine-tuning, the baseline), fkl KL(T||S), rkl KL(S||T), jsd (generalized JSD, --beta), "
                  "tvd, skl / srkl (skew KL, --alpha)")->capture_default_str();
  sub->add_option("--beta", d.kd.beta, "jsd: beta (0 -> forward KL, 1 -> reverse KL, as TRL's GKD)")->capture_default_str();
  sub->add_option("--alpha", d.kd.skew_alpha, "skl / srkl: skew alpha (DistiLLM)")->capture_default_str();
  sub->add_option("--temperature", d.kd.temperature, "softmax temperature of teacher and student")->capture_default_str();
  sub->add_option("--ce-weight", d.kd.ce_weight, "weight of hard-label cross-entropy in the loss (0..1)")->capture_default_str();
  sub->add_option("--on-policy", d.on_policy,
                  "fraction of steps on the student's own continuations (GKD lambda): of each text row's first half, or of "
                  "each record's prompt")->capture_default_str();
  sub->add_flag("--seq-kd", d.sequence_kd,
                "sequence-level KD: every text row's second half (or record's response) is the teacher's continuation");
  sub->add_option("--sample-temperature", d.sample_temperature, "--on-policy / --seq-kd sampling temperature (0: greedy)")
      ->capture_default_str();
  sub->add_option("--hidden-weight", d.hidden_weight,
                  "add this times a hidden-state loss between evenly paired student / teacher layers (through a learned "
                  "projection where the widths differ)")->capture_default_str();
  sub->add_option("--hidden-loss", command->hidden_loss, "--hidden-weight: mse or cosine")->capture_default_str();
  sub->add_option("--teacher-cache", command->cache,
                  "top-k teacher file: built on first use for the rows this run reads, then read instead of running the teacher");
  sub->add_option("--cache-topk", command->cache_topk, "--teacher-cache: log-probabilities kept per token")->capture_default_str();
  sub->add_option("--init-from-teacher", command->init_layers,
                  "student = these teacher layers, e.g. 0,1,2,5 (instead of -m)");
  sub->add_option("--init-config", command->init_config,
                  "student = a new, randomly initialised model of this Hugging Face config.json (instead of -m; "
                  "the teacher's tokenizer unless --tokenizer)");
  sub->footer("examples:\n"
              "  llmpress prune -m TEACHER -o pruned --method layers --ratio 0.33 --calib calib.txt\n"
              "  llmpress distill -m pruned --teacher TEACHER -f train.txt -o recovered --loss fkl --ce-weight 0.5 "
              "--steps 300 --lr 1e-3 --eval eval.txt");
  sub->callback([command] { run(*command); });
}

}  // namespace llmpress::cli
