// i-quant and ternary encoders against ggml itself. The digests below are SHA-256 of the bytes that
// ggml_quantize_chunk (llama.cpp c392e5094, libggml-base built -DGGML_NATIVE=OFF; llama-quantize calls
// it) wrote for the rows of iquant_rows.h and for real weights. They were made by a throwaway checker
// outside the repository that linked ggml and compared each of these rows with ours byte for byte:
//   generated: RowGenerator(1).row(i, 512) for i < 1536 unweighted (types with a plain encoder), and
//              RowGenerator(2) rows i < 1536, each followed by .importance(512) as its imatrix entry;
//   real:      every row of gutenberg-dev-llama-5m's model.layers.0.self_attn.q_proj.weight (256 x 256)
//              and model.layers.1.mlp.down_proj.weight (256 x 768), unweighted and weighted by
//              RowGenerator(3).importance(n) drawn once per row.
// IQ1_S/IQ1_M: for a group below the zero threshold ggml stores a delta sign it never computed (left on
// its stack); ours is the one a zeroed buffer gives, and the checker zeroed the stack before each call.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "iquant_rows.h"
#include "llmpress/core/error.h"
#include "llmpress/core/sha256.h"
#include "llmpress/export/ggml_quantize.h"
#include "llmpress/io/checkpoint.h"
#include "test_util.h"

namespace llmpress {
namespace {

struct GgmlDigests {
  TensorType type;
  const char* plain;         // generated rows, no importance (null: ggml requires importance)
  const char* weighted;      // generated rows with importance
  const char* real_plain[2];  // q_proj, down_proj (null: ggml requires importance)
  const char* real_weighted[2];
};

const GgmlDigests kDigests[] = {
    // IQ1_S, IQ2_XXS and IQ2_XS: ggml has no plain path (it requires importance).
    {TensorType::IQ1_S, nullptr, "bdd45fc8cdb4e8c52cdd9e9c9e7f10ec45501f41173115b649aeb6177e1b05b1",
     {nullptr, nullptr},
     {"0c5054dc20fdf3406d3e13a15e4dc2ddaf22c3243fc97787594732e2e5e5b9ce", "483026b3d59c1c237e80535f3b046b847a3d5c0e22ee63c7a9b8e102d661d635"}},
    {TensorType::IQ1_M, "5df88fa1b9d84bd9416f7a024e9129eb1d0c0a50a161872c326fe7ddbcbc6c63", "07a24e742ec8121b65224ec4ba4d2a592894ef915703456b7afa009ce4ef2d8f",
     {"272211246d004b2c345b8bcd41b4d2d0f3e66b9dc56b2b714966b34e590d6f47", "ba6e38592b332b0f051e00c77eac8bbccb32027133ec0323b86df9c9a9a34e56"},
     {"a9bbee4b217f8bc21c87ead1b3f9966cd75fa8071c1c83ce1a1a1643e1fac9d8", "0c557df538ec35de33e5f3b81c722af58516e9c43f09db18b805981cbfb096e1"}},
    {TensorType::IQ2_XXS, nullptr, "1acbde0b008abb7be7c41f1cbfce78d68b0e8b0678a7725903800a39486d371b",
     {nullptr, nullptr},
     {"c563b5cee0165496c508c41a2b97ac8196936dbbb221402743e0ad10ccfcf527", "39ce42442990b815aa47edd181de2a2104bc8090de4cbe16327f9d9ca39c045b"}},
    {TensorType::IQ2_XS, nullptr, "3623e0fb5a45877fb04542743a6fafd6c6421f67a43791b85d41e891b02191aa",
     {nullptr, nullptr},
     {"4ad240968deb062332f41170f7f4e0eceb44ef553d4c427994243fbe09d54923", "a530e9e109b23c0eb1741e855411096f63525d4c68fe931b5e13d865a4af61f8"}},
    {TensorType::IQ2_S, "cc7fa07c70e456ace843e13216fde40d92c429d28512dc4e8ce03bb64d7aa136", "50bba0ab7b766e31fbb55fea67d3813f1965f7fc40a757ec15c4148bb9eef042",
     {"d93e6588b6a4b1cfaedc8cf7011832703b141d2481f693592691777205966d20", "973d513d4100457f66bb0d152b50705ecd06353a4c6ef576f1088caec0711ba6"},
     {"7e2bb73d97a25e96fa627e08c31d8daf68e57312caa1e4786093aab707ad6d8a", "cb899b09ca727762c64b70536ec954992748eb0f4ff5c4231a5067cc18483eb3"}},
    {TensorType::IQ3_XXS, "aa6f56f8e318ff0271751de66a8ab7b7f11572c8e56576a8dc386bdc5f94b9cd", "22c118278c3a1a420f7d6688ae63c7632aec29d40a60d54c251a1dbfaade907a",
     {"df132cd461ad7ae4f0f70e1f74ae49da8fc60ef3012e09a8701d82b0127299a4", "9d345595280e5ce9de4824bf2b5d79420db84dc3a8115da85b313a0dc6538e5b"},
     {"11acc22bcb8928020afc4fc5f07a755233fe06717a6c2f779afebab248a675a2", "595cc652a4849a7cc94c77aa4242d574f5a2addffb67db24abeb7add422c7224"}},
    {TensorType::IQ3_S, "d87de012b7c763d17453fdab3e2e6dfeeb2e4c1b76feabb33e21ae4c92bd5703", "b3c6f9021ae68003da335dae45255d646b1ef7e938623a67c14ccfb4e55921b8",
     {"2655ca1a913e123dc4fcc840a072505924dfc5af9274f3c5c25054c4e36cfeef", "d72dad55ee25e033c3a01601aa6ebab2db71e87843ef80fef1fe79df1d1fd990"},
     {"1549307657688948575938e51c9b6900b70f12cb4d1f1133e0557e8a7a01f087", "38befd82de0b83fb93c9f6c6f625fbf5134c1e27dfb00d9d7b7b806c1680c644"}},
    {TensorType::IQ4_NL, "b202c93e510dbf7c2ea37fb31735374aca866e695fe6cdde7853da02252935aa",
     "37e7e36e201abe50048a87e65dcd0d0b6d1d29a7588d1e89d299a7a0f66acc1a",
     {"7672ea9491fbc14b2efb92246eebb4ba3f349363485079b15d20842e542e9834",
      "85efcd6fb8ca99835e0651018ac572509e1e49194c86659bc02326367a902d14"},
     {"8cdb871b8e846631c2f344c04dd5930a0c23122de36e57024e09d4abbf4a7507",
      "e60f869e7ddfa862a0c5fa191db0f7af760fd67b29d4136dd400768bd48b23d3"}},
    {TensorType::IQ4_XS, "5d52b9a5d6ae32e6eb913adb15ff858d4c45e3742c3f9788a47efb0df0a0b57f",
     "39d890b3cfacd9f65aa1714b95afa91522223590472b9e35531bc1abf04cffb5",
     {"0b152c0da71b902c9f905439a56686d20e6ff1cf06edba5da22e326aff8e563f",
      "0342279bd0a7b67abc9e6ad16d0c0f5e418b5edce6a0b73fb0af4db87742ab23"},
     {"ba1099bb16d20f9ce40fe94becc556eb518fb579442db5d07b782a96bacfa5d9",
      "3cd8e06151a982d5470e4f2b5571b5ef347978cb3fb1c644b366533b620d4853"}},
    // Ternary types ignore importance: the weighted digests are the plain ones.
    {TensorType::TQ1_0, "58b4683d837e93623fd28f8e8bdc2e83c2654437162289bd23d87824563982d4", nullptr,
     {"68ca9aea0edaccbf79637576ea329b13b6b459d5c155b003d8c1a9fef43f5b14",
      "cf71a7bbcb83a3001d087a29a6a2ca932b27c4277c58eb0a049c870a6ce1d3e7"},
     {nullptr, nullptr}},
    {TensorType::TQ2_0, "8fee27e285a4dbd969ba6f8ff87d5b3a2b29ee1d857f5b304a69928e8399d870", nullptr,
     {"28c92ee466fdd3d6ff1f384726efac6ead668ff46bcb9bfe7d01a97082eaddff",
      "e13c7c0df8aeb6450f12fc3e5a08f6a87cc5a288c0e583a12fcb6311b5a51e1a"},
     {nullptr, nullptr}},
};

// Digest of our bytes for `rows` rows (from `source`, or generated by `gen`), each weighted by a fresh
// gen.importance(n) when `weighted`, the checker's order of draws.
std::string our_digest(TensorType type, int64_t n, int64_t rows, test::RowGenerator gen, bool weighted,
                       const at::Tensor& source = {}) {
  Sha256 sha;
  for (int64_t i = 0; i < rows; ++i) {
    std::vector<float> x;
    if (source.defined()) {
      const at::Tensor row = source[i].contiguous();
      x.assign(row.data_ptr<float>(), row.data_ptr<float>() + n);
    } else {
      x = gen.row(i, n);
    }
    const std::vector<float> w = weighted ? gen.importance(n) : std::vector<float>();
    const std::vector<uint8_t> bytes = encode_rows_weighted(type, x.data(), n, 1, weighted ? w.data() : nullptr);
    sha.update(bytes.data(), bytes.size());
  }
  return sha.hex_digest();
}

TEST(GgmlIquantEncoders, MatchGgmlOnGeneratedRows) {
  for (const GgmlDigests& d : kDigests) {
    const std::string name = tensor_type_name(d.type);
    if (d.plain) EXPECT_EQ(our_digest(d.type, 512, 1536, test::RowGenerator(1), false), d.plain) << name << " plain";
    if (d.weighted)
      EXPECT_EQ(our_digest(d.type, 512, 1536, test::RowGenerator(2), true), d.weighted) << name << " weighted";
  }
}

TEST(GgmlIquantEncoders, MatchGgmlOnRealWeights) {
  LLMPRESS_REQUIRE_SHARED("models/gutenberg-dev-llama-5m/config.json");
  const Checkpoint model = open_checkpoint(test::shared_path("models/gutenberg-dev-llama-5m"));
  const char* tensors[2] = {"model.layers.0.self_attn.q_proj.weight", "model.layers.1.mlp.down_proj.weight"};
  for (int t = 0; t < 2; ++t) {
    const at::Tensor w = model.load(tensors[t]).contiguous();
    for (const GgmlDigests& d : kDigests) {
      const std::string what = tensor_type_name(d.type) + " " + tensors[t];
      if (d.real_plain[t])
        EXPECT_EQ(our_digest(d.type, w.size(1), w.size(0), test::RowGenerator(3), false, w), d.real_plain[t]) << what;
      if (d.real_weighted[t])
        EXPECT_EQ(our_digest(d.type, w.size(1), w.size(0), test::RowGenerator(3), true, w), d.real_weighted[t])
            << what << " weighted";
    }
  }
}

// An identity of the ternary formats: values already in {-d, 0, d} (d representable in f16) come back exactly.
TEST(GgmlIquantEncoders, TernaryValuesRoundTripExactly) {
  test::RowGenerator gen(4);
  std::vector<float> x(1024);
  for (size_t i = 0; i < x.size(); ++i) x[i] = 0.046875f * float(int(gen.next() % 3) - 1);
  x[5] = 0.046875f;  // every block of 256 holds d itself
  x[261] = x[517] = x[773] = -0.046875f;
  for (TensorType type : {TensorType::TQ1_0, TensorType::TQ2_0}) {
    const std::vector<uint8_t> bytes = encode_rows(type, x.data(), 1024, 1);
    std::vector<float> back(x.size());
    decode_to_f32(type, bytes.data(), 1024, back.data());
    EXPECT_EQ(back, x) << tensor_type_name(type);
  }
}

TEST(GgmlIquantEncoders, ReconstructionErrorFitsTheBitRate) {
  // Relative RMS error on Gaussian rows, weighted by a flat importance: fewer bits, more error.
  // Measured (ggml's bytes): IQ1_S 0.470, IQ1_M 0.440, IQ2_XXS 0.338, IQ2_XS 0.296, IQ2_S 0.242,
  // IQ3_XXS 0.179, IQ3_S 0.133, IQ4_NL 0.073, IQ4_XS 0.073; the bounds leave 25%.
  const std::pair<TensorType, double> bounds[] = {
      {TensorType::IQ1_S, 0.59},    {TensorType::IQ1_M, 0.55}, {TensorType::IQ2_XXS, 0.42},
      {TensorType::IQ2_XS, 0.37},   {TensorType::IQ2_S, 0.30}, {TensorType::IQ3_XXS, 0.22},
      {TensorType::IQ3_S, 0.17},    {TensorType::IQ4_NL, 0.09}, {TensorType::IQ4_XS, 0.09}};
  test::RowGenerator gen(5);
  std::vector<float> x;
  for (int64_t i = 0; i < 64; ++i) {
    std::vector<float> row = gen.row(6 * i, 512);  // kind 0: Gaussian
    x.insert(x.end(), row.begin(), row.end());
  }
  const std::vector<float> flat(512, 1.0f);
  for (const auto& [type, bound] : bounds) {
    const std::vector<uint8_t> bytes = encode_rows_weighted(type, x.data(), 512, 64, flat.data());
    std::vector<float> back(x.size());
    decode_to_f32(type, bytes.data(), int64_t(x.size()), back.data());
    double err = 0, norm = 0;
    for (size_t i = 0; i < x.size(); ++i) err += (x[i] - back[i]) * (x[i] - back[i]), norm += x[i] * x[i];
    EXPECT_LT(std::sqrt(err / norm), bound) << tensor_type_name(type);
  }
}

}  // namespace
}  // namespace llmpress
