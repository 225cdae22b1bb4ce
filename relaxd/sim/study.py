"""``relaxd children study``: does the learner find each virtual child's best scenario?

In-process and quick: each session is the real controller and mood smoother with a virtual child
in the chair (:mod:`relaxd.sim.virtual_child`), ticking every :data:`TICK_S` seconds, audio not
rendered. Three arms play the same generated children: the learner (Thompson sampling with
pooled priors, :mod:`relaxd.children.recommend`, and the child's baseline, :mod:`relaxd.vision.baseline`),
always the default scenario, and a random one each session.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from relaxd.children.recommend import SessionScore, recommend, score_session
from relaxd.control.controller import Controller, State
from relaxd.control.library import bundled_folders, installed_scenarios
from relaxd.control.scenario import Scenario
from relaxd.core.errors import RelaxdError
from relaxd.core.plotting import pyplot, save_figure
from relaxd.outputs.settings import ActuatorSettings
from relaxd.sim.child_file import FAMILIES
from relaxd.sim.virtual_child import Caregiver, ChildModel, Playing, VirtualChild, colour_family
from relaxd.vision.baseline import Baseline
from relaxd.vision.mood import MoodSmoother

TICK_S = 0.5
STRONG_BIAS = 0.7


@dataclass
class Played:
    """One session of the study: the chair's score and the child's true calm share."""

    score: SessionScore
    true_calm: float
    baseline_after: float
    false_halts: int = 0  # halts while the child's true mood was not negative
    #: Per spell of true upset: seconds from its start to the chair's first reduction and
    #: first halt in it (None: none came before the spell ended).
    to_reduce: list[float | None] = field(default_factory=list)
    to_halt: list[float | None] = field(default_factory=list)


@dataclass
class _Upsets:
    """The spells of the child's true upset that begin while the chair plays as written
    (``running``: not already reduced, halted, paused or fading) and end before the session
    does, and how long the chair took to answer each."""

    since: float | None = None
    counted: bool = False
    reduce: list[float | None] = field(default_factory=list)
    halt: list[float | None] = field(default_factory=list)

    def tick(self, t: float, upset: bool, actions: Sequence[str], running: bool = True) -> None:
        if upset and self.since is None:
            self.since, self.counted = t, running
            if running:
                self.reduce.append(None)
                self.halt.append(None)
        elif not upset:
            self.since = None
        if self.since is None or not self.counted:
            return
        for action, seen in (("reduce", self.reduce), ("halt", self.halt)):
            if action in actions and seen[-1] is None:
                seen[-1] = t - self.since

    def end(self) -> None:
        """The session is over: a spell still going was cut short by its end, not timed."""
        if self.since is not None and self.counted:
            self.reduce.pop()
            self.halt.pop()


def play_session(model: ChildModel, scenario: Scenario, seed: int, baseline: Baseline | None,
                 caps: Any = None, body: bool = True) -> Played:
    """One whole session, closed loop; pure and deterministic per seed. ``body``: the
    scenario's body channel as written (else switched off)."""
    if not body:
        scenario = replace(scenario, rules=replace(
            scenario.rules, body=replace(scenario.rules.body, use=False)))
    controller = Controller(scenario, caps=caps or ActuatorSettings().caps())
    controller.calm_breathing = model.breathing[0]  # as the chair's, once learned
    smoother, child = MoodSmoother(), VirtualChild(model)
    rng, caregiver = np.random.default_rng(seed), Caregiver(CAREGIVER_NOTICES,
                                                            np.random.default_rng([seed, 1]))
    lungs, upsets = child.body(), _Upsets()
    events: list[dict[str, Any]] = [{"t": 0.0, "type": "session", "state": "start",
                                     "scenario": scenario.name,
                                     "baseline": baseline.learned if baseline else 0.0}]
    playing, last_mood, calm_ticks, ticks, t, false_halts = Playing(), None, 0, 0, 0.0, 0
    end = scenario.duration + scenario.rules.fade_out + 120
    while t <= end:
        mood = child.feel(t, playing)
        calm_ticks, ticks = calm_ticks + (mood.value != "negative"), ticks + 1
        probs = child.face(rng)
        reading = smoother.update(t, baseline.correct(t, probs) if baseline else probs)
        if reading.mood != last_mood:
            last_mood = reading.mood
            events.append({"t": t, "type": "mood", "mood": reading.mood.value})
        running = controller.state is State.RUNNING
        step = controller.step(t, reading, lungs.update(t, child.x, playing.tempo))
        actions = [d.action for d in step.decisions]
        events += [{"t": t, "type": "decision", "action": a} for a in actions]
        upsets.tick(t, mood.value == "negative", actions, running=running)
        halted = "halt" in actions
        false_halts += halted and mood.value != "negative"
        what = caregiver.on_halt(mood.value == "negative") if halted else None
        if baseline and what == "misread":
            baseline.confirm_calm()  # as the station's "misread" does on the chair
        events += [{"t": t, "type": "observation", "what": what}] if what else []
        if step.state is State.ENDED:
            break
        playing = Playing.of(step.levels, step.stimulus, step.breath)
        t += TICK_S
    score = score_session(events, scenario.name)
    upsets.end()
    return Played(score, calm_ticks / max(ticks, 1),
                  baseline.updated(score.calm_evidence) if baseline else 0.0, false_halts,
                  upsets.reduce, upsets.halt)


#: How often the caregiver beside the chair records what they saw when it halts.
CAREGIVER_NOTICES = 0.8


def expected_calm(model: ChildModel, scenario: Scenario, dt: float = 1.0) -> tuple[float, float]:
    """(calm share, positive share) of the child's true mood under the scenario as written, at
    its start intensity within the default caps (no adaptation, no reading noise)."""
    child, caps = VirtualChild(model), ActuatorSettings().caps()
    calm = pos = n = 0
    t, k = 0.0, scenario.intensity.start
    for phase in scenario.phases:
        levels = (phase.light.brightness * k, phase.audio.volume * k, phase.vibration.intensity * k)
        light, audio, vib = (min(v, c) for v, c in zip(levels, (caps.level.light, caps.level.audio,
                                                               caps.level.vibration)))
        sound = phase.audio.generator.value if phase.audio.generator else (
            "file" if phase.audio.file else None)
        playing = Playing(colour_family(phase.light.colour) if light > 0.05 else None,
                          sound if audio > 0.05 else None,
                          phase.vibration.pattern.value if vib > 0.05 else None)
        for _ in range(int(phase.duration / dt)):
            mood = child.feel(t, playing).value
            calm, pos, n = calm + (mood != "negative"), pos + (mood == "positive"), n + 1
            t += dt
    return calm / n, pos / n


def best_scenarios(model: ChildModel, scenarios: Sequence[Scenario]) -> set[str]:
    """The installed scenarios with the highest expected calm share (then positive share)."""
    scores = {s.name: expected_calm(model, s) for s in scenarios}
    top = max(scores.values())
    return {name for name, v in scores.items() if np.isclose(v, top).all()}


def generate_children(n: int, scenarios: Sequence[Scenario], seed: int) -> list[ChildModel]:
    """Varied likes (from what the scenarios play, and beyond), dislikes and face biases."""
    rng = np.random.default_rng(seed)
    offered = {"colour": sorted({colour_family(p.light.colour) for s in scenarios
                                 for p in s.phases} | set(rng.choice(FAMILIES, 2))),
               "audio": ["pink-noise", "brown-noise", "soundscape", "tone"],
               "vibration": ["wave", "pulse", "continuous"]}
    children = []
    for i in range(n):
        aspects = list(offered)
        rng.shuffle(aspects)
        likes = {a: str(rng.choice(offered[a])) for a in aspects[:int(rng.integers(1, 3))]}
        dislike_aspect = aspects[-1]
        options = [v for v in offered[dislike_aspect] if v != likes.get(dislike_aspect)]
        dislikes = {dislike_aspect: str(rng.choice(options))} if rng.random() < 0.7 else {}
        bias = float(rng.choice([0.0, 0.0, 0.2, 0.4, 0.7, 1.0]))
        children.append(ChildModel.from_dict({
            "name": f"child{i + 1}", "resting": "neutral", "likes": likes, "dislikes": dislikes,
            "face_bias": {"negative": bias}, "seed": int(rng.integers(0, 2**31))}))
    return children


@dataclass
class Arm:
    """One policy's sessions: ``played[child][session]`` and which scenario it chose."""

    name: str
    chosen: list[list[str]] = field(default_factory=list)
    played: list[list[Played]] = field(default_factory=list)


def run_arm(name: str, children: Sequence[ChildModel], scenarios: Sequence[Scenario],
            sessions: int, seed: int,
            choose: Callable[[int, int, Arm, np.random.Generator, float], str],
            use_baseline: bool) -> Arm:
    """Session k for every child, then session k+1 (so pooled priors grow as on a real ward)."""
    arm = Arm(name, [[] for _ in children], [[] for _ in children])
    by_name = {s.name: s for s in scenarios}
    learned = [0.0] * len(children)
    rng = np.random.default_rng(seed)
    for k in range(sessions):
        for i, model in enumerate(children):
            pick = choose(i, k, arm, rng, learned[i])
            base = Baseline(learned[i]) if use_baseline else None
            p = play_session(model, by_name[pick], seed * 100003 + i * 1009 + k, base)
            learned[i] = p.baseline_after
            arm.chosen[i].append(pick)
            arm.played[i].append(p)
    return arm


def learner(names: Sequence[str]) -> Callable[..., str]:
    def choose(i: int, k: int, arm: Arm, rng: np.random.Generator, baseline: float) -> str:
        everyone = [p.score for j, row in enumerate(arm.played) for p in row if j != i]
        mine = [p.score for p in arm.played[i]]
        return recommend(names, mine, everyone, rng, baseline_now=baseline).scenario
    return choose


def summarise(arm: Arm, best: Sequence[set[str]], children: Sequence[ChildModel],
              from_session: int = 5) -> dict[str, float]:
    """The study's figures for one arm."""
    n = len(children)
    later = [[c in best[i] for c in arm.chosen[i][from_session - 1:]] for i in range(n)]
    on_best = [np.mean(row) > 0.5 for row in later if row]
    biased = [i for i, m in enumerate(children) if m.face_bias[0] >= STRONG_BIAS]
    on_best_later = [p for i in biased for k, p in enumerate(arm.played[i])
                     if k >= 2 and arm.chosen[i][k] in best[i]]
    flat = [p for row in arm.played for p in row]
    return {"calm_share": float(np.mean([p.true_calm for p in flat])),
            "read_calm_share": float(np.mean([p.score.calm for p in flat])),
            "halts_per_session": float(np.mean([p.score.halts for p in flat])),
            "children_on_best": float(np.mean(on_best)) if on_best else 0.0,
            "biased_children": len(biased),
            "false_halts_per_session": float(np.mean([p.false_halts for p in flat])),
            "biased_halts_on_best_after_2": int(sum(p.score.halts for p in on_best_later)),
            "biased_false_halts_on_best_after_2": int(sum(p.false_halts for p in on_best_later)),
            "biased_sessions_on_best_after_2": len(on_best_later)}


def run_study(n_children: int, n_sessions: int, seed: int,
              scenarios: Sequence[Scenario]) -> dict[str, Any]:
    names = [s.name for s in scenarios]
    children = generate_children(n_children, scenarios, seed)
    best = [best_scenarios(m, scenarios) for m in children]
    default = names[0]
    arms = [run_arm("learner", children, scenarios, n_sessions, seed, learner(names), True),
            run_arm("default", children, scenarios, n_sessions, seed,
                    lambda *a: default, False),
            run_arm("random", children, scenarios, n_sessions, seed,
                    lambda i, k, arm, rng, b: names[int(rng.integers(len(names)))], False)]
    return {"children": children, "best": best, "arms": arms,
            "summary": {a.name: summarise(a, best, children) for a in arms},
            "body": body_channel(children, scenarios, seed)}


#: Sessions each child (and its flat-affect twin) plays in the body channel's comparison.
BODY_SESSIONS = 3


def body_channel(children: Sequence[ChildModel], scenarios: Sequence[Scenario],
                 seed: int, sessions: int = BODY_SESSIONS) -> dict[str, dict[str, float]]:
    """The body channel's worth: every child, and a twin whose face reads neutral while upset and
    has no bias (flat affect: only the body shows the upset), plays ``sessions`` random scenarios
    (no baseline) with the body channel and without it, on the same seeds. Per arm: how soon after
    the child becomes upset the chair reduces and halts, and the halts of children who were not
    upset."""
    twins = [replace(m, flat_affect=True, face_bias=(0.0, 0.0, 0.0)) for m in children]
    rng = np.random.default_rng([seed, 25])
    plan = [(m, scenarios[int(rng.integers(len(scenarios)))], seed * 7919 + i * 31 + k)
            for i, m in enumerate([*children, *twins]) for k in range(sessions)]
    out = {}
    for arm, body in (("with body", True), ("face only", False)):
        played = [play_session(m, sc, s, None, body=body) for m, sc, s in plan]
        out[arm] = {**_latencies(played, n_flat=len(twins) * sessions), "sessions": sessions}
    return out


def _latencies(played: Sequence[Played], n_flat: int) -> dict[str, float]:
    """Upset spells, the share the chair reduced and halted within, the median seconds it took
    (over every spell: one not answered counts as never), of the children as generated and of
    their flat-affect twins (the last ``n_flat`` sessions); halts while the child was not upset,
    per session."""
    def answered(key: str, rows: Sequence[Played]) -> tuple[float, float]:
        """The share of spells answered, and the median seconds over every spell (a spell
        not answered counts as never: inf)."""
        times = [np.inf if x is None else x for p in rows for x in getattr(p, key)]
        if not times:
            return 0.0, float("nan")
        return float(np.mean(np.isfinite(times))), float(np.median(times))

    face, flat = played[:len(played) - n_flat], played[len(played) - n_flat:]
    out = {"spells": float(sum(len(p.to_reduce) for p in face)),
           "flat_spells": float(sum(len(p.to_reduce) for p in flat)),
           "false_halts_per_session": float(np.mean([p.false_halts for p in played]))}
    for name, rows in (("", face), ("flat_", flat)):
        for key in ("to_reduce", "to_halt"):
            share, median = answered(key, rows)
            out[f"{name}{key}_share"], out[f"{name}{key}_s"] = share, median
    return out


def format_body(body: dict[str, dict[str, float]], n_children: int) -> str:
    """The body channel's table: with it and with the face only."""
    rows = [("children as generated: upset spells", "spells", "{:.0f}"),
            ("  reduced within the spell", "to_reduce_share", "{:.0%}"),
            ("  seconds from upset to reduction (median, never: -)", "to_reduce_s", "{:.1f}"),
            ("  halted within the spell", "to_halt_share", "{:.0%}"),
            ("  seconds from upset to halt (median)", "to_halt_s", "{:.1f}"),
            ("flat-affect twins: upset spells", "flat_spells", "{:.0f}"),
            ("  reduced within the spell", "flat_to_reduce_share", "{:.0%}"),
            ("  seconds from upset to reduction (median)", "flat_to_reduce_s", "{:.1f}"),
            ("  halted within the spell", "flat_to_halt_share", "{:.0%}"),
            ("  seconds from upset to halt (median)", "flat_to_halt_s", "{:.1f}"),
            ("halts per session of children not upset", "false_halts_per_session", "{:.3f}")]
    arms = list(body)
    lines = [f"body channel: {n_children} children and their flat-affect twins x "
             f"{body[arms[0]]['sessions']:.0f} random scenarios",
             f"{'':<56}" + "".join(f"{a:>11}" for a in arms)]
    def cell(value: float, fmt: str) -> str:
        return "-" if not np.isfinite(value) else fmt.format(value)

    lines += [f"{label:<56}" + "".join(f"{cell(body[a][key], fmt):>11}" for a in arms)
              for label, key, fmt in rows]
    return "\n".join(lines)


def format_table(summary: dict[str, dict[str, float]], n_children: int, n_sessions: int) -> str:
    rows = [("true calm share (child's own mood)", "calm_share", "{:.1%}"),
            ("calm share as the chair read it", "read_calm_share", "{:.1%}"),
            ("halts per session", "halts_per_session", "{:.2f}"),
            ("  of which the child was not upset", "false_halts_per_session", "{:.2f}"),
            ("children on their best scenario, sessions 5+", "children_on_best", "{:.0%}"),
            ("halts of strongly biased children on best, sessions 3+",
             "biased_halts_on_best_after_2", "{}"),
            ("  of which the child was not upset", "biased_false_halts_on_best_after_2", "{}")]
    arms = list(summary)
    lines = [f"{n_children} virtual children x {n_sessions} sessions",
             f"{'':<56}" + "".join(f"{a:>10}" for a in arms)]
    for label, key, fmt in rows:
        lines.append(f"{label:<56}" + "".join(f"{fmt.format(summary[a][key]):>10}" for a in arms))
    first = summary[arms[0]]
    lines.append(f"(strongly biased children: {first['biased_children']}, their sessions on the "
                 f"best scenario from the third on: {first['biased_sessions_on_best_after_2']})")
    return "\n".join(lines)


def plot_study(result: dict[str, Any], out: str | Path) -> None:
    """Per session number: share of children on their best scenario, halts, true calm share."""
    plt = pyplot()
    best = result["best"]
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.4))
    for arm in result["arms"]:
        k = np.arange(1, len(arm.chosen[0]) + 1)
        on_best = [np.mean([arm.chosen[i][j] in best[i] for i in range(len(best))])
                   for j in range(len(k))]
        halts = [np.mean([row[j].score.halts for row in arm.played]) for j in range(len(k))]
        calm = [np.mean([row[j].true_calm for row in arm.played]) for j in range(len(k))]
        for ax, y in zip(axes, (on_best, halts, calm)):
            ax.plot(k, y, marker=".", label=arm.name)
    for ax, title in zip(axes, ("children on their best scenario", "halts per session",
                                "true calm share")):
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("session")
    axes[0].set_ylim(0, 1.02)
    axes[2].set_ylim(0, 1.02)
    axes[0].legend(fontsize=8)
    save_figure(fig, out, dpi=80)


def study_scenarios(folder: str | Path | None) -> list[Scenario]:
    """The scenarios a study compares: a folder's (default: the bundled ones)."""
    if folder and not Path(folder).is_dir():
        raise RelaxdError("not a scenario folder", folder)
    return installed_scenarios([Path(folder)] if folder else bundled_folders())
