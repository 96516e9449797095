#include "llmpress/io/atomic_file.h"

#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <vector>

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

AtomicDirectory::AtomicDirectory(const std::string& path) : path_(path) {
  while (path_.size() > 1 && path_.back() == '/') path_.pop_back();
  if (path_.empty()) throw Error("output folder is empty");
  if (fs::exists(path_) && !fs::is_directory(path_))
    throw file_error(path_, "exists and is not a folder; refusing to replace it");
  const std::string dir = parent_dir(path_);
  if (!fs::is_directory(dir)) throw file_error(path_, "cannot write: folder " + dir + " does not exist");
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
