// Low-rank factorization: svd, asvd, svd-llm (W = U V per linear layer) and tucker (attention
// projections as heads x head_dim x hidden tensors).
#include <chrono>

#include "llmpress/core/error.h"
#include "llmpress/core/log.h"
#include "llmpress/io/checkpoint.h"
#include "llmpress/lowrank/asvd.h"
#include "llmpress/lowrank/low_rank_compressor.h"
#include "llmpress/lowrank/rank_allocation.h"
#include "llmpress/lowrank/svd.h"
#include "llmpress/lowrank/svd_llm.h"
#include "llmpress/lowrank/tucker_compressor.h"
#include "llmpress/pipeline/method.h"

namespace llmpress {

namespace {

std::vector<OptionSpec> rank_options() {
  return {{"ratio", OptionType::Number, nullptr,
           "fraction of each linear layer's parameters kept, both factors counted (e.g. 0.8)"},
          {"rank", OptionType::Integer, 0, "the same rank for every linear layer"},
          {"override", OptionType::StringList, nullptr,
           "REGEX=RANK for the layers whose full name matches (first match wins; 0 keeps a layer dense)"},
          {"allocate", OptionType::Boolean, false,
           "allocate ranks by measured output error per parameter under the global ratio (one extra pass)"},
          {"bits", OptionType::Integer, 0, "round both factors to this many bits (RTN, 2..8); 0: no"},
          {"group", OptionType::Integer, 128, "factor quantization: columns per group; -1: per row"},
          {"sym", OptionType::Boolean, false, "factor quantization: symmetric grid"}};
}

bool has_ratio(const StageOptions& o) { return o.given("ratio"); }

std::shared_ptr<const MatrixFactorizer> factorizer_of(const StageOptions& o) {
  if (o.method() == "svd") return std::make_shared<SvdFactorizer>();
  if (o.method() == "asvd") return std::make_shared<AsvdFactorizer>(o.number("alpha"));
  SvdLlmOptions options;
  options.percdamp = o.number("damp");
  return std::make_shared<SvdLlmFactorizer>(options);
}

RankSpec ranks_of(const StageOptions& o) {
  RankSpec ranks;
  ranks.ratio = has_ratio(o) ? o.number("ratio") : -1;
  ranks.rank = o.integer("rank");
  try {
    for (const std::string& text : o.list("override")) ranks.overrides.push_back(parse_rank_override(text));
    ranks.check();
  } catch (const Error& e) {
    throw o.error(has_ratio(o) ? "ratio" : "rank", e.what());
  }
  return ranks;
}

std::optional<IntGridSpec> factor_grid(const StageOptions& o) {
  if (o.integer("bits") <= 0) return std::nullopt;
  IntGridSpec spec;
  spec.bits = int(o.integer("bits"));
  spec.group_size = o.integer("group");
  spec.symmetric = o.flag("sym");
  try {
    spec.check();
  } catch (const Error& e) {
    throw o.error("bits", e.what());
  }
  return spec;
}

void check_lowrank(const StageOptions& o, ModelState& state) {
  if (state.quantized || state.factorized)
    throw o.error("ratio", o.method() + " factorizes float weights: it cannot follow a quantization or low-rank "
                                        "stage (factorize first; a later gptq or rtn stage quantizes the factors)");
  if (state.pruned) log_note(o.method() + " after pruning: the factors are dense, the pruning mask is not kept");
  state.pruned = false;
  if (o.method() == "tucker" || o.method() == "cp") {
    if (!has_ratio(o)) throw o.error("ratio", o.method() + " needs a ratio (fraction of each attention projection kept)");
    if (!(o.number("ratio") > 0)) throw o.error("ratio", "the ratio must be > 0");
  } else {
    if (has_ratio(o) && o.integer("rank") > 0) throw o.error("rank", "ratio and rank exclude each other; give one");
    if (o.flag("allocate") && !has_ratio(o)) throw o.error("allocate", "allocate distributes a parameter budget: give a ratio");
    ranks_of(o);
    if (factor_grid(o)) state.quantized = true;
  }
  state.factorized = true;
}

std::unique_ptr<Compressor> make_lowrank(const StageOptions& o, const StageContext& context) {
  if (o.method() == "tucker") return std::make_unique<TuckerCompressor>(o.number("ratio"), context.config.head_dim);
  const auto factorizer = factorizer_of(o);
  RankSpec ranks = ranks_of(o);
  if (o.flag("allocate")) {
    log_info("measuring per-layer spectra for rank allocation (" + factorizer->describe() + ")");
    const auto start = std::chrono::steady_clock::now();
    EngineOptions engine;
    engine.device = context.device;
    engine.batch_samples = context.batch_samples;
    engine.progress = context.progress;
    const Transformer shell = context.source.load_shell(context.device);
    ranks.allocated = allocate_ranks(measure_spectra(context.source, shell, context.calibration, *factorizer, engine),
                                     o.number("ratio"));
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    context.notes->push_back(strprintf("rank allocation: %.1f s (one calibration pass over the dense model)", seconds));
  }
  return std::make_unique<LowRankCompressor>(factorizer, ranks, factor_grid(o));
}

MethodSpec lowrank_method(const std::string& name, const std::string& summary) {
  MethodSpec m;
  m.name = name;
  m.family = "lowrank";
  m.summary = summary;
  if (name == "tucker") {
    m.options = {{"ratio", OptionType::Number, nullptr, "fraction of each attention projection's parameters kept"}};
  } else {
    m.options = rank_options();
    if (name == "asvd") m.options.push_back({"alpha", OptionType::Number, 0.5, "exponent of mean|x| in the input scaling"});
    if (name == "svd-llm")
      m.options.push_back({"damp", OptionType::Number, 0.0, "dampening of the Hessian, fraction of its mean diagonal"});
  }
  m.needs_calibration = [name](const StageOptions& o) {
    return name == "asvd" || name == "svd-llm" || (name == "svd" && o.flag("allocate"));
  };
  m.check = check_lowrank;
  m.compressor = make_lowrank;
  return m;
}

const MethodRegistration svd(lowrank_method("svd", "truncated SVD of each linear layer (no calibration)"));
const MethodRegistration asvd(lowrank_method("asvd", "ASVD: SVD of the weight with input channels scaled by mean|x|^alpha"));
const MethodRegistration svd_llm(lowrank_method("svd-llm", "SVD-LLM: SVD of the weight whitened by the input's Cholesky factor"));
const MethodRegistration tucker(lowrank_method("tucker", "Tucker decomposition of the attention projections (MLP dense)"));

}  // namespace

}  // namespace llmpress
