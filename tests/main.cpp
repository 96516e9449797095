#include <gtest/gtest.h>

#include "llmpress/core/runtime.h"

int main(int argc, char** argv) {
  llmpress::tune_memory_allocator();
  testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
