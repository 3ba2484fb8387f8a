"""The tutorial (docs/tutorial.rst) runs as written, on a temporary root.

Every code block of the page is executed in the page's order, in one
temporary project folder: a ``console`` block's ``$`` commands with bash,
their stdout compared with the lines the page shows (``...`` standing for
any text, as in the quick start); a block with a ``:caption:`` is a file
the reader saves, written under that name (a path in the root, or one
relative to the project folder).

Slurm and other hosts are not there, so two stand-ins go first on PATH:

* ``sbatch`` runs the batch script the way Slurm would on three nodes: one
  ``bash`` per index of its ``#SBATCH --array``, concurrently, with
  ``SLURM_ARRAY_TASK_ID``, ``SLURM_CPUS_PER_TASK`` and the other variables
  set and the output in ``slurm-<job>_<index>.out``; it returns at once and
  prints the job's number, as sbatch does.  ``#SBATCH`` lines are comments
  to bash.
* ``ssh HOST COMMAND`` drops the host and runs COMMAND with ``sh -c``, as
  the remote login shell would: the tests have no network and no sshd, and
  the "nodes" share this machine's filesystem just as a cluster's nodes
  share theirs.

What the stand-ins start runs in the background as it would on the nodes;
the page then says "once the job has ended", so before the steps after the
one that follows a submission the test waits for every process it started
(found by a marker in their environment) to end.
"""

import os
import signal
import subprocess
import sys
import textwrap
import time

from docsrun import code_blocks, console_steps_of, env_with_ddmq, matches, page

PAGE_ROOT = "/shared/ddmq"
MARKER = "DDMQ_TUTORIAL_RUN"

SBATCH = textwrap.dedent('''\
    #!{python}
    """Stand-in for Slurm's sbatch: run the array's copies of the script here, in the background."""
    import os, re, subprocess, sys
    script = sys.argv[-1]
    options = dict(re.findall(r"^#SBATCH .*?--([\\w-]+)=(\\S+)", open(script).read(), re.M))
    first, last = options["array"].split("%")[0].split("-")
    job = str(4200 + os.getpid() % 100)
    for index in range(int(first), int(last) + 1):
        env = dict(os.environ, SLURM_JOB_ID=job, SLURM_ARRAY_JOB_ID=job,
                   SLURM_ARRAY_TASK_ID=str(index),
                   SLURM_CPUS_PER_TASK=options.get("cpus-per-task", "1"))
        out = open("slurm-{{}}_{{}}.out".format(job, index), "w")
        subprocess.Popen(["bash", script], env=env, stdin=subprocess.DEVNULL, stdout=out,
                         stderr=subprocess.STDOUT, start_new_session=True)
    print("Submitted batch job", job)
    ''')

# No network and no sshd here: run the remote command locally, in a shell, as the
# node's login shell would.
SSH = '#!/bin/sh\nshift\nexec sh -c "$*"\n'


def started(mark):
    """Return the pids of the running processes whose environment holds ``mark``."""
    pids = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open("/proc/{}/environ".format(name), "rb") as handle:
                    if mark in handle.read().split(b"\0"):
                        pids.append(int(name))
            except OSError:
                pass   # gone, or not ours to read
    return pids


def wait_for_background(mark, limit=60):
    deadline = time.monotonic() + limit
    while started(mark):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def stand_ins(folder):
    os.makedirs(folder)
    for name, text in (("sbatch", SBATCH.format(python=sys.executable)), ("ssh", SSH)):
        path = os.path.join(folder, name)
        with open(path, "w") as handle:
            handle.write(text)
        os.chmod(path, 0o755)


def test_every_block_of_the_tutorial_runs_and_prints_what_the_page_shows(tmp_path):
    root = str(tmp_path / "shared" / "ddmq")
    project = tmp_path / "project"
    project.mkdir()
    stand_ins(str(tmp_path / "bin"))
    env = env_with_ddmq()
    env["PATH"] = str(tmp_path / "bin") + os.pathsep + env["PATH"]
    env[MARKER] = str(tmp_path)
    mark = "{}={}".format(MARKER, tmp_path).encode()

    blocks = code_blocks(page("tutorial.rst"))
    kinds = [language for language, options, body in blocks]
    assert kinds.count("console") >= 10 and {"yaml", "sh", "bash"} <= set(kinds), kinds
    saved, ran = [], []
    background = False   # the last step submitted work that runs on
    try:
        for language, options, body in blocks:
            body = body.replace(PAGE_ROOT, root)
            if "caption" in options:
                path = options["caption"].replace(PAGE_ROOT, root)
                with open(os.path.join(str(project), path), "w") as handle:
                    handle.write(body)
                saved.append(options["caption"])
                continue
            assert language == "console", "a block to run or save needs a :caption: " + body
            for command, expected in console_steps_of(body):
                if not background:
                    assert wait_for_background(mark), "the workers did not end: " + command
                result = subprocess.run(["bash", "-c", command], capture_output=True,
                                        text=True, timeout=60, env=env, cwd=str(project))
                assert result.returncode == 0, (command, result.stdout, result.stderr)
                actual = result.stdout.splitlines()
                expected = [line.replace(PAGE_ROOT, root) for line in expected]
                assert len(actual) == len(expected) and all(map(matches, expected, actual)), (
                    command, expected, actual)
                background = command.startswith("sbatch ") or "ssh " in command
                ran.append(command)
        assert wait_for_background(mark), "the workers did not end"
    finally:
        for pid in started(mark):   # only after a failure: processes this test started
            os.kill(pid, signal.SIGKILL)

    assert saved == ["/shared/ddmq/tasks/ddmq.yaml", "process.sh", "work.sbatch"]
    assert any(command.startswith("sbatch ") for command in ran)
    assert any(command.startswith("for host") for command in ran)
    # Three array tasks ran (a worker each), and two "hosts" over ssh.
    assert len(list(project.glob("slurm-*_*.out"))) == 3
    assert sorted(path.name for path in (project / "logs").glob("work.*.log")) == [
        "work.1.log", "work.2.log", "work.3.log", "work.node1.log", "work.node2.log"]
    # The retry delay at work: the joblog's start times of the failing task's runs.
    failing = [command for command in ran if "$5 != 0" in command][0]
    result = subprocess.run(["bash", "-c", failing], capture_output=True, text=True,
                            env=env, cwd=str(project))
    starts = [float(line.split()[2]) for line in result.stdout.splitlines()]
    assert len(starts) == 3
    assert starts[1] - starts[0] >= 1 - 0.05, starts            # requeue_delay
    assert starts[2] - starts[1] >= 3 - 0.05, starts            # times requeue_backoff
    assert not os.path.exists(os.path.join(root, "tasks"))
