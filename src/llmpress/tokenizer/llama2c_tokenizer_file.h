#pragma once
// llama2.c tokenizer.bin (formats.md 6.3) read back into GGUF vocabulary form.
#include <cstdint>
#include <string>

#include "llmpress/io/vocab.h"

namespace llmpress {

// Reads `vocab_size` records (the count is not stored in the file). Undoes the export
// transforms: spaces become U+2581 again, ids 1/2 ("\n<s>\n", "\n</s>\n") become "<s>"/"</s>".
// Types: 0 unknown, 1-2 control, <0xXX> pieces at 3..258 byte, else normal. Model "llama",
// bos 1, eos 2, unk 0, add_bos and add_space_prefix on. Throws Error naming the file when it is
// truncated, has trailing bytes, or a record is implausible.
Vocab read_llama2c_tokenizer(const std::string& path, int64_t vocab_size);

}  // namespace llmpress
