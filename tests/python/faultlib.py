"""Fault injection for the crash tests, synchronised on observed progress, never on wall-clock time.

A fault lands after the job has visibly done some work (a shard segment, a checkpoint, a score file)
plus a small random extra delay (so that it sometimes lands in the middle of a write), and the caller
asserts afterwards that work remained. Workloads are sized so that this holds on a fast idle machine as
on a loaded one: the extra delay is short compared with the remaining work, whatever the speed.
"""
import contextlib
import errno
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time

import h5py

POLL = 0.01


class LineCollector:
    """Reads a text or binary pipe in a thread (so the child never blocks on a full pipe) and keeps the
    lines, for faults synchronised on a log line."""

    def __init__(self, pipe):
        self._lines, self._lock = [], threading.Lock()
        self._thread = threading.Thread(target=self._read, args=(pipe,), daemon=True)
        self._thread.start()

    def _read(self, pipe):
        for line in pipe:
            with self._lock:
                self._lines.append(line.decode(errors="replace") if isinstance(line, bytes) else line)

    def contains(self, text):
        with self._lock:
            return any(text in line for line in self._lines)

    def text(self):
        self._thread.join(timeout=5)
        with self._lock:
            return "".join(self._lines)


def wait_for(predicate, proc=None, timeout=600, what="progress"):
    """Polls predicate() until it is true; fails when proc ends first or after timeout (a hang)."""
    end = time.monotonic() + timeout
    while True:
        if predicate():
            return
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the job ended (status {proc.returncode}) before {what}")
        if time.monotonic() > end:
            stacks = backtraces(proc.pid) if proc is not None else ""
            raise AssertionError(f"no {what} after {timeout} s\n{stacks}")
        time.sleep(POLL)


def kill_after_progress(cmd, progress, target, rng, env, extra_delay=0.05, sig=signal.SIGKILL):
    """Starts cmd in its own session, waits until progress() >= target, waits a random extra
    0..extra_delay s, then sends sig to the whole process group (mpirun and its ranks). Returns the
    process (waited for). Fails if the job finished before the fault landed."""
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        wait_for(lambda: progress() >= target, proc, what=f"progress {target}")
        time.sleep(rng.uniform(0.0, extra_delay))
        assert proc.poll() is None, "the job finished before the fault landed: make the workload longer"
        os.killpg(proc.pid, sig)
        proc.wait(timeout=600)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return proc


def backtraces(pid):
    """Native stacks of every thread of process pid and of its children (gdb), for a hang's report."""
    pids = [pid] + [int(c) for c in _children(pid)]
    out = []
    for p in pids:
        r = subprocess.run(["gdb", "-p", str(p), "-batch", "-ex", "thread apply all bt 30"], capture_output=True,
                           text=True, timeout=120) if shutil.which("gdb") else None
        out.append(f"--- pid {p} ---\n" + (r.stdout[-20000:] if r else "(gdb not installed)"))
    return "\n".join(out)


def _children(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            kids = f.read().split()
    except OSError:
        return []
    return kids + [g for k in kids for g in _children(int(k))]


def wait_or_report(proc, timeout=900, what="the job"):
    """proc.wait(timeout); on a hang, the stacks of the stuck processes go into the failure message."""
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        stacks = backtraces(proc.pid)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise AssertionError(f"{what} hung (> {timeout} s); stacks:\n{stacks}")


@contextlib.contextmanager
def frozen(proc):
    """SIGSTOP to proc's process group for the duration of the block (a fault delivered inside lands
    while the job is provably mid-way), SIGCONT after."""
    os.killpg(proc.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.killpg(proc.pid, signal.SIGCONT)


def processes_of(binary, marker):
    """PIDs of running processes of `binary` whose command line contains `marker` (e.g. the ranks of one
    job, found by their --out folder; mpirun's own command line names the binary but is another exe)."""
    binary = os.path.realpath(binary)
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.path.realpath(f"/proc/{entry}/exe") != binary:
                continue
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                if marker.encode() in f.read():
                    pids.append(int(entry))
        except OSError:
            pass
    return pids


def mpi_rank(pid):
    """The MPI rank of process pid (OMPI_COMM_WORLD_RANK or PMIX_RANK in its environment), or None."""
    with open(f"/proc/{pid}/environ", "rb") as f:
        for item in f.read().split(b"\0"):
            for key in (b"OMPI_COMM_WORLD_RANK=", b"PMIX_RANK="):
                if item.startswith(key):
                    return int(item[len(key):])
    return None


def signal_pending(pid, sig):
    """True when `sig` is pending for process pid (it is stopped, or has not run its handler yet)."""
    mask = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(("SigPnd:", "ShdPnd:")):
                mask |= int(line.split()[1], 16)
    return bool(mask & (1 << (int(sig) - 1)))


def label_segments(shard_dir):
    """Pair indices of every complete shard segment of a vote; every segment must be readable and no
    pair may appear twice."""
    seen = []
    if not os.path.isdir(shard_dir):
        return seen
    for name in sorted(os.listdir(shard_dir)):
        if ".tmp." in name:
            continue
        with h5py.File(os.path.join(shard_dir, name), "r") as f:
            seen.extend(f["pair_index"][:].tolist())
            assert len(f["sample_offset"]) == len(f["pair_index"]) + 1
    assert len(seen) == len(set(seen)), "a pair is duplicated across shards"
    return seen


def flushed_pair_count(shard_dir):
    try:
        return len(label_segments(shard_dir))
    except (OSError, KeyError):  # a segment being renamed into place
        return 0


# ---- a small file system that can be filled ------------------------------------------------------

def can_mount_tmpfs():
    with tempfile.TemporaryDirectory() as d:
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", d], capture_output=True)
        if r.returncode != 0:
            return False
        subprocess.run(["umount", d], check=True)
        return True


@contextlib.contextmanager
def small_tmpfs(path, size_mb):
    """A tmpfs of size_mb MiB mounted at path (needs root); unmounted afterwards."""
    os.makedirs(path, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(path, name="filler"):
    """Writes a file in path until the file system is full (ENOSPC). Returns its path."""
    filler = os.path.join(path, name)
    chunk = b"\0" * (64 << 10)
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        while True:
            try:
                os.write(fd, chunk)
            except OSError as e:
                if e.errno != errno.ENOSPC:
                    raise
                if len(chunk) == 1:
                    break
                chunk = chunk[:len(chunk) // 2]
    finally:
        os.close(fd)
    return filler


def assert_clean_failure(returncode, stderr, name):
    """One clear line naming `name` and the system's reason, a plain error exit (no crash)."""
    assert returncode not in (0, 75), stderr
    assert returncode > 0 and returncode < 128, f"status {returncode} (a crash?)\n{stderr}"
    assert "Segmentation fault" not in stderr and "Signal:" not in stderr, stderr
    assert "No space left on device" in stderr, stderr
    assert name in stderr, stderr
