#include "worker/learning_rate.h"

#include <cmath>
#include <numbers>

namespace rondo {

double learning_rate(const plan::TrainingSpec& t, int64_t step) {
  const auto warmup = static_cast<int64_t>(t.lr_warmup_iters());
  if (warmup > 0 && step <= warmup) return t.lr() * static_cast<double>(step) / static_cast<double>(warmup);
  if (t.lr_decay_style() == plan::LR_DECAY_STYLE_CONSTANT) return t.lr();
  const double span = static_cast<double>(static_cast<int64_t>(t.train_iters()) - warmup);
  const double ratio = span > 0 ? static_cast<double>(step - warmup) / span : 1.0;
  const double coeff = t.lr_decay_style() == plan::LR_DECAY_STYLE_LINEAR
                           ? 1.0 - ratio
                           : 0.5 * (std::cos(std::numbers::pi * ratio) + 1.0);
  return t.min_lr() + coeff * (t.lr() - t.min_lr());
}

}  // namespace rondo
