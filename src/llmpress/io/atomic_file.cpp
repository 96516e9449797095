#include "llmpress/io/atomic_file.h"

#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <filesystem>
#include <fstream>
#include <vector>

#include <nlohmann/json.hpp>

#include "llmpress/core/error.h"

namespace llmpress {
namespace fs = std::filesystem;

namespace {

std::string errno_text() { return std::strerror(errno); }

std::string parent_dir(const std::string& path) {
  const fs::path parent = fs::path(path).parent_path();
  return parent.empty() ? "." : parent.string();
}

// fsync of the folder makes the rename itself durable.
void sync_directory(const std::string& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY);
  if (fd < 0) return;  // best effort: some filesystems do not allow opening directories
  ::fsync(fd);
  ::close(fd);
}

// The temporary files being written, for the signal handler: fixed slots (no allocation in the
// handler), each published by its `ready` flag only once its path is complete, so the handler never
// reads a half-written path (a prefix of one could name the user's own file).
struct TemporarySlot {
  std::atomic<bool> ready{false};
  char path[4096];
};
TemporarySlot temporary_slots[64];
std::mutex temporary_slots_mutex;

int register_temporary(const std::string& path) {
  if (path.size() >= sizeof(TemporarySlot::path)) return -1;
  std::lock_guard<std::mutex> lock(temporary_slots_mutex);
  for (int i = 0; i < 64; ++i) {
    TemporarySlot& slot = temporary_slots[i];
    if (slot.ready.load()) continue;
    std::memcpy(slot.path, path.c_str(), path.size() + 1);
    slot.ready.store(true, std::memory_order_release);
    return i;
  }
  return -1;  // more than 64 open at once: left to the next run's cleanup
}

void unregister_temporary(int slot) {
  if (slot >= 0) temporary_slots[slot].ready.store(false, std::memory_order_release);
}

void on_interrupt(int signal) {
  for (TemporarySlot& slot : temporary_slots)
    if (slot.ready.load(std::memory_order_acquire)) ::unlink(slot.path);
  ::signal(signal, SIG_DFL);
  ::raise(signal);
}

// Crash test point: with LLMPRESS_TEST_KILL_COMMITTING=PATH the process ends abruptly (as under kill -9)
// just before the temporary for PATH is renamed into place, so tests can check what a kill during the
// final write leaves and that the next run cleans it up.
void crash_test_commit(const std::string& path) {
  const char* env = std::getenv("LLMPRESS_TEST_KILL_COMMITTING");
  if (env && *env && path == env) std::_Exit(137);
}

bool process_gone(const std::string& pid_text) {
  if (pid_text.empty() || pid_text.size() > 9 || pid_text.find_first_not_of("0123456789") != std::string::npos)
    return false;
  const pid_t pid = pid_t(std::stol(pid_text));
  return pid > 0 && pid != ::getpid() && ::kill(pid, 0) != 0 && errno == ESRCH;
}

}  // namespace

std::string temporary_pattern(const std::string& prefix) {
  return prefix + std::to_string(::getpid()) + "-XXXXXX";
}

int remove_stale_temporaries(const std::string& folder, const std::string& prefix, const std::string& dest) {
  std::error_code ec;
  std::vector<fs::path> stale;
  const std::string old_prefix = dest.empty() ? "" : fs::path(dest).filename().string() + ".old-";
  for (const auto& entry : fs::directory_iterator(folder, ec)) {
    const std::string name = entry.path().filename().string();
    for (const std::string& p : {prefix, old_prefix}) {
      if (p.empty() || name.rfind(p, 0) != 0) continue;
      const std::string rest = name.substr(p.size());
      const size_t dash = rest.find('-');
      if (dash == std::string::npos || !process_gone(rest.substr(0, dash))) continue;
      if (p == old_prefix && !fs::exists(dest, ec)) continue;  // the user's previous folder, not yet replaced
      stale.push_back(entry.path());
    }
  }
  for (const fs::path& path : stale) fs::remove_all(path, ec);
  return int(stale.size());
}

void install_interrupt_cleanup() {
  struct sigaction action {};
  action.sa_handler = on_interrupt;
  sigemptyset(&action.sa_mask);
  ::sigaction(SIGINT, &action, nullptr);
  ::sigaction(SIGTERM, &action, nullptr);
}

namespace {

// The mkstemp / mkdtemp pattern of DEST's temporary, once those a killed writer of DEST left are gone
// (for a folder also its moved-aside predecessor, where DEST is in place).
std::string temporary_for(const std::string& dest, bool folder) {
  const std::string dir = parent_dir(dest);
  const std::string prefix = fs::path(dest).filename().string() + ".tmp-";
  remove_stale_temporaries(dir, prefix, folder ? dest : "");
  return (fs::path(dir) / temporary_pattern(prefix)).string();
}

}  // namespace

AtomicFile::AtomicFile(const std::string& path) : path_(path) {
  check_output_path(path, false);
  const std::string dir = parent_dir(path);
  std::string pattern = temporary_for(path, false);
  const int fd = ::mkstemp(pattern.data());
  if (fd < 0) throw file_error(path, "cannot create temporary file in " + dir + ": " + errno_text());
  // mkstemp creates mode 0600; give the result the usual permissions (umask applies).
  const mode_t mask = ::umask(0);
  ::umask(mask);
  ::fchmod(fd, 0666 & ~mask);
  temp_path_ = pattern;
  slot_ = register_temporary(temp_path_);
  file_ = ::fdopen(fd, "wb");
  if (!file_) {
    ::close(fd);
    ::unlink(temp_path_.c_str());
    unregister_temporary(slot_);
    throw file_error(path, "cannot open temporary file: " + errno_text());
  }
  static constexpr size_t kBufferBytes = 1 << 20;
  std::setvbuf(file_, nullptr, _IOFBF, kBufferBytes);
}

AtomicFile::~AtomicFile() {
  if (committed_) return;
  if (file_) std::fclose(file_);
  ::unlink(temp_path_.c_str());
  unregister_temporary(slot_);
}

void AtomicFile::write(const void* data, size_t size) {
  if (committed_ || !file_) throw file_error(path_, "write after commit");
  if (size == 0) return;
  if (std::fwrite(data, 1, size, file_) != size)
    throw file_error(path_, "write failed (disk full?): " + errno_text());
  written_ += size;
}

void AtomicFile::write_zeros(size_t count) {
  static const char zeros[4096] = {};
  while (count > 0) {
    const size_t n = count < sizeof(zeros) ? count : sizeof(zeros);
    write(zeros, n);
    count -= n;
  }
}

void AtomicFile::commit() {
  if (committed_) return;
  crash_test_commit(path_);
  if (std::fflush(file_) != 0) throw file_error(path_, "write failed (disk full?): " + errno_text());
  if (::fsync(::fileno(file_)) != 0) throw file_error(path_, "fsync failed: " + errno_text());
  const int rc = std::fclose(file_);
  file_ = nullptr;
  if (rc != 0) throw file_error(path_, "close failed: " + errno_text());
  if (::rename(temp_path_.c_str(), path_.c_str()) != 0)
    throw file_error(path_, "cannot rename temporary file into place: " + errno_text());
  committed_ = true;
  unregister_temporary(slot_);
  sync_directory(parent_dir(path_));
}

void write_file_atomic(const std::string& path, const std::string& content) {
  AtomicFile file(path);
  file.write(content);
  file.commit();
}

namespace {

bool written_by_llmpress(const fs::path& folder) {
  std::error_code ec;
  if (fs::is_regular_file(folder / "adapter_config.json", ec)) {
    std::ifstream card(folder / "README.md");
    std::string first;
    return std::getline(card, first) && first == kLlmpressAdapterCardMarker;
  }
  const fs::path config = folder / "config.json";
  if (!fs::is_regular_file(config, ec) || fs::file_size(config, ec) > (1u << 20)) return false;
  std::ifstream in(config);
  const nlohmann::json json = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
  return json.is_object() && json.contains("llmpress");
}

}  // namespace

void check_output_path(const std::string& given, bool folder) {
  std::string path = given;
  while (path.size() > 1 && path.back() == '/') path.pop_back();
  if (path.empty()) throw Error("the output name is empty");
  const std::string dir = parent_dir(path);
  if (!fs::is_directory(dir)) throw file_error(path, "cannot write: folder " + dir + " does not exist");
  if (::access(dir.c_str(), W_OK | X_OK) != 0)
    throw file_error(path, "cannot write into " + dir + " (" + errno_text() + ")");
  std::error_code ec;
  if (!fs::exists(path, ec)) return;
  if (!folder) {
    if (fs::is_directory(path, ec))
      throw file_error(path, "is a folder; this output is a file: give a file name (e.g. NAME.gguf)");
    return;
  }
  if (!fs::is_directory(path, ec)) throw file_error(path, "exists and is not a folder; refusing to replace it");
  if (fs::is_empty(path, ec) || written_by_llmpress(path)) return;
  throw file_error(path, "exists and holds files that are not an llmpress model; refusing to replace them: "
                         "choose another output name, or move them away");
}

AtomicDirectory::AtomicDirectory(const std::string& path) : path_(path) {
  while (path_.size() > 1 && path_.back() == '/') path_.pop_back();
  check_output_path(path_, true);
  const std::string dir = parent_dir(path_);
  std::string pattern = temporary_for(path_, true);
  if (!::mkdtemp(pattern.data()))
    throw file_error(path_, "cannot create temporary folder in " + dir + ": " + errno_text());
  temp_path_ = pattern;
}

AtomicDirectory::~AtomicDirectory() {
  if (committed_) return;
  std::error_code ec;
  fs::remove_all(temp_path_, ec);
}

void AtomicDirectory::commit() {
  if (committed_) return;
  crash_test_commit(path_);
  const std::string dir = parent_dir(path_);
  ::chmod(temp_path_.c_str(), 0755);  // mkdtemp makes 0700
  std::string old_path;
  if (fs::exists(path_)) {
    if (!fs::is_directory(path_)) throw file_error(path_, "exists and is not a folder; refusing to replace it");
    // Move the old folder aside under a unique name, then swap the new one in.
    std::string pattern = (fs::path(dir) / temporary_pattern(fs::path(path_).filename().string() + ".old-")).string();
    if (!::mkdtemp(pattern.data())) throw file_error(path_, "cannot create backup name: " + errno_text());
    old_path = pattern;
    if (::rename(path_.c_str(), old_path.c_str()) != 0) {
      const std::string why = errno_text();
      ::rmdir(old_path.c_str());
      throw file_error(path_, "cannot move the existing folder aside: " + why);
    }
  }
  if (::rename(temp_path_.c_str(), path_.c_str()) != 0) {
    const std::string why = errno_text();
    if (!old_path.empty()) ::rename(old_path.c_str(), path_.c_str());  // put the old one back
    throw file_error(path_, "cannot rename temporary folder into place: " + why);
  }
  committed_ = true;
  sync_directory(dir);
  if (!old_path.empty()) {
    std::error_code ec;
    fs::remove_all(old_path, ec);
  }
}

}  // namespace llmpress
