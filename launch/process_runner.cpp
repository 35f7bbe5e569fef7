#include "launch/process_runner.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>

#include "common/errors.h"

namespace rondo {
namespace {

std::atomic<int> g_stop_signal{0};

void on_stop_signal(int sig) { g_stop_signal = sig; }

void copy_out(int from, int log_fd, bool echo) {
  char buf[8192];
  for (;;) {
    ssize_t n = ::read(from, buf, sizeof(buf));
    if (n <= 0) return;
    if (echo) (void)!::write(STDERR_FILENO, buf, static_cast<size_t>(n));
    if (log_fd >= 0) (void)!::write(log_fd, buf, static_cast<size_t>(n));
  }
}

}  // namespace

ProcessResult run_process(const std::vector<std::string>& argv, std::chrono::duration<double> timeout,
                          const std::string& log_file, bool echo) {
  if (argv.empty()) throw Error("run_process: empty command");
  int pipe_fds[2];
  if (::pipe(pipe_fds) != 0) throw Error(std::string("pipe: ") + std::strerror(errno));
  const pid_t pid = ::fork();
  if (pid < 0) throw Error(std::string("fork: ") + std::strerror(errno));
  if (pid == 0) {
    ::setpgid(0, 0);
    ::dup2(pipe_fds[1], STDOUT_FILENO);
    ::dup2(pipe_fds[1], STDERR_FILENO);
    ::close(pipe_fds[0]);
    ::close(pipe_fds[1]);
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    ::execvp(args[0], args.data());
    std::fprintf(stderr, "cannot execute %s: %s\n", args[0], std::strerror(errno));
    ::_exit(127);
  }
  ::setpgid(pid, pid);
  ::close(pipe_fds[1]);
  const int out = pipe_fds[0];
  ::fcntl(out, F_SETFL, ::fcntl(out, F_GETFL) | O_NONBLOCK);
  const int log_fd = log_file.empty() ? -1 : ::open(log_file.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);

  struct sigaction sa {};
  sa.sa_handler = on_stop_signal;
  struct sigaction old_int {
  }, old_term{};
  ::sigaction(SIGINT, &sa, &old_int);
  ::sigaction(SIGTERM, &sa, &old_term);

  using clock = std::chrono::steady_clock;
  const auto deadline = clock::now() + std::chrono::duration_cast<clock::duration>(timeout);
  ProcessResult result;
  clock::time_point kill_at{};
  bool terminating = false;
  int status = 0;
  for (;;) {
    pollfd pfd{out, POLLIN, 0};
    ::poll(&pfd, 1, 100);
    copy_out(out, log_fd, echo);
    const pid_t done = ::waitpid(pid, &status, WNOHANG);
    if (done == pid) break;
    const auto now = clock::now();
    if (!terminating && (now > deadline || g_stop_signal != 0)) {
      result.timed_out = now > deadline;
      result.interrupted = g_stop_signal != 0;
      ::kill(-pid, SIGTERM);
      terminating = true;
      kill_at = now + std::chrono::duration_cast<clock::duration>(kKillGracePeriod);
    } else if (terminating && now > kill_at) {
      ::kill(-pid, SIGKILL);
    }
  }
  copy_out(out, log_fd, echo);
  ::close(out);
  if (log_fd >= 0) ::close(log_fd);
  ::sigaction(SIGINT, &old_int, nullptr);
  ::sigaction(SIGTERM, &old_term, nullptr);
  g_stop_signal = 0;
  if (WIFEXITED(status)) {
    result.exit_code = WEXITSTATUS(status);
  } else if (WIFSIGNALED(status)) {
    result.exit_code = 128 + WTERMSIG(status);
  }
  return result;
}

}  // namespace rondo
