// llmpress: compress large language models and check what it cost.
#include <cstdio>

#include "llmpress/cli/common.h"
#include "llmpress/cli/launch.h"
#include "llmpress/core/error.h"
#include "llmpress/core/runtime.h"
#include "llmpress/core/version.h"
#include "llmpress/io/atomic_file.h"

int main(int argc, char** argv) {
  llmpress::tune_memory_allocator();
  llmpress::install_interrupt_cleanup();
  llmpress::cli::set_command_line(argc, argv);
  CLI::App app{"llmpress: compress Llama-family language models (quantization, pruning, distillation, "
               "low-rank factorization) and evaluate the result"};
  app.set_version_flag("--version", std::string("llmpress ") + llmpress::version());
  app.require_subcommand(1);
  llmpress::cli::register_info(app);
  llmpress::cli::register_perplexity(app);
  llmpress::cli::register_generate(app);
  llmpress::cli::register_quantize(app);
  llmpress::cli::register_convert(app);
  llmpress::cli::register_lowrank(app);
  llmpress::cli::register_prune(app);
  llmpress::cli::register_run(app);
  llmpress::cli::register_train(app);
  llmpress::cli::register_distill(app);
  llmpress::cli::register_qat(app);
  llmpress::cli::register_finetune(app);
  llmpress::cli::register_eval(app);
  llmpress::cli::register_gen_tasks(app);
  llmpress::cli::register_gen_data(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);  // --help, --version
    // Usage errors read like every other error, with where to look, and exit 2 (as getopt tools do).
    std::string command = "llmpress";
    for (const CLI::App* sub : app.get_subcommands()) command += " " + sub->get_name();
    std::fprintf(stderr, "error: %s\nrun '%s --help' for the options\n", e.what(), command.c_str());
    return 2;
  } catch (const llmpress::cli::ExitStatus& e) {  // a --nproc launcher, after its ranks
    return e.code;
  } catch (const llmpress::Error& e) {
    std::fprintf(stderr, "error: %s%s\n", llmpress::cli::rank_prefix().c_str(), e.what());
    return 1;
  } catch (const c10::Error& e) {
    std::fprintf(stderr, "error: %stensor operation failed: %s\n", llmpress::cli::rank_prefix().c_str(),
                 e.what_without_backtrace());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s%s\n", llmpress::cli::rank_prefix().c_str(), e.what());
    return 1;
  }
  return 0;
}
