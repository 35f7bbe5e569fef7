// DelayedUpdate: the one-step weight delay of an asynchronous pipeline (PipeDream-2BW,
// pipeline.async) and its corrections, around any optimizer.
//
// Steps are numbered from 0. Step t computes its gradient g_t on W(t-1) (W(-1) = W(0)), and
// the optimizer turns W(t) into W(t+1) = W(t) - U_t, where u_t is the optimizer's own update from
// g_t (learning rate, weight decay and all) and
//   none:              U_t = u_t
//   error_feedback:    U_t = u_t + (u_t - u_{t-1})      (Zmushko et al. 2026, sec. 3; u_{-1} = u_0)
//   weight_prediction: U_t = u_t, and step t + 2 computes on W(t+1) - u_t instead of W(t+1)
//                      (the last update taken as the one the step will miss). The same compute
//                      points as error_feedback's: with F(t+1) = E(t+1) + u_t, error feedback's
//                      weights E are weight prediction's points on the plain sequence F.
//   velocity_prediction: U_t = u_t, and step t + 2 computes on W(t+1) - v_t, v_t the updates'
//                      moving average v_t = g v_{t-1} + (1 - g) u_t, v_{-1} = 0, g =
//                      kVelocityDecay (PipeMare's discrepancy correction, SpecTrain's
//                      momentum-smoothed prediction, at a delay of one update)
//
// Weights: the optimizer's parameters ("master", always the newest W, with the gradient buffer the
// optimizer reads) and two compute versions, full copies of the same parameters with gradients
// of their own: step t computes on version t % 2. The update from g_t runs on a thread of its own
// while step t + 1 computes on version (t + 1) % 2; it then writes the weights step t + 2 computes
// on into version t % 2, whose step t is done. So at most two weight versions are in use at once.
//
// Call order: construct (both versions := master); per step t, once its gradients are final,
// begin(t, update); wait() before step t + 2 first computes (and before a checkpoint). `update`
// runs on the thread: it moves g_t into the master's gradient and steps the optimizer. The
// checkpoint (save/load) holds the optimizer's state, its weights (the master), both versions and
// the correction's state.
#pragma once

#include <torch/torch.h>

#include <array>
#include <exception>
#include <functional>
#include <thread>
#include <utility>
#include <vector>

namespace rondo {

enum class DelayCorrection { kNone, kErrorFeedback, kWeightPrediction, kVelocityPrediction };

// velocity_prediction's averaging: the velocity follows about the last 1 / (1 - g) = 10 updates
// (SpecTrain smooths with the momentum, 0.9).
inline constexpr double kVelocityDecay = 0.9;

class DelayedUpdate : public torch::optim::Optimizer {
 public:
  // `optimizer` updates `master` in place and outlives this; `versions` have the master's shapes.
  DelayedUpdate(torch::optim::Optimizer& optimizer, std::vector<torch::Tensor> master,
                std::array<std::vector<torch::Tensor>, 2> versions, DelayCorrection correction);
  ~DelayedUpdate() override;

  // Starts step `step`'s update on a thread (after waiting for the previous one); `written`, when
  // given, runs there once the version it updates is written.
  void begin(int64_t step, std::function<void()> update, std::function<void()> written = {});
  // Waits for the update in flight, if any; rethrows what it threw.
  void wait();
  // How long the last update ran (on its thread), and how long wait() has blocked since the last
  // call of take_waited_s() (the update's exposed part).
  double last_update_s() const { return last_update_s_; }
  double take_waited_s() { return std::exchange(waited_s_, 0.0); }
  // The version step `step` computes on.
  static int version(int64_t step) { return static_cast<int>(step % 2); }

  // Not an optimizer step of its own: throws (use begin()).
  torch::Tensor step(LossClosure closure = nullptr) override;
  void save(torch::serialize::OutputArchive& archive) const override;
  void load(torch::serialize::InputArchive& archive) override;

 private:
  void apply(int64_t step, const std::function<void()>& update);

  torch::optim::Optimizer& optimizer_;
  std::vector<torch::Tensor> master_;
  std::array<std::vector<torch::Tensor>, 2> versions_;
  DelayCorrection correction_;
  std::vector<torch::Tensor> update_;  // u_t (scratch: the master before the step)
  // u_{t-1} (error_feedback, weight_prediction) or v_{t-1} (velocity_prediction)
  std::vector<torch::Tensor> previous_;
  bool has_previous_ = false;
  double last_update_s_ = 0, waited_s_ = 0;
  std::thread thread_;
  std::exception_ptr error_;
};

}  // namespace rondo
