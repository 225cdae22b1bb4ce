"""The controller's rules, read like the paper's loop: a mood script in, decisions at exact times.

The test scenario plays one phase at full brightness, volume and vibration, so every target
level equals the intensity. Rules: raise after 10 s positive, reduce after 5 s negative (again
every 5 s), halt after 15 s negative or at confidence >= 0.9, restart after 8 s calm, no face:
hold at 2 s, pause at 6 s; ramp 0.1 per second, halts reach 0 within 2 s, fade-out 4 s.
"""

from __future__ import annotations

import random

import pytest

from relaxd.control.controller import Caps, Controller, Levels, MoodSample, State
from relaxd.control.scenario import (
    Colour,
    IntensityRange,
    Light,
    Phase,
    Ramp,
    Rules,
    Scenario,
    Vibration,
    load_scenario,
)
from relaxd.core.labels import Mood
from relaxd.core.paths import default_scenario

NEG, NEU, POS, NONE = Mood.NEGATIVE, Mood.NEUTRAL, Mood.POSITIVE, Mood.NO_FACE


def scenario(duration: float = 1000.0, phases: int = 1) -> Scenario:
    colours = [Colour(0, 0, 255), Colour(255, 0, 0)]
    return Scenario(
        name="test",
        phases=[Phase(name=f"p{i}", duration=duration / phases,
                      light=Light(colour=colours[i % 2], brightness=1.0),
                      vibration=Vibration(intensity=1.0)) for i in range(phases)],
        intensity=IntensityRange(start=0.5, min=0.2, max=0.8, step=0.1),
        rules=Rules(raise_after=10, reduce_after=5, halt_after=15, strong_negative=0.9,
                    recover_after=8, absent_hold=2, absent_pause=6,
                    ramp=Ramp(light=0.1, audio=0.1, vibration=0.1), halt_fade=2, fade_out=4),
        crossfade=4.0)


def run(script: list[tuple[float, Mood, float]], until: float, sc: Scenario | None = None,
        tick: float = 1.0, caps: Caps | None = None) -> tuple[list[tuple[float, str]], Controller, list]:
    """Seat the child (a neutral face at 0 starts the scenario), then step once a ``tick`` from 0
    to ``until``; the mood is the last script entry's."""
    ctrl = Controller(sc or scenario(), caps=caps)
    assert [d.action for d in ctrl.step(0.0, MoodSample(NEU)).decisions] == ["start", "hold"]
    steps, decisions, reading = [], [], MoodSample(NEU)
    pending = list(script)
    t = 0.0
    while t <= until:
        while pending and pending[0][0] <= t:
            _, mood, conf = pending.pop(0)
            reading = MoodSample(mood, conf)
        s = ctrl.step(t, reading)
        steps.append(s)
        decisions += [(t, d.action) for d in s.decisions]
        t += tick
    return decisions, ctrl, steps


# (rule, mood script [(from t, mood, confidence)], run until, decisions [(t, action)], state)
RULES = [
    ("neutral: one hold, nothing more",
     [(0, NEU, 0.7)], 60, [(0, "hold")], State.RUNNING),
    ("positive for raise_after: raise one step, again each raise_after, bounded by max",
     [(0, POS, 0.7)], 40, [(10, "raise"), (20, "raise"), (30, "raise"), (40, "raise")],
     State.RUNNING),
    ("negative for reduce_after: reduce, again each reduce_after; halt_after: halt",
     [(0, NEG, 0.7)], 20, [(5, "reduce"), (10, "reduce"), (15, "halt")], State.HALTED),
    ("strong negative held over strong_for (1 s) of frames: halt",
     [(0, NEU, 0.7), (3, NEG, 0.95)], 10, [(0, "hold"), (4, "halt")], State.HALTED),
    ("negative just below the strong threshold: only a reduction",
     [(0, NEU, 0.7), (3, NEG, 0.89)], 9, [(0, "hold"), (8, "reduce")], State.REDUCED),
    ("negative passes after a reduction: restart after recover_after calm",
     [(0, NEG, 0.7), (6, POS, 0.7)], 30, [(5, "reduce"), (14, "restart"), (24, "raise")],
     State.RUNNING),
    ("a neutral spell after a reduction holds, then restarts",
     [(0, NEG, 0.7), (6, NEU, 0.7)], 20, [(5, "reduce"), (6, "hold"), (14, "restart")],
     State.RUNNING),
    ("negative passes after a halt: restart after recover_after calm",
     [(0, NEU, 0.7), (2, NEG, 0.95), (4, NEU, 0.7)], 20,
     [(0, "hold"), (3, "halt"), (12, "restart")], State.RUNNING),
    ("negative again while recovering: the calm count starts over",
     [(0, NEG, 0.95), (2, NEU, 0.7), (5, NEG, 0.5), (6, NEU, 0.7)], 20,
     [(1, "halt"), (14, "restart")], State.RUNNING),
    ("no face for a moment: nothing",
     [(0, NEU, 0.7), (3, NONE, 0.0), (4, NEU, 0.7)], 20, [(0, "hold"), (4, "hold")],
     State.RUNNING),
    ("no face for absent_hold: hold; absent_pause: pause; face back: resume",
     [(0, NEU, 0.7), (3, NONE, 0.0), (12, POS, 0.7)], 20,
     [(0, "hold"), (5, "hold"), (9, "pause"), (12, "resume")], State.RUNNING),
    ("paused and the face comes back negative: stay paused",
     [(0, NONE, 0.0), (8, NEG, 0.7)], 14, [(2, "hold"), (6, "pause")], State.PAUSED),
    ("paused and the face comes back strongly negative: halt",
     [(0, NONE, 0.0), (8, NEG, 0.95)], 14, [(2, "hold"), (6, "pause"), (9, "halt")],
     State.HALTED),
    ("halted and the child leaves: stay halted, absence is not calm",
     [(0, NEG, 0.95), (2, NONE, 0.0)], 30, [(1, "halt")], State.HALTED),
    ("reduced and the child leaves: hold, then pause",
     [(0, NEG, 0.7), (6, NONE, 0.0)], 14, [(5, "reduce"), (8, "hold"), (12, "pause")],
     State.PAUSED),
    ("paused and the face stays negative for halt_after: halt",
     [(0, NONE, 0.0), (8, NEG, 0.7)], 23, [(2, "hold"), (6, "pause"), (23, "halt")],
     State.HALTED),
]


@pytest.mark.parametrize("rule, script, until, expected, state", RULES,
                         ids=[r[0] for r in RULES])
def test_rules(rule, script, until, expected, state):
    decisions, ctrl, _ = run(script, until)
    assert decisions == expected
    assert ctrl.state is state


def test_intensity_moves_one_step_within_min_and_max():
    _, ctrl, steps = run([(0, POS, 0.7)], 40)
    assert [round(s.intensity, 2) for s in steps if s.decisions] == [0.6, 0.7, 0.8, 0.8]
    assert "already at maximum 0.80" in steps[40].decisions[0].reason
    _, ctrl, steps = run([(0, NEG, 0.7)], 14)
    assert round(ctrl.intensity, 2) == 0.3
    sc = scenario()
    sc.rules.halt_after = 60
    _, ctrl, steps = run([(0, NEG, 0.7)], 30, sc)
    assert ctrl.intensity == 0.2 and "already at minimum 0.20" in steps[30].decisions[0].reason


def test_halts_and_pauses_alert_the_caregiver_others_do_not():
    _, _, steps = run([(0, NEG, 0.7)], 15)
    alerts = [(s.t, d.action, d.alert) for s in steps for d in s.decisions if d.alert]
    assert alerts == [(15, "halt", "negative mood for 15 s: stimuli halted")]
    _, _, steps = run([(0, NONE, 0.0)], 6)
    (d,) = steps[6].decisions
    assert d.action == "pause" and "may have left" in d.alert


def test_restart_after_a_halt_never_above_start_and_ramps_from_zero():
    _, ctrl, steps = run([(0, POS, 0.7), (30, NEG, 0.95), (32, NEU, 0.7)], 50)
    assert steps[29].intensity == pytest.approx(0.7)
    assert steps[33].levels == Levels()  # halted at 31: 0 within halt_fade
    restart = steps[40]
    assert [d.action for d in restart.decisions] == ["restart"] and restart.intensity == 0.5
    assert restart.levels.light == pytest.approx(0.1)  # one ramp step up from 0
    after_reduce = run([(0, NEG, 0.7), (6, NEU, 0.7)], 20)[1]
    assert after_reduce.intensity == pytest.approx(0.4)  # reduced below start: kept
    decisions, raised, steps = run([(0, POS, 0.7), (25, NEG, 0.7), (31, NEU, 0.7)], 40)
    assert decisions[-3:] == [(30, "reduce"), (31, "hold"), (39, "restart")]
    assert steps[30].intensity == pytest.approx(0.6) and raised.intensity == 0.5  # back to start


def test_estop_latches_and_reset_leaves_the_chair_idle_until_a_deliberate_start():
    _, ctrl, steps = run([(0, POS, 0.7)], 35)
    assert ctrl.intensity == pytest.approx(0.8) and steps[-1].levels.light > 0.5
    s = ctrl.estop(35.5)
    assert s.state is State.ESTOPPED and s.levels == Levels() and s.decisions == ()
    for t in (36, 50, 80):  # latched whatever the mood
        s = ctrl.step(t, MoodSample(POS))
        assert s.state is State.ESTOPPED and s.levels == Levels() and not s.decisions
    s = ctrl.reset(81)
    assert s.state is State.IDLE and s.levels == Levels() and s.intensity == 0.5
    assert [d.action for d in s.decisions] == ["reset"]
    for t in (82, 90, 200):  # a reset is not a restart: a face in the chair starts nothing
        s = ctrl.step(t, MoodSample(POS))
        assert s.state is State.IDLE and s.levels == Levels() and ctrl.waiting_for_start
    ctrl.begin()  # the deliberate start
    s = ctrl.step(201, MoodSample(POS))
    assert [d.action for d in s.decisions] == ["start"] and "start" not in ctrl.state.value
    assert "intensity 0.50" in s.decisions[0].reason
    lv = [ctrl.step(t, MoodSample(POS)).levels.light for t in (202, 203, 204, 205, 206)]
    assert lv == pytest.approx([0.2, 0.3, 0.4, 0.5, 0.5])
    with pytest.raises(ValueError):
        ctrl.reset(300)


def test_levels_never_move_faster_than_the_ramp():
    rng = random.Random(7)
    moods = [NEG, NEU, POS, NONE]
    script = [(float(t), rng.choice(moods), rng.choice([0.5, 0.95])) for t in range(0, 400, 7)]
    _, _, steps = run(script, 400, tick=0.25)
    for a, b in zip(steps, steps[1:]):
        dt = b.t - a.t
        fast = 1 / 2.0 if b.state in (State.HALTED, State.PAUSED) else 0.0
        for ch in ("light", "audio", "vibration"):
            limit = max(0.1, fast) * dt + 1e-9
            assert abs(getattr(b.levels, ch) - getattr(a.levels, ch)) <= limit


def test_levels_ramp_up_from_zero_at_the_start():
    _, _, steps = run([(0, NEU, 0.7)], 8)
    assert [round(s.levels.light, 3) for s in steps] == [0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.5, 0.5, 0.5]
    assert steps[0].target.light == 0.5


def test_phases_advance_by_time_and_colours_blend():
    sc = scenario(duration=40, phases=2)
    _, _, steps = run([(0, NEU, 0.7)], 30, sc)
    assert [s.phase for s in (steps[19], steps[20])] == [0, 1]
    assert steps[19].stimulus.colour == (0, 0, 255)
    assert steps[22].stimulus.colour == (128, 0, 128)  # halfway through the 4 s blend
    assert steps[24].stimulus.colour == (255, 0, 0) and steps[24].phase_name == "p1"


def test_end_fades_out_linearly_then_ends():
    decisions, ctrl, steps = run([(0, NEU, 0.7)], 30, scenario(duration=20))
    assert decisions == [(0, "hold"), (20, "fade"), (24, "end")]
    assert [s.levels.light for s in steps[20:25]] == pytest.approx([0.5, 0.375, 0.25, 0.125, 0])
    assert ctrl.state is State.ENDED and steps[-1].levels == Levels()
    assert all(not s.decisions for s in steps[25:])


def test_time_must_not_go_backwards():
    ctrl = Controller(scenario())
    ctrl.step(5, MoodSample(NEU))
    with pytest.raises(ValueError):
        ctrl.step(4, MoodSample(NEU))


def test_accepts_any_reading_with_mood_and_confidence():
    class Reading:
        mood, confidence = "negative", 0.99

    c = Controller(scenario())
    c.step(0, Reading())
    assert c.step(1.0, Reading()).state is State.HALTED


def test_a_late_tick_ramps_one_second_at_most():
    ctrl = Controller(scenario())
    ctrl.step(0, MoodSample(NEU))
    assert ctrl.step(30, MoodSample(NEU)).levels.light == pytest.approx(0.1)
    assert ctrl.step(30.5, MoodSample(NEU)).levels.light == pytest.approx(0.15)


@pytest.mark.parametrize("script, decisions", [
    ([(0, NEG, 0.95)], [(1, "halt"), (20, "fade"), (24, "end")]),
    ([(0, NONE, 0.0)], [(2, "hold"), (6, "pause"), (20, "fade"), (24, "end")]),
], ids=["halted at the end", "paused at the end"])
def test_the_end_comes_whatever_the_state(script, decisions):
    got, ctrl, steps = run(script, 30, scenario(duration=20))
    assert got == decisions and ctrl.state is State.ENDED
    assert all(s.levels == Levels() for s in steps[20:])


def test_estop_before_the_first_step_and_during_the_fade():
    ctrl = Controller(scenario(duration=20))
    assert ctrl.estop(0).state is State.ESTOPPED
    ctrl.reset(1)
    ctrl.begin()
    assert ctrl.step(2, MoodSample(NEU)).levels.light == pytest.approx(0.1)
    for t in range(3, 24):  # the scenario's clock runs from the start at t=2
        ctrl.step(t, MoodSample(NEU))
    assert ctrl.state is State.FADING
    assert ctrl.estop(23).levels == Levels()
    ctrl.reset(23)
    idle = ctrl.step(23.5, MoodSample(NEU))  # the fade is not resumed: nothing comes on
    assert idle.state is State.IDLE and idle.levels == Levels() and not idle.decisions
    ctrl.begin()  # a deliberate start plays the scenario again from its start, from 0
    s = ctrl.step(24, MoodSample(NEU))
    assert s.state is State.RUNNING and [d.action for d in s.decisions][0] == "start"
    assert 0 < s.levels.light <= 0.1  # one ramp step from 0


def test_strong_negative_while_fading_out_halts_fast_and_alerts():
    sc = load_scenario(default_scenario())
    c = Controller(sc)
    end = sc.duration
    for t in range(0, int(end) + 1, 1):
        c.step(float(t), MoodSample(Mood.NEUTRAL))
    assert c.state is State.FADING
    assert not c.step(end + 2, MoodSample(Mood.NEGATIVE, 0.99)).decisions
    step = c.step(end + 3, MoodSample(Mood.NEGATIVE, 0.99))
    assert [d.action for d in step.decisions] == ["halt"] and step.decisions[0].alert
    step = c.step(end + 3 + sc.rules.halt_fade, MoodSample(Mood.NEGATIVE, 0.99))
    assert step.levels == Levels() and c.state is State.ENDED


def test_input_lost_before_the_first_face_stays_idle_at_zero():
    sc = load_scenario(default_scenario())
    c = Controller(sc)
    step = c.input_lost(0.0, "camera down")
    assert c.state is State.IDLE and step.levels == Levels() and not step.decisions
    for t in range(1, 20):
        step = c.step(float(t), MoodSample(Mood.NO_FACE, 0.0))
    assert c.state is State.IDLE and step.levels == Levels()


def test_idle_until_a_child_is_seated_then_the_scenario_clock_starts():
    sc = load_scenario(default_scenario())
    c = Controller(sc)
    for t in range(0, 100):
        step = c.step(float(t), MoodSample(Mood.NO_FACE, 0.0))
    assert c.state is State.IDLE and step.levels == Levels() and not step.decisions
    step = c.step(100.0, MoodSample(Mood.NEUTRAL))
    assert [d.action for d in step.decisions] == ["start", "hold"]
    assert c.step(100.0 + sc.duration - 1, MoodSample(Mood.NEUTRAL)).state is State.RUNNING
    assert c.step(100.0 + sc.duration, MoodSample(Mood.NEUTRAL)).state is State.FADING


def test_the_next_session_waits_for_an_empty_seat():
    c = Controller(load_scenario(default_scenario()), after_previous=True)
    assert c.step(0.0, MoodSample(Mood.NEUTRAL)).state is State.IDLE  # the last child is still there
    assert c.step(5.0, MoodSample(Mood.NO_FACE, 0.0)).state is State.IDLE
    assert c.step(60.0, MoodSample(Mood.POSITIVE)).state is State.RUNNING


def test_installation_caps_bound_targets_ramps_and_the_fade_out():
    caps = Caps(level=Levels(0.6, 0.3, 0.45), ramp=Levels(0.05, 0.1, 0.02))
    sc = scenario(duration=40)
    sc.intensity = IntensityRange(start=1.0, min=1.0, max=1.0, step=0.1)
    sc.rules.ramp = Ramp(light=0.5, audio=0.5, vibration=0.5)
    sc.phases[0].audio.volume = 1.0
    decisions, _, steps = run([(0, POS, 0.7)], 80, sc, caps=caps)
    assert all(s.target.light <= 0.6 and s.target.audio <= 0.3 and s.target.vibration <= 0.45
               for s in steps)
    assert steps[5].levels == pytest.approx(Levels(0.25, 0.3, 0.1))  # 5 s at the capped ramps
    assert steps[39].levels == pytest.approx(Levels(0.6, 0.3, 0.45))  # held at the caps
    for a, b in zip(steps, steps[1:]):  # the fade-out too keeps within the ramp caps
        assert abs(b.levels.light - a.levels.light) <= 0.05 + 1e-9
        assert abs(b.levels.vibration - a.levels.vibration) <= 0.02 + 1e-9
    fade = next(d for s in steps for d in s.decisions if d.action == "fade")
    assert fade.reason == "scenario over: fading out over 22.5 s"  # 0.45 at 0.02 per second
    assert steps[-1].state is State.ENDED


def test_the_caregivers_hands_go_through_methods():
    """hold, manual mode and station starts are methods; the flags they set are read-only."""
    ctrl = Controller(scenario())
    for flag in ("held", "manual", "start_on"):
        with pytest.raises(AttributeError):
            setattr(ctrl, flag, True)
    ctrl.start_at_station()  # a face no longer starts the scenario: only a Start does
    assert ctrl.start_on == "station" and ctrl.waiting_for_start
    assert ctrl.step(0.0, MoodSample(POS)).state is State.IDLE
    ctrl.begin()
    assert ctrl.step(1.0, MoodSample(POS)).state is State.RUNNING
    ctrl.hold()
    assert ctrl.held
    for t in range(2, 30):  # positive long past raise_after: held, so never raised
        step = ctrl.step(float(t), MoodSample(POS))
        assert "raise" not in [d.action for d in step.decisions]
    ctrl.hold(False)
    assert ctrl.nudge(30.0, 1) is None  # nudges only in manual mode
    ctrl.set_manual(True)
    assert ctrl.manual and ctrl.nudge(30.0, 1) is not None and ctrl.intensity == 0.6
    ctrl.set_manual(False)
    assert not ctrl.manual and ctrl.nudge(31.0, 1) is None


# --- a strong negative needs evidence over time; the body's second channel ---------------


def _strong_run(frames: list[tuple[float, float, bool]]) -> list[tuple[float, str]]:
    """Step a seated child through (t, p(negative) confidence, read frontally) frames at 15 fps."""
    ctrl = Controller(scenario())
    ctrl.step(0.0, MoodSample(NEU))
    out = []
    for t, confidence, sampled in frames:
        mood = NEG if confidence >= 0.5 else NEU
        out += [(round(t, 3), d.action) for d in
                ctrl.step(t, MoodSample(mood, confidence, sampled)).decisions]
    return out


def test_a_strong_negative_from_a_faces_first_frames_alone_never_halts():
    """A face that reads strongly negative for 0.9 s, then calm, is not halted; one that stays
    strongly negative over 1.0 s of frontal frames is, at 1.0 s and not before."""
    brief = [(1 + i / 15, 0.95 if i < 14 else 0.2, True) for i in range(30)]
    assert [a for _, a in _strong_run(brief)] == ["hold"]  # the neutral face back: a hold
    held = [(1 + i / 15, 0.95, True) for i in range(30)]
    halts = [t for t, a in _strong_run(held) if a == "halt"]
    assert halts == [pytest.approx(2.0, abs=1 / 15 + 1e-9)]


def test_frames_not_read_neither_end_nor_extend_a_strong_negative_but_one_read_calm_ends_it():
    turned = [(1 + i / 15, 0.95, i % 3 == 0) for i in range(30)]  # two of three frames unread
    assert any(a == "halt" for _, a in _strong_run(turned))
    interrupted = [(1 + i / 15, 0.95 if i != 10 else 0.6, True) for i in range(25)]
    assert not any(a == "halt" for _, a in _strong_run(interrupted))


class Body:
    def __init__(self, breathing: float | None, movement: float) -> None:
        self.breathing, self.movement = breathing, movement


def _body_run(body: Body | None, until: float, sc: Scenario | None = None,
              calm: float = 20.0) -> tuple[list[tuple[float, str, str]], Controller]:
    ctrl = Controller(sc or scenario())
    ctrl.calm_breathing = calm
    ctrl.step(0.0, MoodSample(NEU))
    out, t = [], 1.0
    while t <= until:
        out += [(t, d.action, d.alert or d.reason) for d in
                ctrl.step(t, MoodSample(NEU), body).decisions]
        t += 1.0
    return out, ctrl


def test_a_calm_face_with_a_racing_breath_and_restlessness_is_reduced_then_halted():
    """Breathing 1.4x the calm rate and restless for for_s (5 s) counts as negative: reduce
    after reduce_after (5 s) more, halt after halt_after (15 s), the alert saying what was seen."""
    out, ctrl = _body_run(Body(32.0, 0.8), 30)
    actions = [(t, a) for t, a, _ in out]
    assert actions[:3] == [(11.0, "reduce"), (16.0, "reduce"), (21.0, "halt")]
    alert = next(text for _, a, text in out if a == "halt")
    assert "breathing fast (32 / min, calm 20) and restless" in alert and "face calm" in alert
    assert ctrl.state is State.HALTED


@pytest.mark.parametrize("body", [None, Body(None, 0.1), Body(27.0, 0.3), Body(20.0, 0.59)],
                         ids=["no body", "breathing unknown", "just below fast", "calm"])
def test_a_calm_body_or_an_unknown_breath_adds_nothing(body):
    out, ctrl = _body_run(body, 40)
    assert all(a not in ("reduce", "halt") for _, a, _ in out) and ctrl.state is State.RUNNING


def test_a_short_burst_of_movement_adds_nothing_and_the_channel_can_be_switched_off():
    ctrl = Controller(scenario())
    ctrl.step(0.0, MoodSample(NEU))
    for t in range(1, 30):
        body = Body(None, 0.9 if t % 6 < 4 else 0.1)  # bursts of 4 s, under for_s
        assert all(d.action != "reduce" for d in ctrl.step(float(t), MoodSample(NEU), body).decisions)
    sc = scenario()
    sc.rules.body.use = False
    out, _ = _body_run(Body(40.0, 1.0), 30, sc)
    assert all(a not in ("reduce", "halt") for _, a, _ in out)
