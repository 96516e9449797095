#include "llmpress/io/atomic_file.h"

#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
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

}  // namespace

AtomicFile::AtomicFile(const std::string& path) : path_(path) {
  if (path.empty()) throw Error("output path is empty");
  if (fs::is_directory(path)) throw file_error(path, "is a directory, expected a file path");
  const std::string dir = parent_dir(path);
  if (!fs::is_directory(dir)) throw file_error(path, "cannot write: folder " + dir + " does not exist");
  std::string pattern = path + ".tmp-XXXXXX";
  const int fd = ::mkstemp(pattern.data());
  if (fd < 0) throw file_error(path, "cannot create temporary file in " + dir + ": " + errno_text());
  // mkstemp creates mode 0600; give the result the usual permissions (umask applies).
  const mode_t mask = ::umask(0);
  ::umask(mask);
  ::fchmod(fd, 0666 & ~mask);
  temp_path_ = pattern;
  file_ = ::fdopen(fd, "wb");
  if (!file_) {
    ::close(fd);
    ::unlink(temp_path_.c_str());
    throw file_error(path, "cannot open temporary file: " + errno_text());
  }
  static constexpr size_t kBufferBytes = 1 << 20;
  std::setvbuf(file_, nullptr, _IOFBF, kBufferBytes);
}

AtomicFile::~AtomicFile() {
  if (committed_) return;
  if (file_) std::fclose(file_);
  ::unlink(temp_path_.c_str());
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
  if (std::fflush(file_) != 0) throw file_error(path_, "write failed (disk full?): " + errno_text());
  if (::fsync(::fileno(file_)) != 0) throw file_error(path_, "fsync failed: " + errno_text());
  const int rc = std::fclose(file_);
  file_ = nullptr;
  if (rc != 0) throw file_error(path_, "close failed: " + errno_text());
  if (::rename(temp_path_.c_str(), path_.c_str()) != 0)
    throw file_error(path_, "cannot rename temporary file into place: " + errno_text());
  committed_ = true;
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
  std::string pattern = path_ + ".tmp-XXXXXX";
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
  const std::string dir = parent_dir(path_);
  ::chmod(temp_path_.c_str(), 0755);  // mkdtemp makes 0700
  std::string old_path;
  if (fs::exists(path_)) {
    if (!fs::is_directory(path_)) throw file_error(path_, "exists and is not a folder; refusing to replace it");
    // Move the old folder aside under a unique name, then swap the new one in.
    std::string pattern = path_ + ".old-XXXXXX";
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
