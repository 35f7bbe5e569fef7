#!/usr/bin/env bash
# Two (or more) "hosts" on this machine as network namespaces joined by a bridge, so that a rondo
# job's ranks talk over real TCP through veth pairs, and one host's link can be throttled with a
# tbf qdisc: a real slow link for benchmarks (see ../shared/KNOWHOW.md). Needs root and iproute2.
#
#   bench/netns_hosts.sh up DIR [N] [RATE]   # N hosts (default 2); RATE (e.g. 200mbit) throttles host 1
#   bench/netns_hosts.sh down DIR            # removes exactly what `up` made
# `up` writes DIR/hostfile, DIR/agent (mpirun's rsh agent) and DIR/mpirun_args (for launch.mpirun_args).
set -euo pipefail
cmd=${1:?up|down}
dir=${2:?directory for the hostfile and agent}
prefix=rondo-ns
bridge=rondobr0
net=10.201.0

down() {
  if [ -f "$dir/hosts.list" ]; then
    while read -r host; do
      ip netns del "$host" 2>/dev/null || true
      ip link del "v-$host" 2>/dev/null || true
    done <"$dir/hosts.list"
  fi
  ip link del "$bridge" 2>/dev/null || true
  rm -f "$dir/hosts.list" "$dir/hostfile" "$dir/agent" "$dir/mpirun_args"
}

if [ "$cmd" = down ]; then
  down
  exit 0
fi
n=${3:-2}
rate=${4:-}
mkdir -p "$dir"
down
ip link add "$bridge" type bridge
ip addr add "$net.254/24" dev "$bridge"
ip link set "$bridge" up
: >"$dir/hosts.list"
: >"$dir/hostfile"
for k in $(seq 1 "$n"); do
  host="$prefix$k"
  echo "$host" >>"$dir/hosts.list"
  ip netns add "$host"
  ip link add "v-$host" type veth peer name eth0 netns "$host"
  ip link set "v-$host" master "$bridge" up
  ip netns exec "$host" ip addr add "$net.$k/24" dev eth0
  ip netns exec "$host" ip link set eth0 up
  ip netns exec "$host" ip link set lo up
  echo "$host slots=1" >>"$dir/hostfile"
done
if [ -n "$rate" ]; then
  # Both directions of host 1's link: egress of its veth end in the namespace, and egress of the
  # bridge-side end (traffic towards host 1).
  ip netns exec "${prefix}1" tc qdisc add dev eth0 root tbf rate "$rate" burst 64kb latency 50ms
  tc qdisc add dev "v-${prefix}1" root tbf rate "$rate" burst 64kb latency 50ms
fi
cat >"$dir/agent" <<'AGENT'
#!/bin/sh
# mpirun's rsh agent: run the command inside the network namespace named as the host.
while [ $# -gt 0 ]; do case "$1" in -*) shift ;; *) break ;; esac; done
host=$1
shift
exec ip netns exec "$host" /bin/sh -c "$*"
AGENT
chmod +x "$dir/agent"
# rtc ^hwloc: orted's hwloc shared-memory topology (unneeded: ranks are not bound) crashed it now and then.
echo "--hostfile $dir/hostfile --mca plm_rsh_agent $dir/agent --mca rtc ^hwloc --mca btl tcp,self" \
  "--mca btl_tcp_if_include $net.0/24 --mca oob_tcp_if_include $net.0/24" >"$dir/mpirun_args"
echo "netns_hosts: $n hosts up${rate:+, host 1 throttled to $rate}; launch.mpirun_args in $dir/mpirun_args" >&2
