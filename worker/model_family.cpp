#include "worker/model_family.h"

#include <stdexcept>

#include "worker/gpt_family.h"
#include "worker/llama_family.h"

namespace rondo {

namespace {

const std::vector<ModelFamily>& families() {
  static const std::vector<ModelFamily> table{gpt_family(), llama_family(), qwen2_family(), qwen3_family()};
  return table;
}

}  // namespace

const ModelFamily& model_family(const std::string& name) {
  for (const auto& f : families()) {
    if (f.name == name) return f;
  }
  std::string known;
  for (const auto& n : model_family_names()) known += (known.empty() ? "" : ", ") + n;
  throw std::invalid_argument("model.family: no model family '" + name +
                              "' in this worker (families: " + known + ")");
}

std::vector<std::string> model_family_names() {
  std::vector<std::string> out;
  for (const auto& f : families()) out.push_back(f.name);
  return out;
}

void adopt_submodules(torch::nn::Module& holder, const torch::nn::Module& part) {
  for (const auto& child : part.named_children()) holder.register_module(child.key(), child.value());
}

}  // namespace rondo
