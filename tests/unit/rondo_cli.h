// Runs the `rondo` binary under test with arguments; returns its exit status and combined output.
#pragma once

#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <string>

namespace rondo::testing {

struct CliResult {
  int status;
  std::string output;
};

inline CliResult run_rondo(const std::string& args) {
  const std::string cmd = std::string(RONDO_BIN) + " " + args + " 2>&1";
  FILE* pipe = popen(cmd.c_str(), "r");
  std::string out;
  std::array<char, 4096> buf{};
  while (size_t n = fread(buf.data(), 1, buf.size(), pipe)) out.append(buf.data(), n);
  const int status = pclose(pipe);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

}  // namespace rondo::testing
