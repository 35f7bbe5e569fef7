// Flight-recorder records (comms/timing_recorder.h) as report.proto messages, for step reports
// and flight dumps.
#pragma once

#include <string>
#include <vector>

#include "comms/timing_recorder.h"
#include "proto/report.pb.h"

namespace rondo {

void to_report(const CollectiveRecord& record, report::CollectiveRecord* out);

// Every record, oldest first.
report::FlightDump flight_dump(const std::vector<CollectiveRecord>& records, int rank,
                               const std::string& reason);

}  // namespace rondo
