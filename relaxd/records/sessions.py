"""The session record: every event of every session in one SQLite file under the state directory.

:class:`SessionSink` is an :class:`relaxd.records.events.EventLog` sink. The database runs in WAL mode
with ``synchronous=NORMAL`` and is committed whenever an event is at least ``commit_every``
(1 s) of session time after the last commit, and at once for alerts, e-stops and session
events: a writer killed with SIGKILL loses at most the last second.

``relaxd sessions`` (:mod:`relaxd.commands.sessions`) lists them and exports one as CSV or a plot.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from relaxd.core.errors import RelaxdError
from relaxd.core.plotting import pyplot, save_figure
from relaxd.records.events import Event

DB_NAME = "sessions.sqlite"
_URGENT = ("alert", "estop", "session")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    started TEXT NOT NULL,      -- UTC, ISO 8601
    ended TEXT,                 -- NULL: still running or interrupted
    scenario TEXT NOT NULL DEFAULT '',
    source TEXT NOT NULL DEFAULT '',
    last_t REAL NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS events (
    session INTEGER NOT NULL REFERENCES sessions(id),
    t REAL NOT NULL,
    type TEXT NOT NULL,
    data TEXT NOT NULL          -- the event's other fields, JSON
);
CREATE INDEX IF NOT EXISTS events_by_session ON events(session, t);
"""


def _connect(path: Path) -> sqlite3.Connection:
    try:
        db = sqlite3.connect(path, check_same_thread=False, timeout=5)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.executescript(_SCHEMA)
    except sqlite3.Error as exc:
        raise RelaxdError(f"cannot open the session record: {exc}", path) from None
    return db


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class SessionSink:
    """Stores one session's events; ``session_id`` is its row in the sessions table."""

    def __init__(self, state_dir: str | Path, *, scenario: str = "",
                 source: str = "", commit_every: float = 1.0) -> None:
        state_dir = Path(state_dir)
        try:
            state_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RelaxdError(f"cannot create the state directory: {exc.strerror}",
                              state_dir) from None
        self.path = state_dir / DB_NAME
        db = _connect(self.path)
        self._db: sqlite3.Connection | None = db  # None once closed
        cur = db.execute("INSERT INTO sessions (started, scenario, source) VALUES (?, ?, ?)",
                         (_now(), scenario, source))
        assert cur.lastrowid is not None  # the row just inserted
        self.session_id: int = cur.lastrowid
        db.commit()
        self._commit_every = commit_every
        self._last_commit = 0.0
        self._last_t = 0.0

    def write(self, event: Event) -> None:
        t = float(event["t"])
        data = {k: v for k, v in event.items() if k not in ("t", "type")}
        self._open().execute("INSERT INTO events (session, t, type, data) VALUES (?, ?, ?, ?)",
                             (self.session_id, t, event["type"], json.dumps(data, default=str)))
        self._last_t = max(self._last_t, t)
        if t - self._last_commit >= self._commit_every or event["type"] in _URGENT:
            self._commit(t)

    def flush(self) -> None:
        self._commit(self._last_t)

    def close(self) -> None:
        if self._db is None:
            return
        self._db.execute("UPDATE sessions SET ended = ? WHERE id = ?", (_now(), self.session_id))
        self.flush()
        self._db.close()
        self._db = None

    def _commit(self, t: float) -> None:
        db = self._open()
        db.execute("UPDATE sessions SET last_t = ? WHERE id = ?", (self._last_t, self.session_id))
        db.commit()
        self._last_commit = t

    def _open(self) -> sqlite3.Connection:
        """The session's database, still open (sqlite's own error once closed)."""
        if self._db is None:
            raise sqlite3.ProgrammingError("the session record is closed")
        return self._db


@dataclass(frozen=True)
class SessionInfo:
    id: int
    started: str
    ended: str | None
    scenario: str
    source: str
    duration: float
    events: int
    alerts: int
    estops: int
    child: str | None = None  # the child's id, from the session's start event (names live apart)


def connect_read_only(path: Path) -> sqlite3.Connection:
    """An existing SQLite file opened read-only (sqlite3.Error if it cannot be)."""
    return sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=5)


def _open_existing(state_dir: Path) -> sqlite3.Connection | None:
    """Read-only, so listing never writes to a record the daemon may be writing."""
    path = state_dir / DB_NAME
    if not path.exists():
        return None
    try:
        return connect_read_only(path)
    except sqlite3.Error as exc:
        raise RelaxdError(f"cannot open the session record: {exc}", path) from None


#: The stops a session's summary counts as e-stops: the e-stop's own (records from before stops
#: had causes are its own) and the station's STOP, its software path; never a clinic's software
#: stop, a fault, a stall or a crash.
EMERGENCY_CAUSES = ("estop", "station-stop")


def list_sessions(state_dir: str | Path) -> list[SessionInfo]:
    """Every recorded session, oldest first (duration from the last stored event)."""
    db = _open_existing(Path(state_dir))
    if db is None:
        return []
    try:
        rows = db.execute(
            "SELECT s.id, s.started, s.ended, s.scenario, s.source, COALESCE(MAX(e.t), 0), "
            "COUNT(e.t), COUNT(CASE WHEN e.type = 'alert' THEN 1 END), "
            "COUNT(CASE WHEN e.type = 'estop' AND json_extract(e.data, '$.action') = 'press' "
            "AND COALESCE(json_extract(e.data, '$.cause'), 'estop') IN (?, ?) "
            "THEN 1 END), MAX(CASE WHEN e.type = 'session' THEN json_extract(e.data, '$.child') "
            "END) FROM sessions s LEFT JOIN events e ON e.session = s.id "
            "GROUP BY s.id ORDER BY s.id", EMERGENCY_CAUSES).fetchall()
    except sqlite3.Error as exc:
        raise RelaxdError(f"cannot read the session record: {exc}", Path(state_dir)) from None
    finally:
        db.close()
    return [SessionInfo(*r) for r in rows]


def load_events(state_dir: str | Path, session_id: int) -> list[Event]:
    """One session's events in time order; RelaxdError if there is no such session."""
    db = _open_existing(Path(state_dir))
    try:
        if db is None or db.execute("SELECT 1 FROM sessions WHERE id = ?",
                                    (session_id,)).fetchone() is None:
            raise RelaxdError(f"no session {session_id} in {Path(state_dir) / DB_NAME}")
        rows = db.execute("SELECT t, type, data FROM events WHERE session = ? ORDER BY t, rowid",
                          (session_id,)).fetchall()
    except sqlite3.Error as exc:
        raise RelaxdError(f"cannot read the session record: {exc}", Path(state_dir)) from None
    finally:
        if db is not None:
            db.close()
    return [{"t": t, "type": ty, **json.loads(data)} for t, ty, data in rows]


def export_csv(events: list[Event], out: str | Path) -> None:
    """One row an event: t, type, then every field any event has (lists and dicts as JSON)."""
    try:
        with open(out, "w", newline="", encoding="utf-8") as f:
            write_csv(events, f)
    except OSError as exc:
        raise RelaxdError(f"cannot write CSV: {exc.strerror}", out) from None


def write_csv(events: list[Event], f: Any) -> None:
    """:func:`export_csv`'s rows to an open text file (the station's download)."""
    import csv  # an export's alone: the daemon writing its record never needs it

    fields = sorted({k for e in events for k in e} - {"t", "type"})
    w = csv.writer(f)
    w.writerow(["t", "type", *fields])
    for e in events:
        w.writerow([e["t"], e["type"], *(
            _cell(json.dumps(e[k]) if isinstance(e.get(k), (list, dict)) else e.get(k, ""))
            for k in fields)])


#: A text cell starting with one of these is a formula to a spreadsheet.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: object) -> object:
    """A CSV cell a spreadsheet shows as text: a text value that would start a formula gets a
    leading apostrophe (numbers stay numbers)."""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def events_of_type(state_dir: str | Path, type: str, limit: int = 200) -> list[Event]:
    """The latest ``limit`` events of one ``type`` over every session, newest first, each with
    its ``session`` and the session's ``started`` (the station's audit log)."""
    db = _open_existing(Path(state_dir))
    if db is None:
        return []
    try:
        rows = db.execute(
            "SELECT e.session, s.started, e.t, e.data FROM events e JOIN sessions s "
            "ON s.id = e.session WHERE e.type = ? ORDER BY e.rowid DESC LIMIT ?",
            (type, limit)).fetchall()
    except sqlite3.Error as exc:
        raise RelaxdError(f"cannot read the session record: {exc}", Path(state_dir)) from None
    finally:
        db.close()
    return [{"session": sid, "started": started, "t": t, "type": type, **json.loads(data)}
            for sid, started, t, data in rows]


_MOOD_Y = {"no_face": 0, "negative": 1, "neutral": 2, "positive": 3}
_MARK = {"halt": "red", "reduce": "orange", "raise": "green", "pause": "grey",
         "restart": "blue", "resume": "blue"}


def _plot_vitals(vitals: list[Event], events: list[Event], breath: Any, body: Any) -> None:
    """Breaths a minute (the child's, dots; the chair's tempo, dashed; the calm rate of the
    session's start event, dotted) on ``breath``; pulse (left, dots, paler when unsure) and
    restlessness 0..1 (right) on ``body``. Unknown rates are gaps."""
    def known(key: str) -> list[tuple[float, float]]:
        return [(e["t"], e[key]) for e in vitals if isinstance(e.get(key), (int, float))]

    for key, style in (("breathing", dict(color="tab:blue", marker="o", linestyle="none",
                                          label="child")),
                       ("tempo", dict(color="grey", linestyle="--", drawstyle="steps-post",
                                      label="chair's tempo"))):
        pts = known(key)
        if pts:
            breath.plot(*zip(*pts), **style)
    calm = next((e.get("calm_breathing") for e in events if e["type"] == "session"
                 and e.get("state") == "start" and e.get("calm_breathing")), None)
    if calm:
        breath.axhline(calm, color="tab:green", linestyle=":", label=f"calm {calm:g} / min")
    breath.set_ylabel("breaths / min")
    breath.legend(loc="upper right")
    pulse = [(e["t"], e["pulse"], (e.get("quality") or {}).get("pulse", 0.0)) for e in vitals
             if isinstance(e.get("pulse"), (int, float))]
    if pulse:
        body.scatter([p[0] for p in pulse], [p[1] for p in pulse], c="tab:red",
                     alpha=[max(0.2, min(1.0, p[2])) for p in pulse], s=12)
    body.set_ylabel("pulse / min", color="tab:red")
    moves = body.twinx()
    pts = known("movement")
    if pts:
        moves.plot(*zip(*pts), color="tab:orange", drawstyle="steps-post")
    moves.set_ylim(-0.02, 1.02)
    moves.set_ylabel("restlessness", color="tab:orange")


def plot_events(events: list[Event], out: str | Path, title: str = "",
                driven: list[dict[str, float]] | None = None) -> None:
    """PNG of mood (top) and light/audio/vibration levels (below) over time, with decisions
    (coloured lines) and e-stops (black); with ``vitals`` events, the child's breathing beside
    the chair's tempo and their calm rate, then pulse and restlessness (:func:`_plot_vitals`).
    Reads ``mood`` events' ``mood``, ``levels`` events'
    ``light``, ``audio``, ``vibration``, and ``intensity`` from any event that has it. With
    ``driven`` (a ``--trace``'s rows) each output as driven is drawn too, thin: breathing,
    pulses and waves, and under a tempo the three in phase."""
    plt = pyplot()
    moods = [(e["t"], _MOOD_Y[e["mood"]]) for e in events
             if e["type"] == "mood" and e.get("mood") in _MOOD_Y]
    levels = [e for e in events if e["type"] == "levels"]
    vitals = [e for e in events if e["type"] == "vitals"]
    rows = [1, 2] + ([1.2, 1] if vitals else [])
    fig, axes = plt.subplots(len(rows), 1, sharex=True, figsize=(11, 6 + 3 * bool(vitals)),
                             gridspec_kw={"height_ratios": rows})
    top, bottom = axes[0], axes[1]
    if vitals:
        _plot_vitals(vitals, events, axes[2], axes[3])
    if moods:
        end = max(e["t"] for e in events)
        top.step([m[0] for m in moods] + [end], [m[1] for m in moods] + [moods[-1][1]],
                 where="post", color="purple")
    top.set_yticks(list(_MOOD_Y.values()), list(_MOOD_Y))
    top.set_ylim(-0.5, 3.5)
    top.set_title(title)
    for key, colour in (("light", "gold"), ("audio", "tab:blue"), ("vibration", "tab:green"),
                        ("intensity", "black")):
        source = events if key == "intensity" else levels  # decisions carry it too
        pts = [(e["t"], e[key]) for e in source if isinstance(e.get(key), (int, float))]
        if pts:  # recorded on change: each value holds until the next
            bottom.plot(*zip(*pts), label=key, color=colour, drawstyle="steps-post",
                        linestyle="--" if key == "intensity" else "-")
    for key, colour in (("light", "gold"), ("audio", "tab:blue"), ("vibration", "tab:green")):
        if driven:
            bottom.plot([r["t"] for r in driven], [r[key] for r in driven], color=colour,
                        linewidth=0.5, alpha=0.6)
    for e in events:
        if e["type"] == "decision" and e.get("action") in _MARK:
            bottom.axvline(e["t"], color=_MARK[e["action"]], alpha=0.5, linewidth=1)
        elif e["type"] == "estop" and e.get("action") in ("press", "estop"):
            for ax in axes:
                ax.axvline(e["t"], color="black", linewidth=2)
    bottom.set_ylim(-0.02, 1.02)
    axes[-1].set_xlabel("seconds since session start")
    bottom.set_ylabel("level")
    bottom.legend(loc="upper right")
    save_figure(fig, out, dpi=100)
