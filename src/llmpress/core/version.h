#pragma once
// The version every output records (config.json "llmpress" section, GGUF llmpress.version).
// Set by CMake from project(VERSION ...).
#ifndef LLMPRESS_VERSION
#define LLMPRESS_VERSION "unknown"
#endif

namespace llmpress {
inline const char* version() { return LLMPRESS_VERSION; }
}  // namespace llmpress
