"""On a real local Slurm (scripts/slurm-local): `rondo sbatch` -> `sbatch` trains through srun and
writes metrics.jsonl; `scancel --signal=USR1 --batch` makes the workers finish their step,
checkpoint and exit, the job requeues itself, comes back and resumes at the next step; the loss
trajectory equals an uninterrupted `rondo run` (mpirun) of the same config."""
import os
import re
import shutil
import socket
import subprocess
import tempfile

from rondo_testlib import TINY, Context, losses, rows, wait_for

ctx = Context()
SCRIPTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "scripts")
SETS = TINY + ["training.train_iters=1000", "launch.heartbeat_interval_s=0.2"]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# CTest names the directory, so that its cleanup fixture (system.slurm_down) stops the daemons even
# when this process is killed at its timeout; run by hand, a new temporary one.
slurm_dir = os.environ.get("RONDO_SLURM_DIR") or tempfile.mkdtemp(prefix="rondo-slurm-")
env = dict(os.environ, RONDO_SLURM_DIR=slurm_dir, RONDO_SLURMCTLD_PORT=str(free_port()),
           RONDO_SLURMD_PORT=str(free_port()))


def slurm_local(cmd):
    return subprocess.run([os.path.join(SCRIPTS, "slurm-local"), cmd], env=env, capture_output=True, text=True,
                          timeout=120)


def slurm_up():
    slurm_local("down")  # whatever an earlier, killed run of this test left in the directory
    shutil.rmtree(slurm_dir, ignore_errors=True)
    up = slurm_local("up")
    if up.returncode != 0:
        print(up.stdout + up.stderr)
        raise SystemExit("scripts/slurm-local up failed")
    for line in up.stdout.splitlines():
        m = re.match(r"export (\w+)=(.*)", line)
        if m:
            env[m.group(1)] = m.group(2)


def slurm(*args, check=True):
    p = subprocess.run(list(args), env=env, capture_output=True, text=True, timeout=60)
    if check and p.returncode != 0:
        raise AssertionError(f"{' '.join(args)}: {p.stdout}{p.stderr}")
    return p.stdout


def job_field(job, name):
    m = re.search(name + r"=(\S+)", slurm("scontrol", "show", "job", job))
    return m.group(1) if m else None


job = run_dir = None
try:
    slurm_up()
    ctx.check("idle" in slurm("sinfo", "-h", "-o", "%T"), "slurm-local up: the node is idle")
    reference, _ = ctx.run("reference", SETS + ["parallel.world_size=2"])

    run_dir = os.path.join(ctx.tmp, "sbatch")
    cmd = [ctx.rondo, "sbatch", "--run-dir", run_dir, "--worker", ctx.worker, "--nodes", "1",
           "--ntasks-per-node", "2", "--time", "10"]
    for s in SETS:
        cmd += ["--set", s]
    script = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    ctx.check("#SBATCH --signal=B:USR1@120" in script and "scontrol requeue" in script and
              "launch.launcher=srun" in script, "the batch script asks for USR1, requeues, launches with srun")
    path = os.path.join(ctx.tmp, "job.sh")
    with open(path, "w") as f:
        f.write(script)
    job = slurm("sbatch", "--parsable", path).strip()
    print("submitted job", job)
    wait_for(lambda: len(rows(run_dir)) >= 30, 300, "30 steps of the batch job")
    slurm("scancel", "--signal=USR1", "--batch", job)
    # The job checkpoints and requeues; Slurm holds a requeued job back until the killed run's
    # credentials expire (AuthInfo cred_expire: 120 s by default, 10 s in scripts/slurm-local). A
    # job started earlier is killed as "non-startable: job credential revoked".
    wait_for(lambda: job_field(job, "Restarts") == "1" and job_field(job, "JobState") == "PENDING", 120,
             "the job to requeue")
    stopped_at = max(r["step"] for r in rows(run_dir))
    ctx.check(stopped_at < 1000, f"the first run stopped early, at step {stopped_at}")
    wait_for(lambda: job_field(job, "JobState") in ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL"),
             300, "the requeued job to end")
    ctx.check(job_field(job, "JobState") == "COMPLETED", f"the requeued job completed ({job_field(job, 'JobState')})")
    with open(os.path.join(run_dir, f"slurm-{job}.out")) as f:
        out = f.read()
    ctx.check("USR1: checkpointing, then requeueing" in out, "the batch script took USR1")
    ctx.check(f"resumed from checkpoint step-{stopped_at}" in out, f"the requeued job resumed from step {stopped_at}")
    ctx.check("launching 2 workers with srun" in out, "the workers were launched with srun")
    steps = [r["step"] for r in rows(run_dir)]
    ctx.check(steps == list(range(1, 1001)), "every step ran exactly once, the second run at the next step")
    a, b = losses(reference), losses(run_dir)
    worst = max(abs(a[s] - b[s]) for s in a)
    print(f"largest loss difference against the uninterrupted mpirun run: {worst:.3e}")
    ctx.check(worst == 0.0, f"the loss trajectory equals the uninterrupted run's (worst {worst:.3e})")
except BaseException:
    # What Slurm knew, for whoever reads the failure.
    print(slurm("scontrol", "show", "job", check=False) if "SLURM_CONF" in env else "no Slurm")
    logs = [f"{slurm_dir}/log/slurmctld.log", f"{slurm_dir}/log/slurmd.log"]
    if job:
        logs.insert(0, os.path.join(run_dir, f"slurm-{job}.out"))
    for name in logs:
        try:
            with open(name) as f:
                print(f"--- last lines of {name}:\n" + "".join(f.readlines()[-40:]))
        except OSError:
            pass
    raise
finally:
    slurm_local("down")
ctx.finish()
