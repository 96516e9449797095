#pragma once
// Starting and joining data-parallel jobs from the command line (distributed/communicator.h does the
// exchanging). `--nproc N` makes this process a launcher: it starts the same command N times as the
// ranks of a group on this machine and waits for them. `--world-size N --process-rank R --master-addr HOST
// --master-port P` is one rank of a group whose processes something else started (one per machine,
// or a cluster launcher), as torchrun's environment describes them.
#include <CLI/CLI.hpp>

#include <memory>

#include "llmpress/distributed/communicator.h"

namespace llmpress::cli {

struct DistributedFlags {
  int nproc = 1;
  DistributedOptions group;
};

void add_distributed_flags(CLI::App& command, DistributedFlags& flags);

// main() hands over the command line, so a launcher can start copies of it.
void set_command_line(int argc, char** argv);
// "rank R: " in data-parallel ranks other than 0 (main puts it in their error lines), "" otherwise.
const std::string& rank_prefix();

// Thrown by a launcher once its ranks have ended: main exits with `code` (0, or the first failing
// rank's status).
struct ExitStatus {
  int code = 0;
};

// With --nproc N > 1: starts the ranks (each with 1/N of the cores unless -t was given) and throws
// ExitStatus when they are done. Otherwise joins the group the flags describe and returns it, or
// returns null for a job of one process. Ranks other than 0 report warnings only.
std::unique_ptr<Communicator> start_data_parallel(const DistributedFlags& flags, int threads);

}  // namespace llmpress::cli
