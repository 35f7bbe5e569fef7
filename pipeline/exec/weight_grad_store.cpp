#include "pipeline/exec/weight_grad_store.h"

#include <stdexcept>

namespace rondo {

namespace {
thread_local WeightGradStore* current = nullptr;
}  // namespace

WeightGradStore* WeightGradStore::active() { return current; }

WeightGradStore::Scope::Scope(WeightGradStore& store) {
  if (current) throw std::logic_error("a split backward is already running on this thread");
  current = &store;
}

WeightGradStore::Scope::~Scope() { current = nullptr; }

void WeightGradStore::run() {
  auto jobs = std::move(jobs_);
  jobs_.clear();
  for (auto& job : jobs) job();
}

}  // namespace rondo
