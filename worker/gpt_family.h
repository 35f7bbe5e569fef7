// The GPT family (model.family gpt): learned token and position embeddings; pre-LN blocks of
// causal multi-head self-attention and a GELU MLP, each with a residual; a final LayerNorm and an
// untied LM head. float32. Initialised GPT-2 style: N(0, 0.02), the residual projections scaled by
// 1/sqrt(2 * num_layers), biases zero, norms one. Its parameter names ("block7.attn.qkv.weight",
// "block7.fc.weight", "lm_head.weight") are the checkpoint keys every rondo version has written.
#pragma once

#include "worker/model_family.h"

namespace rondo {

ModelFamily gpt_family();

}  // namespace rondo
