#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace llmpress {

// A read-only memory mapping of a whole file. Readers check every offset against size()
// before touching data(), so a truncated or malicious file cannot cause an out-of-bounds read.
class MappedFile {
 public:
  static std::shared_ptr<MappedFile> open(const std::string& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }
  uint64_t size() const { return size_; }
  const std::string& path() const { return path_; }

  // Throws "PATH: <what> needs bytes [offset, offset+length) but the file has N bytes".
  void require(uint64_t offset, uint64_t length, const std::string& what) const;
  // Drops the pages of [offset, offset+length) from this process's memory once they have been decoded;
  // they are read again from the file if touched later. Keeps peak memory at one copy of the weights.
  void release(uint64_t offset, uint64_t length) const;

 private:
  MappedFile() = default;
  std::string path_;
  const uint8_t* data_ = nullptr;
  uint64_t size_ = 0;
};

}  // namespace llmpress
