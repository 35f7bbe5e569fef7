#include "comms/gradient_buckets.h"

#include <algorithm>
#include <numeric>

namespace rondo {

std::vector<GradientBucket> plan_gradient_buckets(const std::vector<size_t>& param_elements,
                                                  size_t trailing_elements, size_t element_bytes,
                                                  size_t bucket_cap_bytes, size_t first_bucket_cap_bytes) {
  const size_t total = std::accumulate(param_elements.begin(), param_elements.end(), size_t{0});
  std::vector<GradientBucket> buckets;
  GradientBucket open;
  size_t end = total + trailing_elements;  // one past the open bucket's last element
  open.count = trailing_elements;
  for (size_t i = param_elements.size(); i-- > 0;) {
    open.params.push_back(i);
    open.count += param_elements[i];
    const size_t cap = buckets.empty() ? first_bucket_cap_bytes : bucket_cap_bytes;
    if (bucket_cap_bytes > 0 && open.count * element_bytes >= cap && i > 0) {
      open.offset = end - open.count;
      end = open.offset;
      buckets.push_back(std::move(open));
      open = GradientBucket{};
    }
  }
  if (open.count > 0 || buckets.empty()) {
    open.offset = end - open.count;
    buckets.push_back(std::move(open));
  }
  for (auto& b : buckets) std::sort(b.params.begin(), b.params.end());
  return buckets;
}

}  // namespace rondo
