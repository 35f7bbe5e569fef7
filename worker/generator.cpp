#include "worker/generator.h"

#include <algorithm>

#include <torch/torch.h>

#include "common/errors.h"
#include "worker/causal_attention.h"
#include "worker/model_family.h"
#include "worker/rank_weights.h"
#include "worker/staged_model.h"
#include "worker/weights_file.h"

namespace rondo {

namespace {

int64_t pick(const torch::Tensor& logits, const GenerateOptions& o, at::Generator& gen) {
  if (o.temperature <= 0) return logits.argmax().item<int64_t>();
  auto probs = torch::softmax(logits.to(torch::kFloat64) / o.temperature, -1);
  if (o.top_p < 1) {
    const auto [sorted, order] = probs.sort(-1, /*descending=*/true);
    const auto before = sorted.cumsum(-1) - sorted;  // probability of the tokens ranked above
    const auto dropped = order.masked_select(before.ge(o.top_p));
    probs.index_fill_(0, dropped, 0.0);
  }
  return torch::multinomial(probs / probs.sum(), 1, /*replacement=*/false, gen).item<int64_t>();
}

}  // namespace

Generated generate(const plan::Plan& plan, const GenerateOptions& o) {
  const auto& m = plan.model();
  StagedModel model(model_family(m.family()), model_shape(plan), plan.training().seed());
  model->eval();
  read_weights_files(o.weight_files, *model, /*exact=*/false);
  if (o.prompt.empty()) throw ConfigError("--prompt", "is empty");
  torch::NoGradGuard no_grad;
  auto gen = at::detail::createCPUGenerator(o.seed);
  const auto longs = torch::TensorOptions().dtype(torch::kLong);
  std::vector<int64_t> sequence = o.prompt;
  Generated out;
  std::vector<LayerKeyValues> cache;
  const auto limit = static_cast<int64_t>(m.seq_length());
  while (static_cast<int64_t>(out.ids.size()) < o.max_tokens &&
         static_cast<int64_t>(sequence.size()) < limit) {
    const int64_t done = o.kv_cache ? (cache.empty() ? 0 : cache.front().k.size(1)) : 0;
    const int64_t end = static_cast<int64_t>(sequence.size());
    const auto ids =
        torch::tensor(std::vector<int64_t>(sequence.begin() + done, sequence.end()), longs).unsqueeze(0);
    std::vector<LayerKeyValues> present;
    const auto logits =
        model->forward_chunk(0, ids, torch::arange(done, end, longs), causal_bias(done, end, {}, torch::kCPU),
                             done > 0 ? cache : std::vector<LayerKeyValues>{}, &present);
    if (o.kv_cache) {
      if (cache.empty()) {
        cache = present;
      } else {
        for (size_t l = 0; l < cache.size(); ++l) {
          cache[l] = {torch::cat({cache[l].k, present[l].k}, 1), torch::cat({cache[l].v, present[l].v}, 1)};
        }
      }
    }
    const auto last = logits[0][end - done - 1];
    if (out.ids.empty()) {
      const auto l = last.contiguous();
      out.prompt_logits.assign(l.data_ptr<float>(), l.data_ptr<float>() + l.numel());
    }
    const int64_t next = pick(last, o, gen);
    sequence.push_back(next);
    out.ids.push_back(next);
    if (std::find(o.stop_ids.begin(), o.stop_ids.end(), next) != o.stop_ids.end()) break;
  }
  return out;
}

}  // namespace rondo
