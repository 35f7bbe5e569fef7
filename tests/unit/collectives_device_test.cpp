// Collectives that reduce or copy on the host refuse a backend whose buffers live on a device,
// naming the backend and the way out, before touching a pointer. The communicator here is a
// stand-in for such a backend (no GPU on this machine): every transfer it is asked for fails.
#include <gtest/gtest.h>

#include <string>

#include "common/errors.h"
#include "comms/collectives.h"
#include "comms/communicator.h"

namespace rondo {
namespace {

class DeviceBackendStandIn : public Communicator {
 public:
  int rank() const override { return 0; }
  int size() const override { return 2; }
  std::string backend_name() const override { return "device-stand-in"; }
  bool host_buffers() const override { return false; }
  void send(const void*, size_t, int, int) override { fail(); }
  void recv(void*, size_t, int, int) override { fail(); }
  void sendrecv(const void*, size_t, int, void*, size_t, int, int) override { fail(); }
  void native_allreduce(void*, size_t, DType, ReduceOp) override { fail(); }
  void native_alltoall(const void*, void*, size_t) override { fail(); }
  void native_barrier() override { ++native_barriers; }
  std::unique_ptr<Communicator> split(const std::vector<int>&) override { return nullptr; }
  int native_barriers = 0;

 private:
  [[noreturn]] static void fail() {
    throw std::logic_error("a host-buffer collective reached the device backend");
  }
};

TEST(CollectivesOnADeviceBackend, HostCollectivesRefuseNamingTheBackend) {
  DeviceBackendStandIn comm;
  Collectives coll(comm, nullptr);
  float* device_like = nullptr;  // never dereferenced: the check comes first
  const auto expect_refusal = [&](const char* what, auto&& call) {
    try {
      call();
      ADD_FAILURE() << what << " ran";
    } catch (const CommError& e) {
      EXPECT_NE(std::string(e.what()).find("device-stand-in"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("comms.allreduce=native"), std::string::npos) << e.what();
    }
  };
  expect_refusal("allreduce", [&] { coll.allreduce(device_like, 4, DType::kFloat32, ReduceOp::kSum); });
  expect_refusal("reduce_scatter",
                 [&] { coll.reduce_scatter(device_like, device_like, 2, DType::kFloat32, ReduceOp::kSum); });
  expect_refusal("allgather", [&] { coll.allgather(device_like, device_like, 2, DType::kFloat32); });
  expect_refusal("alltoall", [&] { coll.alltoall(device_like, device_like, 2, DType::kFloat32); });
  coll.barrier();  // the backend's own
  EXPECT_EQ(comm.native_barriers, 1);
}

}  // namespace
}  // namespace rondo
