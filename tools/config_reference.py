"""Writes docs/guide/config-reference.md: every key of every YAML config, read from the pydantic models of
``evoarena.config`` (type, allowed values and bounds, default, and the ``#:`` comment written beside the field).

    python tools/config_reference.py           # rewrite the page
    python tools/config_reference.py --check   # exit 1 when the page is not what the models say

``tests/test_docs.py`` runs the check, so a key added to a config model without rewriting the page fails a test.
"""

from __future__ import annotations

import argparse
import inspect
import re
import sys
import types
import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "guide" / "config-reference.md"
sys.path.insert(0, str(ROOT))  # the models of this checkout, whichever evoarena is installed

#: (model name, the command or place that reads it); the other models are found through their fields
ROOTS = [
    ("PipelineConfig", "`evoarena run CONFIG` (a pipeline of stages)"),
    ("PretrainConfig", "`evoarena pretrain CONFIG`, and a pipeline's `kind: pretrain` entry"),
    ("NERFinetuneConfig", "`evoarena finetune CONFIG` with `task: ner`, and a pipeline's `kind: finetune` entry with "
                          "`task: ner`"),
    ("BCFinetuneConfig", "`evoarena finetune CONFIG` with `task: bc`, and a pipeline's `kind: finetune` entry with "
                         "`task: bc`"),
    ("TrainConfig", "`evoarena train CONFIG`, and a pipeline's `kind: train` entry"),
    ("EvaluateConfig", "a pipeline's `kind: evaluate` entry"),
    ("TournamentConfig", "`evoarena tournament CONFIG`"),
    ("SweepConfig", "`evoarena bench CONFIG` (a sweep)"),
]
#: models documented in the text of another section rather than in their own
SKIP = {"PretrainStageConfig", "NERStageConfig", "BCStageConfig", "TrainStageConfig", "EvaluateStageConfig"}

HEADER = """# Config reference

Every key of every YAML config, generated from the config models in `evoarena/config.py` by
`python tools/config_reference.py` (a test fails when this page and the models disagree). Every model rejects
unknown keys, and numbers must be finite. Any key can be overridden on the command line with
`--set KEY.PATH=VALUE` (the value is read as YAML 1.2: `off` stays the string `off`); inside a pipeline a stage is
addressed by its name or index: `--set stages.train.ppo.lr=1e-4`. What the keys do together is in
[the chain](chain.md).
"""


def _comments(cls: type) -> dict[str, str]:
    """field name -> its ``#:`` comment in the class body: on the field's line, or on the lines just above it when
    the field has none on its line (a ``#:`` block after a commented field continues that field's comment)."""
    try:
        lines = inspect.getsource(cls).splitlines()
    except (OSError, TypeError):
        return {}
    out: dict[str, str] = {}
    pending: list[str] = []
    last: str | None = None
    for line in lines[1:]:
        text = line.strip()
        if text.startswith("#:"):
            pending.append(text[2:].strip())
            continue
        m = re.match(r"\s{4}(\w+)\s*:", line)
        if m and not text.startswith(("def ", "@", "class ")):
            name = m.group(1)
            own = line.split("#:", 1)[1].strip() if "#:" in line else ""
            if pending and own and last:  # a continuation of the previous field's comment
                out[last] = " ".join([out[last], *pending])
                pending = []
            out[name] = " ".join([*pending, own]).strip()
            pending, last = [], name
        elif text:
            if pending and last:
                out[last] = " ".join([out[last], *pending])
            pending, last = [], None
    return out


def _field_doc(model: type[BaseModel], name: str) -> str:
    for cls in model.__mro__:
        if isinstance(cls, type) and issubclass(cls, BaseModel) and name in cls.__dict__.get("__annotations__", {}):
            return _comments(cls).get(name, "")
    return ""


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in _models_in(arg)]


def _members(annotation: Any) -> list[Any]:
    """The alternatives of a (tagged, nested) union; any other annotation alone."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Annotated:
        return _members(args[0])
    if origin in (typing.Union, types.UnionType):
        return [m for a in args for m in _members(a)]
    return [annotation]


def _anchor(name: str) -> str:
    return name.lower()


def _type(annotation: Any) -> str:
    """A reader's spelling of a field's type: models link to their section."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return f"[{annotation.__name__}](#{_anchor(annotation.__name__)})"
    if origin is typing.Literal:
        return "one of " + ", ".join(f"`{a}`" for a in args)
    if origin is typing.Annotated:
        return _type(args[0])
    if origin in (typing.Union, types.UnionType):
        kinds = [a for a in _members(annotation) if a is not type(None)]
        if all(isinstance(a, type) and issubclass(a, BaseModel) and a.__name__ in SKIP for a in kinds):
            return "a stage entry (see above)"
        text = " or ".join(_type(a) for a in kinds)
        return text + (" or null" if type(None) in args else "")
    if origin is list:
        return f"list of {_type(args[0])}"
    if origin is dict:
        return f"mapping of str to {_type(args[1])}"
    if annotation is typing.Any:
        return "any"
    return getattr(annotation, "__name__", str(annotation))


def _bounds(field: Any) -> str:
    marks = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<", "min_length": "length >="}
    found = []
    for meta in field.metadata:
        for attr, sign in marks.items():
            value = getattr(meta, attr, None)
            if value is not None:
                found.append(f"{sign} {value}")
    return ", ".join(found)


def _default(field: Any) -> str:
    if field.default_factory is not None:
        try:
            value = field.default_factory()
        except ValueError:  # a model whose defaults name files that must exist (NER data)
            return "its defaults"
        if isinstance(value, BaseModel):
            changed = value.model_dump(mode="json", exclude_defaults=True)
            return "its defaults" + (" with " + ", ".join(f"`{k}: {v}`" for k, v in changed.items()) if changed else "")
        return f"`{value!r}`" if value not in ({}, []) else ("`{}`" if value == {} else "`[]`")
    if field.default is PydanticUndefined:
        return "**required**"
    if field.default is None:
        return "`null`"
    if isinstance(field.default, bool):
        return f"`{str(field.default).lower()}`"
    return f"`{field.default!r}`" if not isinstance(field.default, str) else f"`{field.default}`"


def _doc(model: type[BaseModel]) -> str:
    text = inspect.cleandoc(model.__doc__ or "")
    text = re.sub(r":(?:class|func|mod|meth|attr):`~?([\w.]+)`", lambda m: f"`{m.group(1).split('.')[-1]}`", text)
    return text.replace("``", "`")


def _cell(text: str) -> str:
    text = re.sub(r":(?:class|func|mod|meth|attr):`~?([\w.]+)`", lambda m: f"`{m.group(1).split('.')[-1]}`", text)
    return text.replace("``", "`").replace("|", "\\|")


def _section(model: type[BaseModel], used_by: str | None) -> list[str]:
    out = [f"## {model.__name__}", ""]
    if used_by:
        out += [f"Read by {used_by}.", ""]
    doc = _doc(model)
    if doc:
        out += [doc, ""]
    out += ["| key | type | default | what it is |", "| --- | --- | --- | --- |"]
    for name, field in model.model_fields.items():
        kind = _type(field.annotation)
        bounds = _bounds(field)
        if bounds:
            kind += f" ({bounds})"
        out.append(f"| `{name}` | {_cell(kind)} | {_cell(_default(field))} | {_cell(_field_doc(model, name))} |")
    return out + [""]


def _pipeline_entries(cfg: Any) -> list[str]:
    """The keys a pipeline's stage entry adds to its stage's own config."""
    init = cfg._InPipeline.model_fields["init_from"]
    kinds = ", ".join(f"`{k}`: " + " or ".join(f"[{s.__mro__[1].__name__}](#{_anchor(s.__mro__[1].__name__)})"
                                                for s in _members(m))
                      for k, m in cfg.STAGE_CONFIGS.items())
    return ["### A pipeline's stage entries", "",
            f"Each entry of `stages` is `kind` plus the keys of that stage's own config ({kinds}), and:", "",
            "| key | type | default | what it is |", "| --- | --- | --- | --- |",
            f"| `kind` | one of {', '.join(f'`{k}`' for k in cfg.STAGE_KINDS)} | **required** | which stage |",
            "| `name` | str | the kind | unique within the pipeline; `--set stages.NAME.KEY=...` and "
            "`init_from: stage:NAME` use it |",
            f"| `init_from` | str or null | `{init.default}` | where the stage's weights start: `previous` (the "
            "closest earlier stage that made a checkpoint), `stage:NAME`, a checkpoint folder, or `none` |", "",
            "`seed` and `threads` of the pipeline are the defaults of every stage; `env` the world of every stage that "
            "plays one and names none (`bc.env` for behaviour cloning).", ""]


def render() -> str:
    from evoarena import config as cfg

    order: list[type[BaseModel]] = []
    used: dict[str, str] = {}
    queue = []
    for name, by in ROOTS:
        model = getattr(cfg, name)
        queue.append(model)
        used[model.__name__] = by
    while queue:
        model = queue.pop(0)
        if model in order or model.__name__ in SKIP:
            continue
        order.append(model)
        for field in model.model_fields.values():
            for found in _models_in(field.annotation):
                if found not in order and found.__name__ not in SKIP:
                    queue.append(found)
    roots = [m for m in order if m.__name__ in used]
    nested = sorted((m for m in order if m.__name__ not in used), key=lambda m: m.__name__)
    out = [HEADER, "Configs: " + ", ".join(f"[{m.__name__}](#{_anchor(m.__name__)})" for m in roots) + ".", "",
           "Their parts: " + ", ".join(f"[{m.__name__}](#{_anchor(m.__name__)})" for m in nested) + ".", ""]
    for model in roots:
        out += _section(model, used[model.__name__])
        if model.__name__ == "PipelineConfig":
            out += _pipeline_entries(cfg)
    for model in nested:
        out += _section(model, None)
    return "\n".join(out).rstrip() + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="exit 1 when the page differs from the models")
    args = ap.parse_args()
    text = render()
    if args.check:
        if not PAGE.is_file() or PAGE.read_text() != text:
            print(f"{PAGE.relative_to(ROOT)} is out of date: run python tools/config_reference.py", file=sys.stderr)
            return 1
        return 0
    PAGE.parent.mkdir(parents=True, exist_ok=True)
    PAGE.write_text(text)
    print(f"wrote {PAGE.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
