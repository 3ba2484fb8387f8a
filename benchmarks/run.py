"""Benchmark ddmq against the floor of a file-per-message queue (and the original 0.9.14).

Run from the checkout::

    .venv/bin/python -m benchmarks.run --dir /mnt/ddmq-bench [--repeat 3] [--json out.json]
                                       [--original] [--million]

``--dir`` should be a fresh, otherwise idle local filesystem; every run uses
a new folder inside it and removes it afterwards.  Every scenario runs in
fresh worker processes (``benchmarks/worker.py``); each figure is the median
of ``--repeat`` runs and is shown as a ratio to the raw floor measured in
the same run.  See docs/performance.rst for what each row means.
"""

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
CHECKOUT = os.path.dirname(HERE)
WORKER = os.path.join(HERE, "worker.py")
ORIGINAL_VERSION = "0.9.14"

# Makes the original's yaml.load(stream) work on PyYAML 6 (and safe): it is
# written as sitecustomize.py into the original's own virtual environment.
YAML_SHIM = '''"""ddmq benchmark shim: yaml.load without a Loader means SafeLoader (for ddmq 0.9.14)."""
import yaml

_load = yaml.load


def _safe_default_load(stream, Loader=yaml.SafeLoader):
    return _load(stream, Loader)


yaml.load = _safe_default_load
'''


class Runner:
    """Starts workers for one implementation and collects their JSON results."""

    def __init__(self, base, original_python=None):
        self.base = base
        self.original_python = original_python
        self.count = 0

    def python(self, impl):
        return self.original_python if impl == "original" else sys.executable

    def env(self, impl):
        env = dict(os.environ)
        if impl == "original":
            env.pop("PYTHONPATH", None)
        else:
            env["PYTHONPATH"] = CHECKOUT + os.pathsep + env.get("PYTHONPATH", "")
        return env

    def new_dir(self):
        self.count += 1
        path = os.path.join(self.base, "run{}".format(self.count))
        os.makedirs(path)
        return path

    def command(self, impl, command, root, **options):
        argv = [self.python(impl), WORKER, command, "--impl", impl, "--dir", root]
        for key, value in options.items():
            if value is True:
                argv.append("--" + key)
            elif value not in (None, False):
                argv += ["--" + key, str(value)]
        return argv

    def run(self, impl, command, root, **options):
        done = subprocess.run(self.command(impl, command, root, **options), env=self.env(impl),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        if done.returncode != 0:
            raise RuntimeError("worker {} {} failed:\n{}".format(impl, command, done.stderr[-3000:]))
        return json.loads(done.stdout.strip().splitlines()[-1])

    def start(self, impl, command, root, **options):
        return subprocess.Popen(self.command(impl, command, root, **options), env=self.env(impl),
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


def exactly_once(got_lists, n):
    """Return (duplicates, missing) over the sequence numbers the consumers reported."""
    seen = {}
    for got in got_lists:
        for seq in got:
            seen[seq] = seen.get(seq, 0) + 1
    duplicates = sum(count - 1 for count in seen.values())
    missing = sum(1 for seq in range(n) if seq not in seen)
    return duplicates, missing


def median(values):
    return statistics.median(values) if values else None


# Scenarios: each returns a list of result rows (dicts), medians over repeats.

def worst_counts(runs, keys):
    """Return the largest count of each of ``keys`` over ``runs``: one bad run shows."""
    return {key: max(run[key] for run in runs) for key in keys}


def scenario_roundtrip(runner, impls, n, size, repeat, label="", fsync=False, batch=1):
    rows = []
    for impl in impls:
        runs = []
        for _ in range(repeat):
            root = runner.new_dir()
            result = runner.run(impl, "roundtrip", root, n=n, size=size, fsync=fsync, batch=batch)
            result["duplicates"], result["missing"] = exactly_once([result.pop("got")], n)
            runs.append(result)
            shutil.rmtree(root)
        rows.append({
            "scenario": "roundtrip", "impl": impl + label, "n": n, "fsync": fsync, "batch": batch,
            "publish_s": median([r["publish_s"] for r in runs]),
            "consume_s": median([r["consume_s"] for r in runs]),
            "total_s": median([r["total_s"] for r in runs]),
            **worst_counts(runs, ("duplicates", "missing", "spurious", "errors")),
        })
    return rows


def scenario_depth(runner, impls, depths, n, size, repeat, sample_original):
    rows = []
    for depth in depths:
        for impl in impls:
            count = min(n, sample_original) if impl == "original" else n
            runs = []
            for _ in range(repeat):
                root = runner.new_dir()
                runner.run(impl, "fill", root, n=depth + count, size=size)
                result = runner.run(impl, "consume", root, n=count)
                got = result.pop("got")
                result["duplicates"] = len(got) - len(set(got))
                result["missing"] = count - len(set(got))
                runs.append(result)
                shutil.rmtree(root)
            rows.append({
                "scenario": "depth", "impl": impl, "depth": depth, "n": count,
                "per_msg_us": median([r["consume_s"] / count * 1e6 for r in runs]),
                "rss_mb": median([r["rss_mb"] for r in runs]),
                **worst_counts(runs, ("duplicates", "missing", "spurious")),
            })
    return rows


def scenario_consumers(runner, impls, counts, n, size, repeat):
    rows = []
    for impl in impls:
        for count in counts:
            runs = []
            for _ in range(repeat):
                root = runner.new_dir()
                runner.run(impl, "fill", root, n=n, size=size)
                workers = [runner.start(impl, "drain", root, index=i, of=count)
                           for i in range(count)]
                for worker in workers:
                    if worker.stdout.readline().strip() != "ready":
                        raise RuntimeError("a {} consumer failed to start".format(impl))
                for worker in workers:
                    worker.stdin.write("go\n")
                    worker.stdin.flush()
                results = []
                for worker in workers:
                    out, _ = worker.communicate()
                    if worker.returncode != 0:
                        raise RuntimeError("a {} consumer failed".format(impl))
                    results.append(json.loads(out.strip().splitlines()[-1]))
                duplicates, missing = exactly_once([r["got"] for r in results], n)
                runs.append({
                    "wall_s": max(r["end"] for r in results) - min(r["start"] for r in results),
                    "duplicates": duplicates, "missing": missing,
                    "spurious": sum(r["spurious"] for r in results),
                    "errors": sum(r["errors"] for r in results),
                })
                shutil.rmtree(root)
            rows.append({
                "scenario": "consumers", "impl": impl, "consumers": count, "n": n,
                "wall_s": median([r["wall_s"] for r in runs]),
                **worst_counts(runs, ("duplicates", "missing", "spurious", "errors")),
            })
    return rows


def time_commands(commands, runs):
    """Return the median wall time, exit status and stderr of each (argv, env) in ``commands``.

    The commands take turns, ``runs`` rounds, so that a burst of load on a
    shared machine hits them all alike.  One untimed round comes first, and
    bytecode writing is allowed, so every timed run loads compiled modules
    as an installed package does.
    """
    prepared = []
    for argv, env in commands:
        env = dict(env)
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        prepared.append((argv, env))
    for argv, env in prepared:
        subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    times = [[] for _ in prepared]
    last = [None] * len(prepared)
    for _ in range(runs):
        for index, (argv, env) in enumerate(prepared):
            started = time.perf_counter()
            last[index] = subprocess.run(argv, env=env, stdout=subprocess.DEVNULL,
                                         stderr=subprocess.PIPE, text=True)
            times[index].append(time.perf_counter() - started)
    return [(median(t), done.returncode, (done.stderr or "").strip()[-300:])
            for t, done in zip(times, last)]


def scenario_cli(runner, impls, runs):
    """Time `python -c pass`, `ddmq publish` and `ddmq consume` (medians of many runs).

    `ddmq consume` runs after `ddmq publish` in every round, so it always
    finds the message just published.
    """
    commands = [("python", "python -c pass", [sys.executable, "-c", "pass"], runner.env("ddmq"))]
    roots = []
    for impl in impls:
        if impl == "raw":
            continue
        python = runner.python(impl)
        script = os.path.join(os.path.dirname(python), "ddmq")
        ddmq = [script] if os.path.exists(script) else [python, "-m", "ddmq"]
        root = runner.new_dir()
        roots.append(root)
        subprocess.run(ddmq + ["create", "-f", root, "bench"], env=runner.env(impl),
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for command, extra in (("publish", ["hello"]), ("consume", [])):
            commands.append((impl, "ddmq " + command, ddmq + [command, root, "bench"] + extra,
                             runner.env(impl)))
    results = time_commands([(argv, env) for _, _, argv, env in commands], runs)
    for root in roots:
        shutil.rmtree(root)
    return [{"scenario": "cli", "impl": impl, "command": label, "wall_s": wall,
             "status": status, "stderr": err}
            for (impl, label, _, _), (wall, status, err) in zip(commands, results)]


# Rendering

def fmt(value, spec="{:.3f}"):
    return "-" if value is None else spec.format(value)


def ratio(value, floor):
    return "-" if not value or not floor else "{:.2f}x".format(value / floor)


def table(title, header, lines):
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *lines)]
    rule = "  ".join("-" * w for w in widths)
    out = [title, rule, "  ".join(str(h).ljust(w) for h, w in zip(header, widths)), rule]
    out += ["  ".join(str(c).ljust(w) for c, w in zip(line, widths)) for line in lines]
    return "\n".join(out + [rule, ""])


def check(row):
    bad = [key for key in ("duplicates", "missing", "spurious") if row.get(key)]
    return "ok" if not bad else " ".join("{}={}".format(k, row[k]) for k in bad)


def render(report):
    rows = report["rows"]
    out = ["ddmq benchmark  " + report["when"],
           "machine: {machine}; Python {python}; filesystem: {filesystem}".format(**report),
           "command: " + report["command"], ""]
    if report.get("filesystem_million"):
        out.insert(2, "filesystem of the D=1,000,000 case: " + report["filesystem_million"])
    trips = [r for r in rows if r["scenario"] == "roundtrip"]
    if trips:
        floors = {r["fsync"]: r for r in trips if r["impl"] == "raw"}
        lines = []
        for r in trips:
            floor = floors.get(r["fsync"], {})
            lines.append([r["impl"], r["n"], "yes" if r["fsync"] else "no", r["batch"],
                          fmt(r["publish_s"]), fmt(r["consume_s"]), fmt(r["total_s"]),
                          ratio(r["total_s"], floor.get("total_s")),
                          fmt(r["n"] / r["publish_s"], "{:,.0f}"),
                          fmt(r["n"] / r["consume_s"], "{:,.0f}"),
                          check(r) + (" errors={}".format(r["errors"]) if r["errors"] else "")])
        out.append(table("Round trip: publish N, then consume+ack N, one process (median s)",
                         ["impl", "N", "fsync", "batch", "publish", "consume+ack", "total",
                          "vs raw", "publish/s", "consume+ack/s", "exactly once"], lines))
    depth = [r for r in rows if r["scenario"] == "depth"]
    if depth:
        floors = {r["depth"]: r for r in depth if r["impl"] == "raw"}
        first = {}
        for r in depth:
            first.setdefault(r["impl"], r)
        lines = [[r["impl"], "{:,}".format(r["depth"]), r["n"], fmt(r["per_msg_us"], "{:.1f}"),
                  ratio(r["per_msg_us"], floors.get(r["depth"], {}).get("per_msg_us")),
                  ratio(r["per_msg_us"], first[r["impl"]]["per_msg_us"]),
                  fmt(r["rss_mb"], "{:.0f}"), check(r)] for r in depth]
        out.append(table("Depth: consume+ack of N messages with D more waiting (median per message)",
                         ["impl", "D waiting", "N", "us/msg", "vs raw", "vs smallest D",
                          "peak RSS MB", "exactly once"], lines))
    consumers = [r for r in rows if r["scenario"] == "consumers"]
    if consumers:
        single = {r["impl"]: r["wall_s"] for r in consumers if r["consumers"] == 1}
        floors = {r["consumers"]: r["wall_s"] for r in consumers if r["impl"] == "raw"}
        lines = [[r["impl"], r["consumers"], r["n"], fmt(r["wall_s"]),
                  fmt(r["n"] / r["wall_s"], "{:,.0f}"), ratio(r["wall_s"], floors.get(r["consumers"])),
                  "{:.2f}x".format(single[r["impl"]] / r["wall_s"]) if r["impl"] in single else "-",
                  check(r) + (" errors={}".format(r["errors"]) if r["errors"] else "")]
                 for r in consumers]
        out.append(table("Consumers: k processes drain one queue of N (median wall s)",
                         ["impl", "k", "N", "wall", "msgs/s", "vs raw", "speed-up vs 1",
                          "exactly once, no spurious empty"], lines))
    cli = [r for r in rows if r["scenario"] == "cli"]
    if cli:
        base = cli[0]["wall_s"]
        lines = [[r["impl"], r["command"], fmt(r["wall_s"] * 1000, "{:.1f}"), ratio(r["wall_s"], base),
                  r["status"] if not r["status"] else "{} ({})".format(
                      r["status"], (r.get("stderr") or "?").splitlines()[-1][:60])]
                 for r in cli]
        out.append(table("CLI start-up (median wall ms)",
                         ["impl", "command", "ms", "vs python -c pass", "exit"], lines))
    return "\n".join(out)


# Environment

def describe_machine():
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return "{} x {}, {} {}".format(os.cpu_count(), cpu, platform.system(), platform.release())


def describe_filesystem(path):
    path = os.path.realpath(path)
    best = ("?", "?", "?")
    try:
        with open("/proc/mounts") as handle:
            for line in handle:
                device, mount, kind, options = line.split()[:4]
                if (path == mount or path.startswith(mount.rstrip("/") + "/")) \
                        and len(mount) >= len(best[1]):
                    best = (device, mount, kind + " (" + options + ")")
    except OSError:
        pass
    return "{} on {} mounted at {}".format(best[2], best[0], best[1])


def check_room(path, files):
    """Exit with a clear message if the filesystem at ``path`` cannot hold ``files`` messages."""
    fs = os.statvfs(path)
    if fs.f_favail < files * 1.05 or fs.f_bavail * fs.f_frsize < files * 4096 * 1.05:
        sys.exit("{} has room for {:,} files and {:,} MB; the million-message case needs {:,} "
                 "files of 4 KB.  Make a filesystem for it, e.g. (as root):\n"
                 "  truncate -s 8G /root/bench-deep.img; mkfs.ext4 -F -i 4096 /root/bench-deep.img\n"
                 "  mkdir -p /mnt/ddmq-bench-deep; mount -o loop /root/bench-deep.img "
                 "/mnt/ddmq-bench-deep\nand pass --million-dir /mnt/ddmq-bench-deep".format(
                     path, fs.f_favail, fs.f_bavail * fs.f_frsize // 2**20, files))


def original_python(venv):
    """Return the python of a venv holding ddmq 0.9.14 with the yaml shim, creating it if needed."""
    python = os.path.join(venv, "bin", "python")
    if not os.path.exists(python):
        subprocess.run([sys.executable, "-m", "venv", venv], check=True)
        subprocess.run([python, "-m", "pip", "install", "-q", "ddmq==" + ORIGINAL_VERSION],
                       check=True)
    site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                          check=True, stdout=subprocess.PIPE, text=True).stdout.strip()
    with open(os.path.join(site, "sitecustomize.py"), "w") as handle:
        handle.write(YAML_SHIM)
    return python


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", default=None,
                        help="where to run (a fresh local filesystem); default: a temp folder")
    parser.add_argument("--n", type=int, default=5000, help="messages per round trip (5000)")
    parser.add_argument("--size", type=int, default=100, help="payload bytes (100)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure; medians (3)")
    parser.add_argument("--depths", default="10000,100000",
                        help="comma-separated depths D for the depth scenario (10000,100000)")
    parser.add_argument("--depth-n", type=int, default=10000,
                        help="messages consumed in the depth scenario (10000)")
    parser.add_argument("--million", action="store_true",
                        help="add D=1,000,000 to the depth scenario (needs 1.1M free inodes, 5 GB)")
    parser.add_argument("--million-dir",
                        help="run the D=1,000,000 case here instead (a filesystem with the inodes)")
    parser.add_argument("--consumers", default="1,2,4", help="consumer process counts (1,2,4)")
    parser.add_argument("--fsync-n", type=int, default=1000,
                        help="messages in the fsync round trip (1000)")
    parser.add_argument("--batch", type=int, default=100,
                        help="batch size for the publish_many / consume(n=...) round trip (100)")
    parser.add_argument("--original", action="store_true",
                        help="also measure ddmq 0.9.14 from PyPI, in its own virtual environment")
    parser.add_argument("--original-venv", default=os.path.join(tempfile.gettempdir(),
                                                                "ddmq-orig-venv"),
                        help="where that environment lives (created if missing)")
    parser.add_argument("--original-depth-sample", type=int, default=300,
                        help="messages the original consumes per depth (it is slow) (300)")
    parser.add_argument("--cli-runs", type=int, default=None,
                        help="runs per CLI command (default: max(20, 7 x --repeat))")
    parser.add_argument("--only", default="roundtrip,fsync,batch,depth,consumers,cli",
                        help="comma-separated scenarios to run")
    parser.add_argument("--json", help="also write the results to this JSON file")
    args = parser.parse_args(argv)

    only = set(args.only.split(","))
    impls = ["raw", "ddmq"]
    runner_python = None
    if args.original:
        runner_python = original_python(args.original_venv)
        impls.append("original")
    parent = args.dir or tempfile.mkdtemp(prefix="ddmq-bench-")
    base = tempfile.mkdtemp(prefix="ddmq-bench-", dir=parent)
    runner = Runner(base, runner_python)
    depths = [int(d) for d in args.depths.split(",") if d]
    report = {
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": describe_machine(),
        "python": platform.python_version(),
        "filesystem": describe_filesystem(base),
        "command": " ".join([os.path.relpath(sys.executable, CHECKOUT), "-m", "benchmarks.run"]
                            + (argv if argv is not None else sys.argv[1:])),
        "rows": [],
    }
    rows = report["rows"]
    try:
        if "roundtrip" in only:
            rows += scenario_roundtrip(runner, impls, args.n, args.size, args.repeat)
        if "batch" in only:
            rows += scenario_roundtrip(runner, ["ddmq"], args.n, args.size, args.repeat,
                                       label=" batch", batch=args.batch)
        if "fsync" in only:
            rows += scenario_roundtrip(runner, [i for i in impls if i != "original"],
                                       args.fsync_n, args.size, args.repeat, fsync=True)
        if "depth" in only:
            rows += scenario_depth(runner, impls, depths, args.depth_n, args.size, args.repeat,
                                   args.original_depth_sample)
        if args.million and "depth" in only:
            deep = Runner(tempfile.mkdtemp(prefix="ddmq-bench-", dir=args.million_dir or base),
                          runner_python)
            check_room(deep.base, 1_000_000 + args.depth_n)
            try:
                rows += scenario_depth(deep, [i for i in impls if i != "original"], [1_000_000],
                                       args.depth_n, args.size, 1, 0)
            finally:
                shutil.rmtree(deep.base, ignore_errors=True)
            report["filesystem_million"] = describe_filesystem(deep.base)
        if "consumers" in only:
            counts = [int(c) for c in args.consumers.split(",") if c]
            rows += scenario_consumers(runner, impls, counts, args.n, args.size, args.repeat)
        if "cli" in only:
            rows += scenario_cli(runner, impls, args.cli_runs or max(20, 7 * args.repeat))
    finally:
        shutil.rmtree(base, ignore_errors=True)
        if not args.dir:
            shutil.rmtree(parent, ignore_errors=True)
    text = render(report)
    print(text)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(report, handle, indent=2)
    failed = [r for r in rows if r.get("duplicates") or r.get("missing")]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
