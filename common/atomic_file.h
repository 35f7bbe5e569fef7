// Crash-safe file writes: content goes to a temporary file in the same directory, is flushed to
// disk, then renamed over the target, so readers see the old or the new file, never a mix.
#pragma once

#include <cstddef>
#include <functional>
#include <string>

namespace rondo {

// Writes `content` to `path` atomically, the file created with permissions `mode` (a secret:
// 0600, never readable by others on its way); throws rondo::Error naming the path on failure.
void write_file_atomic(const std::string& path, const std::string& content, unsigned mode = 0644);

// The same for content too large to hold at once: `produce` writes it piece by piece through the
// function it is given.
using ByteSink = std::function<void(const char* data, size_t size)>;
void write_file_atomic_stream(const std::string& path, const std::function<void(const ByteSink&)>& produce,
                              unsigned mode = 0644);

// Reads a whole file; throws rondo::Error naming the path if it cannot be read.
std::string read_file(const std::string& path);

// fsyncs a directory so that renames inside it are durable.
void sync_directory(const std::string& dir);

}  // namespace rondo
