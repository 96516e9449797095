#pragma once
// Data parallelism on torch.distributed's c10d: the processes of one job form a Gloo process group
// (rendezvous through a TCPStore at the master's address; NCCL would take Gloo's place on GPUs) and
// exchange tensors with its collectives. Every rank holds the whole model and a share of the data;
// what the ranks compute separately (gradients, calibration statistics) is summed across them, so
// each rank then takes the same step as one process that had seen all of the data.
#include <ATen/ATen.h>

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace llmpress {

struct DistributedOptions {
  int world_size = 1;
  int rank = 0;
  std::string master_addr = "127.0.0.1";  // where rank 0 serves the rendezvous store
  int master_port = 29500;
  // How long a collective waits for the slowest rank (rank 0 evaluating or writing while others wait).
  int timeout_minutes = 60;
};

class Communicator {
 public:
  enum class Reduce { Sum, Min, Max };

  // Joins the group: blocks until all world_size ranks have connected. Throws Error when the
  // rendezvous fails (an unreachable master, a port in use, a timeout).
  static std::unique_ptr<Communicator> connect(const DistributedOptions& options);
  ~Communicator();

  int rank() const { return rank_; }
  int world_size() const { return world_size_; }
  bool writes() const { return rank_ == 0; }  // the one rank that writes files and reports

  // In place, the same result on every rank. Any device: non-CPU tensors are reduced through the host.
  void all_reduce(at::Tensor& tensor, Reduce op = Reduce::Sum) const;
  // Sums several tensors in one collective (one flat buffer), e.g. all gradients of a step.
  void all_reduce_sum(const std::vector<at::Tensor>& tensors) const;
  void broadcast(at::Tensor& tensor, int root = 0) const;
  void barrier() const;
  // Whether `value` is the same on every rank (the same answer everywhere).
  bool agree(int64_t value) const;
  // Throws Error on every rank unless `value` is the same on all of them (`what` names it).
  void check_same(int64_t value, const std::string& what) const;

 private:
  Communicator() = default;
  struct Group;
  std::unique_ptr<Group> group_;
  int rank_ = 0, world_size_ = 1;
};

// The [begin, end) of `count` items that `rank` of `world_size` takes: contiguous, in rank order,
// sizes differing by at most one (rank 0 first).
std::pair<int64_t, int64_t> share_of(int64_t count, int rank, int world_size);

// A TCP port on 127.0.0.1 that nothing listens on now (the kernel's choice), for a group on this machine.
int free_loopback_port();

}  // namespace llmpress
