#pragma once
// SHA-256 (FIPS 180-4), for provenance: which teacher file built a dataset.
#include <cstdint>
#include <string>

namespace llmpress {

class Sha256 {
 public:
  Sha256();
  void update(const void* data, size_t size);
  std::string hex_digest();  // finishes the hash: no update() after it

 private:
  void block(const uint8_t* p);
  uint32_t state_[8];
  uint8_t buffer_[64];
  size_t buffered_ = 0;
  uint64_t length_ = 0;
};

// Hex digest of a file's bytes, read in pieces; throws "PATH: cannot read ..." when unreadable.
std::string sha256_file(const std::string& path);

}  // namespace llmpress
