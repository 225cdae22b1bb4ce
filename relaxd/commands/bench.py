"""``relaxd bench``: time the run-time vision pipeline on 640x480 frames, single-threaded.

The stages are the daemon's own classes: :func:`faces.to_gray`, :meth:`faces.FaceDetector.track`,
:func:`faces.crop_face`, :meth:`emotion.EmotionClassifier.classify`, :class:`mood.MoodSmoother`,
:class:`body.vitals.BodySignals` (breathing, pulse, restlessness: every frame with a face).
Frames are made (built-in: scikit-image's astronaut on a cluttered background, moving slightly)
or decoded (``--video``) outside the timed part, one at a time, so memory stays small.

Both this and ``--estop`` run under the daemon's interpreter switch interval
(:data:`relaxd.daemon.build.STOP_SWITCH_INTERVAL_S`, 1 ms) unless ``--switch-interval MS`` says otherwise,
so ``--switch-interval 5`` (Python's default) shows what the shorter interval changes.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, TextIO

import cv2
import numpy as np

from relaxd.commands.evaluate import add_delegate_argument
from relaxd.core.errors import RelaxdError
from relaxd.core.labels import mood_probs
from relaxd.core.paths import ASTRONAUT_FACE_PX, ASTRONAUT_HEAD, default_model
from relaxd.daemon.build import STOP_SWITCH_INTERVAL_S, quick_switches
from relaxd.vision.body.vitals import BodySignals, ChairOutputs, mean_colour
from relaxd.vision.camera import CAMERA_SIZE, VideoFileSource
from relaxd.vision.emotion import EmotionClassifier
from relaxd.vision.faces import Box, Detection, FaceDetector, crop_face, one_opencv_thread, to_gray
from relaxd.vision.facesearch import FRONTAL, load_cascade
from relaxd.vision.mood import MoodSmoother


def cluttered_background(rng: np.random.Generator, size: tuple[int, int] = CAMERA_SIZE) -> np.ndarray:
    """A BGR scene full of edges for the face detector to wade through: blotchy noise under
    random shapes and text (a busy room, drawn)."""
    width, height = size
    blotches = rng.integers(0, 256, (height // 16, width // 16, 3), dtype=np.uint8)
    bg = cv2.GaussianBlur(cv2.resize(blotches, (width, height)), (0, 0), 3)
    for _ in range(40):
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
        kind = rng.integers(0, 4)
        if kind == 0:
            cv2.rectangle(bg, (x, y), (x + int(rng.integers(10, 120)), y + int(rng.integers(10, 120))),
                          colour, int(rng.choice([-1, 2])))
        elif kind == 1:
            cv2.circle(bg, (x, y), int(rng.integers(5, 50)), colour, int(rng.choice([-1, 3])))
        elif kind == 2:
            cv2.line(bg, (x, y), (int(rng.integers(0, width)), int(rng.integers(0, height))), colour, 2)
        else:
            cv2.putText(bg, "relax", (x, y), cv2.FONT_HERSHEY_SIMPLEX, 1.0, colour, 2)
    return bg


def astronaut_head() -> tuple[np.ndarray, int]:
    """Eileen Collins's head and shoulders (NASA, public domain; as in scikit-image's
    astronaut photo), BGR, shipped with relaxd, and her face's width in it."""
    img = cv2.imread(str(ASTRONAUT_HEAD))
    if img is None:
        raise RelaxdError("the bundled face frame is missing or unreadable", ASTRONAUT_HEAD)
    return img, ASTRONAUT_FACE_PX


def builtin_frames(n: int, seed: int = 0, face_px: int = 120) -> Iterator[np.ndarray]:
    """``n`` 640x480 BGR frames: one face on clutter, drifting, nodding in scale, light changing."""
    rng = np.random.default_rng(seed)
    bg = cluttered_background(rng)
    head, head_face_px = astronaut_head()
    height, width = bg.shape[:2]
    for i in range(n):
        phase = 2 * np.pi * i / 90
        scale = face_px * (1 + 0.06 * np.sin(phase / 2)) / head_face_px
        moved = cv2.resize(head, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        hh, hw = moved.shape[:2]
        x = int(width / 2 - hw / 2 + 25 * np.sin(phase))
        y = int(height / 2 - hh / 2 + 12 * np.cos(1.3 * phase))
        frame = bg.copy()
        frame[y:y + hh, x:x + hw] = moved
        yield cv2.convertScaleAbs(frame, alpha=1 + 0.1 * np.sin(phase / 3))


def video_frames(path: str | Path, limit: int | None) -> Iterator[np.ndarray]:
    """A video's frames, resized to 640x480 (at most ``limit`` of them)."""
    source = VideoFileSource(path)
    try:
        count = 0
        while limit is None or count < limit:
            frame = source.read()
            if frame is None:
                return
            image = frame.image
            if image.shape[1::-1] != CAMERA_SIZE:
                image = cv2.resize(image, CAMERA_SIZE, interpolation=cv2.INTER_AREA)
            yield image
            count += 1
    finally:
        source.close()


def textbook_frame(image: np.ndarray, classifier: EmotionClassifier) -> np.ndarray | None:
    """The textbook pipeline on one frame: a full-frame Viola-Jones search
    (``detectMultiScale(gray, 1.1, 5, minSize=(48, 48))``) and the largest face's emotion."""
    gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    found = load_cascade(FRONTAL[0]).detectMultiScale(gray, 1.1, 5, minSize=(48, 48))
    if len(found) == 0:
        return None
    x, y, w, h = max(found, key=lambda b: b[2] * b[3])
    return classifier.classify(crop_face(gray, Box(int(x), int(y), int(w), int(h))))


def measure(frames: Iterator[np.ndarray], detector: FaceDetector,
            classifier: EmotionClassifier, frame_rate: float = 15.0,
            faces_out: TextIO | None = None, textbook: bool = False) -> dict[str, float | int]:
    """Run the pipeline on every frame; median milliseconds per stage and per frame, and rates.

    As in the daemon, only a face a frontal cascade found is cropped and classified; ``crop`` and
    ``classify`` are timed on those frames, the other stages on all. The result's ``fps`` is
    sustained throughput (frames over their summed time). ``face_rate``: frames with the child's
    face, ``frontal_rate``: with a face fit for the mood. The mood smoother sees ``frame_rate``.
    ``faces_out``: one JSON line per frame (see :func:`face_line`). ``textbook``: also time
    :func:`textbook_frame` on each frame, right after relaxd's pipeline. ``frame_cpu``: the
    frame's CPU time in this thread (time the machine's other work took the core is not
    counted: on a shared machine the wall-clock figures run high).
    """
    times: dict[str, list[float]] = {s: [] for s in ("gray", "detect", "crop", "classify", "mood",
                                                      "body", "frame", "frame_cpu", "textbook")}
    smoother, body = MoodSmoother(), BodySignals()
    clock = time.perf_counter
    n = with_face = frontal = full = 0
    for image in frames:
        t0, cpu0 = clock(), time.thread_time()
        gray = to_gray(image)
        t1 = clock()
        found = detector.track(gray)
        t2 = t3 = clock()
        probs3 = None
        if found.frontal:
            assert found.box is not None  # a frontal find is a face
            face = crop_face(gray, found.box)
            t3 = clock()
            probs3 = mood_probs(classifier.classify(face))
        t4 = clock()
        feed_mood(smoother, n / frame_rate, found, probs3)
        t5 = clock()
        feed_body(body, n / frame_rate, image, gray, found)
        t6, cpu6 = clock(), time.thread_time()
        for stage, dt in (("gray", t1 - t0), ("detect", t2 - t1), ("mood", t5 - t4),
                          ("body", t6 - t5), ("frame", t6 - t0), ("frame_cpu", cpu6 - cpu0)):
            times[stage].append(dt)
        if found.frontal:
            times["crop"].append(t3 - t2)
            times["classify"].append(t4 - t3)
        if faces_out is not None:
            faces_out.write(face_line(n, gray.shape, found, t6 - t0) + "\n")
        if textbook:
            t7 = clock()
            textbook_frame(image, classifier)
            times["textbook"].append(clock() - t7)
        n, with_face = n + 1, with_face + (found.box is not None)
        frontal, full = frontal + found.frontal, full + found.full_search
    return _summary(times, n, with_face, frontal, full)


def _summary(times: dict[str, list[float]], n: int, with_face: int, frontal: int,
             full: int) -> dict[str, float | int]:
    """:func:`measure`'s figures from its per-stage times and counts."""
    if n == 0:
        raise RelaxdError("no frames to benchmark")
    result: dict[str, float | int] = {
        f"{stage}_ms_median": round(1000 * statistics.median(v), 3) if v else float("nan")
        for stage, v in times.items()}
    for stage in ("frame", "frame_cpu"):
        result[f"{stage}_ms_p95"] = round(1000 * float(np.percentile(times[stage], 95)), 3)
    if times["textbook"]:
        result["textbook_ms_p95"] = round(1000 * float(np.percentile(times["textbook"], 95)), 3)
        result["textbook_ratio"] = round(statistics.median(times["textbook"])
                                         / statistics.median(times["frame"]), 1)
    else:
        del result["textbook_ms_median"]
    result["fps"] = round(n / sum(times["frame"]), 1)
    result["frames"] = n
    result["face_rate"] = round(with_face / n, 4)
    result["frontal_rate"] = round(frontal / n, 4)
    result["full_search_rate"] = round(full / n, 4)
    result["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    result["tensorflow_imported"] = "tensorflow" in sys.modules
    return result


def feed_mood(smoother: MoodSmoother, t: float, found: Detection, probs3: np.ndarray | None) -> None:
    """As the daemon does: a frontal face's mood, a face only present, or no face."""
    if found.frontal:
        smoother.update(t, probs3)
    elif found.box is not None:
        smoother.present(t)
    else:
        smoother.update(t, None)


def feed_body(body: BodySignals, t: float, image: np.ndarray, gray: np.ndarray,
              found: Detection) -> None:
    """As the daemon does: the body signals read on every frame with the child's face (the
    chair's outputs off)."""
    if found.box is None:
        body.lost(t)
    else:
        body.update(t, gray, found.box, mean_colour(image), ChairOutputs())


def face_line(n: int, shape: tuple[int, ...], found: Detection, seconds: float) -> str:
    """One frame's face as a JSON line: frame number, frame size, the child's box or null in that
    frame's pixels, whether it was followed from the last frame, how it was found, whether it
    feeds the mood, and the frame's milliseconds."""
    box = None if found.box is None else [found.box.x, found.box.y, found.box.w, found.box.h]
    return json.dumps({"frame": n, "size": [shape[1], shape[0]], "box": box,
                       "tracked": found.tracked, "how": found.how, "frontal": found.frontal,
                       "ms": round(1000 * seconds, 3)})


def configure(parser: argparse.ArgumentParser) -> None:
    """Add ``relaxd bench``'s arguments."""
    parser.add_argument("--video", metavar="FILE", help="benchmark this video's frames, "
                        "resized to 640x480 (default: built-in frames of one face on clutter)")
    parser.add_argument("--frames", type=int, default=300, metavar="N",
                        help="at most N frames (default: %(default)s)")
    parser.add_argument("--model", metavar="FILE", help="emotion model (default: the bundled one)")
    parser.add_argument("--textbook", action="store_true", help="also time the textbook pipeline "
                        "on every frame (full-frame detectMultiScale(gray, 1.1, 5, minSize=(48, "
                        "48)) and the largest face's emotion) and give the ratio of the medians")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--faces", metavar="OUT.jsonl", help="also write each frame's face as "
                        "a JSON line: frame, size, box (or null), tracked, how, frontal, ms")
    add_delegate_argument(parser, default="xnnpack")
    parser.add_argument("--estop", type=int, metavar="N",
                        help="instead: time N e-stop presses (button -> every actuator pin at 0) "
                        "on gpiozero mock pins while the main loop is stalled")
    parser.add_argument("--switch-interval", type=float, metavar="MS",
                        default=STOP_SWITCH_INTERVAL_S * 1000,
                        help="the interpreter's switch interval during the run, milliseconds "
                        "(default: the daemon's, %(default)g; Python's own is 5)")


def _measure_to(path: str | None, frames: Iterator[np.ndarray], detector: FaceDetector,
                classifier: EmotionClassifier, textbook: bool) -> dict[str, float | int]:
    """:func:`measure`, writing the per-frame faces to ``path`` when given."""
    if path is None:
        return measure(frames, detector, classifier, textbook=textbook)
    try:
        with open(path, "w", encoding="utf-8") as out:
            return measure(frames, detector, classifier, faces_out=out, textbook=textbook)
    except OSError as exc:
        raise RelaxdError(f"--faces {path}: cannot write: {exc.strerror}") from None


def run(args: argparse.Namespace) -> int:
    """Benchmark and print the figures; 0 on success."""
    if not 0.01 <= args.switch_interval <= 100:
        raise RelaxdError("--switch-interval must be 0.01 to 100 ms")
    with quick_switches(args.switch_interval / 1000):
        return _run_estop(args) if args.estop is not None else _run_vision(args)


def _run_estop(args: argparse.Namespace) -> int:
    """``--estop N``: the latency figures."""
    from dataclasses import asdict

    if args.estop < 1:
        raise RelaxdError("--estop must be at least 1")
    stats = estop_latency(args.estop, args.switch_interval / 1000)
    print(json.dumps(asdict(stats)) if args.json else stats)
    return 0


def _run_vision(args: argparse.Namespace) -> int:
    """The vision pipeline's stages."""
    if args.frames < 1:
        raise RelaxdError("--frames must be at least 1")
    one_opencv_thread()
    classifier = EmotionClassifier(args.model or default_model(), num_threads=1,
                                   delegate=args.delegate)
    detector = FaceDetector()
    if args.video:
        frames, source = video_frames(args.video, args.frames), f"video {args.video}"
    else:
        frames, source = builtin_frames(args.frames), "built-in (astronaut on clutter)"
    result: dict[str, Any] = {"source": source, "runtime": classifier.runtime,
              "switch_interval_ms": round(sys.getswitchinterval() * 1000, 3),
              "find_bound_frames": list(detector.find_bound(*CAMERA_SIZE)),
              "looking_down_bound_frames": detector.looking_down_bound(*CAMERA_SIZE),
              **_measure_to(args.faces, frames, detector, classifier, args.textbook)}
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"{source}: {result['frames']} frames at 640x480, 1 thread, {classifier.runtime}, "
          f"switch interval {result['switch_interval_ms']:g} ms")
    for stage in ("gray", "detect", "crop", "classify", "mood", "body"):
        print(f"  {stage:<9}{result[f'{stage}_ms_median']:8.3f} ms median")
    print(f"  {'frame':<9}{result['frame_ms_median']:8.3f} ms median, "
          f"{result['frame_ms_p95']:.3f} ms p95 -> {result['fps']} fps "
          f"(CPU time {result['frame_cpu_ms_median']:.3f} ms median, "
          f"{result['frame_cpu_ms_p95']:.3f} ms p95)")
    print(f"  face found in {100 * result['face_rate']:.1f}% of frames, frontal in "
          f"{100 * result['frontal_rate']:.1f}% (a sweep of the full frame ended in "
          f"{100 * result['full_search_rate']:.1f}%)")
    if "textbook_ratio" in result:
        print(f"  textbook {result['textbook_ms_median']:8.3f} ms median, "
              f"{result['textbook_ms_p95']:.3f} ms p95: {result['textbook_ratio']}x relaxd's median")
    empty, beside = detector.find_bound(*CAMERA_SIZE)
    print(f"  a newcomer is found within {empty} frames in an empty chair, {beside} beside a "
          f"followed face; one looking down (alt2 only) within "
          f"{result['looking_down_bound_frames']} in an empty chair")
    print(f"  peak RSS {result['peak_rss_mb']} MB")
    return 0


# --- e-stop latency -------------------------------------------------------------------------


@dataclass(frozen=True)
class LatencyStats:
    n: int
    median_ms: float
    p95_ms: float
    max_ms: float
    switch_interval_ms: float  # the interpreter's, during the measurement

    def __str__(self) -> str:
        return (f"e-stop latency over {self.n} presses: median {self.median_ms:.3f} ms, "
                f"p95 {self.p95_ms:.3f} ms, max {self.max_ms:.3f} ms "
                f"(switch interval {self.switch_interval_ms:g} ms)")


def _wait(cond: Callable[[], bool], what: str, timeout: float = 2.0) -> None:
    deadline = time.perf_counter() + timeout
    while not cond():
        if time.perf_counter() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.0005)


class _StalledChair:
    """Actuators on mock pins whose main loop spins in pure Python inside ``apply()``: it holds
    the actuators' lock and the GIL, which it gives up only at the interpreter's switch
    interval. A callback thread, blocked outside Python as lgpio's is, presses the e-stop."""

    def __init__(self) -> None:
        from relaxd.daemon.hardware import SimulatedHands, simulated_pins
        from relaxd.outputs.actuators import Actuators
        from relaxd.outputs.audio import NullOutput
        from relaxd.outputs.settings import ActuatorSettings
        from relaxd.safety.estop import EmergencyStop
        from relaxd.safety.settings import SafetySettings

        self.gate, self.edge, self.done = threading.Event(), threading.Event(), threading.Event()
        gate = self.gate

        class StalledAudio(NullOutput):
            def advance(self, t: float) -> None:
                while not gate.is_set():  # busy: holds the GIL but for the switch interval
                    pass

        self.factory = simulated_pins()
        a = ActuatorSettings()
        self.acts = Actuators(a, StalledAudio(), pin_factory=self.factory)
        self.stop = EmergencyStop(self.acts, SafetySettings(), pin_factory=self.factory)
        self.hands = SimulatedHands(self.factory, self.stop.settings)
        self.hands.rest()
        self.pins = [self.factory.pin(p) for p in (a.red_pin, a.green_pin, a.blue_pin,
                                                   a.vibration_pin)]
        self.step = _lit_step()
        self.pressed_at = 0.0
        threading.Thread(target=self._callbacks, name="callbacks", daemon=True).start()

    def _callbacks(self) -> None:
        while self.edge.wait() and not self.gate.is_set():
            self.edge.clear()
            self.hands("press", "estop")  # the button's callback: every pin is 0 when it returns
            self.pressed_at = time.perf_counter()
            self.done.set()

    def press_once(self) -> float:
        """One press while the loop is stalled; milliseconds from the edge to every pin at 0."""
        self.gate.clear()
        loop = threading.Thread(target=self.acts.apply, args=(60.0, self.step), daemon=True)
        loop.start()
        _wait(lambda: any(p.state > 0 for p in self.pins), "the stalled loop to switch on")
        self.done.clear()
        t0 = time.perf_counter()
        self.edge.set()
        if not self.done.wait(5) or any(p.state != 0 for p in self.pins):
            raise RuntimeError("the press did not switch the actuators off")
        self.hands("release", "estop")
        self.stop.reset("benchmark")
        self.gate.set()
        loop.join()
        self.acts.enable()
        return (self.pressed_at - t0) * 1000

    def close(self) -> None:
        self.gate.set()
        self.edge.set()
        self.stop.close()
        self.acts.close()
        self.factory.reset()


def _lit_step() -> Any:
    """A step of the default scenario a minute in: every output well above 0."""
    from relaxd.control.controller import Controller, MoodSample
    from relaxd.control.scenario import load_scenario
    from relaxd.core.labels import Mood
    from relaxd.core.paths import default_scenario

    ctrl = Controller(load_scenario(default_scenario()))
    ctrl.step(0.0, MoodSample(Mood.NEUTRAL))
    return ctrl.step(60.0, MoodSample(Mood.NEUTRAL))


def estop_latency(n: int = 200, switch_interval: float = STOP_SWITCH_INTERVAL_S) -> LatencyStats:
    """Press -> every actuator pin at 0, on mock pins, with the main loop stalled in apply()
    holding the GIL (:class:`_StalledChair`): the press waits for no lock, only for the GIL, up
    to the interpreter's switch interval: ``switch_interval`` seconds, by default the daemon's
    (:data:`relaxd.daemon.build.STOP_SWITCH_INTERVAL_S`). On the Pi add the lgpio callback delay and up
    to ``bounce_time``."""
    chair = _StalledChair()
    try:
        with quick_switches(switch_interval):
            times = sorted(chair.press_once() for _ in range(n))
    finally:
        chair.close()
    return LatencyStats(n, statistics.median(times), times[int(0.95 * (n - 1))], times[-1],
                        round(switch_interval * 1000, 3))
