#include "data/exec/step_batches.h"

namespace rondo {

StepBatches::StepBatches(const plan::Plan& plan, const plan::RankPlan& me, const SampleWindows& windows,
                         torch::Device device)
    : plan_(plan), me_(me), windows_(windows), device_(device) {}

void StepBatches::set_step(int64_t step) {
  if (step == step_) return;
  step_ = step;
  packings_.clear();
}

std::pair<int64_t, int> StepBatches::step_of(int microbatch) const {
  const int m = static_cast<int>(plan_.training().num_microbatches());
  return {step_ - 1 + microbatch / m, microbatch % m};
}

torch::Tensor StepBatches::tokens(int microbatch) const {
  const int64_t rows = plan_.training().micro_batch_size();
  const int64_t len = plan_.model().seq_length() + 1;
  const auto [at, mb] = step_of(microbatch);
  auto out = torch::empty({rows, len}, torch::kLong);
  for (int64_t i = 0; i < rows; ++i) {
    windows_.tokens(static_cast<uint64_t>(at), me_.microbatch_first_sample(mb) + static_cast<uint64_t>(i), 0,
                    static_cast<size_t>(len), static_cast<int64_t>(plan_.model().vocab_size()),
                    out.data_ptr<int64_t>() + i * len);
  }
  return out.to(device_);
}

const StepBatches::Packing& StepBatches::packing(int microbatch) {
  auto it = packings_.find(microbatch);
  if (it != packings_.end()) return it->second;
  const int64_t rows = plan_.training().micro_batch_size(), len = plan_.model().seq_length();
  const auto [at, mb] = step_of(microbatch);
  auto documents = torch::empty({rows, len}, torch::kLong);
  auto crossing = torch::empty({rows, len}, torch::kBool);
  static_assert(sizeof(bool) == sizeof(uint8_t));
  for (int64_t i = 0; i < rows; ++i) {
    windows_.documents(static_cast<uint64_t>(at), me_.microbatch_first_sample(mb) + static_cast<uint64_t>(i),
                       documents.data_ptr<int64_t>() + i * len,
                       reinterpret_cast<uint8_t*>(crossing.data_ptr<bool>()) + i * len);
  }
  return packings_.emplace(microbatch, Packing{documents.to(device_), crossing.to(device_)}).first->second;
}

torch::Tensor StepBatches::documents(int microbatch) {
  return plan_.data().pack() ? packing(microbatch).documents : torch::Tensor();
}

torch::Tensor StepBatches::counted_targets(int microbatch, const torch::Tensor& targets) {
  return windows_.masks_targets() ? targets.masked_fill(packing(microbatch).crossing, -100) : targets;
}

double StepBatches::step_targets() {
  const auto& t = plan_.training();
  const int microbatches = static_cast<int>(t.num_microbatches());
  if (!windows_.masks_targets()) {
    return static_cast<double>(microbatches) *
           static_cast<double>(t.micro_batch_size() * plan_.model().seq_length());
  }
  double targets = 0;
  for (int m = 0; m < microbatches; ++m) {
    const auto& crossing = packing(m).crossing;
    targets += static_cast<double>(crossing.numel() - crossing.sum().item<int64_t>());
  }
  return targets;
}

}  // namespace rondo
