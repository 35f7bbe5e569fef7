// WeightGradStore: the deferred half of a split backward. A zero-bubble schedule runs a stage's
// backward as I (gradients with respect to the stage's input) and, later, W (gradients with
// respect to its weights). Layers that support the split (DeferrableLinear) check active(): while
// a store is active on this thread, their backward computes the input gradient only and defers
// the weight gradient -- a closure holding the layer's input and output gradient -- into the
// store; run() later accumulates every deferred weight gradient into the parameters' .grad.
// Other parameters (norms, embeddings) get their gradients during I, as in the zero-bubble
// paper's implementation.
#pragma once

#include <functional>
#include <vector>

namespace rondo {

class WeightGradStore {
 public:
  using Job = std::function<void()>;

  // The store of the split backward running on this thread, or null.
  static WeightGradStore* active();

  // Makes `store` active on this thread for its lifetime (one at a time).
  class Scope {
   public:
    explicit Scope(WeightGradStore& store);
    ~Scope();
    Scope(const Scope&) = delete;
    Scope& operator=(const Scope&) = delete;
  };

  void defer(Job job) { jobs_.push_back(std::move(job)); }
  // Runs (and drops) every deferred job in the order deferred.
  void run();
  bool empty() const { return jobs_.empty(); }

 private:
  std::vector<Job> jobs_;
};

}  // namespace rondo
