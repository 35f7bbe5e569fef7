"""Two ranks on two "hosts" (network namespaces joined by a bridge, scripts/netns-hosts), host 1's
link behind a tbf qdisc: mpirun starts the ranks through its rsh agent on the hostfile, they reduce
gradients over real TCP through the veth pairs and report to the coordinator across the bridge.
The loss trajectory equals the same job's on one host, and the throttled link carried the traffic.
Needs root (namespaces); CTest's cleanup fixture (system.netns_hosts_down) removes the namespaces
however this test ends."""
import os
import re
import subprocess
import tempfile

from rondo_testlib import TINY, Context, losses

ctx = Context()
SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "scripts", "netns-hosts")
hosts = os.environ.get("RONDO_NETNS_DIR") or tempfile.mkdtemp(prefix="rondo-netns-")
SETS = TINY + ["parallel.world_size=2", "training.train_iters=10"]


def netns_hosts(*args):
    p = subprocess.run([SCRIPT, *args], capture_output=True, text=True, timeout=120)
    if p.returncode != 0:
        raise AssertionError(f"scripts/netns-hosts {' '.join(args)} failed: {p.stdout}{p.stderr}")


def bytes_sent(dev):
    """Bytes the root qdisc of `dev` (in this namespace) has sent."""
    out = subprocess.run(["tc", "-s", "qdisc", "show", "dev", dev], capture_output=True, text=True, check=True).stdout
    m = re.search(r"Sent (\d+) bytes", out)
    return int(m.group(1)) if m else 0


try:
    netns_hosts("up", hosts, "2", "1gbit")
    launch = [f"launch.{key}={open(os.path.join(hosts, key)).read().strip()}"
              for key in ("mpirun_args", "control_address")]
    ctx.check(bytes_sent("v-rondo-ns1") < 1 << 20, "the throttled link is idle before the job")
    two_hosts, proc = ctx.run("two_hosts", SETS + launch)
    sent = bytes_sent("v-rondo-ns1")
    # 10 steps of a gradient allreduce of the tiny model's ~0.4 MB pass through host 1's link.
    print(f"tbf-throttled link to host 1 sent {sent} bytes")
    ctx.check(sent > 2 << 20, f"the ranks' traffic crossed host 1's throttled link ({sent} bytes)")
    ctx.check(re.search(r"launching 2 workers with \S*mpirun", proc.stdout + proc.stderr) is not None,
              "mpirun launched both workers")
    one_host, _ = ctx.run("one_host", SETS)
    a, b = losses(one_host), losses(two_hosts)
    ctx.check(sorted(b) == list(range(1, 11)), "the two-host run trained every step")
    worst = max(abs(a[s] - b[s]) for s in a)
    ctx.check(worst == 0.0, f"the loss trajectory equals the one-host run's (worst {worst:.3e})")
finally:
    netns_hosts("down", hosts)
ctx.finish()
