// CommandRelay: the coordinator's commands (control.proto's Command: stop, checkpoint now, new
// gradient rings, dump the flight recorder) handed from the control client's thread to the
// trainer. A command can reach a rank before its trainer runs -- setup takes seconds: the plan,
// the model, a checkpoint load -- and is kept until one does, then applied in order (the newest
// rings only; a flight dump asked for before there is a recorder is dropped). Torch-free.
#pragma once

#include <functional>
#include <mutex>
#include <vector>

#include "proto/control.pb.h"

namespace rondo {

class CommandRelay {
 public:
  using Apply = std::function<void(const control::Command&)>;

  // From the control thread.
  void deliver(const control::Command& command);
  // The trainer runs: `apply` takes every command from now on, the kept ones first. Until
  // detach(), under the relay's lock (so not after detach() returned).
  void attach(Apply apply);
  void detach();

  size_t kept() const;

 private:
  mutable std::mutex mu_;
  Apply apply_;
  std::vector<control::Command> kept_;
};

}  // namespace rondo
