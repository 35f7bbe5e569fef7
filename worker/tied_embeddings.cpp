#include "worker/tied_embeddings.h"

#include <map>
#include <tuple>
#include <vector>

#include "common/errors.h"

namespace rondo {

std::unique_ptr<TiedEmbeddings> TiedEmbeddings::make(const plan::Plan& plan, int rank, Communicator& world,
                                                     TimingRecorder* recorder) {
  // LoRA freezes the matrix: both copies keep their (equal) values, nothing to sum.
  if (!plan.model().tie_embeddings() || plan.training().lora_rank() > 0) return nullptr;
  // Per replica (its data-, context- and tensor-parallel coordinates): the ranks holding the
  // embedding and the LM head.
  using Replica = std::tuple<uint32_t, uint32_t, uint32_t>;
  std::map<Replica, std::pair<int, int>> ends;
  for (int r = 0; r < plan.ranks_size(); ++r) {
    const auto& me = plan.ranks(r);
    auto& [first, last] =
        ends.try_emplace({me.coords().dp(), me.coords().cp(), me.coords().tp()}, -1, -1).first->second;
    for (uint32_t s : me.stages()) {
      if (plan.stages(static_cast<int>(s)).has_embedding()) first = r;
      if (plan.stages(static_cast<int>(s)).has_lm_head()) last = r;
    }
  }
  std::unique_ptr<Communicator> mine;
  std::vector<int> members;
  bool holds_copy = false;
  for (const auto& [replica, pair] : ends) {  // collective: every rank, every pair, in one order
    const auto [first, last] = pair;
    if (first < 0 || last < 0)
      throw PlanError("model.tie_embeddings: a replica without embedding or LM head");
    if (first == last) continue;
    std::vector<int> ranks{std::min(first, last), std::max(first, last)};
    auto sub = world.split(ranks);
    if (sub) {
      mine = std::move(sub);
      members = std::move(ranks);
      holds_copy = rank == last;
    }
  }
  if (!mine) return nullptr;
  mine->set_timeout(world.timeout());
  return std::unique_ptr<TiedEmbeddings>(new TiedEmbeddings(std::move(mine), members, recorder, holds_copy));
}

TiedEmbeddings::TiedEmbeddings(std::unique_ptr<Communicator> pair, std::vector<int> world_ranks,
                               TimingRecorder* recorder, bool holds_copy)
    : pair_(std::move(pair)), collectives_(*pair_, recorder), holds_copy_(holds_copy) {
  auto name = "tied@" + std::to_string(world_ranks.front());
  collectives_.set_group(std::move(name), std::move(world_ranks));
}

torch::Tensor TiedEmbeddings::matrix(StagedModel& model) const {
  const std::string name = holds_copy_ ? "lm_head.weight" : "token_embedding.weight";
  for (const auto& item : model->named_parameters()) {
    if (item.key() == name) return item.value();
  }
  throw PlanError("model.tie_embeddings: this rank holds no " + name);
}

void TiedEmbeddings::reduce(StagedModel& model) {
  auto grad = matrix(model).mutable_grad();
  if (!grad.defined() || !grad.is_contiguous())
    throw PlanError("model.tie_embeddings: the tied matrix has no contiguous gradient to sum");
  collectives_.allreduce(grad.data_ptr(), static_cast<size_t>(grad.numel()), DType::kFloat32, ReduceOp::kSum);
}

torch::Tensor TiedEmbeddings::copy_gradient(StagedModel& model) const {
  return holds_copy_ ? matrix(model).grad() : torch::Tensor();
}

}  // namespace rondo
