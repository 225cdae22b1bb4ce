"""The layout the next engineer relies on: no import cycles, short functions, ruff- and
mypy-clean code, and light modules that stay light."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "relaxd"
MAX_FUNCTION_LINES = 50


def modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        found[name.removesuffix(".__init__")] = path
    return found


def imports_of(path: Path, known: dict[str, Path]) -> set[str]:
    """Every relaxd module ``path`` imports: at module level, under TYPE_CHECKING, in functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name in known}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found |= {node.module} & known.keys()
            found |= {f"{node.module}.{a.name}" for a in node.names} & known.keys()
    return found


def test_no_import_cycles():
    known = modules()
    graph = {name: imports_of(path, known) - {name} for name, path in known.items()}

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        for nxt in graph[start] - seen:
            seen.add(nxt)
            if nxt == goal or reaches(nxt, goal, seen):
                return True
        return False

    cycles = sorted(name for name in graph if reaches(name, name, set()))
    assert cycles == [], f"modules on an import cycle: {cycles}"


def test_no_function_longer_than_fifty_lines():
    long = []
    for path in modules().values():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                body = node.body
                has_doc = (isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
                           and isinstance(body[0].value.value, str))
                first = body[1].lineno if has_doc and len(body) > 1 else body[0].lineno
                lines = node.end_lineno - first + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({lines})")
    assert long == []


RUFF = shutil.which("ruff") or shutil.which("ruff", path=str(Path(sys.executable).parent))


@pytest.mark.skipif(RUFF is None, reason="ruff not installed (pip install -e '.[test]')")
def test_ruff_is_clean():
    done = subprocess.run([RUFF, "check", "relaxd", "tools", "tests"], cwd=ROOT,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def _mypy() -> list[str] | None:
    """How to run mypy here (None: not installed)."""
    try:
        import mypy  # noqa: F401
    except ImportError:
        return None
    return [sys.executable, "-m", "mypy"]


MYPY = _mypy()


@pytest.mark.skipif(MYPY is None, reason="mypy not installed (pip install -e '.[test]')")
def test_mypy_is_clean():
    """Every function type-checked, annotated or not ([tool.mypy] in pyproject.toml)."""
    done = subprocess.run([*MYPY, "--check-untyped-defs", f"--cache-dir={os.devnull}", "relaxd"],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr


HEAVY = ("cv2", "numpy", "tflite_runtime", "ai_edge_litert", "sounddevice", "picamera2")


def loaded_by(code: str) -> list[str]:
    done = subprocess.run([sys.executable, "-c", code + "\nimport sys; print(*sys.modules)"],
                          capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def test_the_hardware_module_loads_nothing_heavy():
    assert [m for m in HEAVY if m in loaded_by("import relaxd.daemon.hardware")] == []


def test_safe_off_loads_no_model_camera_or_audio_stack(tmp_path):
    heavy = ("cv2", "tflite_runtime", "ai_edge_litert", "sounddevice", "picamera2")
    code = ("from relaxd.cli import main\n"
            f"assert main(['safe-off', '--simulate', '--out', {str(tmp_path)!r}]) == 0")
    assert [m for m in heavy if m in loaded_by(code)] == []


#: The stages in the order imports run: a module may import its own group and those before it.
#: ``config`` gathers every section's settings for the daemon and the commands; ``cli`` and
#: ``__main__`` are the entry point.
GROUPS = ("core", "control", "vision", "outputs", "records", "safety", "children", "sim",
          "station", "clinic", "config", "daemon", "commands", "cli")


def group_of(module: str) -> str:
    part = module.split(".")[1] if "." in module else "cli"
    return "cli" if part == "__main__" else part


def test_every_module_is_in_a_group_and_imports_run_one_way():
    known = modules()
    assert {group_of(m) for m in known if m != "relaxd"} <= set(GROUPS), sorted(
        {group_of(m) for m in known} - set(GROUPS))
    backwards = []
    for name, path in known.items():
        if name == "relaxd":
            continue
        rank = GROUPS.index(group_of(name))
        for dep in imports_of(path, known) - {"relaxd"}:
            if GROUPS.index(group_of(dep)) > rank:
                backwards.append(f"{name} imports {dep}")
    assert sorted(backwards) == []


def test_the_web_process_loads_no_vision_or_outputs():
    heavy = ("cv2", "tflite_runtime", "ai_edge_litert", "sounddevice", "picamera2")
    loaded = loaded_by("import relaxd.station.server, relaxd.station.link, relaxd.commands.ui")
    assert [m for m in loaded if m.startswith(("relaxd.vision", "relaxd.outputs"))] == []
    assert [m for m in heavy if m in loaded] == []


def test_the_clinic_processes_load_no_vision_or_outputs():
    """The bridge and the overview talk to the daemon over the socket and to the broker only."""
    heavy = ("cv2", "tflite_runtime", "ai_edge_litert", "sounddevice", "picamera2", "gpiozero")
    loaded = loaded_by("import relaxd.clinic.bridge, relaxd.clinic.server, relaxd.commands.bridge, "
                       "relaxd.commands.overview")
    assert [m for m in loaded if m.startswith(("relaxd.vision", "relaxd.outputs",
                                               "relaxd.daemon"))] == []
    assert [m for m in heavy if m in loaded] == []


def test_the_command_table_names_modules_that_exist():
    from relaxd.cli import _COMMANDS

    known = modules()
    for words, (module, configure, run, _) in _COMMANDS.items():
        assert module in known, words
        source = known[module].read_text()
        assert f"def {configure}(" in source and f"def {run}(" in source, words


def test_nothing_below_the_command_line_sees_argparse_for_a_run():
    """The run's options are parsed once in cli.py into RunOptions; the session's build, the
    child's session and the virtual child take that, never an argparse Namespace."""
    for module in ("daemon/build.py", "children/session.py", "sim/virtual_child.py",
                   "core/options.py"):
        assert "argparse" not in (PACKAGE / module).read_text(), module


def test_reading_the_configuration_loads_no_device_code():
    """Every settings class lives in a light module: the configuration (read by the station,
    safe-off and every command) loads no numpy, camera, model, audio or GPIO stack."""
    loaded = loaded_by("import relaxd.config; relaxd.config.Config()")
    assert [m for m in HEAVY + ("gpiozero", "scipy") if m in loaded] == []
    relaxd_modules = {m for m in loaded if m.startswith("relaxd.")}
    assert {m.rsplit(".", 1)[-1] for m in relaxd_modules} <= {
        "config", "settings", "errors", "paths", "yamlspec", "durable", "pins", "core", "outputs",
        "safety", "station", "vision", "children", "clinic"}, sorted(relaxd_modules)


#: Where a branch on "simulate" may stand: the hardware (the one decision), the options'
#: validation, and safe-off, which must switch the pins off without a valid configuration and so
#: without building the hardware.
DECIDE_SIMULATED = {"relaxd.daemon.hardware", "relaxd.core.options", "relaxd.commands.safe_off"}


def _branches_on_simulate(path: Path) -> list[int]:
    """Lines of ``path`` where an ``if``, a conditional expression or a boolean operation
    tests something named ``simulate``."""
    lines = []
    for node in ast.walk(ast.parse(path.read_text())):
        test = node.test if isinstance(node, (ast.If, ast.IfExp, ast.While)) else \
            node if isinstance(node, ast.BoolOp) else None
        if test is None:
            continue
        names = {n.id for n in ast.walk(test) if isinstance(n, ast.Name)} | \
            {n.attr for n in ast.walk(test) if isinstance(n, ast.Attribute)}
        if "simulate" in names:
            lines.append(node.lineno)
    return lines


def test_only_the_hardware_decides_real_or_simulated():
    """As gpiozero's devices ask their pin factory, every real/simulated difference is asked of
    the hardware object (relaxd.daemon.hardware); nothing else branches on ``simulate``."""
    found = {name: lines for name, path in modules().items()
             if name not in DECIDE_SIMULATED and (lines := _branches_on_simulate(path))}
    assert found == {}


def test_a_run_without_a_child_loads_no_profile_learner_or_virtual_child():
    """The daemon's run path imports the child's profile, the scenario learner and the virtual
    child only for a run that asks for a child; hints, medians and CSV exports load their
    standard modules where they are made (``tools/bench_memory.py`` measures the memory)."""
    loaded = loaded_by("import relaxd.cli, relaxd.core.options, relaxd.daemon.build")
    unused = ("relaxd.children.session", "relaxd.children.recommend", "relaxd.children.store",
              "relaxd.sim.virtual_child", "statistics", "difflib", "csv")
    assert [m for m in unused if m in loaded] == []
