// Gradient buckets: how one flat gradient buffer is cut into the allreduce buckets that
// BucketedAllreduce sends while the backward pass still runs (PyTorch DDP's bucketing).
//
// Parameters are listed in buffer order; the backward produces their gradients roughly in reverse,
// so buckets fill from the buffer's end: bucket 0 ends at the buffer's end and holds the last
// parameters. A bucket is a contiguous range of whole parameters that grows until it reaches its
// cap (the first bucket a smaller cap, so that communication starts early); only the last bucket
// may stay under its cap. Elements after the last parameter (e.g. a loss slot) belong to bucket 0.
#pragma once

#include <cstddef>
#include <vector>

namespace rondo {

struct GradientBucket {
  size_t offset = 0;           // first element in the flat buffer
  size_t count = 0;            // elements
  std::vector<size_t> params;  // the parameters in it (indices into the parameter list)
};

// `param_elements[i]`: elements of parameter i, laid out back to back from element 0, followed by
// `trailing_elements`. Caps are in bytes of `element_bytes` each; a cap of 0 puts everything in
// one bucket.
std::vector<GradientBucket> plan_gradient_buckets(const std::vector<size_t>& param_elements,
                                                  size_t trailing_elements, size_t element_bytes,
                                                  size_t bucket_cap_bytes, size_t first_bucket_cap_bytes);

}  // namespace rondo
