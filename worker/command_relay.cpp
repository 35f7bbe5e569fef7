#include "worker/command_relay.h"

#include <algorithm>

namespace rondo {

void CommandRelay::deliver(const control::Command& command) {
  std::lock_guard lock(mu_);
  if (apply_) {
    apply_(command);
    return;
  }
  switch (command.kind()) {
    case control::Command::DUMP_FLIGHT:
      return;  // nothing recorded yet
    case control::Command::SET_RINGS:
      std::erase_if(kept_, [](const control::Command& c) { return c.kind() == control::Command::SET_RINGS; });
      break;
    default:
      break;
  }
  kept_.push_back(command);
}

void CommandRelay::attach(Apply apply) {
  std::lock_guard lock(mu_);
  apply_ = std::move(apply);
  for (const auto& c : kept_) apply_(c);
  kept_.clear();
}

void CommandRelay::detach() {
  std::lock_guard lock(mu_);
  apply_ = nullptr;
}

size_t CommandRelay::kept() const {
  std::lock_guard lock(mu_);
  return kept_.size();
}

}  // namespace rondo
