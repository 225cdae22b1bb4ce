"""The daemon's peak memory, and where it goes: ``python tools/bench_memory.py [--itemise] -- ARGS``.

Runs ``relaxd ARGS`` (default: ``--simulate --video`` the shared Hamilton clip at ``--speed max``,
into a temporary directory) and prints its peak resident set size (``ru_maxrss``), measured as
the daemon runs on the chair: a process of its own.

``--floor`` prints the same peak for the third-party parts the daemon runs on, one more part a
process (Python; numpy; OpenCV on one thread; the TFLite runtime's interpreter module; gpiozero's
mock pins, which import importlib.metadata; the model allocated; every frame of the clip decoded
on one FFmpeg thread), so the daemon's peak less the last is relaxd's own share.

``--itemise`` runs the daemon inside this process instead and prints each step the peak rose by
3 MB or more with the relaxd code that was running, then the memory held at the end by kind:
the heap and anonymous maps (Python's objects, numpy's arrays, native buffers) and each file
mapped (shared libraries, the model). File-backed pages are counted as the kernel maps them:
a library read whole into the page cache (just installed, or checksummed) shows more of itself
than one paged in on demand, so compare runs after the same preparation.
"""

from __future__ import annotations

import argparse
import collections
import resource
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path

CLIP = Path(__file__).resolve().parents[2] / "shared" / "video" / "short_hamilton_clip.mp4"


def default_args(out: str) -> list[str]:
    """The daemon on the shared clip, as fast as it goes, its records in ``out``."""
    return ["--simulate", "--video", str(CLIP), "--speed", "max", "--quiet", "--out", out]


def peak_rss_mb(args: list[str]) -> float:
    """The peak RSS, in MB, of ``relaxd ARGS`` run as a process of its own."""
    return _peak_of(["-m", "relaxd", *args])


def _peak_of(python_args: list[str]) -> float:
    """The peak RSS, in MB, of ``python PYTHON_ARGS``, started from a small Python process: a
    process's peak counts its parent's at the fork, so this one's is never this tool's."""
    code = ("import resource, subprocess, sys; "
            "subprocess.run([sys.executable, *sys.argv[1:]], check=True, "
            "stdout=subprocess.DEVNULL); "
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    out = subprocess.run([sys.executable, "-c", code, *python_args], check=True,
                         capture_output=True, text=True).stdout
    return round(int(out.split()[-1]) / 1024, 1)


#: The third-party parts under the daemon, each with the code that loads it, in the order it does.
FLOOR_PARTS: tuple[tuple[str, str], ...] = (
    ("python", "pass"),
    ("numpy", "import numpy"),
    ("cv2 (one thread)", "import cv2; cv2.setNumThreads(1)"),
    ("ai_edge_litert.interpreter", "from ai_edge_litert import interpreter as li"),
    ("gpiozero mock pins", "from gpiozero.pins.mock import MockFactory, MockPWMPin"),
    ("the model (XNNPACK, one thread)",
     "m = li.Interpreter(model_path=MODEL, num_threads=1, "
     "experimental_op_resolver_type=li.OpResolverType.AUTO); m.allocate_tensors()"),
    ("the clip decoded (one FFmpeg thread)",
     "cap = cv2.VideoCapture(CLIP, cv2.CAP_FFMPEG, [cv2.CAP_PROP_N_THREADS, 1])\n"
     "while (got := cap.read())[0]: cv2.cvtColor(got[1], cv2.COLOR_BGR2GRAY)"),
)


def floor_mb(parts: int, clip: Path = CLIP) -> float:
    """The peak RSS, in MB, of a process of its own that loads the first ``parts`` of
    :data:`FLOOR_PARTS`."""
    from relaxd.core.paths import default_model

    code = "\n".join([f"CLIP, MODEL = {str(clip)!r}, {str(default_model())!r}",
                      *(load for _, load in FLOOR_PARTS[:parts])])
    return _peak_of(["-c", code])


def print_floor(args: list[str]) -> None:
    """Each third-party part's peak as :data:`FLOOR_PARTS` adds it, then the daemon's against
    them all."""
    peak = 0.0
    for n, (name, _) in enumerate(FLOOR_PARTS, 1):
        before, peak = peak, floor_mb(n)
        print(f"{peak:7.1f} MB  +{name}" + (f" (+{peak - before:.1f})" if n > 1 else ""))
    daemon = peak_rss_mb(args)
    print(f"{daemon:7.1f} MB  the daemon: relaxd's own share {daemon - peak:.1f} MB")


def by_mapping() -> collections.Counter[str]:
    """Resident kB of this process by mapping: ``[heap]``, ``[anon]`` or the file's path."""
    held: collections.Counter[str] = collections.Counter()
    name = "[anon]"
    with open("/proc/self/smaps", encoding="utf-8") as smaps:
        for line in smaps:
            fields = line.split()
            if "-" in fields[0] and not fields[0].endswith(":"):
                name = fields[5] if len(fields) > 5 else "[anon]"
            elif fields[0] == "Rss:":
                held[name] += int(fields[1])
    return held


def _high_water_kb() -> int:
    with open("/proc/self/status", encoding="utf-8") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM"))


def _where(frame: object) -> str:
    """The innermost relaxd frames of a stack, else its innermost frame."""
    stack = traceback.extract_stack(frame)  # type: ignore[arg-type]
    ours = [f for f in stack if "/relaxd/" in f.filename] or stack[-1:]
    return " <- ".join(f"{Path(f.filename).name}:{f.lineno} {f.name}" for f in reversed(ours[-3:]))


def itemise(args: list[str], step_kb: int = 3072) -> list[tuple[float, str]]:
    """Run ``relaxd ARGS`` here; each rise of the peak by ``step_kb`` with where it happened."""
    from relaxd.cli import main

    rises: list[tuple[float, str]] = []
    main_thread, done = threading.get_ident(), threading.Event()

    def watch() -> None:
        last = 0
        while not done.wait(0.002):
            if (peak := _high_water_kb()) >= last + step_kb:
                frame = sys._current_frames().get(main_thread)
                rises.append((round(peak / 1024, 1), _where(frame) if frame else "?"))
                last = peak
    threading.Thread(target=watch, daemon=True).start()
    try:
        main(args)
    except SystemExit:
        pass
    finally:
        time.sleep(0.01)
        done.set()
    return rises


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--itemise", action="store_true", help="where the peak rises, and by kind")
    p.add_argument("--floor", action="store_true",
                   help="the third-party parts' peak, one more part a process, against the daemon's")
    p.add_argument("args", nargs="*", help="relaxd's arguments (after --)")
    opts = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as out:
        args = opts.args or default_args(out)
        if opts.floor:
            print_floor(args)
            return 0
        if not opts.itemise:
            print(f"peak RSS {peak_rss_mb(args)} MB: relaxd {' '.join(args)}")
            return 0
        for peak, where in itemise(args):
            print(f"{peak:7.1f} MB  {where}")
    held = by_mapping()
    print(f"held at the end: {sum(held.values()) / 1024:.1f} MB "
          f"({len([m for m in sys.modules if '.' not in m])} top-level modules); "
          f"peak {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.1f} MB")
    for name, kb in held.most_common(12):
        print(f"{kb / 1024:7.1f} MB  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
