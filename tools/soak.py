"""Soak run: hours of scripted session in `relaxd --simulate` at full speed, watched from outside.

Prints the daemon's resident memory over the run and checks that every event written to the
JSON Lines file is also in the SQLite session record::

    python tools/soak.py --hours 2          # about a minute or two on a laptop

Exit status 1 if memory grew by more than --max-growth-mb or any event was lost.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent

#: One 10-minute cycle of moods, e-stop and reset, repeated for the whole run.
CYCLE = [
    (0, {"mood": "neutral"}),
    (60, {"mood": "positive"}),
    (240, {"mood": "negative"}),
    (300, {"mood": "negative", "confidence": 0.95}),
    (320, {"mood": "neutral"}),
    (400, {"mood": "no_face"}),
    (450, {"mood": "positive"}),
    (500, {"press": "estop"}),
    (520, {"release": "estop"}),
    (525, {"press": "reset"}),
    (530, {"release": "reset"}),
]


def write_inputs(folder: Path, hours: float) -> tuple[Path, Path]:
    """A scenario stretched to ``hours`` and a mood script that cycles through every rule."""
    scenario = yaml.safe_load((ROOT / "scenarios" / "calm-blue-waves.yaml").read_text())
    total = sum(p["duration"] for p in scenario["phases"])
    for p in scenario["phases"]:
        p["duration"] = p["duration"] * hours * 3600 / total
    scenario_path = folder / "soak-scenario.yaml"
    scenario_path.write_text(yaml.safe_dump(scenario))
    entries = [{"at": start + at, **what} for start in range(0, int(hours * 3600), 600)
               for at, what in CYCLE]
    script_path = folder / "soak-moods.yaml"
    script_path.write_text(yaml.safe_dump(entries))
    return scenario_path, script_path


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def soak(hours: float, folder: Path) -> dict:
    scenario, script = write_inputs(folder, hours)
    events = folder / "events.jsonl"
    cmd = [sys.executable, "-m", "relaxd", "--simulate", "--scenario", str(scenario),
           "--mood-script", str(script), "--speed", "max", "--quiet", "--events", str(events),
           "--out", str(folder / "out")]
    started = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    samples: list[tuple[float, float]] = []
    while proc.poll() is None:
        mb = rss_mb(proc.pid)
        if mb is not None:
            samples.append((time.monotonic() - started, mb))
        time.sleep(0.25)
    err = proc.stderr.read()
    wall = time.monotonic() - started
    lines = [json.loads(x) for x in events.read_text().splitlines()]
    with sqlite3.connect(folder / "out" / "sessions.sqlite") as db:
        stored = db.execute("SELECT count(*) FROM events").fetchone()[0]
    # Memory after the first quarter (imports done, buffers warm) against the end.
    warm = [mb for s, mb in samples if s >= wall / 4] or [mb for _, mb in samples]
    return {
        "returncode": proc.returncode, "stderr_tail": err.strip().splitlines()[-3:],
        "session_s": lines[-1]["t"] if lines else 0.0, "wall_s": round(wall, 1),
        "events_jsonl": len(lines), "events_sqlite": stored,
        "estops": sum(e["type"] == "estop" and e.get("action") == "press" for e in lines),
        "rss_first_quarter_mb": round(warm[0], 1), "rss_peak_mb": round(max(warm), 1),
        "rss_growth_mb": round(max(warm) - warm[0], 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=2.0, help="session time to simulate")
    parser.add_argument("--max-growth-mb", type=float, default=10.0)
    parser.add_argument("--keep", metavar="DIR", help="keep the run's files in DIR")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(args.keep or tmp)
        folder.mkdir(parents=True, exist_ok=True)
        result = soak(args.hours, folder)
    print(json.dumps(result, indent=2))
    ok = (result["returncode"] == 0 and result["events_jsonl"] == result["events_sqlite"]
          and result["rss_growth_mb"] <= args.max_growth_mb)
    print("soak: ok" if ok else "soak: FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
