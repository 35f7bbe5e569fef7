// The Llama-style families (model.family llama, qwen3) as stage parts: token embeddings only
// (positions enter as rotations of each attention's queries and keys), pre-norm blocks with
// RMSNorm, grouped-query attention without biases, a SwiGLU MLP (down(silu(gate x) * up x)), a
// final RMSNorm and an untied LM head. qwen3 adds RMSNorm over each head's queries and keys.
// Parameter names follow rondo's GPT where the parts agree ("block3.attn.qkv.weight": queries,
// then the groups' keys, then their values) and Hugging Face's otherwise ("block3.gate.weight").
#pragma once

#include "worker/model_family.h"

namespace rondo {

ModelFamily llama_family();
ModelFamily qwen2_family();
ModelFamily qwen3_family();

}  // namespace rondo
