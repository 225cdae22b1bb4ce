"""Typed YAML: build dataclasses from YAML files and report every problem as FILE:LINE:COL.

Scenarios and the configuration are plain dataclasses whose fields carry their limits::

    @dataclass
    class Light:
        brightness: float = spec(0.5, min=0, max=1, help="0..1 of the LEDs' full duty cycle")

    light = load(Light, "light.yaml")      # raises SpecError listing every problem

Field types understood: bool, int, float, str, Path (relative to the file), Enum and Literal
(choices, with did-you-mean), list[X], dict[str, X], X | None, nested dataclasses, and any class
with a ``from_yaml(value)`` classmethod (raising ValueError) and a ``json_schema()`` classmethod.
A dataclass may define ``check(self) -> Iterable[tuple[str | None, str]]`` for rules across fields:
each (key, message) is reported at that key's position.
"""

from __future__ import annotations

import dataclasses
import enum
import math
import types
import typing
from dataclasses import MISSING, dataclass, field
from pathlib import Path
from typing import Any, Iterable, TypeVar, Union

import yaml

from relaxd.core.errors import RelaxdError

T = TypeVar("T")


def spec(default: Any = MISSING, *, min: float | None = None, max: float | None = None,
         help: str = "", default_factory: Any = MISSING) -> Any:
    """A dataclass field with limits and a description (used for checks and the JSON Schema)."""
    meta = {"min": min, "max": max, "help": help}
    if default_factory is not MISSING:
        return field(default_factory=default_factory, metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class Problem:
    line: int  # 1-based
    col: int  # 1-based
    message: str

    def format(self, path: str | Path) -> str:
        return f"{path}:{self.line}:{self.col}: {self.message}"


class SpecError(RelaxdError):
    """Every problem found in one file, one ``FILE:LINE:COL: message`` line each."""

    path: str | Path  # always the file's

    def __init__(self, path: str | Path, problems: list[Problem]):
        self.path, self.problems = path, problems
        Exception.__init__(self, "\n".join(p.format(path) for p in problems))


def _at(node: yaml.Node, message: str) -> Problem:
    return Problem(node.start_mark.line + 1, node.start_mark.column + 1, message)


def _did_you_mean(word: str, choices: Iterable[str]) -> str:
    import difflib  # only for a problem's hint: never loaded by a valid file

    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _type_name(tp: Any) -> str:
    names = {bool: "true or false", int: "a whole number", float: "a number", str: "text",
             Path: "a file path"}
    if tp in names:
        return names[tp]
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    origin = typing.get_origin(tp)
    if origin is list:
        return "a list"
    if origin is dict:
        return "a mapping"
    return getattr(tp, "__name__", str(tp))


class _Builder:
    def __init__(self, base_dir: Path):
        self.base_dir = base_dir
        self.problems: list[Problem] = []
        self._scalars = yaml.constructor.SafeConstructor()

    def scalar(self, node: yaml.Node) -> Any:
        return self._scalars.construct_object(node, deep=True)

    def build(self, tp: Any, node: yaml.Node) -> Any:
        """Convert ``node`` to ``tp``; on a problem record it and return MISSING."""
        origin = typing.get_origin(tp)
        if origin in (Union, types.UnionType):
            args = [a for a in typing.get_args(tp) if a is not type(None)]
            if isinstance(node, yaml.ScalarNode) and self.scalar(node) is None:
                return None
            return self.build(args[0], node)
        if origin is typing.Literal:
            return self._choice(node, [str(a) for a in typing.get_args(tp)], lambda v: v)
        if isinstance(tp, type) and issubclass(tp, enum.Enum):
            return self._choice(node, [m.value for m in tp], tp)
        if isinstance(tp, type) and dataclasses.is_dataclass(tp):
            return self._dataclass(tp, node)
        if origin is list:
            if not isinstance(node, yaml.SequenceNode):
                self.problems.append(_at(node, f"expected a list, got {self._describe(node)}"))
                return MISSING
            (item_tp,) = typing.get_args(tp)
            items = [self.build(item_tp, n) for n in node.value]
            return MISSING if any(i is MISSING for i in items) else items
        if origin is dict:
            if not isinstance(node, yaml.MappingNode):
                self.problems.append(_at(node, f"expected a mapping, got {self._describe(node)}"))
                return MISSING
            _, val_tp = typing.get_args(tp)
            out = {}
            for k, v in node.value:
                out[str(self.scalar(k))] = self.build(val_tp, v)
            return MISSING if MISSING in out.values() else out
        if hasattr(tp, "from_yaml"):
            value = self.scalar(node) if isinstance(node, yaml.ScalarNode) else \
                self._scalars.construct_object(node, deep=True)
            try:
                return tp.from_yaml(value)
            except ValueError as exc:
                self.problems.append(_at(node, str(exc)))
                return MISSING
        return self._plain(tp, node)

    def _describe(self, node: yaml.Node) -> str:
        if isinstance(node, yaml.MappingNode):
            return "a mapping"
        if isinstance(node, yaml.SequenceNode):
            return "a list"
        value = self.scalar(node)
        if value is None:
            return "nothing"
        text = repr(value)
        return text if len(text) <= 40 else text[:37] + "...'"

    def _plain(self, tp: Any, node: yaml.Node) -> Any:
        value: Any = self.scalar(node) if isinstance(node, yaml.ScalarNode) else MISSING
        ok = (
            (tp is bool and isinstance(value, bool))
            or (tp is int and isinstance(value, int) and not isinstance(value, bool))
            or (tp is float and isinstance(value, (int, float)) and not isinstance(value, bool))
            or (tp in (str, Path) and isinstance(value, (str, int, float))
                and not isinstance(value, bool) and value != "")
        )
        if not ok:
            self.problems.append(
                _at(node, f"expected {_type_name(tp)}, got {self._describe(node)}"))
            return MISSING
        if tp is float:
            return float(value)
        if tp is Path:
            p = Path(str(value)).expanduser()
            return p if p.is_absolute() else self.base_dir / p
        if tp is str:
            return str(value)
        return value

    def _choice(self, node: yaml.Node, choices: list[str], make: Any) -> Any:
        value = self.scalar(node) if isinstance(node, yaml.ScalarNode) else None
        if not isinstance(value, str) or value not in choices:
            hint = _did_you_mean(str(value), choices) if isinstance(value, str) else ""
            self.problems.append(_at(
                node, f"expected one of {', '.join(choices)}; got {self._describe(node)}{hint}"))
            return MISSING
        return make(value)

    def _dataclass(self, cls: type, node: yaml.Node) -> Any:
        if not isinstance(node, yaml.MappingNode):
            self.problems.append(_at(node, f"expected a mapping, got {self._describe(node)}"))
            return MISSING
        hints = typing.get_type_hints(cls)
        fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
        keys: dict[str, yaml.Node] = {}
        values: dict[str, Any] = {}
        failed = False
        for key_node, value_node in node.value:
            key = str(self.scalar(key_node))
            if key in keys:
                self.problems.append(_at(key_node, f"duplicate key '{key}'"))
                failed = True
                continue
            keys[key] = key_node
            f = fields.get(key)
            if f is None:
                self.problems.append(_at(key_node, f"unknown key '{key}'"
                                         + _did_you_mean(key, fields)))
                failed = True
                continue
            value = self.build(hints[key], value_node)
            if value is MISSING:
                failed = True
                continue
            if not self._in_range(f, value, value_node):
                failed = True
                continue
            values[key] = value
        for name, f in fields.items():
            if name not in keys and f.default is MISSING and f.default_factory is MISSING:
                self.problems.append(_at(node, f"missing required key '{name}'"))
                failed = True
        if failed:
            return MISSING
        obj = cls(**values)
        if hasattr(obj, "check"):
            for key, message in obj.check():
                self.problems.append(_at(keys.get(key, node) if key else node, message))
                failed = True
        return MISSING if failed else obj

    def _in_range(self, f: dataclasses.Field, value: Any, node: yaml.Node) -> bool:
        problem = limit_problem(f, value)
        if problem is not None:
            self.problems.append(_at(node, problem))
        return problem is None


def limit_problem(f: dataclasses.Field, value: Any) -> str | None:
    """What is wrong with a number against its field's ``spec()`` limits (NaN and inf never
    pass), or None. Other values always pass."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return None
    if not math.isfinite(value):
        return f"'{f.name}' is {value}, not a finite number"
    lo, hi = f.metadata.get("min"), f.metadata.get("max")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        rng = f"{lo if lo is not None else '-inf'}..{hi if hi is not None else 'inf'}"
        return f"'{f.name}' is {value}, outside {rng}"
    return None


def locate(node: yaml.Node | None, keys: Iterable[str | int]) -> tuple[int, int]:
    """1-based (line, column) of the key at ``keys`` (mapping keys and list indexes) under
    ``node``, or of the deepest of them that the file has."""
    where = (1, 1) if node is None else (node.start_mark.line + 1, node.start_mark.column + 1)
    for key in keys:
        if isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
            node = node.value[key]
        elif isinstance(node, yaml.MappingNode):
            found = [(k, v) for k, v in node.value if isinstance(k, yaml.ScalarNode)
                     and k.value == key]
            if not found:
                break
            k, node = found[0]
            where = (k.start_mark.line + 1, k.start_mark.column + 1)
            continue
        else:
            break
        where = (node.start_mark.line + 1, node.start_mark.column + 1)
    return where


def compose(path: str | Path, text: str | None = None) -> yaml.Node | None:
    """Parse a YAML file into nodes that keep their positions; raise SpecError on bad syntax."""
    path = Path(path)
    if text is None:
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise RelaxdError("no such file", path) from None
        except (OSError, UnicodeDecodeError) as exc:
            raise RelaxdError(f"cannot read: {getattr(exc, 'strerror', None) or exc}", path) from None
    try:
        return yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        raise SpecError(path, [Problem(line, col, f"YAML syntax error: {exc.problem}")]) from None
    except yaml.YAMLError as exc:
        raise SpecError(path, [Problem(1, 1, f"YAML error: {exc}")]) from None


def build(cls: type[T], node: yaml.Node | None, path: str | Path) -> T:
    """Build ``cls`` from a composed node; raise SpecError listing every problem."""
    if node is None:
        node = yaml.MappingNode("tag:yaml.org,2002:map", [])
        node.start_mark = yaml.Mark(str(path), 0, 0, 0, None, 0)  # no text: no snippet
    builder = _Builder(Path(path).resolve().parent)
    try:
        obj = builder.build(cls, node)
    except yaml.MarkedYAMLError as exc:  # a tag or merge key (<<) that safe YAML cannot build
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        builder.problems.append(Problem(line, col, f"YAML: {exc.problem or exc.context}"))
    if builder.problems:
        raise SpecError(path, sorted(builder.problems, key=lambda p: (p.line, p.col)))
    return obj


def load(cls: type[T], path: str | Path) -> T:
    """Read ``path`` and build ``cls`` from it (an empty file gives all defaults)."""
    return build(cls, compose(path), path)


def json_schema(tp: Any) -> dict[str, Any]:
    """A JSON Schema (draft 2020-12) for editors, from the same types and limits."""
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return {"anyOf": [json_schema(args[0]), {"type": "null"}]}
    if origin is typing.Literal:
        return {"enum": [str(a) for a in typing.get_args(tp)]}
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return {"enum": [m.value for m in tp]}
    if origin is list:
        return {"type": "array", "items": json_schema(typing.get_args(tp)[0])}
    if origin is dict:
        return {"type": "object", "additionalProperties": json_schema(typing.get_args(tp)[1])}
    if hasattr(tp, "json_schema"):
        return tp.json_schema()
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        hints = typing.get_type_hints(tp)
        props, required = {}, []
        for f in dataclasses.fields(tp):
            if not f.init:
                continue
            s = json_schema(hints[f.name])
            if f.metadata.get("help"):
                s["description"] = f.metadata["help"]
            if f.metadata.get("min") is not None:
                s["minimum"] = f.metadata["min"]
            if f.metadata.get("max") is not None:
                s["maximum"] = f.metadata["max"]
            if f.default is not MISSING and isinstance(f.default, (int, float, str, bool)):
                s["default"] = f.default.value if isinstance(f.default, enum.Enum) else f.default
            if f.default is MISSING and f.default_factory is MISSING:
                required.append(f.name)
            props[f.name] = s
        out: dict[str, Any] = {"type": "object", "properties": props,
                               "additionalProperties": False}
        if tp.__doc__ and not tp.__doc__.startswith(tp.__name__ + "("):
            out["description"] = tp.__doc__.strip().splitlines()[0]
        if required:
            out["required"] = required
        return out
    return {bool: {"type": "boolean"}, int: {"type": "integer"}, float: {"type": "number"},
            str: {"type": "string"}, Path: {"type": "string"}}[tp]
