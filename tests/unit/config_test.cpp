#include <gtest/gtest.h>

#include <fstream>
#include <iterator>

#include "common/errors.h"
#include "orchestrator/config.h"

namespace rondo {
namespace {

// The key named by the ConfigError that parsing `yaml` with `overrides` raises ("" if none).
std::string error_key(const std::string& yaml, const std::vector<std::string>& overrides = {}) {
  try {
    parse_config(yaml, "test.yaml", overrides);
  } catch (const ConfigError& e) {
    return e.key();
  }
  return "";
}

TEST(Config, DefaultsAreValidAndMatchTheIssueExample) {
  const Config c = parse_config(default_config_yaml(), "default");
  EXPECT_EQ(c.parallel.world_size, 2);
  EXPECT_EQ(c.parallel.data_parallel_size(), 2);
  EXPECT_EQ(c.model.hidden_size, 128);
  EXPECT_EQ(c.training.micro_batch_size, 4);
  EXPECT_EQ(c.training.global_batch_size, 8);
}

TEST(Config, OverridesApplyWithTheirTypes) {
  const Config c = parse_config(
      "", "empty", {"training.lr=0.5", "model.num_layers=8", "checkpoint.resume=false", "data.path=builtin"});
  EXPECT_DOUBLE_EQ(c.training.lr, 0.5);
  EXPECT_EQ(c.model.num_layers, 8);
  EXPECT_FALSE(c.checkpoint.resume);
}

TEST(Config, UnknownKeysAndSectionsAreNamed) {
  EXPECT_EQ(error_key("model: {num_layerz: 4}"), "model.num_layerz");
  EXPECT_EQ(error_key("modle: {num_layers: 4}"), "modle");
  EXPECT_EQ(error_key("", {"training.foo=1"}), "training.foo");
  EXPECT_EQ(error_key("", {"nodot=1"}), "nodot");
}

TEST(Config, WrongTypesAreNamed) {
  EXPECT_EQ(error_key("model: {num_layers: four}"), "model.num_layers");
  EXPECT_EQ(error_key("training: {lr: fast}"), "training.lr");
  EXPECT_EQ(error_key("checkpoint: {resume: maybe}"), "checkpoint.resume");
  EXPECT_EQ(error_key("model: {num_layers: [1, 2]}"), "model.num_layers");
  EXPECT_EQ(error_key("model: {num_layers: 2.5}"), "model.num_layers");
  EXPECT_EQ(error_key("", {"launch.bind=socket"}), "launch.bind");
  EXPECT_EQ(error_key("", {"comms.timing_recorder_blocks=-1"}), "comms.timing_recorder_blocks");
  EXPECT_EQ(error_key("", {"comms.timing_recorder=false", "comms.timing_recorder_blocks=10"}),
            "comms.timing_recorder_blocks");
  EXPECT_EQ(error_key("", {"comms.timing_recorder_blocks=10"}), "");
  EXPECT_EQ(error_key("", {"comms.timing_recorder_blocks=10", "faults.policy=restart"}),
            "comms.timing_recorder_blocks");
  EXPECT_EQ(error_key("", {"comms.timing_recorder_blocks=10", "pipeline.async=true",
                           "parallel.pipeline_model_parallel_size=2"}),
            "comms.timing_recorder_blocks");
}

TEST(Config, ImpossibleLayoutsAreNamed) {
  EXPECT_EQ(error_key("", {"parallel.world_size=3", "parallel.tensor_model_parallel_size=2"}),
            "parallel.world_size");
  EXPECT_EQ(error_key("", {"parallel.world_size=4", "parallel.tensor_model_parallel_size=3"}),
            "parallel.world_size");
  EXPECT_EQ(error_key("", {"training.global_batch_size=6"}), "training.global_batch_size");
  EXPECT_EQ(error_key("", {"model.num_attention_heads=5"}), "model.num_attention_heads");
  EXPECT_EQ(error_key("", {"parallel.world_size=4", "parallel.pipeline_model_parallel_size=4",
                           "model.num_layers=6", "training.global_batch_size=4"}),
            "parallel.pipeline_model_parallel_size");
  EXPECT_EQ(error_key("", {"parallel.expert_model_parallel_size=3"}), "parallel.expert_model_parallel_size");
  EXPECT_EQ(error_key("", {"model.vocab_size=100"}), "model.vocab_size");
  EXPECT_EQ(error_key("", {"pipeline.schedule=magic"}), "pipeline.schedule");
  EXPECT_EQ(error_key("", {"data.path=/nonexistent/file.txt"}), "data.path");
  EXPECT_EQ(error_key("", {"training.optimizer=adagrad"}), "training.optimizer");
  EXPECT_EQ(error_key("", {"training.cpu_kernels=mkl"}), "training.cpu_kernels");
  EXPECT_EQ(error_key("", {"training.cpu_kernels=aten"}), "");
  EXPECT_EQ(error_key("", {"pipeline.roundpipe_dispatch=random"}), "pipeline.roundpipe_dispatch");
  EXPECT_EQ(error_key("", {"training.emulate_compute=true", "pipeline.schedule=roundpipe",
                           "parallel.world_size=2", "parallel.pipeline_model_parallel_size=2"}),
            "");
  // RoundPipe's backward recomputes its stage anyway.
  EXPECT_EQ(error_key("", {"model.recompute_granularity=full", "pipeline.schedule=roundpipe",
                           "parallel.world_size=2", "parallel.pipeline_model_parallel_size=2"}),
            "model.recompute_granularity");
  EXPECT_EQ(error_key("", {"model.recompute_granularity=selective", "pipeline.schedule=roundpipe",
                           "parallel.world_size=2", "parallel.pipeline_model_parallel_size=2"}),
            "");
}

TEST(Config, TheModelFamilyIsOneThePlannerKnows) {
  EXPECT_EQ(error_key("", {"model.family=gpt"}), "");
  EXPECT_EQ(error_key("", {"model.family=llama", "model.num_query_groups=2"}), "");
  EXPECT_EQ(error_key("", {"model.family=mamba"}), "model.family");
}

TEST(Config, GroupedQueryAttentionAndRotaryKeysAreChecked) {
  EXPECT_EQ(error_key("", {"model.family=qwen3", "model.num_query_groups=1", "model.rope_scaling_factor=8"}),
            "");
  EXPECT_EQ(error_key("", {"model.family=llama", "model.num_query_groups=3"}), "model.num_query_groups");
  EXPECT_EQ(error_key("", {"model.num_query_groups=2"}), "model.num_query_groups");  // gpt
  EXPECT_EQ(error_key("", {"model.rotary_base=500000"}), "model.rotary_base");       // gpt
  EXPECT_EQ(error_key("", {"model.family=llama", "model.hidden_size=132", "model.num_attention_heads=44"}),
            "model.num_attention_heads");  // head size 3: odd
  EXPECT_EQ(error_key("", {"model.family=llama", "model.rope_scaling_factor=0.5"}),
            "model.rope_scaling_factor");
  EXPECT_EQ(error_key("", {"model.family=llama", "model.norm_epsilon=0"}), "model.norm_epsilon");
}

TEST(Config, ChunkedTrainingKeysAreChecked) {
  EXPECT_EQ(error_key("", {"data.chunk_size=32", "data.pack=true", "data.chunk_balance=cost"}), "");
  EXPECT_EQ(error_key("", {"data.chunk_size=-1"}), "data.chunk_size");
  EXPECT_EQ(error_key("", {"data.chunk_size=4096", "model.seq_length=128"}), "data.chunk_size");
  EXPECT_EQ(error_key("", {"data.chunk_size=32", "data.chunk_balance=flops"}), "data.chunk_balance");
  EXPECT_EQ(error_key("", {"data.chunk_size=32", "data.chunks_in_memory=0"}), "data.chunks_in_memory");
  // With pipeline parallelism the chunks are gpipe's or 1f1b's microbatches, computed for real.
  const std::vector<std::string> pp2 = {"data.chunk_size=32", "parallel.world_size=2",
                                        "parallel.pipeline_model_parallel_size=2"};
  const auto with = [&](std::vector<std::string> extra) {
    extra.insert(extra.begin(), pp2.begin(), pp2.end());
    return extra;
  };
  EXPECT_EQ(error_key("", with({"pipeline.schedule=1f1b"})), "");
  EXPECT_EQ(error_key("", with({"pipeline.schedule=gpipe", "data.pack=true"})), "");
  EXPECT_EQ(error_key("", with({"pipeline.schedule=zb_h1"})), "data.chunk_size");
  EXPECT_EQ(error_key("", with({"pipeline.schedule=1f1b", "training.emulate_compute=true"})),
            "data.chunk_size");
}

TEST(Config, StagePartitionsMustFitTheLayersAndTheStages) {
  const std::vector<std::string> pp4 = {"parallel.world_size=4", "parallel.pipeline_model_parallel_size=4",
                                        "model.num_layers=6", "training.global_batch_size=4"};
  const auto with = [&](std::vector<std::string> extra) {
    extra.insert(extra.begin(), pp4.begin(), pp4.end());
    return extra;
  };
  // Uneven: 6 layers over 4 ranks, the LM head alone on the last.
  EXPECT_EQ(error_key("", with({"pipeline.stage_partition=2,2,2,0"})), "");
  EXPECT_EQ(error_key("", with({"pipeline.stage_partition=2,2,2,1"})),
            "pipeline.stage_partition");                                                         // 7 layers
  EXPECT_EQ(error_key("", with({"pipeline.stage_partition=3,3"})), "pipeline.stage_partition");  // 2 stages
  EXPECT_EQ(error_key("", with({"pipeline.stage_partition=2,2,a,0"})), "pipeline.stage_partition");
  EXPECT_EQ(error_key("", with({"pipeline.stage_partition=2,2,2,0", "pipeline.schedule=roundpipe"})),
            "pipeline.stage_partition");
  EXPECT_EQ(error_key("", with({"pipeline.stage_partition=3,3|0,6"})), "pipeline.stage_partition");
  // looped_bfs with two chunks per rank: eight stages.
  EXPECT_EQ(error_key("", with({"pipeline.stage_partition=1,1,1,1,1,1,0,0", "pipeline.schedule=looped_bfs",
                                "parallel.virtual_pipeline_model_parallel_size=2"})),
            "");
}

TEST(Config, TheLargestValidWorldKeepsTheGlobalBatchAndTheModelLayout) {
  const auto world = [](const std::vector<std::string>& sets, int64_t at_most) {
    return largest_valid_world(parse_config("", "x", sets), at_most);
  };
  // Micro-batches of 2 in a global batch of 8: 3 ranks cannot share it, 2 can. The links to avoid
  // and the ranks' hosts are numbered for the old world: dropped.
  EXPECT_EQ(world({"parallel.world_size=4", "training.micro_batch_size=2", "training.global_batch_size=8",
                   "comms.avoid_links=0>1,3>0", "topology.leaves=2", "topology.hosts_per_leaf=2",
                   "topology.rank_hosts=0,1,2,3"},
                  3),
            2);
  EXPECT_EQ(
      world({"parallel.world_size=4", "training.micro_batch_size=1", "training.global_batch_size=12"}, 3), 3);
  // Two pipeline stages: whole pipelines only.
  EXPECT_EQ(world({"parallel.world_size=6", "parallel.pipeline_model_parallel_size=2",
                   "training.micro_batch_size=1", "training.global_batch_size=6"},
                  5),
            4);
  EXPECT_EQ(world({"parallel.world_size=2", "parallel.pipeline_model_parallel_size=2"}, 1), 0);
  EXPECT_EQ(world({"parallel.world_size=2"}, 5), 2);  // never more than the config's
}

TEST(Config, InvalidYamlNamesTheSource) { EXPECT_EQ(error_key("model: [unclosed"), "test.yaml"); }

TEST(Config, EffectiveYamlRoundTrips) {
  const Config a = parse_config(
      "", "x", {"training.lr=0.00012345", "data.path=builtin", "launch.mpirun_args=--mca btl self"});
  const Config b = parse_config(to_yaml(a), "roundtrip");
  EXPECT_EQ(to_yaml(a), to_yaml(b));
  EXPECT_DOUBLE_EQ(b.training.lr, 0.00012345);
  EXPECT_EQ(b.launch.mpirun_args, "--mca btl self");
}

TEST(Config, FloatsPrintInShortestRoundTripForm) {
  EXPECT_EQ(shortest_float(0.9), "0.9");
  EXPECT_EQ(shortest_float(3.0), "3.0");
  EXPECT_EQ(shortest_float(1e-30), "1e-30");
  EXPECT_EQ(shortest_float(0.1 + 0.2), "0.30000000000000004");  // not 0.3: that is another double
  const std::string yaml = to_yaml(parse_config("", "x", {"training.adam_beta1=0.9"}));
  EXPECT_NE(yaml.find("adam_beta1: 0.9\n"), std::string::npos) << yaml;
}

}  // namespace
}  // namespace rondo

namespace rondo {
namespace {

TEST(Config, EveryKeyIsDocumented) {
  std::ifstream in(std::string(RONDO_SOURCE_DIR) + "/docs/config.md");
  ASSERT_TRUE(in) << "docs/config.md missing";
  const std::string doc((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  for (const auto& key : config_schema()) {
    std::string needle(1, '`');  // built by appends: GCC 12 warns falsely on "`" + string
    needle.append(key.full_name()).push_back('`');
    EXPECT_NE(doc.find(needle), std::string::npos)
        << key.full_name() << " is not in docs/config.md (regenerate with `rondo config --keys`)";
  }
}

}  // namespace
}  // namespace rondo
