// Appending whole lines to a log-like file (metrics.jsonl, events.jsonl): each line goes out in
// one write(2) on an O_APPEND descriptor, so a writer killed mid-way never leaves half a line and
// concurrent appenders never interleave inside one.
#pragma once

#include <string>

namespace rondo {

class LineAppender {
 public:
  // Opens (creating) `path` for appending; throws rondo::Error naming it on failure.
  explicit LineAppender(const std::string& path);
  ~LineAppender();
  LineAppender(const LineAppender&) = delete;
  LineAppender& operator=(const LineAppender&) = delete;

  // Appends `line` and a newline; throws rondo::Error naming the file on a short write.
  void append(const std::string& line);

 private:
  std::string path_;
  int fd_ = -1;
};

// Opens, appends one line, closes: for files written now and then.
void append_line(const std::string& path, const std::string& line);

}  // namespace rondo
