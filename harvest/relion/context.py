"""Per-parse state shared by the RELION readers: the project scan, caches, problems, files read."""

from __future__ import annotations

import os

import mrcfile

from harvest import fsguard
from harvest.records import JobRecord, Problem, ProjectScan
from harvest.relion.jobs import job_row
from harvest.relion.pipeline import Process, ancestors


class Context:
    """Per-parse state: project root, caches of MRC headers and micrograph pixel sizes, and what
    the parse read (``files``) or could not read (``problems``)."""

    def __init__(self, scan: ProjectScan | None, root: str):
        self.scan = scan
        self.root = root
        cache = scan.extra if scan is not None else {}
        self.mrc_cache: dict[str, tuple[int, int, int] | None] = cache.setdefault("mrc", {})
        self.ctf_cache: dict[str, dict[str, float]] = cache.setdefault("ctf_px", {})
        self.problems: list[Problem] = []
        self.files: list[str] = []
        self.mic_px: dict[str, float] | None = None  # key -> micrograph px (from CtfFind)

    def abs(self, path: str) -> str:
        return os.path.normpath(os.path.join(self.root, path))

    def ancestors(self, key: str) -> list[str]:
        """Jobs upstream of ``key``, nearest first (none without a scan)."""
        return ancestors(self.scan.extra.get("parents", {}), key) if self.scan else []

    def parents(self, key: str) -> list[Process]:
        """The parent processes of ``key`` (none without a scan)."""
        if self.scan is None:
            return []
        procs = self.scan.extra["processes"]
        return [procs[k] for k in self.scan.extra["parents"].get(key, []) if k in procs]

    def mrc_shape(self, abs_path: str) -> tuple[int, int, int] | None:
        if abs_path not in self.mrc_cache:
            shape = None
            try:
                fsguard.check_file(abs_path)  # regular, inside the roots: else never opened
                with mrcfile.open(abs_path, header_only=True, permissive=True) as mrc:
                    h = mrc.header
                    shape = (int(h.nx), int(h.ny), int(h.nz))
            except (OSError, ValueError):
                shape = None
            self.mrc_cache[abs_path] = shape
        return self.mrc_cache[abs_path]

    def job_record(self, proc: Process) -> JobRecord:
        """The job's record without outputs (status, kind, parents from the scan)."""
        js = next((j for j in self.scan.jobs if j.key == proc.key), None) if self.scan else None
        return JobRecord(
            key=proc.key,
            raw_type=proc.raw_type,
            kind=js.kind if js else job_row(proc).kind,
            status=js.status if js else proc.status,
            parents=list(js.parents) if js else [],
            title=proc.alias,
            created_at=js.created_at if js else None,
            completed_at=js.completed_at if js else None,
        )
