"""``relaxd children add|list|show|rename|set|export|delete``: the chair's child profiles."""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from relaxd.children.store import SCOPES, Child, ChildStore
from relaxd.core.errors import RelaxdError


def _state_dir_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--state-dir", type=Path, default=None,
                   help="where the profiles and session records live "
                        "(default: the configuration's state_dir)")
    p.add_argument("--config", metavar="FILE", default=argparse.SUPPRESS,  # or before the verb
                   help="configuration file")


def _config(args: argparse.Namespace) -> Any:
    from relaxd.config import load_config

    return load_config(getattr(args, "config", None))


def _store(args: argparse.Namespace, config: Any = None) -> ChildStore:
    return ChildStore(args.state_dir or (config or _config(args)).state_dir)


def _profile_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--birth-year", type=int)
    p.add_argument("--notes")
    p.add_argument("--consent-by", metavar="GUARDIAN", help="record the guardian's consent")
    p.add_argument("--consent-scope", choices=SCOPES, default="camera",
                   help="what the consent covers (default: camera)")
    p.add_argument("--retention-days", type=int, help="delete sessions older than this")
    for out in ("light", "audio", "vibration"):
        p.add_argument(f"--max-{out}", type=float, metavar="0..1", help=f"highest {out} level")
    pulse = p.add_mutually_exclusive_group()
    pulse.add_argument("--no-pulse", dest="no_pulse", action="store_const", const=True,
                       help="photosensitivity: steady light, never pulsing or breathing")
    pulse.add_argument("--pulse-ok", dest="no_pulse", action="store_const", const=False,
                       help="the light may pulse again")
    p.add_argument("--session-min", type=float, help="longest session, minutes")
    p.add_argument("--daily-min", type=float, help="most minutes in the chair a day")
    p.add_argument("--pin", metavar="SCENARIO", help="always this scenario ('' to unpin)")
    p.add_argument("--forbid", metavar="SCENARIO", action="append", default=[])
    p.add_argument("--allow-again", metavar="SCENARIO", action="append", default=[],
                   help="offer again although it halted the child twice in a row")


def configure_add(p: argparse.ArgumentParser) -> None:
    _state_dir_arg(p)
    p.add_argument("id", nargs="?", help="short id (default: c<N>)")
    p.add_argument("--name", help="default: a pseudonym")
    p.add_argument("--real-name", action="store_true", help="the name is a real name (the "
                   "clinic chose to store it)")
    _profile_args(p)


def configure_set(p: argparse.ArgumentParser) -> None:
    _state_dir_arg(p)
    p.add_argument("id")
    _profile_args(p)


def configure_one(p: argparse.ArgumentParser) -> None:
    _state_dir_arg(p)
    p.add_argument("id")


def configure_list(p: argparse.ArgumentParser) -> None:
    _state_dir_arg(p)


def configure_rename(p: argparse.ArgumentParser) -> None:
    configure_one(p)
    p.add_argument("name")
    p.add_argument("--real-name", action="store_true")


def configure_export(p: argparse.ArgumentParser) -> None:
    configure_one(p)
    p.add_argument("--out", metavar="FILE.json", required=True)


def configure_delete(p: argparse.ArgumentParser) -> None:
    configure_one(p)
    p.add_argument("--yes", action="store_true", help="really erase the child and their sessions")


def _limit(value: float | None, name: str) -> float | None:
    if value is not None and not 0 <= value <= 1:
        raise RelaxdError(f"--max-{name} must be 0..1, got {value:g}")
    return value


def apply_profile_args(store: ChildStore, child: Child, args: argparse.Namespace) -> None:
    """Every option given changes the profile; the rest stays."""
    lim = child.limits
    changes = {k: v for k, v in {
        "light": _limit(args.max_light, "light"), "audio": _limit(args.max_audio, "audio"),
        "vibration": _limit(args.max_vibration, "vibration"), "no_pulse": args.no_pulse,
        "session_min": args.session_min, "daily_min": args.daily_min}.items() if v is not None}
    if args.pin is not None:
        changes["pinned"] = _installed_names([args.pin], args)[0] if args.pin else None
    forbidden = tuple(dict.fromkeys(lim.forbidden + _installed_names(args.forbid, args)))
    allowed = tuple(dict.fromkeys(lim.allowed_again + _installed_names(args.allow_again, args)))
    child.limits = replace(lim, **changes, forbidden=forbidden, allowed_again=allowed)
    for key in ("birth_year", "notes", "retention_days"):
        if getattr(args, key) is not None:
            setattr(child, key, getattr(args, key))
    if child.retention_days < 1:
        raise RelaxdError("--retention-days must be at least 1")
    store.save(child)
    if args.consent_by:
        store.consent(child, args.consent_by, args.consent_scope)


def _installed_names(wanted: list[str], args: argparse.Namespace) -> tuple[str, ...]:
    """The names of the installed scenarios ``wanted`` names (stem or name, as the library
    finds them); an unknown one is refused now, not at the child's next session."""
    if not wanted:
        return ()
    from relaxd.control.library import bundled_folders, load_named

    folders = bundled_folders(_config(args).scenario)
    return tuple(load_named(name, folders).name for name in wanted)


def run_add(args: argparse.Namespace) -> int:
    config = _config(args)
    store = _store(args, config)
    child = store.add(args.id, args.name, args.real_name,
                      retention_days=config.children.retention_days)
    apply_profile_args(store, child, args)
    print(f"added child {child.id} ({child.name})")
    return 0


def run_set(args: argparse.Namespace) -> int:
    store = _store(args)
    apply_profile_args(store, store.get(args.id), args)
    print(f"updated child {args.id}")
    return 0


def run_list(args: argparse.Namespace) -> int:
    store = _store(args)
    children = store.all()
    if not children:
        print(f"no children recorded in {store.path}")
    for c in children:
        print(f"{c.id:<10} {c.name:<20} sessions {len(store.session_ids(c.id)):>3}  consent: "
              f"{'yes (' + (c.consent_scope or '') + ')' if c.consent_by else 'NONE'}")
    return 0


def run_rename(args: argparse.Namespace) -> int:
    store = _store(args)
    child = store.get(args.id)
    child.name, child.real_name = args.name, args.real_name
    store.save(child)
    print(f"child {child.id} is now called {child.name}")
    return 0


def run_export(args: argparse.Namespace) -> int:
    data = _store(args).export(args.id)
    try:
        Path(args.out).write_text(json.dumps(data, indent=1, default=str))
    except OSError as exc:
        raise RelaxdError(f"cannot write: {exc.strerror}", args.out) from None
    print(f"child {args.id}: profile and {len(data['sessions'])} sessions written to {args.out}")
    return 0


def run_delete(args: argparse.Namespace) -> int:
    if not args.yes:
        raise RelaxdError("this erases the child and every session record linked to them: "
                          "add --yes")
    n = _store(args).delete(args.id)
    print(f"child {args.id} erased with {n} session(s)")
    return 0


def run_show(args: argparse.Namespace) -> int:
    from relaxd.children.profile import describe

    store = _store(args)
    print(describe(store, store.get(args.id)))
    return 0


