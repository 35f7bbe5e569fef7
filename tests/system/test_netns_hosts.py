"""Two ranks on two "hosts" (network namespaces joined by a bridge, scripts/netns-hosts), host 1's
link behind a tbf qdisc: mpirun starts the ranks through its rsh agent on the hostfile, they reduce
gradients over real TCP through the veth pairs and report to the coordinator across the bridge.
The loss trajectory equals the same job's on one host, and the throttled link carried the traffic.
The coordinator listens on the bridge, beyond loopback: the control plane is TLS with a certificate
made for the job, which the workers pin by its fingerprint.
Needs root (namespaces); CTest's cleanup fixture (system.netns_hosts_down) removes the namespaces
however this test ends."""
import base64
import hashlib
import json
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


def certificate_sha256(path):
    """The SHA-256 fingerprint of a PEM certificate's DER, lowercase hex."""
    pem = open(path).read()
    body = pem.split("-----BEGIN CERTIFICATE-----")[1].split("-----END CERTIFICATE-----")[0]
    return hashlib.sha256(base64.b64decode("".join(body.split()))).hexdigest()


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
    # The control plane beyond loopback: TLS, the workers pinning the job's certificate.
    crt = os.path.join(two_hosts, "control.crt")
    state = json.load(open(os.path.join(two_hosts, "state.json")))
    ctx.check(os.path.exists(crt) and state.get("control_cert_sha256") == certificate_sha256(crt),
              f"the job's TLS certificate is in control.crt, its fingerprint in state.json "
              f"({state.get('control_cert_sha256')})")
    ctx.check("TLS (certificate sha256 " in proc.stdout + proc.stderr, "the coordinator says it serves TLS")
    last = [int(r.get("last_report", {}).get("step", 0)) for r in state["ranks"]]
    ctx.check(state["progress"]["step"] == 10 and last == [10, 10],
              f"every rank's reports reached the coordinator over TLS: last steps {last}")
    one_host, _ = ctx.run("one_host", SETS)
    ctx.check(not os.path.exists(os.path.join(one_host, "control.crt")), "on loopback the control plane is plaintext")
    a, b = losses(one_host), losses(two_hosts)
    ctx.check(sorted(b) == list(range(1, 11)), "the two-host run trained every step")
    worst = max(abs(a[s] - b[s]) for s in a)
    ctx.check(worst == 0.0, f"the loss trajectory equals the one-host run's (worst {worst:.3e})")
finally:
    netns_hosts("down", hosts)
ctx.finish()
