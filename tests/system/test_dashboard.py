"""The coordinator as a service while a job trains: the dashboard in headless Chromium shows the
loss curve and the per-rank heatmap with live values; /metrics passes `promtool check metrics`;
calls with a wrong token, an unknown rank, garbage bytes or an oversized message are refused and
counted while training goes on; `rondo status` prints the same state. An HDP job's dashboard draws
each step's groups on the planner's timeline; an MoE job's, the router's load per layer and expert."""
import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import urllib.error
import urllib.request

from rondo_testlib import TINY, Context, by_step, rows, wait_for, worker_pid

ctx = Context()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url):
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.read().decode(), r.headers.get("Content-Type", "")


def chromium(*args):
    profile = tempfile.mkdtemp(prefix="rondo-chromium-")
    try:
        return subprocess.run(
            ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--user-data-dir=" + profile, *args], capture_output=True, text=True, timeout=120)
    finally:
        shutil.rmtree(profile, ignore_errors=True)


def screenshot(name, url):
    """The page as a browser draws it, kept with the test's artifacts."""
    artifacts = ctx.artifacts or ctx.tmp
    os.makedirs(artifacts, exist_ok=True)
    shot = os.path.join(artifacts, name)
    chromium("--virtual-time-budget=5000", "--window-size=1280,1500", "--screenshot=" + shot, url)
    ctx.check(os.path.exists(shot) and os.path.getsize(shot) > 10000, f"screenshot kept as {shot}")


port = free_port()
base = f"http://127.0.0.1:{port}"
run_dir, proc = ctx.start("served", TINY + ["parallel.world_size=2", "training.train_iters=100000",
                                             "data.split=90,10", "training.eval_interval=5", "training.eval_iters=1"],
                          extra=["--dashboard-port", str(port)])
try:
    wait_for(lambda: len(by_step(run_dir)) >= 20, 300, "20 steps")

    # /api/state and /metrics
    state = json.loads(get(base + "/api/state")[0])
    ctx.check(state["phase"] == "running" and state["progress"]["step"] >= 20,
              f"/api/state: running at step {state['progress']['step']}")
    metrics, ctype = get(base + "/metrics")
    ctx.check(ctype.startswith("text/plain; version=0.0.4"), f"/metrics content type: {ctype}")
    for name in ("rondo_loss ", 'rondo_step_time_seconds{rank="1"}', "rondo_tokens_per_second ",
                 'rondo_collective_seconds{op="allreduce",src="0",dst="1"}', "rondo_restarts_total 0",
                 "rondo_val_loss ", "rondo_val_step "):
        ctx.check(name in metrics, f"/metrics has {name.strip()}")
    check = subprocess.run(["promtool", "check", "metrics"], input=metrics, capture_output=True, text=True)
    ctx.check(check.returncode == 0, "promtool check metrics accepts /metrics " + (check.stdout + check.stderr).strip())

    # Calls the coordinator must refuse, with the job's real token where one is needed (a local
    # process can read it from a worker's environment; the test does the same).
    with open(f"/proc/{worker_pid(run_dir, 0)}/environ", "rb") as f:
        env = dict(kv.split(b"=", 1) for kv in f.read().split(b"\0") if b"=" in kv)
    token = env[b"RONDO_JOB_TOKEN"].decode()
    before = max(r["step"] for r in rows(run_dir))
    bad = subprocess.run([ctx.control_load, "bad", "--address", state["control_address"], "--token", token],
                         capture_output=True, text=True, timeout=60)
    codes = json.loads(bad.stdout)
    # gRPC codes: 16 UNAUTHENTICATED, 7 PERMISSION_DENIED, 3 INVALID_ARGUMENT, 8 RESOURCE_EXHAUSTED
    ctx.check(codes == {"wrong_token": 16, "no_token": 16, "unknown_rank": 7, "garbage": 3, "oversized": 8},
              f"bad calls refused with their codes: {codes}")
    wait_for(lambda: max(r["step"] for r in rows(run_dir)) >= before + 10, 120, "10 more steps")
    ctx.check(True, "training went on after the bad calls")
    metrics, _ = get(base + "/metrics")
    for reason, n in (("token", 2), ("unknown_rank", 1), ("malformed", 1), ("oversized", 1)):
        ctx.check(f'rondo_rejected_calls_total{{reason="{reason}"}} {n}\n' in metrics, f"{n} refused call(s) counted as {reason}")
    mode = os.stat(os.path.join(run_dir, "control.token")).st_mode & 0o777
    ctx.check(mode == 0o600, f"control.token is the owner's only ({oct(mode)})")
    # The dashboard takes small requests only: a 1 MiB body is refused (413), the server goes on.
    try:
        urllib.request.urlopen(urllib.request.Request(base + "/api/state", data=b"x" * (1 << 20), method="POST"),
                               timeout=10)
        status = 200
    except urllib.error.HTTPError as e:
        status = e.code
    except (ConnectionError, urllib.error.URLError):
        status = "closed"  # the server may drop the connection while the client still sends
    ctx.check(status in (413, "closed") and json.loads(get(base + "/api/state")[0])["phase"] == "running",
              f"a 1 MiB request to the dashboard is refused ({status}) and it still serves")

    # The page in a real browser: the DOM after its scripts ran on live data.
    dom = chromium("--virtual-time-budget=5000", "--dump-dom", base + "/").stdout
    ctx.check('id="loss-curve"' in dom and 'data-points="' in dom and 'data-points="0"' not in dom,
              "the loss curve is drawn from live points")
    dots = re.search(r'id="loss-curve"[^>]*data-dots="(\d+)"', dom)
    header = re.search(r'id="val-loss">([^<]*)<', dom)
    ctx.check(dots and int(dots.group(1)) > 0 and header and "step" in header.group(1),
              f"the validation losses are dots on the loss curve ({dots and dots.group(1)}) and the header "
              f"shows the newest ({header and header.group(1)})")
    cells = dom.count("data-rank=")
    valued = [c for c in dom.split("data-value=\"")[1:] if c[:1].isdigit()]
    ctx.check(cells >= 2 and len(valued) >= 2, f"the heatmap has cells with step times ({cells} cells)")
    ctx.check('id="step">0<' not in dom and 'id="phase" class="phase-running">running<' in dom,
              "the header shows the running job's step")
    screenshot("dashboard.png", base + "/")

    # rondo status, from state.json
    st = subprocess.run([ctx.rondo, "status", run_dir], capture_output=True, text=True, timeout=30)
    ctx.check(st.returncode == 0 and "status:   running" in st.stdout and "progress: step" in st.stdout
              and "4 refused calls" not in st.stdout and ", val loss " in st.stdout, "rondo status prints the live state:\n" + st.stdout)

    # An operator's commands, with the token the coordinator left in the run directory.
    latest = os.path.join(run_dir, "checkpoints", "latest")
    ctx.check(not os.path.exists(latest), "no checkpoint yet (checkpoint.interval=0)")
    c = subprocess.run([ctx.rondo, "control", run_dir, "checkpoint", "--reason", "test"], capture_output=True,
                       text=True, timeout=60)
    ctx.check(c.returncode == 0, "rondo control checkpoint is accepted " + c.stdout + c.stderr)
    wait_for(lambda: os.path.exists(latest), 60, "the requested checkpoint")
    ctx.check(True, "the running job checkpointed on request")
    s = subprocess.run([ctx.rondo, "control", run_dir, "stop"], capture_output=True, text=True, timeout=60)
    ctx.check(s.returncode == 0, "rondo control stop is accepted")
    proc.wait(timeout=120)
    with open(run_dir + ".out") as f:
        out = f.read()
    last = max(r["step"] for r in rows(run_dir))
    with open(latest) as f:
        ctx.check(proc.returncode == 0 and f.read().strip() == f"step-{last}" and "stopped after step" in out,
                  f"the job stopped cleanly with a checkpoint of its last step ({last})")
finally:
    if proc.poll() is None:
        proc.terminate()
        proc.wait(timeout=60)

# parallel.hdp: the step's groups on the planner's timeline, a group's members in one colour; with
# pipelines (2 of 2 stages here) a row is a pipeline.
port = free_port()
HDP = TINY + ["parallel.world_size=4", "parallel.hdp=true", "data.path=lognormal", "data.lognormal_mu=3",
              "data.lognormal_sigma=1", "data.lognormal_documents=2000", "data.tokens_per_step=512",
              "parallel.max_tokens_per_rank=32", "parallel.pipeline_model_parallel_size=2", "training.train_iters=6"]
run_dir, proc = ctx.start("hdp", HDP, extra=["--dashboard-port", str(port), "--linger", "120"])
try:
    wait_for(lambda: len(rows(run_dir)) >= 6, 300, "6 HDP steps")
    # The last step's plan, which the page below draws too: its report may reach the coordinator
    # after rank 0 wrote the step's row.
    last_plan = lambda: json.loads(get(f"http://127.0.0.1:{port}/api/state")[0]).get("hdp", {})
    wait_for(lambda: last_plan().get("step") == 6, 60, "the last step's HDP plan in /api/state")
    hdp = last_plan()
    slots = hdp.get("slots", [])
    grouped = [x for x in slots if x.get("degree", 1) > 1]
    ctx.check(hdp.get("policy") == "rondo" and slots and grouped and hdp.get("stages") == 2
              and sum(hdp["degrees"].values()) == hdp["sequences"],
              f"/api/state has the step's plan: {len(slots)} sub-batches, {len(grouped)} on groups")
    dom = chromium("--virtual-time-budget=5000", "--dump-dom", f"http://127.0.0.1:{port}/").stdout
    drawn = [c for c in dom.split('data-degree="')[1:] if c[:1] != "1"]
    svg = dom[dom.find('<svg id="hdp"'):]
    svg = svg[:svg.find("</svg>")]
    ctx.check('id="hdp-card" hidden' not in dom and len(drawn) == len(grouped) and "busy max/mean measured" in dom
              and "NaN" not in svg and "undefined" not in svg and ">pipe 1<" in svg and ">pipe 2<" not in svg,
              f"the dashboard draws the step's groups ({len(drawn)} group slots) on its 2 pipelines and its balance")
    screenshot("dashboard-hdp.png", f"http://127.0.0.1:{port}/")
finally:
    if proc.poll() is None:
        proc.terminate()
        proc.wait(timeout=60)

# model.num_experts with expert parallelism: the router's load per layer and expert.
port = free_port()
MOE = TINY + ["parallel.world_size=2", "model.num_experts=4", "parallel.expert_model_parallel_size=2",
              "training.micro_batch_size=2", "training.train_iters=6"]
run_dir, proc = ctx.start("moe", MOE, extra=["--dashboard-port", str(port), "--linger", "120"])
try:
    wait_for(lambda: len(rows(run_dir)) >= 6, 300, "6 MoE steps")
    moe = json.loads(get(f"http://127.0.0.1:{port}/api/state")[0]).get("moe", {})
    layers = moe.get("layers", [])
    last = rows(run_dir)[-1]
    ctx.check(len(layers) == 2 and all(len(layer["routed"]) == 4 for layer in layers) and
              [layer["routed"] for layer in layers] == [last["moe_routed"][str(layer.get("layer", 0))] for layer in layers],
              f"/api/state has the newest step's router load, as metrics.jsonl: {[layer['routed'] for layer in layers]}")
    dom = chromium("--virtual-time-budget=5000", "--dump-dom", f"http://127.0.0.1:{port}/").stdout
    svg = dom[dom.find('<svg id="moe"'):]
    svg = svg[:svg.find("</svg>")]
    ctx.check('id="moe-card" hidden' not in dom and svg.count("data-routed=") == 8 and "NaN" not in svg
              and "load-balancing loss" in dom, f"the dashboard draws 2 layers x 4 experts ({svg.count('data-routed=')} bars)")
    screenshot("dashboard-moe.png", f"http://127.0.0.1:{port}/")
finally:
    if proc.poll() is None:
        proc.terminate()
        proc.wait(timeout=60)
ctx.finish()
