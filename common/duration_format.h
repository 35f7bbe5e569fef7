// Durations for people: progress lines' ETAs and run summaries.
#pragma once

#include <string>

namespace rondo {

// "4m07s" under an hour, "2h13m" from an hour on (rounded to the second); "?" for a negative or
// non-finite value (an ETA not known yet).
std::string format_duration(double seconds);

}  // namespace rondo
