"""Cluster profiles for the Slurm scripts: the keys a profile may set, their defaults, and
reading and checking a YAML file of named profiles (``cryoglean slurm profiles``).

A profile holds what a cluster needs in every batch script (partition, account, GPUs, modules,
container, ...). Values that reach ``#SBATCH`` lines are validated here (no whitespace or
newlines, known formats); :mod:`cryoglean.slurm` renders the scripts from them.
"""

from __future__ import annotations

import difflib
import os
import re
from pathlib import Path
from typing import Any

import yaml

#: Every profile key, its default and what it means (README "Running on a cluster" shows these).
PROFILE_KEYS: dict[str, tuple[Any, str]] = {
    "partition": (None, "Slurm partition (-p); cluster default when unset"),
    "account": (None, "account to charge (-A)"),
    "qos": (None, "quality of service (--qos)"),
    "gpus": (0, "GPUs per node for GPU steps (training, picking, PartiNet, crYOLO, Topaz)"),
    "gpu_request": ("gres", "how GPUs are asked for: 'gres' (--gres=gpu[:type]:N) or 'gpus' (--gpus=N)"),
    "gpu_type": (None, "GPU type for the request, e.g. a100 (gpu:a100:N)"),
    "cpus": (4, "CPUs per task (--cpus-per-task); also the number of worker processes"),
    "mem": ("16G", "memory per node (--mem), e.g. 16G or 64000M"),
    "time": ("04:00:00", "time limit (--time): MM, HH:MM:SS or D-HH:MM:SS"),
    "nodes": (1, "nodes per job (-N); multi-GPU training uses one task per GPU on each node"),
    "array_limit": (None, "at most this many array tasks at once (--array=...%N)"),
    "modules": ([], "environment modules to load (module load NAME)"),
    "env": ({}, "environment variables to export (NAME: value)"),
    "setup": ([], "shell lines run before the job's command (e.g. activating a venv); trusted code"),
    "cryoglean": ("cryoglean", "the cryoglean command on the cluster (a path or a name on PATH)"),
    "container_runtime": ("apptainer", "runtime for containerised pickers (apptainer/singularity)"),
    "container_image": (None, "image for containerised pickers (PartiNet), e.g. /images/partinet.sif"),
    "binds": ([], "paths bound into the container (-B)"),
    "sbatch_extra": ([], "extra #SBATCH options, each starting with --, e.g. --constraint=a100"),
}

_IDENT = re.compile(r"^[A-Za-z0-9_.+-]+$")
_TIME = re.compile(r"^(\d+|\d+:\d{2}(:\d{2})?|\d+-\d{1,2}(:\d{2}(:\d{2})?)?)$")
_MEM = re.compile(r"^\d+[KMGT]?$")
_SBATCH_OPT = re.compile(r"^--[A-Za-z][A-Za-z0-9-]*(=[^\s'\"`$\\;|&<>]+)?$")

BUILTIN_PROFILES = "profiles.yaml"


class SlurmConfigError(ValueError):
    """A profile or a template value is missing or wrong (one clear line)."""


def suggest(name: str, known) -> str:
    close = difflib.get_close_matches(name, list(known), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def template_dir() -> Path:
    """The shipped templates folder (works from a checkout and from a non-editable install)."""
    import templates.slurm

    return Path(templates.slurm.__file__).resolve().parent


def load_profiles(path: str | os.PathLike | None = None) -> dict[str, dict[str, Any]]:
    """Read named profiles from a YAML file (default: the shipped ``profiles.yaml``).

    The file has ``profiles: {name: {key: value}}`` and an optional ``defaults:`` mapping merged
    under every profile. Unknown keys and bad values raise :class:`SlurmConfigError`.
    """
    src = Path(path) if path else template_dir() / BUILTIN_PROFILES
    try:
        doc = yaml.safe_load(src.read_text()) or {}
    except FileNotFoundError:
        raise SlurmConfigError(f"{src}: profile file not found") from None
    except yaml.YAMLError as exc:
        raise SlurmConfigError(f"{src}: not valid YAML ({exc.__class__.__name__}); fix the file") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("profiles"), dict):
        raise SlurmConfigError(f"{src}: expected a mapping with a 'profiles:' section of named profiles")
    unknown_top = set(doc) - {"profiles", "defaults"}
    if unknown_top:
        raise SlurmConfigError(f"{src}: unknown top-level key(s) {sorted(unknown_top)}; use 'profiles' and 'defaults'")
    defaults = doc.get("defaults") or {}
    out = {}
    for name, prof in doc["profiles"].items():
        merged = {**defaults, **(prof or {})}
        out[str(name)] = validate_profile(merged, f"{src}: profile {name!r}")
    return out


def get_profile(name: str, path: str | os.PathLike | None = None) -> dict[str, Any]:
    profiles = load_profiles(path)
    if name not in profiles:
        where = path or "the built-in profiles"
        raise SlurmConfigError(
            f"no profile {name!r} in {where}{suggest(name, profiles)} (known: {', '.join(sorted(profiles))})"
        )
    return profiles[name]


def validate_profile(prof: dict[str, Any], where: str = "profile") -> dict[str, Any]:
    """Fill defaults, refuse unknown keys and values that would break an #SBATCH line."""
    for key in prof:
        if key not in PROFILE_KEYS:
            raise SlurmConfigError(f"{where}: unknown key {key!r}{suggest(key, PROFILE_KEYS)}")
    p = {k: prof.get(k, default) for k, (default, _) in PROFILE_KEYS.items()}
    for key in ("partition", "account", "qos", "gpu_type"):
        if p[key] is not None and not _IDENT.match(str(p[key])):
            raise SlurmConfigError(f"{where}: {key} {p[key]!r} must be a plain name (letters, digits, _.+-)")
    for key in ("gpus", "cpus", "nodes"):
        if not isinstance(p[key], int) or p[key] < (0 if key == "gpus" else 1):
            raise SlurmConfigError(f"{where}: {key} must be a whole number (got {p[key]!r})")
    if p["array_limit"] is not None and (not isinstance(p["array_limit"], int) or p["array_limit"] < 1):
        raise SlurmConfigError(f"{where}: array_limit must be a positive whole number")
    if p["gpu_request"] not in ("gres", "gpus"):
        raise SlurmConfigError(f"{where}: gpu_request must be 'gres' or 'gpus' (got {p['gpu_request']!r})")
    if not _TIME.match(str(p["time"])):
        raise SlurmConfigError(f"{where}: time {p['time']!r} is not a Slurm time (MM, HH:MM:SS, D-HH:MM:SS)")
    if not _MEM.match(str(p["mem"])):
        raise SlurmConfigError(f"{where}: mem {p['mem']!r} is not a Slurm memory size (e.g. 16G, 64000M)")
    for key in ("modules", "setup", "binds", "sbatch_extra"):
        if not isinstance(p[key], list) or not all(isinstance(x, str) for x in p[key]):
            raise SlurmConfigError(f"{where}: {key} must be a list of strings")
    for opt in p["sbatch_extra"]:
        if not _SBATCH_OPT.match(opt):
            raise SlurmConfigError(f"{where}: sbatch_extra {opt!r} must look like --option or --option=value (no spaces or shell characters)")
    for mod in p["modules"]:
        if not _IDENT.match(mod.replace("/", "")):
            raise SlurmConfigError(f"{where}: module {mod!r} must be a plain module name")
    if not isinstance(p["env"], dict) or not all(re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", str(k)) for k in p["env"]):
        raise SlurmConfigError(f"{where}: env must map variable names to values")
    if any("\n" in line for line in p["setup"]):
        raise SlurmConfigError(f"{where}: setup lines must not contain newlines; give one list item per line")
    return p


