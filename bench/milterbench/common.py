"""What every part of the milter benchmark shares: paths, the configurations, logging, stopping
safely on a signal."""
import os
import sys
import time

# bench/, where loadgen.c, floor_milter.c and sigs/ are, and the repository.
HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REPO = os.path.dirname(HERE)
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")

# The integration tests' harness (private Postfix, ports, process helpers) is the benchmark's too.
if os.path.join(REPO, "IntegrationTests") not in sys.path:
    sys.path.insert(0, os.path.join(REPO, "IntegrationTests"))

CONFIGS = ("postfix", "floor", "breakwater", "clamav")
# Run only when named in --configs.
EXTRA_CONFIGS = ("busy", "baseline")
ALL_CONFIGS = CONFIGS + EXTRA_CONFIGS
# The configurations that run bench/floor_milter.c.
FLOOR_CONFIGS = ("floor", "busy")
# The configurations whose 200-client msgs/s is reported against their 32-client msgs/s.
SCALING_CONFIGS = ("breakwater", "baseline", "clamav", "floor", "busy", "postfix")
# The configurations that run `breakwater run` (baseline: another build of it, --baseline).
BREAKWATER_CONFIGS = ("breakwater", "baseline")
CONFIG_LABEL = {"postfix": "Postfix alone", "floor": "Postfix + floor milter (libmilter, verdicts known, no scan)",
                "breakwater": "Postfix + Breakwater", "clamav": "Postfix + clamav-milter + clamd",
                "baseline": "Postfix + Breakwater, baseline build (--baseline)",
                "busy": "Postfix + busy floor (the floor milter spending the scan's CPU per message on 2 slots, "
                        "no scan)"}


def log(*a):
    print(time.strftime("%H:%M:%S"), *a, file=sys.stderr, flush=True)


class Shield:
    """Defers SIGTERM's KeyboardInterrupt while a run stops what it started: an interrupt that landed
    inside a `finally` would skip the stops after it and leave processes running."""
    depth = 0
    pending = False

    def __enter__(self):
        Shield.depth += 1

    def __exit__(self, *exc):
        Shield.depth -= 1
        if Shield.depth == 0 and Shield.pending:
            Shield.pending = False
            raise KeyboardInterrupt

    @staticmethod
    def on_signal(signum, _frame):
        if Shield.depth:
            Shield.pending = True
        else:
            raise KeyboardInterrupt


def wait_until(pred, timeout, what):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return
        time.sleep(0.02)
    raise RuntimeError(f"timed out waiting for {what}")


def filesystem_of(path):
    """(mount point, file-system type) of the mount holding `path`, from /proc/mounts."""
    path = os.path.realpath(path)
    best = ("/", "?")
    try:
        with open("/proc/mounts") as f:
            for line in f:
                parts = line.split()
                if len(parts) < 3:
                    continue
                mnt = parts[1].replace("\\040", " ")
                if (path == mnt or path.startswith(mnt.rstrip("/") + "/")) and len(mnt) >= len(best[0]):
                    best = (mnt, parts[2])
    except OSError:
        pass
    return best
