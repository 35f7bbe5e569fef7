// CommandRelay (worker/command_relay.h): commands that reach a rank before its trainer runs are
// kept and applied once it does, in order; of several ring changes only the newest; a flight
// dump with nothing recorded is dropped; after detach nothing is applied.
#include "worker/command_relay.h"

#include <gtest/gtest.h>

#include <vector>

namespace rondo {
namespace {

control::Command command(control::Command::Kind kind, uint64_t rings_version = 0) {
  control::Command c;
  c.set_kind(kind);
  if (kind == control::Command::SET_RINGS) c.mutable_rings()->set_version(rings_version);
  return c;
}

TEST(CommandRelay, KeepsWhatArrivesBeforeTheTrainerAndAppliesItInOrder) {
  CommandRelay relay;
  relay.deliver(command(control::Command::SET_RINGS, 1));
  relay.deliver(command(control::Command::DUMP_FLIGHT));
  relay.deliver(command(control::Command::CHECKPOINT_NOW));
  relay.deliver(command(control::Command::SET_RINGS, 2));
  relay.deliver(command(control::Command::STOP));
  EXPECT_EQ(relay.kept(), 3u) << "one ring change (the newest), the checkpoint, the stop";
  std::vector<control::Command> applied;
  relay.attach([&](const control::Command& c) { applied.push_back(c); });
  ASSERT_EQ(applied.size(), 3u);
  EXPECT_EQ(applied[0].kind(), control::Command::CHECKPOINT_NOW);
  EXPECT_EQ(applied[1].kind(), control::Command::SET_RINGS);
  EXPECT_EQ(applied[1].rings().version(), 2u);
  EXPECT_EQ(applied[2].kind(), control::Command::STOP);
  relay.deliver(command(control::Command::DUMP_FLIGHT));
  EXPECT_EQ(applied.size(), 4u) << "once attached, every command goes straight through";
  relay.detach();
  relay.deliver(command(control::Command::STOP));
  EXPECT_EQ(applied.size(), 4u);
  EXPECT_EQ(relay.kept(), 1u);
}

}  // namespace
}  // namespace rondo
