// llmpress train: language-model training and supervised fine-tuning of a model, or of a new one
// initialised from a Hugging Face config.
#include "llmpress/cli/training.h"
#include "llmpress/core/error.h"
#include "llmpress/train/parameters.h"

namespace llmpress::cli {

namespace {

struct TrainCommand {
  TrainFlags flags;
  std::string init_config;
};

void run(TrainCommand& command) {
  TrainFlags& flags = command.flags;
  if (flags.model.model.empty() == command.init_config.empty())
    throw Error("give the model to train with -m MODEL, or a new model's configuration with --init-config CONFIG.json");
  prepare_training(flags);
  Checkpoint origin;
  Transformer model;
  if (!command.init_config.empty()) {
    std::tie(origin, model) = new_model(command.init_config, flags.model.tokenizer, flags.train.seed);
  } else {
    origin = open_model(flags.model);
    model = deep_copy(Transformer::load(origin, parse_device(flags.model.device)));
  }
  const auto tokenizer = load_tokenizer(origin);
  const TrainingData data = TrainingData::load(flags.data, *tokenizer, flags.seqlen);
  flags.train.eval_tokens = eval_tokens(flags, *tokenizer);
  const TrainResult result = train(model, data, cross_entropy_loss(model, flags.train.checkpoint_layers), flags.train);
  write_trained_model(model, origin, flags, result);
}

}  // namespace

void register_train(CLI::App& app) {
  auto command = std::make_shared<TrainCommand>();
  CLI::App* sub = app.add_subcommand("train", "train or fine-tune a model on text or prompt/response records (AdamW)");
  add_train_flags(*sub, command->flags);
  sub->get_option("--model")->required(false);
  sub->add_option("--init-config", command->init_config,
                  "train a new model: a Hugging Face config.json (random initialisation; tokenizer beside it or --tokenizer)");
  sub->footer("examples:\n  llmpress train -m MODEL -f train.txt -o tuned --steps 300 --lr 1e-3 --eval eval.txt\n"
              "  llmpress train -m MODEL -f sft.jsonl -o sft.gguf --type Q8_0   (loss on the responses only)");
  sub->callback([command] { run(*command); });
}

}  // namespace llmpress::cli
