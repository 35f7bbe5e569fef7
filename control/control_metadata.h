// The metadata every control-plane call carries (proto/control.proto), shared by the server and
// its clients: the job's token, for a rank's call its rank and attempt, and the body's length, so
// that the server can refuse a call on its metadata alone, before it reads the body.
#pragma once

namespace rondo {

inline constexpr const char* kTokenMetadata = "rondo-token";
inline constexpr const char* kRankMetadata = "rondo-rank";
inline constexpr const char* kAttemptMetadata = "rondo-attempt";
// The serialized request's bytes: required, so that a body over the limit is refused unread.
inline constexpr const char* kLengthMetadata = "rondo-length";

}  // namespace rondo
