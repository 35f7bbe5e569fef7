#include "common/errors.h"

namespace rondo {

ConfigError::ConfigError(std::string key, const std::string& reason)
    : Error(key + ": " + reason), key_(std::move(key)) {}

CommError::CommError(int rank, int peer, const std::string& what)
    : Error("rank " + std::to_string(rank) +
            (peer >= 0 ? " (peer " + std::to_string(peer) + ")" : std::string()) + ": " + what),
      rank_(rank),
      peer_(peer) {}

CheckpointError::CheckpointError(std::string path, const std::string& reason)
    : Error("checkpoint " + path + ": " + reason), path_(std::move(path)) {}

DataError::DataError(std::string path, const std::string& reason)
    : Error(path + ": " + reason), path_(std::move(path)) {}

}  // namespace rondo
