"""The process layer: own process group, dies with its owner, both pipes drained, timeouts kill."""

import os
import signal
import subprocess
import sys
import textwrap

import psutil
import pytest

from ffstream._process import MAX_LINE, Cancelled, FFmpegProcess, ProcessScope, run
from ffstream.errors import FFstreamError, ProcessTimeout

from ..conftest import _children, wait_until


@pytest.mark.fast
def test_children_get_their_own_group_so_terminal_signals_miss_them():
    # a process group of its own (a terminal's Ctrl-C goes to the foreground group only),
    # in the caller's session: with autogroup scheduling a session is a scheduling group
    p = FFmpegProcess(["sleep", "30"])
    try:
        assert os.getpgid(p.pid) == p.pid != os.getpgid(0)
        assert os.getsid(p.pid) == os.getsid(0)
    finally:
        p.kill()
        assert p.close() == -signal.SIGKILL


@pytest.mark.fast
def test_both_pipes_are_drained_and_the_tail_is_bounded():
    # 2 MB on stdout and ~2 MB of error lines on stderr: a reader of one pipe only blocks
    script = (
        "import sys\n"
        "for i in range(20000):\n"
        "    sys.stderr.write('error line %d ' % i + 'x' * 80 + '\\n')\n"
        "    sys.stdout.write('y' * 100)\n"
        "sys.stderr.write('z' * 100000)\n"  # one endless line
        "sys.exit(3)\n"
    )
    out = run([sys.executable, "-c", script], 60)
    assert out.returncode == 3
    assert len(out.stdout) == 2_000_000
    assert out.tail.splitlines()[-1] == "z" * MAX_LINE
    assert "error line 19999" in out.tail and len(out.tail) < 20 * MAX_LINE
    assert len(out.stderr) <= 1 << 20  # only the head is kept for parsing


@pytest.mark.slow
@pytest.mark.timing
def test_a_timeout_kills_and_says_so():
    # a shell starts in milliseconds even on a busy machine; the timeout leaves it seconds
    with pytest.raises(ProcessTimeout, match="did not finish within 5 s and was killed") as err:
        run(["sh", "-c", "echo started >&2; exec sleep 60"], 5)
    assert isinstance(err.value, FFstreamError) and isinstance(err.value, TimeoutError)
    assert "started" in err.value.stderr_tail
    assert wait_until(lambda: not _children(), 10)


@pytest.mark.fast
def test_input_is_fed_while_output_is_read():
    data = os.urandom(3_000_000)  # larger than both pipe buffers
    out = run(["cat"], 60, input=data)
    assert out.returncode == 0 and out.stdout == data


@pytest.mark.slow
def test_children_die_with_their_owner(tmp_path):
    """SIGKILL the Python process that owns ffmpeg-like children: they get SIGTERM."""
    owner = textwrap.dedent(
        """
        import sys, threading, time
        from ffstream._process import FFmpegProcess
        procs = []
        def start():  # from a short-lived thread: the child must outlive the thread
            procs.append(FFmpegProcess(["sleep", "300"]))
        t = threading.Thread(target=start); t.start(); t.join()
        time.sleep(1.0)
        print(procs[0].pid, flush=True)
        time.sleep(300)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", owner], stdout=subprocess.PIPE, text=True)
    try:
        child = int(proc.stdout.readline())
        assert psutil.pid_exists(child)  # the thread that started it has ended: still alive
        proc.kill()
        proc.wait()
        assert wait_until(
            lambda: (
                not psutil.pid_exists(child)
                or psutil.Process(child).status() == psutil.STATUS_ZOMBIE
            ),
            10,
        )
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()


@pytest.mark.fast
def test_pipes_are_read_with_a_thousand_files_open():
    # select.select() refuses descriptors numbered 1024 or more
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 1100:
        pytest.skip(f"the file limit here ({hard}) is below 1100")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 1100), hard))
    held = []
    try:
        while not held or held[-1] < 1030:
            held.append(os.open(os.devnull, os.O_RDONLY))
        out = run(["sh", "-c", "echo over-1024"], 60)
        assert out.returncode == 0 and out.stdout == b"over-1024\n"
    finally:
        for fd in held:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def _running(argv_path: str) -> list[str]:
    return [argv_path, "-v", "error", "-f", "lavfi", "-i", "nullsrc", "-f", "null", "-"]


@pytest.mark.fast
def test_a_cancelled_scope_kills_its_own_ffmpeg_only_and_refuses_new_ones(ffmpeg):
    outside = FFmpegProcess(_running(ffmpeg.path))
    scope = ProcessScope()
    try:
        with scope:
            inside = FFmpegProcess(_running(ffmpeg.path))
        scope.cancel()
        assert inside.wait(10) == -signal.SIGKILL
        assert outside.returncode is None
        with scope, pytest.raises(Cancelled, match="the run was stopped"):
            FFmpegProcess(_running(ffmpeg.path))
        assert outside.returncode is None
    finally:
        outside.kill()
        outside.close()
        inside.close()


@pytest.mark.slow
def test_a_scopes_processes_get_sigkill_when_the_program_dies(tmp_path):
    """A child that ignores SIGTERM (as an encoder hung in its shutdown does) still ends
    when the program that started it in a scope is killed."""
    stubborn = tmp_path / "stubborn"
    stubborn.write_text("#!/bin/sh\ntrap '' TERM\nwhile :; do sleep 0.05; done\n")
    stubborn.chmod(0o755)
    program = textwrap.dedent(
        f"""
        import os, sys
        from ffstream._process import FFmpegProcess, ProcessScope
        with ProcessScope():
            p = FFmpegProcess([{str(stubborn)!r}])
        print(p.pid, flush=True)
        sys.stdin.read()
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", program], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    child = psutil.Process(int(proc.stdout.readline()))
    proc.kill()
    proc.wait(10)
    assert wait_until(lambda: not child.is_running() or child.status() == "zombie", 10)


@pytest.mark.fast
def test_the_live_processes_are_listed_while_others_start_and_end():
    """A writer starting its ffmpeg while another writer measures the CPU of the live
    ones: listing them never fails (a set that changes size while it is iterated)."""
    import threading

    from ffstream import _process as process

    class Placeholder:  # makes each listing long, so that a start lands inside one
        returncode, pid = None, 0

    placeholders = [Placeholder() for _ in range(3000)]
    for p in placeholders:  # white-box: the registry of live processes is what is tested
        process._live.add(p)
    errors: list[BaseException] = []
    stop = threading.Event()

    def lister() -> None:
        while not stop.is_set():
            try:
                process.live_pids()
            except RuntimeError as exc:
                errors.append(exc)
                return

    thread = threading.Thread(target=lister)
    thread.start()
    try:
        for _ in range(20):
            run(["true"], 10)
    finally:
        stop.set()
        thread.join()
        for p in placeholders:
            process._live.discard(p)
    assert not errors, errors
