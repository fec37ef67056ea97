"""CryoSPARC bookkeeping files: ``project.json``, ``job_manifest.json`` and ``J*/job.json``
(formats.md §1). Job type from ``job_type``, ``type`` or ``spec.type`` (in that order); outputs
from ``output_result_groups`` / ``output_results`` (≤ v4) or ``spec.outputs.<name>.results``
(v5 shape), each result at the last version of its metafile (index 0 for passthrough results),
paths relative to the project directory."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone

from harvest import fsguard
from harvest.records import FileStamp


@dataclass(frozen=True)
class Result:
    """One output result: its metafile at the version parse reads."""

    name: str
    metafile: str  # relative to the project directory, '>' stripped
    passthrough: bool


@dataclass
class Group:
    """One output group (``particles``, ``exposures``, ...) and its results."""

    name: str
    type: str
    results: list[Result] = field(default_factory=list)


@dataclass
class JobInfo:
    """What the scan keeps of a job for its parse."""

    dir: str
    json_path: str
    raw_type: str
    groups: list[Group]


def read_json(path: str) -> dict:
    """A JSON object from a project file, opened through :func:`harvest.fsguard.open_file`
    (a FIFO or folder is refused, not opened). ValueError naming the file for invalid JSON,
    nesting too deep to read, or a value that is not an object."""
    with fsguard.open_file(path, "r", encoding="utf-8") as fh:
        try:
            data = json.load(fh)
        except RecursionError:
            raise ValueError(f"{path}: JSON nested too deeply to read") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def to_iso(value) -> str | None:
    """``{"$date": ms | ISO}``, ms, or ISO string → ISO 8601 UTC (``2024-01-02T03:04:05.678Z``)."""
    if isinstance(value, dict):
        value = value.get("$date")
        if isinstance(value, dict):  # {"$date": {"$numberLong": "..."}}
            value = value.get("$numberLong")
            value = int(value) if isinstance(value, str) and value.lstrip("-").isdigit() else None
    if value is None or isinstance(value, bool):
        return None
    try:
        if isinstance(value, (int, float)):
            dt = datetime.fromtimestamp(value / 1000.0, tz=timezone.utc)
        elif isinstance(value, str):
            dt = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
            dt = dt.replace(tzinfo=timezone.utc) if dt.tzinfo is None else dt
        else:
            return None
    except (ValueError, OverflowError, OSError):
        return None
    return dt.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def job_type_of(job: dict) -> str:
    for value in (job.get("job_type"), job.get("type"), (job.get("spec") or {}).get("type")):
        if isinstance(value, str) and value:
            return value
    return "unknown"


def _clean_rel(path: str) -> str:
    return path[1:] if path.startswith(">") else path


class BadMetafiles(ValueError):
    """Outputs that are malformed: ``metafiles`` not a list of path strings, output lists
    that are not lists."""


def _pick_metafile(metafiles, passthrough: bool) -> str | None:
    """The metafile a result is read from; None when it has none (an empty list, no key);
    :class:`BadMetafiles` when the value is malformed (``metafiles: 12``)."""
    if metafiles is None or metafiles == []:
        return None
    if not isinstance(metafiles, list):
        raise BadMetafiles(f"'metafiles' is {type(metafiles).__name__}, not a list of paths")
    value = metafiles[0] if passthrough else metafiles[-1]
    if not isinstance(value, str) or not value:
        raise BadMetafiles(f"'metafiles' holds {type(value).__name__} "
                           f"{fsguard.shown(repr(value), 40)}, not a path")
    return _clean_rel(value)


def output_groups(job: dict) -> list[Group]:
    """Output groups with their results at the last version (≤ v4 and v5 job.json shapes)."""
    groups: dict[str, Group] = {}
    for key in ("output_result_groups", "output_results"):
        if not isinstance(job.get(key) or [], list):
            raise BadMetafiles(f"'{key}' is {type(job[key]).__name__}, not a list")
    for g in job.get("output_result_groups") or []:
        if isinstance(g, dict) and isinstance(g.get("name"), str):
            groups[g["name"]] = Group(g["name"], str(g.get("type") or ""))
    for r in job.get("output_results") or []:
        if not isinstance(r, dict):
            continue
        gname = r.get("group_name")
        if not isinstance(gname, str):
            continue
        passthrough = bool(r.get("passthrough"))
        meta = _pick_metafile(r.get("metafiles"), passthrough)
        if meta is None:
            continue
        rtype = str(r.get("type") or "")
        group = groups.setdefault(gname, Group(gname, rtype.split(".", 1)[0]))
        group.results.append(Result(str(r.get("name") or ""), meta, passthrough))
    outputs = (job.get("spec") or {}).get("outputs") if isinstance(job.get("spec"), dict) else None
    if isinstance(outputs, list):  # tolerate a list of {name, type, results}
        outputs = {o.get("name"): o for o in outputs if isinstance(o, dict)}
    if isinstance(outputs, dict):
        for gname, out in outputs.items():
            if not isinstance(gname, str) or not isinstance(out, dict) or gname in groups:
                continue
            group = Group(gname, str(out.get("type") or ""))
            for r in out.get("results") or []:
                if not isinstance(r, dict):
                    continue
                passthrough = bool(r.get("passthrough"))
                meta = _pick_metafile(r.get("metafiles"), passthrough)
                if meta is not None:
                    group.results.append(Result(str(r.get("name") or ""), meta, passthrough))
            groups[gname] = group
    return list(groups.values())


def job_parents(job: dict) -> list[str]:
    parents = job.get("parents")
    if isinstance(parents, list):
        return [str(p) for p in parents if isinstance(p, str)]
    found: list[str] = []
    for g in job.get("input_slot_groups") or []:
        for c in (g or {}).get("connections") or []:
            uid = (c or {}).get("job_uid")
            if isinstance(uid, str) and uid not in found:
                found.append(uid)
    return found


def job_number(key: str) -> tuple[int, str]:
    digits = key[1:] if key[:1] == "J" else ""
    return (int(digits), key) if digits.isdigit() else (1 << 62, key)


def file_stamp(path: str) -> FileStamp | None:
    try:
        return FileStamp.of(path)
    except OSError:
        return None
