"""Job types used by the test suite (loaded through RUNSPACE_JOBS_PATH)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from pydantic import BaseModel, Field

from supervisor import JobContext, command_job, job


class Value(BaseModel):
    value: int | str | list | dict | None = None
    delay: float = 0.0


@job()
def echo(params: Value, ctx: JobContext) -> dict:
    """Returns its value (after an optional delay)."""
    time.sleep(params.delay)
    return {"value": params.value, "job_id": ctx.job_id, "requestor": ctx.requestor, "pid": os.getpid(),
            "ppid": os.getppid(),
            "uid": os.getuid(), "tmpdir": str(ctx.tmpdir), "tmpdir_exists": ctx.tmpdir.is_dir()}


@job()
def whereami(params: Value, ctx: JobContext) -> dict:
    """Reports this job process's cgroup v2 path and session id."""
    cgroup = next(line[3:].strip() for line in Path("/proc/self/cgroup").read_text().splitlines()
                  if line.startswith("0::"))
    return {"cgroup": cgroup, "pid": os.getpid(), "sid": os.getsid(0)}


@job()
def die(params: Value, ctx: JobContext) -> None:
    """Kills its own process with SIGKILL: no result, no traceback."""
    os.kill(os.getpid(), signal.SIGKILL)


class Sleep(BaseModel):
    seconds: float = Field(ge=0)
    output_every: float | None = None


@job(timeout=60)
def sleep(params: Sleep, ctx: JobContext) -> dict:
    """Sleeps, optionally printing a line every `output_every` seconds."""
    end = time.time() + params.seconds
    while time.time() < end:
        time.sleep(min(params.output_every or 0.05, max(end - time.time(), 0)))
        if params.output_every:
            print("tick", flush=True)
    return {"slept": params.seconds}


class Failure(BaseModel):
    message: str = "boom"


@job()
def fail(params: Failure, ctx: JobContext) -> None:
    """Raises ValueError(message)."""
    ctx.log("about to fail")
    raise ValueError(params.message)


class Tree(BaseModel):
    pidfile: str
    seconds: float = 300.0


@job(timeout=2, kill_grace=1)
def spawn_tree(params: Tree, ctx: JobContext) -> None:
    """Starts a setsid grandchild, a double-forked daemon and a SIGTERM-ignoring child, then waits."""
    code = (
        "import os, signal, sys, time\n"
        "mode = sys.argv[1]\n"
        "if mode == 'ignore': signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "if mode == 'setsid': os.setsid()\n"
        "if mode == 'double' and os.fork() > 0: os._exit(0)\n"
        "if mode == 'double': os.setsid()\n"
        "open(sys.argv[2], 'a').write(f'{os.getpid()}\\n')\n"
        "time.sleep(float(sys.argv[3]))\n"
    )
    for mode in ("ignore", "setsid", "double"):
        subprocess.Popen([sys.executable, "-c", code, mode, params.pidfile, str(params.seconds)])
        # 'setsid' mode leaves the job's session by itself (Popen's start_new_session would make that fail)
    deadline = time.time() + 10
    while time.time() < deadline:
        if Path(params.pidfile).exists() and len(Path(params.pidfile).read_text().split()) >= 3:
            break
        time.sleep(0.02)
    print("tree started", flush=True)
    time.sleep(params.seconds)


class Leave(BaseModel):
    pidfile: str
    termfile: str | None = None  # the child writes it when it gets SIGTERM, then exits
    gate: str | None = None  # return only once it exists


_LEFT_CHILD = (
    "import signal, sys, time\n"
    "def on_term(*_):\n"
    "    open(sys.argv[1], 'w').write('SIGTERM')\n"
    "    sys.exit(0)\n"
    "if sys.argv[1]: signal.signal(signal.SIGTERM, on_term)\n"
    "time.sleep(300)\n"
)


@job()
def leave_behind(params: Leave, ctx: JobContext) -> dict:
    """Starts a background process and returns, leaving it behind."""
    proc = subprocess.Popen([sys.executable, "-c", _LEFT_CHILD, params.termfile or ""], start_new_session=True)
    Path(params.pidfile).write_text(str(proc.pid))
    if params.gate:
        _wait_for(params.gate)
    return {"child": proc.pid}


class Hang(BaseModel):
    seconds: float = 300


@job(idle_timeout=1, kill_grace=0.5)
def hang(params: Hang, ctx: JobContext) -> None:
    """Prints once, then goes silent: the idle timeout must call it hung."""
    print("working...", flush=True)
    time.sleep(params.seconds)


class Hog(BaseModel):
    megabytes: int = 300


@job(max_memory="100M", kill_grace=0.5)
def memory_hog(params: Hog, ctx: JobContext) -> None:
    """Allocates more memory than its limit allows."""
    blob = bytearray(params.megabytes * 1024 * 1024)
    for i in range(0, len(blob), 4096):
        blob[i] = 1
    time.sleep(60)


class Steps(BaseModel):
    steps: int = 5
    delay: float = 0.2


@job()
def steps(params: Steps, ctx: JobContext) -> dict:
    """Reports progress step by step."""
    for n in range(1, params.steps + 1):
        time.sleep(params.delay)
        ctx.progress(n, params.steps, f"step {n}")
    return {"steps": params.steps}


class Flaky(BaseModel):
    counter: str
    succeed_on: int = 3


@job(retries=3, retry_backoff=0.2)
def flaky(params: Flaky, ctx: JobContext) -> dict:
    """Fails until its attempt number (counted in a file) reaches succeed_on."""
    path = Path(params.counter)
    attempt = int(path.read_text()) + 1 if path.exists() else 1
    path.write_text(str(attempt))
    with open(path.with_suffix(".times"), "a") as f:
        f.write(f"{time.time()}\n")
    if attempt < params.succeed_on:
        raise RuntimeError(f"attempt {attempt} fails")
    return {"attempts": attempt}


class Keyed(BaseModel):
    case: str
    record: str
    seconds: float = 0.3


@job(concurrency_key="case")
def keyed(params: Keyed, ctx: JobContext) -> dict:
    """Appends start/end times to `record`; jobs with the same case must never overlap."""
    with open(params.record, "a") as f:
        f.write(f"{ctx.job_id} start {time.time()}\n")
    time.sleep(params.seconds)
    with open(params.record, "a") as f:
        f.write(f"{ctx.job_id} end {time.time()}\n")
    return {}


class Tag(BaseModel):
    tag: str
    record: str


@job()
def record_order(params: Tag, ctx: JobContext) -> dict:
    """Appends its tag to `record`: shows the order jobs started in."""
    with open(params.record, "a") as f:
        f.write(params.tag + "\n")
    return {}


class Who(BaseModel):
    user: str
    text: str = "hello"


@job(log_user="user")
def user_note(params: Who, ctx: JobContext) -> dict:
    """Writes to the user's log."""
    for i in range(20):
        ctx.log(f"{params.text} {i}")
    return {}


class Exit(BaseModel):
    code: int = 3


@command_job()
def exit_with(params: Exit, ctx: JobContext) -> list[str]:
    """A command job exiting with a given code."""
    return ["/bin/sh", "-c", f'echo "exiting {params.code}"; exit {params.code}']


@command_job()
def shell_progress(params: Steps, ctx: JobContext) -> list[str]:
    """A command job reporting progress through the ::progress protocol."""
    script = f'for i in $(seq 1 {params.steps}); do sleep {params.delay}; echo "::progress $i {params.steps} step $i"; done'
    return ["/bin/sh", "-c", script]


@job()
def ignore_term(params: Sleep, ctx: JobContext) -> None:
    """Ignores SIGTERM, so only SIGKILL ends it."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    time.sleep(params.seconds)


class Gate(BaseModel):
    gate: str
    ledger: str
    child: bool = False


_GATED_CHILD = (
    "import os, sys, time\n"
    "open(sys.argv[2], 'w').write(str(os.getpid()))\n"
    "deadline = time.time() + 120\n"
    "while not os.path.exists(sys.argv[1]) and time.time() < deadline: time.sleep(0.02)\n"
)


def _wait_for(path: str, seconds: float = 120.0) -> None:
    deadline = time.time() + seconds
    while not os.path.exists(path):
        if time.time() > deadline:
            raise TimeoutError(f"{path} never appeared")
        time.sleep(0.02)


@job(timeout=300)
def gated(params: Gate, ctx: JobContext) -> dict:
    """Appends `<job id> <pid>` to `ledger` when its code starts (proves run-once), optionally
    starts a child that waits too, waits until `gate` exists; returns where it ran."""
    child = None
    if params.child:
        pidfile = f"{params.ledger}.{ctx.job_id}.child"
        child = subprocess.Popen([sys.executable, "-c", _GATED_CHILD, params.gate, pidfile])
    with open(params.ledger, "a") as f:
        f.write(f"{ctx.job_id} {os.getpid()}\n")
    print(f"gated job {ctx.job_id} waiting", flush=True)
    _wait_for(params.gate)
    if child is not None:
        child.wait()
    cgroup = next(line[3:].strip() for line in Path("/proc/self/cgroup").read_text().splitlines()
                  if line.startswith("0::"))
    return {"cgroup": cgroup, "pid": os.getpid(), "sid": os.getsid(0), "ppid": os.getppid()}


class Cue(BaseModel):
    cue: str
    pidfile: str


@job(timeout=300)
def die_on_cue(params: Cue, ctx: JobContext) -> None:
    """Writes its pid, waits until `cue` exists, then kills its own process with SIGKILL."""
    Path(params.pidfile).write_text(str(os.getpid()))
    _wait_for(params.cue)
    os.kill(os.getpid(), signal.SIGKILL)


class Script(BaseModel):
    script: str


@command_job()
def sh_script(params: Script, ctx: JobContext) -> list[str]:
    """A command job running the test's shell script (the command-shim tests)."""
    return ["/bin/sh", "-c", params.script]


class Program(BaseModel):
    program: str


@command_job()
def run_program(params: Program, ctx: JobContext) -> list[str]:
    """A command job whose argv is one program path, which may not exist."""
    return [params.program]


class Forged(BaseModel):
    result: str = ""
    progress: str = ""


@job()
def forge_reports(params: Forged, ctx: JobContext) -> None:
    """Writes its own result.json / progress.json (raw text) in its run dir and exits without a result."""
    run_dir = Path(ctx.tmpdir).parent
    for name, text in (("progress.json", params.progress), ("result.json", params.result)):
        if text:
            (run_dir / name).write_text(text.replace("{id}", ctx.job_id))
    sys.stdout.flush()
    os._exit(0)


class Report(BaseModel):
    done: float
    total: float


@job()
def report_progress(params: Report, ctx: JobContext) -> None:
    """Reports one progress value, as given (it may overshoot its total)."""
    ctx.progress(params.done, params.total)


@job()
def open_fds(params: Value, ctx: JobContext) -> dict:
    """The descriptors open in the job process (the listing's own excluded)."""
    fds = []
    for name in os.listdir("/proc/self/fd"):
        try:
            os.fstat(int(name))
        except OSError:
            continue
        fds.append(int(name))
    return {"fds": sorted(fds)}


class Long(BaseModel):
    user: str
    size: int = 2 * 2**20


@job(log_user="user")
def long_lines(params: Long, ctx: JobContext) -> dict:
    """One huge line and a line with terminal escapes, to the job log and the user's log; then `after`."""
    print("x" * params.size)
    ctx.log("y" * params.size)
    print("\x1b[2J\x1b[Hforged prompt$ ")
    ctx.log("\x1b]0;title\x07bell")
    print("after")
    ctx.log("after")
    return {}


class Scratch(BaseModel):
    use_tmpdir: bool = False
    seconds: float = 0.0


@job()
def scratch(params: Scratch, ctx: JobContext) -> dict:
    """Where a job starts and where Python's tempfile puts a file; ctx.tmpdir only when asked."""
    import tempfile

    fd, path = tempfile.mkstemp()
    os.close(fd)
    time.sleep(params.seconds)
    out = {"cwd": os.getcwd(), "tempfile": path, "tmpdir_env": os.environ.get("TMPDIR")}
    if params.use_tmpdir:
        out.update(tmpdir=str(ctx.tmpdir), mode=oct(ctx.tmpdir.stat().st_mode & 0o777))
    return out


class NapNote(BaseModel):
    user: str
    seconds: float = 2.0


@job(log_user="user")
def nap_note(params: NapNote, ctx: JobContext) -> dict:
    """One line to the user's log, then a nap: a job that holds a slot without using the CPU."""
    ctx.log("napping")
    time.sleep(params.seconds)
    return {}


class Flood(BaseModel):
    lines: int = 2000


@job(max_log_bytes="64 KiB")
def flood(params: Flood, ctx: JobContext) -> dict:
    """Prints `lines` lines of 100 characters, over its 64 KiB log cap; then goes on."""
    for n in range(params.lines):
        print(f"{n:06d} " + "x" * 93)
    ctx.log("still here")
    return {"printed": params.lines}


@command_job(max_log_bytes="64 KiB")
def flood_command(params: Flood, ctx: JobContext) -> list[str]:
    """A command printing `lines` lines of 100 characters, over its 64 KiB log cap."""
    return ["/bin/sh", "-c", f'i=0; while [ $i -lt {params.lines} ]; do printf "%06d %093d\\n" $i 0; i=$((i+1)); done']
