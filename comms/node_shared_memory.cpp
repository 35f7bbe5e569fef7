#include "comms/node_shared_memory.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cerrno>
#include <climits>
#include <cstring>

#include "common/errors.h"

namespace rondo {

namespace {

constexpr int kNameTag = 0x5348;  // "SH"
using Name = std::array<char, 96>;

// Maps `bytes` of the shared-memory object `fd`; returns null (and sets `error`) on failure.
void* map(int fd, size_t bytes, std::string& error) {
  void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) {
    error = std::string("mmap: ") + std::strerror(errno);
    return nullptr;
  }
  return p;
}

}  // namespace

std::unique_ptr<NodeSharedMemory> NodeSharedMemory::create(Communicator& group, size_t bytes,
                                                           const std::string& purpose) {
  static std::atomic<int> serial{0};
  const int rank = group.rank();
  Name name{};
  std::string error;
  void* data = nullptr;
  if (rank == 0) {
    std::snprintf(name.data(), name.size(), "/rondo-%d-%d", static_cast<int>(::getpid()), serial++);
    const int fd = ::shm_open(name.data(), O_CREAT | O_EXCL | O_RDWR, 0600);
    if (fd < 0) {
      error = std::string("shm_open: ") + std::strerror(errno);
    } else {
      if (::ftruncate(fd, static_cast<off_t>(bytes)) != 0) {
        error = std::string("ftruncate: ") + std::strerror(errno) + " (is /dev/shm large enough?)";
      } else {
        data = map(fd, bytes, error);
      }
      ::close(fd);
    }
    if (!error.empty()) name[0] = '\0';
    for (int r = 1; r < group.size(); ++r) group.send(name.data(), name.size(), r, kNameTag);
  } else {
    group.recv(name.data(), name.size(), 0, kNameTag);
    if (name[0] == '\0') {
      error = "rank 0 of the group could not create it";
    } else {
      const int fd = ::shm_open(name.data(), O_RDWR, 0);
      struct stat st {};
      if (fd < 0) {
        error =
            std::string("shm_open: ") + std::strerror(errno) + " (is this rank on another node than rank 0?)";
      } else if (::fstat(fd, &st) != 0 || static_cast<size_t>(st.st_size) != bytes) {
        error = "the block has the wrong size (another job's?)";
        ::close(fd);
      } else {
        data = map(fd, bytes, error);
        ::close(fd);
      }
    }
  }
  // Every rank has mapped the block or failed: unlink the name, then agree on the outcome.
  int first_failed = error.empty() ? INT_MAX : rank;
  group.native_allreduce(&first_failed, 1, DType::kInt32, ReduceOp::kMin);
  if (rank == 0 && name[0] != '\0') ::shm_unlink(name.data());
  if (first_failed != INT_MAX) {
    if (data) ::munmap(data, bytes);
    throw CommError(
        rank, first_failed,
        "cannot share " + std::to_string(bytes) + " bytes of node memory for " + purpose + ": " +
            (error.empty() ? "rank " + std::to_string(first_failed) + " of the group failed" : error) +
            "; the ranks that share it must run on one node");
  }
  return std::unique_ptr<NodeSharedMemory>(new NodeSharedMemory(data, bytes));
}

NodeSharedMemory::~NodeSharedMemory() { ::munmap(data_, size_); }

}  // namespace rondo
