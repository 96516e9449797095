#include "llmpress/distributed/communicator.h"

// ProcessGroupGloo.hpp declares the backend only under USE_C10D_GLOO, which libtorch's CMake
// package defines for the builds that have it (Debian's does).

#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#ifndef USE_C10D_GLOO
#error "this libtorch has no Gloo backend (USE_C10D_GLOO): data parallelism needs one"
#endif

#include "llmpress/core/error.h"
#include "llmpress/core/log.h"

namespace llmpress {

struct Communicator::Group {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::ProcessGroupGloo> gloo;
};

namespace {

bool is_loopback(const std::string& host) { return host == "127.0.0.1" || host == "localhost" || host == "::1"; }

// The network device Gloo's pairs connect through: loopback when the whole group is on this machine,
// GLOO_SOCKET_IFNAME's interface when set (as torch.distributed reads it), else this host's name.
std::shared_ptr<gloo::transport::Device> gloo_device(const std::string& master) {
  if (is_loopback(master)) return c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1");
  if (const char* iface = std::getenv("GLOO_SOCKET_IFNAME"); iface && *iface)
    return c10d::ProcessGroupGloo::createDeviceForInterface(iface);
  return c10d::ProcessGroupGloo::createDefaultDevice();
}

c10d::ReduceOp reduce_op(Communicator::Reduce op) {
  switch (op) {
    case Communicator::Reduce::Min: return c10d::ReduceOp::MIN;
    case Communicator::Reduce::Max: return c10d::ReduceOp::MAX;
    default: return c10d::ReduceOp::SUM;
  }
}

// Runs one collective on a CPU contiguous copy when `tensor` is not one, then copies the result back.
template <typename Collective>
void on_host(at::Tensor& tensor, const Collective& collective) {
  const bool direct = tensor.device().is_cpu() && tensor.is_contiguous();
  std::vector<at::Tensor> buffers{direct ? tensor : tensor.to(at::kCPU).contiguous()};
  try {
    collective(buffers)->wait();
  } catch (const c10::Error& e) {
    throw Error(std::string("data-parallel exchange failed (did another process stop?): ") + e.what_without_backtrace());
  }
  if (!direct) tensor.copy_(buffers[0]);
}

}  // namespace

std::unique_ptr<Communicator> Communicator::connect(const DistributedOptions& o) {
  if (o.world_size < 1) throw Error("--world-size must be at least 1");
  if (o.rank < 0 || o.rank >= o.world_size)
    throw Error(strprintf("--process-rank must be in [0, %d) for --world-size %d", o.world_size, o.world_size));
  if (o.master_port < 1 || o.master_port > 65535) throw Error("--master-port must be in [1, 65535]");
  std::unique_ptr<Communicator> c(new Communicator);
  c->rank_ = o.rank;
  c->world_size_ = o.world_size;
  c->group_ = std::make_unique<Group>();
  const auto timeout = std::chrono::minutes(o.timeout_minutes);
  try {
    c10d::TCPStoreOptions store;
    store.port = uint16_t(o.master_port);
    store.isServer = o.rank == 0;
    store.numWorkers = o.world_size;
    store.waitWorkers = true;
    store.timeout = std::chrono::duration_cast<std::chrono::milliseconds>(timeout);
    c->group_->store = c10::make_intrusive<c10d::TCPStore>(o.master_addr, store);
    auto options = c10d::ProcessGroupGloo::Options::create();
    options->timeout = std::chrono::duration_cast<std::chrono::milliseconds>(timeout);
    options->devices.push_back(gloo_device(o.master_addr));
    c->group_->gloo = c10::make_intrusive<c10d::ProcessGroupGloo>(c->group_->store, o.rank, o.world_size, options);
  } catch (const std::exception& e) {
    throw Error(strprintf("rank %d of %d could not join the group at %s:%d: %s", o.rank, o.world_size,
                          o.master_addr.c_str(), o.master_port, e.what()));
  }
  return c;
}

Communicator::~Communicator() = default;

void Communicator::all_reduce(at::Tensor& tensor, Reduce op) const {
  c10d::AllreduceOptions options;
  options.reduceOp = reduce_op(op);
  on_host(tensor, [&](std::vector<at::Tensor>& b) { return group_->gloo->allreduce(b, options); });
}

void Communicator::all_reduce_sum(const std::vector<at::Tensor>& tensors) const {
  if (tensors.empty()) return;
  std::vector<at::Tensor> flat;
  for (const at::Tensor& t : tensors) flat.push_back(t.reshape({-1}).to(at::kCPU, tensors.front().scalar_type()));
  at::Tensor buffer = at::cat(flat);
  all_reduce(buffer);
  int64_t offset = 0;
  for (const at::Tensor& t : tensors) {
    t.copy_(buffer.narrow(0, offset, t.numel()).view(t.sizes()));
    offset += t.numel();
  }
}

void Communicator::broadcast(at::Tensor& tensor, int root) const {
  c10d::BroadcastOptions options;
  options.rootRank = root;
  on_host(tensor, [&](std::vector<at::Tensor>& b) { return group_->gloo->broadcast(b, options); });
}

void Communicator::barrier() const {
  at::Tensor token = at::zeros({1}, at::kFloat);
  all_reduce(token);
}

bool Communicator::agree(int64_t value) const {
  at::Tensor low = at::full({1}, value, at::kLong), high = low.clone();
  all_reduce(low, Reduce::Min);
  all_reduce(high, Reduce::Max);
  return low.item<int64_t>() == high.item<int64_t>();
}

void Communicator::check_same(int64_t value, const std::string& what) const {
  if (!agree(value))
    throw Error(strprintf("the %d processes do not agree on %s (rank %d has %lld): start every rank with the same "
                          "model, data and options", world_size_, what.c_str(), rank_, (long long)value));
}

std::pair<int64_t, int64_t> share_of(int64_t count, int rank, int world_size) {
  const int64_t base = count / world_size, extra = count % world_size;
  const int64_t begin = rank * base + std::min<int64_t>(rank, extra);
  return {begin, begin + base + (rank < extra ? 1 : 0)};
}

int free_loopback_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) throw Error(std::string("cannot open a socket: ") + std::strerror(errno));
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof(address);
  const bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0 &&
                  ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) == 0;
  ::close(fd);
  if (!ok) throw Error(std::string("no free port on 127.0.0.1: ") + std::strerror(errno));
  return ntohs(address.sin_port);
}

}  // namespace llmpress
