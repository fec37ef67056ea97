"""Slurm batch scripts from Jinja templates (``templates/slurm/*.sh.j2``).

cryoglean does not run a scheduler of its own: it writes batch scripts that train and run its
pickers and external ones, from a **cluster profile** (partition, account, GPUs, modules,
container, ...; read and checked by :mod:`cryoglean.slurm_profiles`) and **values** (paths
and options of the job). Scripts start with a shebang and ``set -euo pipefail``; every value
that reaches the shell passes through :func:`shell_quote`; values that go into ``#SBATCH``
lines are validated (no whitespace or newlines, known formats).

Each template starts with a metadata comment::

    {#- cryoglean: {"description": "...", "required": ["db"], "optional": {"exclude": []},
                    "gpu": false, "array": false} -#}

``required`` values must be given (``--set key=value``), ``optional`` ones have defaults; any
other key is refused with a close-match suggestion. Lists: repeat ``--set key=a --set key=b``
or write ``key=[a,b]`` in YAML form.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
import yaml

# Profiles live in cryoglean.slurm_profiles; their names stay importable from here.
from cryoglean.slurm_pipelines import PIPELINES, PipelineStep  # noqa: F401 - re-exported API
from cryoglean.slurm_profiles import (  # noqa: F401 - re-exported API
    BUILTIN_PROFILES,
    PROFILE_KEYS,
    SlurmConfigError,
    get_profile,
    load_profiles,
    suggest,
    template_dir,
    validate_profile,
)


class SubmitError(ChildProcessError):
    """``submit.sh`` (sbatch) failed; an OSError, so the CLI shows it as one line."""


# ---------------------------------------------------------------------------------------------
# Templates
# ---------------------------------------------------------------------------------------------

_META = re.compile(r"\{#-?\s*cryoglean:\s*(\{.*?\})\s*-?#\}", re.S)


# Slurm's default MaxArraySize is 1001 (task ids 0..1000); larger arrays are refused by sbatch.
MAX_ARRAY_TASKS = 1000
_NUMBER = re.compile(r"^-?\d+(\.\d*)?([eE][-+]?\d+)?$")


def shell_quote(value: Any) -> str:
    """Quote one value for the shell (single quotes; safe for spaces, $(), backticks, newlines)."""
    if isinstance(value, bool):
        value = "true" if value else "false"
    return shlex.quote(str(value))


def quote_value(value: Any) -> str:
    """:func:`shell_quote` for a value (a path, a name, a number), refusing one that starts with
    ``-``: quoting does not stop a command from reading ``--help`` or ``-rf`` as an option.
    Negative numbers pass."""
    if isinstance(value, (list, tuple, dict)):
        raise SlurmConfigError(f"value {value!r} is a list or mapping where one value is expected")
    text = str(value)
    if text.startswith("-") and not _NUMBER.match(text):
        raise SlurmConfigError(
            f"value {text!r} starts with '-', so the command would read it as an option; for a "
            f"path that really starts with '-', write ./{text}"
        )
    return shell_quote(value)


def _quote_list(values: Any) -> str:
    return " ".join(quote_value(v) for v in _as_list(values))


def _quote_options(values: Any) -> str:
    """``extra``: options passed through to the command as given (each item quoted)."""
    return " ".join(shell_quote(v) for v in _as_list(values))


def _as_list(value: Any) -> list:
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return list(value)
    return [value]


@dataclass
class TemplateInfo:
    name: str
    description: str
    required: list[str]
    optional: dict[str, Any] = field(default_factory=dict)
    gpu: bool = False
    array: bool = False
    ddp: bool = False
    external: bool = False
    filename: str = ""

    @property
    def is_script(self) -> bool:
        """A batch script (``.sh.j2``); otherwise another Slurm file such as a scrontab."""
        return self.filename.endswith(".sh.j2")


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(template_dir())),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )
    env.filters["q"] = quote_value
    env.filters["qlist"] = _quote_list
    env.filters["qopts"] = _quote_options
    env.filters["aslist"] = _as_list
    env.globals["fail"] = _fail
    env.filters["cron"] = _cron
    env.filters["qcron"] = _quote_cron
    env.filters["glob"] = _glob
    return env


_CRON = re.compile(r"^(@(daily|hourly|weekly|monthly|midnight)|([0-9*/,-]+\s+){4}[0-9*/,-]+)$")
_GLOB = re.compile(r"^[A-Za-z0-9_.*?\[\]-]+$")


def _cron(value: str) -> str:
    """A cron schedule goes into the scrontab unquoted: allow only cron syntax."""
    if not _CRON.match(str(value).strip()):
        raise SlurmConfigError(f"schedule {value!r} is not a cron schedule like '0 2 * * *'")
    return str(value).strip()


def _quote_cron(values: Any) -> str:
    """Quote values for one crontab line: a newline would start a new cron entry and cron turns
    '%' into newlines, so neither is allowed (there is no quoting for them on a cron line)."""
    for value in _as_list(values):
        quote_value(value)  # no option-like values either
        if "\n" in str(value) or "%" in str(value):
            raise SlurmConfigError(
                f"value {str(value)!r} contains a newline or '%', which a scrontab line cannot carry; "
                "use a batch script (cryoglean slurm render crawl) for such paths"
            )
    return _quote_list(values)


def _glob(value: str) -> str:
    """A file pattern is left unquoted so the shell expands it: allow only name characters."""
    if not _GLOB.match(str(value)):
        raise SlurmConfigError(f"pattern {value!r} may only hold letters, digits and _.-*?[]")
    return str(value)


def _fail(message: str):
    raise SlurmConfigError(message)


def _template_name(filename: str) -> str:
    for suffix in (".sh.j2", ".j2"):
        if filename.endswith(suffix):
            return filename[: -len(suffix)]
    return filename


def list_templates() -> dict[str, TemplateInfo]:
    """Template name (without ``.sh.j2``) -> its metadata."""
    out = {}
    for path in sorted(template_dir().glob("*.j2")):
        if path.name.startswith("_"):
            continue
        out[_template_name(path.name)] = _template_info(path)
    return out


def _template_info(path: Path) -> TemplateInfo:
    m = _META.search(path.read_text())
    if not m:
        raise SlurmConfigError(f"{path}: template has no 'cryoglean:' metadata comment")
    meta = json.loads(m.group(1))
    return TemplateInfo(
        name=_template_name(path.name),
        filename=path.name,
        description=meta.get("description", ""),
        required=list(meta.get("required", [])),
        optional=dict(meta.get("optional", {})),
        gpu=bool(meta.get("gpu", False)),
        array=bool(meta.get("array", False)),
        ddp=bool(meta.get("ddp", False)),
        external=bool(meta.get("external", False)),
    )


def parse_sets(items: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """``key=value`` pairs from the command line; a repeated key becomes a list; a value in
    YAML list form (``[a, b]``) becomes a list; ``key=`` gives an empty string."""
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise SlurmConfigError(f"--set {item!r}: expected key=value")
        key, value = item.split("=", 1)
        key = key.strip()
        if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", key):
            raise SlurmConfigError(f"--set {item!r}: {key!r} is not a valid value name")
        parsed: Any = value
        if value.startswith("[") and value.endswith("]"):
            try:
                parsed = yaml.safe_load(value)
            except yaml.YAMLError:
                parsed = value
        if key in out:
            out[key] = _as_list(out[key]) + _as_list(parsed)
        else:
            out[key] = parsed
    return out


def render(template: str, profile: dict[str, Any], values: dict[str, Any]) -> str:
    """Render one template to a batch script (text).

    Missing required values, unknown value names and unknown templates raise
    :class:`SlurmConfigError` naming what to pass (``--set key=value``).
    """
    templates = list_templates()
    name = _template_name(template)
    if name not in templates:
        raise SlurmConfigError(
            f"no Slurm template {template!r}{suggest(name, templates)} (known: {', '.join(templates)})"
        )
    info = templates[name]
    allowed = set(info.required) | set(info.optional)
    for key in values:
        if key not in allowed:
            raise SlurmConfigError(
                f"template {name} has no value {key!r}{suggest(key, allowed)} "
                f"(values: {', '.join(sorted(allowed))})"
            )
    missing = [k for k in info.required if k not in values or values[k] in (None, "")]
    if missing:
        raise SlurmConfigError(
            f"template {name} needs " + ", ".join(f"--set {k}=..." for k in missing)
        )
    v = {**info.optional, **values}
    if info.array:
        raw = v.get("shards", 1)
        try:
            shards = int(raw)
            if isinstance(raw, (bool, float)) or str(raw).strip() != str(shards):
                raise ValueError
        except (TypeError, ValueError):
            raise SlurmConfigError(
                f"template {name}: shards {raw!r} must be one whole number (--set shards=8)"
            ) from None
        if not 1 <= shards <= MAX_ARRAY_TASKS:
            raise SlurmConfigError(
                f"template {name}: shards {shards} must be between 1 and {MAX_ARRAY_TASKS} "
                "(Slurm's default MaxArraySize); give fewer, larger shards"
            )
        v["shards"] = shards
    try:
        text = _environment().get_template(info.filename).render(p=profile, v=v, t=info)
    except jinja2.UndefinedError as exc:  # a template bug or a missing nested value
        raise SlurmConfigError(f"template {name}: {exc.message}; pass it with --set") from None
    return text


def write_script(text: str, dest: str | os.PathLike, force: bool = False) -> Path:
    dest = Path(dest)
    if dest.exists() and not force:
        raise FileExistsError(f"{dest} exists; use --force to replace it")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.tmp")
    tmp.write_text(text)
    tmp.chmod(0o755)
    os.replace(tmp, dest)
    return dest


# ---------------------------------------------------------------------------------------------
# Pipelines: chains of jobs with dependencies
# ---------------------------------------------------------------------------------------------


def pipeline_steps(name: str, values: dict[str, Any]) -> list[PipelineStep]:
    if name not in PIPELINES:
        raise SlurmConfigError(
            f"no pipeline {name!r}{suggest(name, PIPELINES)} (known: {', '.join(PIPELINES)})"
        )
    return PIPELINES[name][0](values)


SUBMIT_SH = """#!/usr/bin/env bash
# Submits the {pipeline} pipeline in order, each job waiting for the ones it needs (afterok),
# and records the job IDs in jobids.txt. Run from anywhere: bash {here}/submit.sh
set -euo pipefail
cd "$(dirname "$0")"
mkdir -p logs
: > jobids.txt
{body}
echo "submitted: $(tr '\\n' ' ' < jobids.txt)"
"""


def step_kind(step: PipelineStep) -> str:
    """A step's name without its order prefix: ``02-train`` → ``train``."""
    return re.sub(r"^\d+-", "", step.name)


def write_pipeline(name: str, profile: dict[str, Any], values: dict[str, Any], out_dir,
                   force: bool = False,
                   step_profiles: dict[str, dict[str, Any]] | None = None) -> list[Path]:
    """Render every step of a pipeline into ``out_dir`` plus a ``submit.sh`` that submits them
    with ``--dependency=afterok:...`` and writes ``jobids.txt``. Returns the script paths in
    submission order (submit.sh last). ``step_profiles``: {step kind (crawl, export, train,
    pick, evaluate, ...): profile} for the steps that run elsewhere than ``profile``."""
    out = Path(out_dir)
    steps = pipeline_steps(name, values)
    step_profiles = dict(step_profiles or {})
    unknown = sorted(set(step_profiles) - {step_kind(s) for s in steps})
    if unknown:
        raise SlurmConfigError(
            f"--profile-for {unknown[0]}=...: pipeline {name!r} has no step {unknown[0]!r} "
            f"(its steps: {', '.join(step_kind(s) for s in steps)})")
    if out.exists() and any(out.iterdir()) and not force:
        raise FileExistsError(f"{out} is not empty; use --force to replace its scripts")
    paths = []
    lines = []
    for step in steps:
        text = render(step.template, step_profiles.get(step_kind(step), profile), step.values)
        paths.append(write_script(text, out / f"{step.name}.sh", force=True))
        var = _job_var(step.name)
        dep = ""
        if step.after:
            dep = " --dependency=afterok:" + ":".join(f"${{{_job_var(a)}}}" for a in step.after)
        lines.append(
            f"{var}=$(sbatch --parsable{dep} --output=logs/%x-%j.out --job-name={step.name} {step.name}.sh)"
        )
        lines.append(f'{var}=${{{var}%%;*}}')
        lines.append(f'echo "{step.name} ${var}" >> jobids.txt')
    submit = SUBMIT_SH.format(pipeline=name, here=shlex.quote(str(out)), body="\n".join(lines))
    paths.append(write_script(submit, out / "submit.sh", force=True))
    return paths


def _job_var(step_name: str) -> str:
    return "JOB_" + re.sub(r"\W", "_", step_name)


def submit_pipeline(out_dir) -> list[tuple[str, str]]:
    """Run a written pipeline's ``submit.sh``; returns (step, job id) pairs from jobids.txt."""
    out = Path(out_dir)
    proc = subprocess.run(["bash", str(out / "submit.sh")], capture_output=True, text=True)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no error output"])[-1]
        raise SubmitError(f"{out / 'submit.sh'} failed (exit {proc.returncode}): {last}")
    pairs = []
    for line in (out / "jobids.txt").read_text().splitlines():
        step, job = line.split()
        pairs.append((step, job))
    return pairs
