#include "common/line_appender.h"

#include <fcntl.h>
#include <unistd.h>

#include "common/errors.h"

namespace rondo {

LineAppender::LineAppender(const std::string& path) : path_(path) {
  fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd_ < 0) throw Error("cannot open " + path + " for appending");
}

LineAppender::~LineAppender() {
  if (fd_ >= 0) ::close(fd_);
}

void LineAppender::append(const std::string& line) {
  const std::string data = line + "\n";
  if (::write(fd_, data.data(), data.size()) != static_cast<ssize_t>(data.size())) {
    throw Error("short write to " + path_ + " (disk full?)");
  }
}

void append_line(const std::string& path, const std::string& line) { LineAppender(path).append(line); }

}  // namespace rondo
