// Typed errors of rondo. Every error carries enough context (key, file, rank) for a user to act
// on it; docs/errors.md lists which ones a restart can recover from.
#pragma once

#include <stdexcept>
#include <string>

namespace rondo {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A bad configuration value or combination; `key()` names the offending config key.
class ConfigError : public Error {
 public:
  ConfigError(std::string key, const std::string& reason);
  const std::string& key() const { return key_; }

 private:
  std::string key_;
};

// A plan that cannot be built or executed (e.g. a malformed plan file, an unknown action).
class PlanError : public Error {
 public:
  using Error::Error;
};

// A communication failure; `rank()` is the reporting rank, `peer()` the other side or -1.
class CommError : public Error {
 public:
  CommError(int rank, int peer, const std::string& what);
  int rank() const { return rank_; }
  int peer() const { return peer_; }

 private:
  int rank_;
  int peer_;
};

// A wait that ran past its deadline.
class TimeoutError : public CommError {
 public:
  using CommError::CommError;
};

// A checkpoint that is missing, partial or corrupt; `path()` names the file or directory.
class CheckpointError : public Error {
 public:
  CheckpointError(std::string path, const std::string& reason);
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// A dataset file that cannot be used (missing, corrupt, inconsistent); `path()` names it.
class DataError : public Error {
 public:
  DataError(std::string path, const std::string& reason);
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// Exit statuses of the rondo programs.
inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;
inline constexpr int kExitConfigError = 2;

}  // namespace rondo
