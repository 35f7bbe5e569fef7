#include "launch/process_runner.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "common/errors.h"

namespace rondo {
namespace {

std::atomic<int> g_stop_signal{0};   // the last SIGINT/SIGTERM
std::atomic<int> g_stop_signals{0};  // how many arrived

void on_stop_signal(int sig) {
  g_stop_signal = sig;
  ++g_stop_signals;
}

// Copies what the child wrote; on a terminal, the status line is erased first and redrawn after.
void copy_out(int from, int log_fd, bool echo, const std::string& status, std::string& drawn) {
  char buf[8192];
  for (;;) {
    ssize_t n = ::read(from, buf, sizeof(buf));
    if (n <= 0) break;
    if (echo) {
      if (!drawn.empty()) {
        (void)!::write(STDERR_FILENO, "\r\033[K", 4);
        drawn.clear();
      }
      (void)!::write(STDERR_FILENO, buf, static_cast<size_t>(n));
    }
    if (log_fd >= 0) (void)!::write(log_fd, buf, static_cast<size_t>(n));
  }
  if (echo && status != drawn) {
    // The cursor goes back to the line's start: our own log lines then write over it.
    const std::string line = "\r\033[K" + status + "\r";
    (void)!::write(STDERR_FILENO, line.data(), line.size());
    drawn = status;
  }
}

// Starts `argv` in a process group of its own, its stdout and stderr into one pipe: (pid, the
// pipe's read end, non-blocking).
std::pair<pid_t, int> spawn_in_own_group(const std::vector<std::string>& argv) {
  int pipe_fds[2];
  if (::pipe(pipe_fds) != 0) throw Error(std::string("pipe: ") + std::strerror(errno));
  const pid_t pid = ::fork();
  if (pid < 0) throw Error(std::string("fork: ") + std::strerror(errno));
  if (pid == 0) {
    ::setpgid(0, 0);
    // Should we die without stopping it (SIGKILL), the launcher is told to stop its ranks: no
    // orphaned job keeps training unwatched.
    ::prctl(PR_SET_PDEATHSIG, SIGTERM);
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
  return {pid, out};
}

}  // namespace

ProcessResult run_process(const std::vector<std::string>& argv, std::chrono::duration<double> timeout,
                          const std::string& log_file, bool echo, const ProcessMonitor& monitor) {
  const bool tty = echo && monitor.status_line && ::isatty(STDERR_FILENO);
  std::string status, drawn;
  if (argv.empty()) throw Error("run_process: empty command");
  const auto [pid, out] = spawn_in_own_group(argv);
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
  bool terminating = false, handed_over = false;
  // The signals that stop the group at once: the first, or the second when the monitor takes one.
  const int forced_after = monitor.on_interrupt ? 2 : 1;
  int wait_status = 0;
  for (;;) {
    pollfd pfd{out, POLLIN, 0};
    ::poll(&pfd, 1, 100);
    if (tty) status = monitor.status_line();
    copy_out(out, log_fd, echo, status, drawn);
    const pid_t done = ::waitpid(pid, &wait_status, WNOHANG);
    if (done == pid) break;
    const auto now = clock::now();
    if (monitor.on_interrupt && !handed_over && g_stop_signals > 0) {
      handed_over = true;
      monitor.on_interrupt(g_stop_signal);
    }
    const bool asked = !terminating && monitor.should_stop && monitor.should_stop();
    const bool forced = g_stop_signals >= forced_after;
    if (!terminating && (now > deadline || forced || asked)) {
      result.timed_out = now > deadline;
      result.interrupted = forced;
      result.stopped = asked;
      ::kill(-pid, SIGTERM);
      terminating = true;
      kill_at = now + std::chrono::duration_cast<clock::duration>(kKillGracePeriod);
    } else if (terminating && now > kill_at) {
      ::kill(-pid, SIGKILL);
    }
  }
  copy_out(out, log_fd, echo, "", drawn);
  ::close(out);
  // Stopped on purpose: whatever the launcher left of its group (a stopped rank) goes too.
  if (terminating) ::kill(-pid, SIGKILL);
  if (log_fd >= 0) ::close(log_fd);
  ::sigaction(SIGINT, &old_int, nullptr);
  ::sigaction(SIGTERM, &old_term, nullptr);
  g_stop_signal = 0;
  g_stop_signals = 0;
  if (WIFEXITED(wait_status)) {
    result.exit_code = WEXITSTATUS(wait_status);
  } else if (WIFSIGNALED(wait_status)) {
    result.exit_code = 128 + WTERMSIG(wait_status);
  }
  return result;
}

}  // namespace rondo
