"""Child profiles on the chair: pseudonym, guardian consent, retention, a therapist's limits,
and what relaxd learned about the child. Stored only in the state directory's
``children.sqlite``, readable by relaxd's user alone (mode 0600), apart from the session
records (``sessions.sqlite``, which the caregiver station's group reads and which names a
child by id only); never an image. The session records are attached as ``rec``::

    children(id, name, real_name, birth_year, notes, created, consent_by, consent_at,
             consent_scope, retention_days, limits JSON, learned JSON)
    session_children(session -> rec.sessions.id, child -> children.id, scenario, why)

``delete`` erases a child with every linked session and its events (the right to erasure);
sessions older than the child's retention period are deleted whenever the store is opened.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from relaxd.control.controller import Caps, Levels
from relaxd.control.scenario import Scenario, mmss
from relaxd.core.errors import RelaxdError
from relaxd.records.sessions import DB_NAME, _connect, connect_read_only

_SCHEMA = """
CREATE TABLE IF NOT EXISTS children (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    real_name INTEGER NOT NULL DEFAULT 0,   -- 1: the clinic chose to store a real name
    birth_year INTEGER,
    notes TEXT NOT NULL DEFAULT '',
    created TEXT NOT NULL,
    consent_by TEXT,                          -- guardian who consented; NULL: no consent
    consent_at TEXT,
    consent_scope TEXT,                       -- camera (face and body signals) | manual
    retention_days INTEGER NOT NULL DEFAULT 365,
    limits TEXT NOT NULL DEFAULT '{}',
    learned TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE IF NOT EXISTS session_children (
    session INTEGER PRIMARY KEY,              -- rec.sessions(id), in the session records
    child TEXT NOT NULL REFERENCES children(id),
    scenario TEXT NOT NULL DEFAULT '',
    why TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS sessions_by_child ON session_children(child);
"""


#: The profiles' file in the state directory, apart from the session records.
CHILDREN_DB = "children.sqlite"


def _open_private(path: Path) -> sqlite3.Connection:
    """The profiles' database, created readable and writable by relaxd's user alone."""
    try:
        os.close(os.open(path, os.O_CREAT | os.O_RDWR, 0o600))
        os.chmod(path, 0o600)
        db = sqlite3.connect(path, check_same_thread=False, timeout=5)
        db.execute("PRAGMA journal_mode=WAL")
        db.executescript(_SCHEMA)
    except (OSError, sqlite3.Error) as exc:
        raise RelaxdError(f"cannot open the child profiles: {exc}", path) from None
    return db


def child_names(state_dir: str | Path) -> dict[str, str]:
    """Every child's name by id, read-only; {} where there are no profiles or this user may
    not read them (the records then show ids)."""
    path = Path(state_dir) / CHILDREN_DB
    try:
        db = connect_read_only(path)
        try:
            return dict(db.execute("SELECT id, name FROM children").fetchall())
        finally:
            db.close()
    except (OSError, sqlite3.Error):
        return {}


_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
_ANIMALS = ("Otter", "Fox", "Heron", "Badger", "Wren", "Seal", "Lynx", "Robin", "Hare", "Owl",
            "Finch", "Marten")
SCOPES = ("camera", "manual")
#: What a consent for the camera covers, in the words shown with it: the face's mood and the
#: body signals read from the same camera, kept as numbers, never as pictures.
CAMERA_CONSENT = ("camera (the face's mood and the body's breathing, pulse and restlessness, "
                  "kept as numbers; no picture is ever stored)")


@dataclass(frozen=True)
class ChildLimits:
    """A therapist's limits for one child; None = the installation's. They bind like the
    installation caps: the smallest wins."""

    light: float | None = None          # highest light level, 0..1
    audio: float | None = None          # highest audio level, 0..1
    vibration: float | None = None      # highest vibration level, 0..1
    no_pulse: bool = False              # photosensitivity: the light never pulses or breathes
    session_min: float | None = None    # longest session, minutes
    daily_min: float | None = None      # most minutes in the chair a day
    pinned: str | None = None           # always this scenario (by name)
    forbidden: tuple[str, ...] = ()     # never these scenarios
    allowed_again: tuple[str, ...] = () # offered again despite two halts in a row

    def caps(self, installation: Caps) -> Caps:
        """The installation's caps lowered by this child's."""
        mine = Levels(*(1.0 if v is None else v for v in (self.light, self.audio, self.vibration)))
        return Caps(installation.level.each(min, mine), installation.ramp)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ChildLimits:
        known = {f.name for f in fields(cls)}
        data = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k in known}
        return cls(**data)


@dataclass
class Child:
    id: str
    name: str
    real_name: bool = False
    birth_year: int | None = None
    notes: str = ""
    created: str = ""
    consent_by: str | None = None
    consent_at: str | None = None
    consent_scope: str | None = None
    retention_days: int = 365
    limits: ChildLimits = field(default_factory=ChildLimits)
    learned: dict[str, Any] = field(default_factory=dict)

    def consent_line(self) -> str:
        """What the guardian consented to, by whom and when."""
        if not self.consent_by:
            return "none recorded: no session can run"
        scope = CAMERA_CONSENT if self.consent_scope == "camera" else \
            "manual mode only (no camera)"
        return f"{self.consent_by}, {self.consent_at}, for {scope}"


def _now() -> datetime:
    return datetime.now(timezone.utc)


def check_id(child_id: str) -> str:
    if not _ID.match(child_id or ""):
        raise RelaxdError(f"child id '{child_id}' must be 1-32 lower-case letters, digits, - or _")
    return child_id


class ChildStore:
    """The children of one chair (its state directory). Opening it applies retention."""

    def __init__(self, state_dir: str | Path, now: datetime | None = None) -> None:
        self.state_dir = Path(state_dir)
        try:
            self.state_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RelaxdError(f"cannot create the state directory: {exc.strerror}",
                              self.state_dir) from None
        self.path = self.state_dir / CHILDREN_DB
        self.db = _open_private(self.path)
        records = self.state_dir / DB_NAME
        _connect(records).close()  # the session records exist, with their tables
        self.db.execute("ATTACH DATABASE ? AS rec", (str(records),))
        self.purge_expired(now or _now())

    def close(self) -> None:
        self.db.close()

    # --- profiles --------------------------------------------------------------------------

    def add(self, child_id: str | None = None, name: str | None = None, real_name: bool = False,
            **extra: Any) -> Child:
        """A new child; without a name a pseudonym, without an id the next free ``c<N>``."""
        n = self.db.execute("SELECT COUNT(*) FROM children").fetchone()[0] + 1
        child_id = check_id(child_id or f"c{n}")
        if self.find(child_id) is not None:
            raise RelaxdError(f"a child with id '{child_id}' exists already")
        child = Child(child_id, name or f"{_ANIMALS[(n - 1) % len(_ANIMALS)]} {n}",
                      real_name=bool(name and real_name), created=_now().isoformat(timespec="seconds"),
                      **extra)
        self.db.execute("INSERT INTO children (id, name, created) VALUES (?, ?, ?)",
                        (child.id, child.name, child.created))
        self.save(child)
        return child

    def save(self, child: Child) -> None:
        self.db.execute(
            "UPDATE children SET name=?, real_name=?, birth_year=?, notes=?, consent_by=?, "
            "consent_at=?, consent_scope=?, retention_days=?, limits=?, learned=? WHERE id=?",
            (child.name, int(child.real_name), child.birth_year, child.notes, child.consent_by,
             child.consent_at, child.consent_scope, child.retention_days,
             json.dumps(asdict(child.limits)), json.dumps(child.learned), child.id))
        self.db.commit()

    def find(self, child_id: str) -> Child | None:
        row = self.db.execute(
            "SELECT id, name, real_name, birth_year, notes, created, consent_by, consent_at, "
            "consent_scope, retention_days, limits, learned FROM children WHERE id = ?",
            (child_id,)).fetchone()
        if row is None:
            return None
        *head, limits, learned = row
        head[2] = bool(head[2])
        return replace(Child(*head), limits=ChildLimits.from_json(json.loads(limits)),
                       learned=json.loads(learned))

    def get(self, child_id: str) -> Child:
        child = self.find(child_id)
        if child is None:
            raise RelaxdError(f"no child '{child_id}' in {self.path} (relaxd children list)")
        return child

    def all(self) -> list[Child]:
        ids = [r[0] for r in self.db.execute("SELECT id FROM children ORDER BY created, id")]
        return [self.get(i) for i in ids]

    def consent(self, child: Child, by: str, scope: str = "camera") -> None:
        if scope not in SCOPES:
            raise RelaxdError(f"consent scope must be one of {', '.join(SCOPES)}")
        child.consent_by, child.consent_scope = by, scope
        child.consent_at = _now().isoformat(timespec="seconds")
        self.save(child)

    def delete(self, child_id: str) -> int:
        """Erase the child and every linked session with its events; how many sessions."""
        self.get(child_id)
        sessions = self.session_ids(child_id)
        self._delete_sessions(sessions)
        self.db.execute("DELETE FROM children WHERE id = ?", (child_id,))
        self.db.commit()
        return len(sessions)

    # --- sessions --------------------------------------------------------------------------

    def link(self, session_id: int, child_id: str, scenario: str, why: str) -> None:
        self.db.execute("INSERT OR REPLACE INTO session_children VALUES (?, ?, ?, ?)",
                        (session_id, child_id, scenario, why))
        self.db.commit()

    def session_ids(self, child_id: str) -> list[int]:
        return [r[0] for r in self.db.execute(
            "SELECT session FROM session_children WHERE child = ? ORDER BY session", (child_id,))]

    def sessions(self, child_id: str, types: tuple[str, ...] | None = None) -> list[dict[str, Any]]:
        """The child's sessions, oldest first: id, started, scenario, why, events (only those of
        ``types`` if given: scoring needs a few, not the levels that make up most)."""
        only = f" AND type IN ({','.join('?' * len(types))})" if types else ""
        out = []
        for sid, started, scenario, why in self.db.execute(
                "SELECT s.id, s.started, c.scenario, c.why FROM session_children c "
                "JOIN rec.sessions s ON s.id = c.session WHERE c.child = ? ORDER BY s.id",
                (child_id,)).fetchall():
            events = [{"t": t, "type": ty, **json.loads(d)} for t, ty, d in self.db.execute(
                f"SELECT t, type, data FROM rec.events WHERE session = ?{only} ORDER BY t, rowid",
                (sid, *(types or ())))]
            out.append({"id": sid, "started": started, "scenario": scenario, "why": why,
                        "events": events})
        return out

    def minutes_today(self, child_id: str, now: datetime | None = None) -> float:
        day = (now or _now()).date().isoformat()
        row = self.db.execute(
            "SELECT COALESCE(SUM(s.last_t), 0) FROM rec.sessions s JOIN session_children c "
            "ON c.session = s.id WHERE c.child = ? AND substr(s.started, 1, 10) = ?",
            (child_id, day)).fetchone()
        return row[0] / 60.0

    def purge_expired(self, now: datetime) -> int:
        """Delete each child's sessions older than their retention period; how many."""
        old = []
        for child_id, days in self.db.execute("SELECT id, retention_days FROM children").fetchall():
            cutoff = (now - timedelta(days=days)).isoformat(timespec="seconds")
            old += [r[0] for r in self.db.execute(
                "SELECT s.id FROM rec.sessions s JOIN session_children c ON c.session = s.id "
                "WHERE c.child = ? AND s.started < ?", (child_id, cutoff))]
        self._delete_sessions(old)
        return len(old)

    def _delete_sessions(self, ids: list[int]) -> None:
        for sid in ids:
            self.db.execute("DELETE FROM rec.events WHERE session = ?", (sid,))
            self.db.execute("DELETE FROM session_children WHERE session = ?", (sid,))
            self.db.execute("DELETE FROM rec.sessions WHERE id = ?", (sid,))
        self.db.commit()

    def export(self, child_id: str) -> dict[str, Any]:
        child = self.get(child_id)
        return {"child": {**asdict(child)}, "sessions": self.sessions(child_id)}


def check_before_session(store: ChildStore, child: Child, scenario: Scenario,
                         camera: bool) -> None:
    """Refuse a session this child may not have now: no consent (or consent for manual mode
    only and a camera session), a scenario longer than their longest session, or no minutes
    left today."""
    if not child.consent_by:
        raise RelaxdError(f"child {child.id}: no guardian consent recorded "
                          f"(relaxd children set {child.id} --consent-by NAME)")
    if camera and child.consent_scope != "camera":
        raise RelaxdError(f"child {child.id}: consent covers manual mode only, not the camera")
    lim = child.limits
    length = scenario.duration + scenario.rules.fade_out
    if lim.session_min is not None and length > lim.session_min * 60:
        raise RelaxdError(f"child {child.id}: '{scenario.name}' lasts {mmss(length)}, longer "
                          f"than their longest session {mmss(lim.session_min * 60)}")
    if lim.daily_min is not None:
        used = store.minutes_today(child.id)
        if used + length / 60 > lim.daily_min:
            raise RelaxdError(f"child {child.id}: {used:.0f} of {lim.daily_min:g} minutes used "
                              f"today; '{scenario.name}' ({mmss(length)}) does not fit")


def steady_light(scenario: Scenario) -> Scenario:
    """The scenario with no light pulse in any phase (a photosensitive child); the actuators'
    ``steady_light`` also keeps a tempo's breath off the light."""
    from dataclasses import replace

    return replace(scenario, phases=list(
        replace(p, light=replace(p.light, pulse_period=None)) for p in scenario.phases))
