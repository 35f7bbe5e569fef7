#include "control/flight_records.h"

namespace rondo {

void to_report(const CollectiveRecord& r, report::CollectiveRecord* out) {
  out->set_seq(r.seq);
  out->set_op(collective_op_name(r.op));
  out->set_bytes(r.bytes);
  out->set_group_size(r.group_size);
  out->set_enter_ns(r.enter_ns);
  out->set_start_ns(r.start_ns);
  out->set_end_ns(r.end_ns);
  out->set_completed(r.completed);
  out->set_waiting_send_peer(r.waiting_send_peer);
  out->set_waiting_recv_peer(r.waiting_recv_peer);
  out->set_dropped_connections(r.dropped_connections);
  out->set_group(r.group);
  out->set_group_seq(r.group_seq);
  for (const auto& e : r.exchanges) {
    auto* x = out->add_exchanges();
    x->set_send_peer(e.send_peer);
    x->set_recv_peer(e.recv_peer);
    x->set_bytes(e.bytes);
    x->set_posted_ns(e.posted_ns);
    x->set_recv_ns(e.recv_ns);
    x->set_done_ns(e.done_ns);
  }
  for (const auto& c : r.connections) {
    auto* conn = out->add_connections();
    conn->set_send_peer(c.send_peer);
    conn->set_recv_peer(c.recv_peer);
    conn->set_steps(c.steps);
    conn->set_bytes(c.bytes);
    conn->set_total_ns(c.total_ns);
    conn->set_max_ns(c.max_ns);
  }
}

report::FlightDump flight_dump(const std::vector<CollectiveRecord>& records, int rank,
                               const std::string& reason) {
  report::FlightDump dump;
  dump.set_rank(rank);
  dump.set_reason(reason);
  dump.set_time_ns(TimingRecorder::wall_ns());
  for (const auto& r : records) to_report(r, dump.add_records());
  return dump;
}

}  // namespace rondo
