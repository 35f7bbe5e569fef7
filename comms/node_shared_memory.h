// NodeSharedMemory: one block of host memory that every rank of a communicator maps, for ranks
// that share a node (POSIX shared memory). RoundPipe's stateless workers keep a pipeline
// replica's weights, gradients and boundary activations in it, so that any worker runs any
// stage's task in place.
//
// create() is collective over `group`: its rank 0 creates the block (zero-filled), the others map
// it, and the name is unlinked as soon as every rank has mapped it, so nothing outlives the
// processes, whatever way they end. A rank on another node cannot map it: every rank then throws
// CommError naming the first rank that failed.
#pragma once

#include <cstddef>
#include <memory>
#include <string>

#include "comms/communicator.h"

namespace rondo {

class NodeSharedMemory {
 public:
  static std::unique_ptr<NodeSharedMemory> create(Communicator& group, size_t bytes,
                                                  const std::string& purpose);
  ~NodeSharedMemory();
  NodeSharedMemory(const NodeSharedMemory&) = delete;
  NodeSharedMemory& operator=(const NodeSharedMemory&) = delete;

  void* data() const { return data_; }
  size_t size() const { return size_; }

 private:
  NodeSharedMemory(void* data, size_t size) : data_(data), size_(size) {}
  void* data_;
  size_t size_;
};

}  // namespace rondo
