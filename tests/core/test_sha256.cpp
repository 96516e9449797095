// SHA-256 against the FIPS 180-4 example vectors.
#include <gtest/gtest.h>

#include <fstream>
#include <string>

#include "llmpress/core/sha256.h"
#include "test_util.h"

namespace llmpress {
namespace {

std::string digest(const std::string& text) {
  Sha256 hash;
  hash.update(text.data(), text.size());
  return hash.hex_digest();
}

TEST(Sha256, FipsVectors) {
  EXPECT_EQ(digest(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(digest("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(digest("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  test::TempDir dir;
  std::ofstream(dir.file("a")) << std::string(1000000, 'a');  // read in pieces
  EXPECT_EQ(sha256_file(dir.file("a")), "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

}  // namespace
}  // namespace llmpress
