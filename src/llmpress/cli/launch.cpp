#include "llmpress/cli/launch.h"

#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <thread>

#include "llmpress/core/error.h"
#include "llmpress/core/log.h"

namespace llmpress::cli {

namespace {

std::vector<std::string> command_line;
std::string prefix_of_rank;

// The ranks a launcher started, for its signal handler (forwarding Ctrl-C / kill to them).
constexpr int kMaxRanks = 256;
volatile pid_t ranks[kMaxRanks];
volatile int rank_count = 0;

void forward_signal(int signal) {
  for (int i = 0; i < rank_count; ++i)
    if (ranks[i] > 0) ::kill(ranks[i], signal);
}

// This command without --nproc, as rank `rank` of `world` ranks meeting at 127.0.0.1:port.
std::vector<std::string> rank_command(int rank, int world, int port, int threads) {
  std::vector<std::string> args;
  for (size_t i = 0; i < command_line.size(); ++i) {
    const std::string& a = command_line[i];
    if (a == "--nproc") { ++i; continue; }
    if (a.rfind("--nproc=", 0) == 0) continue;
    args.push_back(a);
  }
  for (const std::string& a : {std::string("--world-size"), std::to_string(world), std::string("--process-rank"),
                               std::to_string(rank), std::string("--master-addr"), std::string("127.0.0.1"),
                               std::string("--master-port"), std::to_string(port)})
    args.push_back(a);
  if (threads == 0) {  // share the cores instead of N processes each using all of them
    const int cores = int(std::max(1u, std::thread::hardware_concurrency()));
    args.push_back("-t");
    args.push_back(std::to_string(std::max(1, cores / world)));
  }
  return args;
}

int exit_code(int status) { return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status); }

[[noreturn]] void launch(int world, int threads) {
  if (world > kMaxRanks) throw Error(strprintf("--nproc must be at most %d", kMaxRanks));
  if (command_line.empty()) throw Error("--nproc: the command line is unknown (internal error)");
  const int port = free_loopback_port();
  log_info(strprintf("starting %d processes (data-parallel ranks 0-%d, rendezvous at 127.0.0.1:%d)", world, world - 1,
                     port));
  struct sigaction action {};
  action.sa_handler = forward_signal;
  sigemptyset(&action.sa_mask);
  ::sigaction(SIGINT, &action, nullptr);
  ::sigaction(SIGTERM, &action, nullptr);
  for (int r = 0; r < world; ++r) {
    std::vector<std::string> args = rank_command(r, world, port, threads);
    std::vector<char*> argv;
    for (std::string& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    const pid_t pid = ::fork();
    if (pid < 0) {
      forward_signal(SIGTERM);
      throw Error(std::string("--nproc: cannot start a process: ") + std::strerror(errno));
    }
    if (pid == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGTERM);  // a killed launcher takes its ranks with it
      ::execv("/proc/self/exe", argv.data());
      std::fprintf(stderr, "error: --nproc: cannot run %s: %s\n", argv[0], std::strerror(errno));
      std::_Exit(127);
    }
    ranks[r] = pid;
    rank_count = r + 1;
  }
  // The first rank to fail decides the status; the others are stopped rather than left waiting on it.
  int first_failure = 0, running = world;
  while (running > 0) {
    int status = 0;
    const pid_t pid = ::waitpid(-1, &status, 0);
    if (pid < 0) {
      if (errno == EINTR) continue;
      break;
    }
    --running;
    for (int i = 0; i < world; ++i)
      if (ranks[i] == pid) ranks[i] = 0;
    if (exit_code(status) != 0 && first_failure == 0) {
      first_failure = exit_code(status);
      forward_signal(SIGTERM);
    }
  }
  throw ExitStatus{first_failure};
}

}  // namespace

void set_command_line(int argc, char** argv) { command_line.assign(argv, argv + argc); }

const std::string& rank_prefix() { return prefix_of_rank; }

void add_distributed_flags(CLI::App& command, DistributedFlags& flags) {
  DistributedOptions& g = flags.group;
  command.add_option("--nproc", flags.nproc,
                     "data-parallel: run as N processes on this machine (the results of one process, within float rounding; each gets 1/N of "
                     "the cores unless -t)")->capture_default_str();
  command.add_option("--world-size", g.world_size, "data-parallel over machines: the number of processes in the job")
      ->capture_default_str();
  command.add_option("--process-rank", g.rank, "data-parallel over machines: this process's rank (0 writes the output)")
      ->capture_default_str();
  command.add_option("--master-addr", g.master_addr, "data-parallel over machines: the address of rank 0")
      ->capture_default_str();
  command.add_option("--master-port", g.master_port, "data-parallel over machines: the port rank 0 listens on")
      ->capture_default_str();
}

std::unique_ptr<Communicator> start_data_parallel(const DistributedFlags& flags, int threads) {
  if (flags.nproc < 1) throw Error("--nproc must be at least 1");
  if (flags.nproc > 1 && flags.group.world_size > 1)
    throw Error("--nproc starts the processes itself: give either --nproc or --world-size/--process-rank, not both");
  if (flags.nproc > 1) launch(flags.nproc, threads);
  if (flags.group.world_size == 1) {
    if (flags.group.rank != 0) throw Error("--process-rank needs --world-size");
    return nullptr;
  }
  std::unique_ptr<Communicator> group = Communicator::connect(flags.group);
  if (!group->writes()) {
    const int rank = group->rank();
    prefix_of_rank = strprintf("rank %d: ", rank);
    set_log_sink([rank](LogLevel level, const std::string& message) {
      if (level == LogLevel::Warning) std::fprintf(stderr, "warning: rank %d: %s\n", rank, message.c_str());
    });
  }
  return group;
}

}  // namespace llmpress::cli
