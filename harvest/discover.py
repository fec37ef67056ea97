"""Find CryoSPARC and RELION project roots under the folders a crawl is given.

Markers (formats.md §1.1, §4.1):

* CryoSPARC: a folder with ``project.json`` and at least one ``J<n>/job.json``
  (or ``workspaces.json``, a project without jobs yet).
* RELION: a folder with ``default_pipeline.star``.

The walk never descends into a project's job folders (CryoSPARC ``J<n>/``; RELION job-type
folders such as ``Class2D/`` that hold ``job<NNN>/``, and RELION's hidden ``.Nodes``/
``.TMP_runfiles``), but it does look inside a project's other subfolders, where another project
may be nested. It survives what real storage holds: unreadable folders (one :class:`Problem`
each), symlink loops (each real folder is visited once, by ``(st_dev, st_ino)``), dangling links,
names that are not UTF-8 (walked as bytes, returned as ``os.fsdecode`` strings), and exclusion
globs (``fnmatch`` against the full path and against the folder name).

Boundary. The walk stays inside the crawl roots. A folder reached through a symlink is entered
according to the ``follow_symlinks`` policy (``cryoglean crawl --follow-symlinks``):

* ``within`` (default): only when the link's resolved target lies under one of the roots'
  resolved paths (a link from one part of the facility to another). A link that leaves the
  roots (``escape -> /``, a project's ``Movies -> /raw/...``) is not entered; it is logged and
  listed in :attr:`Discovery.skipped_links`, not recorded as a problem, since links to raw data
  outside the facility are normal.
* ``never``: no directory symlink is entered.
* ``any``: every link is followed (the loop detection still visits each folder once).

Folders reached through links are walked after the folders reached without one, so a project
reachable both ways is recorded under its real path.

Whatever the policy, folders on kernel and pseudo filesystems (``proc``, ``sysfs``, ``devtmpfs``,
``cgroup`` … :data:`SPECIAL_FILESYSTEMS`, found in ``/proc/self/mounts``) are never entered.
"""

from __future__ import annotations

import fnmatch
import logging
import os
import re
import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from harvest.fsguard import kind_of
from harvest.records import Problem

log = logging.getLogger(__name__)

CRYOSPARC_MARKER = "project.json"
RELION_MARKER = "default_pipeline.star"

_CS_JOB_DIR = re.compile(rb"^J\d+$")
_RELION_JOB_DIR = re.compile(rb"^job\d+$")
# RELION's job-type folders (3.0 … 5.x, pipeline_jobs.h); skipped even when empty.
RELION_JOB_TYPE_DIRS = frozenset({
    "Import", "MotionCorr", "CtfFind", "ManualPick", "AutoPick", "Extract", "Sort", "Select",
    "Class2D", "Class3D", "Refine3D", "MaskCreate", "JoinStar", "Subtract", "PostProcess",
    "LocalRes", "MovieRefine", "InitialModel", "MultiBody", "Polish", "CtfRefine", "External",
    "DynaMight", "ModelAngelo", "ImportTomo", "PseudoSubtomo", "CtfRefineTomo",
    "FrameAlignTomo", "ReconstructParticleTomo", "AlignTiltSeries", "ReconstructTomograms",
    "ExcludeTiltImages", "DenoiseTomo", "PickTomo", "Picks", "Tomograms", "Extract3D",
})
_RELION_SKIP = frozenset({b".Nodes", b".TMP_runfiles", b".relion_lock", b".gui_projectdir"})

SYMLINK_POLICIES = ("within", "never", "any")
# Kernel and pseudo filesystems: nothing a facility stores, and some (proc) are huge or hang.
SPECIAL_FILESYSTEMS = frozenset({
    "proc", "sysfs", "devtmpfs", "devpts", "cgroup", "cgroup2", "debugfs", "tracefs",
    "securityfs", "pstore", "bpf", "configfs", "fusectl", "mqueue", "hugetlbfs", "binfmt_misc",
    "efivarfs", "selinuxfs", "autofs", "rpc_pipefs", "nsfs", "nfsd",
})
# Used when /proc/self/mounts cannot be read.
_SPECIAL_PATHS = (b"/proc", b"/sys", b"/dev")


@dataclass(frozen=True)
class FoundProject:
    """A project root (absolute path, ``os.fsdecode`` string) and its software."""

    root: str
    software: str  # "cryosparc" | "relion"


@dataclass
class Discovery:
    projects: list[FoundProject] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    # (link path, resolved target) of directory links not entered (see the module docstring)
    skipped_links: list[tuple[str, str]] = field(default_factory=list)


def special_devices(mounts: str = "/proc/self/mounts") -> set[int]:
    """``st_dev`` of every mounted kernel/pseudo filesystem (:data:`SPECIAL_FILESYSTEMS`)."""
    devs: set[int] = set()
    paths: list[bytes] = list(_SPECIAL_PATHS)
    try:
        with open(mounts, "rb") as fh:
            for line in fh:
                parts = line.split()
                if len(parts) >= 3 and parts[2].decode(errors="replace") in SPECIAL_FILESYSTEMS:
                    # mount points escape spaces etc. as octal (\040)
                    paths.append(re.sub(rb"\\([0-7]{3})",
                                        lambda m: bytes([int(m.group(1), 8)]), parts[1]))
    except OSError:
        pass
    for p in paths:
        try:
            st = os.stat(p)
        except OSError:
            continue
        if p in _SPECIAL_PATHS and not os.path.ismount(p):
            continue  # a plain folder called /dev in a container image: nothing special
        devs.add(st.st_dev)
    return devs


def _inside(path: bytes, bounds: Sequence[bytes]) -> bool:
    return any(path == b or path.startswith(b.rstrip(b"/") + b"/") for b in bounds)


def _matches(path: bytes, name: bytes, patterns: Sequence[str]) -> bool:
    if not patterns:
        return False
    p = os.fsdecode(path)
    n = os.fsdecode(name)
    return any(fnmatch.fnmatch(p, pat) or fnmatch.fnmatch(n, pat) for pat in patterns)


def _is_dir(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir(follow_symlinks=True)
    except OSError:  # dangling link, permission
        return False


def _has_file(entries: dict[bytes, os.DirEntry], name: bytes) -> bool:
    e = entries.get(name)
    if e is None:
        return False
    try:
        return e.is_file(follow_symlinks=True)
    except OSError:
        return False


def _bad_marker(path: bytes, entries: dict[bytes, os.DirEntry]) -> Problem | None:
    """A Problem when a project marker (``project.json``, ``default_pipeline.star``) is there
    but is no regular file (a folder, FIFO, socket, device; never opened): the folder looks
    like a project that cannot be crawled."""
    for marker in (CRYOSPARC_MARKER, RELION_MARKER):
        e = entries.get(marker.encode())
        if e is None:
            continue
        try:
            mode = e.stat(follow_symlinks=True).st_mode
        except OSError:
            continue  # a dangling link: nothing there
        if not stat.S_ISREG(mode):
            where = os.fsdecode(os.path.join(path, e.name))
            return Problem(where, f"project marker is {kind_of(mode)}, not a regular file; "
                                  "the project is not crawled")
    return None


def classify(path: str | bytes | os.PathLike) -> str | None:
    """'cryosparc', 'relion' or None for one folder (reads only its listing and J*/job.json)."""
    bpath = os.fsencode(path)
    try:
        with os.scandir(bpath) as it:
            entries = {e.name: e for e in it}
    except OSError:
        return None
    return _classify(bpath, entries)


def _classify(path: bytes, entries: dict[bytes, os.DirEntry]) -> str | None:
    if _has_file(entries, CRYOSPARC_MARKER.encode()):
        if _has_file(entries, b"workspaces.json"):
            return "cryosparc"
        for name, e in entries.items():
            if _CS_JOB_DIR.match(name) and _is_dir(e):
                if os.path.isfile(os.path.join(path, name, b"job.json")):
                    return "cryosparc"
    if _has_file(entries, RELION_MARKER.encode()):
        return "relion"
    return None


def _skip_inside(software: str, path: bytes, name: bytes, entry: os.DirEntry) -> bool:
    """Whether ``name`` inside a project root of ``software`` is a job folder (not walked)."""
    if software == "cryosparc":
        return bool(_CS_JOB_DIR.match(name))
    if name in _RELION_SKIP or os.fsdecode(name) in RELION_JOB_TYPE_DIRS:
        return True
    # An unknown job type (External with a custom name, newer RELION): holds jobNNN/ folders.
    try:
        with os.scandir(os.path.join(path, name)) as it:
            return any(_RELION_JOB_DIR.match(e.name) for e in it)
    except OSError:
        return False


def discover(roots: Iterable[str | os.PathLike], excludes: Sequence[str] = (),
             follow_symlinks: str = "within") -> Discovery:
    """Project roots under ``roots`` (each root may itself be a project), sorted by path.

    Unreadable folders become :class:`Problem` rows; nothing raises for bad storage except a
    root that does not exist (FileNotFoundError naming it) and an unknown ``follow_symlinks``
    policy (ValueError). The walk stays inside the roots (see the module docstring).
    """
    if follow_symlinks not in SYMLINK_POLICIES:
        raise ValueError(f"--follow-symlinks {follow_symlinks!r}: choose one of "
                         f"{', '.join(SYMLINK_POLICIES)}")
    out = Discovery()
    seen_dirs: set[tuple[int, int]] = set()
    found: dict[str, FoundProject] = {}
    roots = list(roots)
    bounds = [os.path.realpath(os.fsencode(os.path.abspath(os.fspath(r)))) for r in roots]
    special = special_devices()
    for root in roots:
        broot = os.fsencode(os.path.abspath(os.fspath(root)))
        if not os.path.exists(broot):
            raise FileNotFoundError(
                f"crawl root {os.fsdecode(broot)} does not exist; check the path"
            )
        if not os.path.isdir(broot):
            raise NotADirectoryError(
                f"crawl root {os.fsdecode(broot)} is not a folder; give the folder that holds "
                "projects"
            )
        stack = [broot]
        links: list[bytes] = []  # folders reached through a link: walked after the real tree
        while stack or links:
            if not stack:
                stack, links = list(reversed(links)), []
            path = stack.pop()
            try:
                st = os.stat(path)
            except OSError as exc:
                out.problems.append(Problem(os.fsdecode(path), f"cannot stat: {exc.strerror}"))
                continue
            ident = (st.st_dev, st.st_ino)
            if ident in seen_dirs:
                continue  # symlink loop or a second link to a folder already walked
            seen_dirs.add(ident)
            if st.st_dev in special:
                continue  # /proc, /sys, … (reached through a root or a followed link)
            try:
                with os.scandir(path) as it:
                    entries = {e.name: e for e in it}
            except OSError as exc:
                reason = exc.strerror or str(exc)
                out.problems.append(Problem(os.fsdecode(path), f"cannot list folder: {reason}"))
                continue
            software = _classify(path, entries)
            if software is None:
                bad = _bad_marker(path, entries)
                if bad is not None:
                    out.problems.append(bad)
            if software is not None:
                key = os.fsdecode(path)
                found.setdefault(key, FoundProject(key, software))
            children = []
            for name in sorted(entries):
                entry = entries[name]
                if not _is_dir(entry):
                    continue
                child = os.path.join(path, name)
                if _matches(child, name, excludes):
                    continue
                if software is not None and _skip_inside(software, path, name, entry):
                    continue
                if not _follow(entry, child, follow_symlinks, bounds, out):
                    continue
                try:
                    if stat.S_ISDIR(entry.stat(follow_symlinks=True).st_mode):
                        # a folder reachable both ways is recorded under its real path
                        (links if entry.is_symlink() else children).append(child)
                except OSError:
                    continue
            stack.extend(reversed(children))
    out.projects = sorted(found.values(), key=lambda p: os.fsencode(p.root))
    return out


def _follow(entry: os.DirEntry, child: bytes, policy: str, bounds: Sequence[bytes],
            out: Discovery) -> bool:
    """Whether to enter the folder ``child`` under the symlink policy (plain folders: yes)."""
    try:
        is_link = entry.is_symlink()
    except OSError:
        return False
    if not is_link or policy == "any":
        return True
    target = os.path.realpath(child)
    if policy == "within" and _inside(target, bounds):
        return True
    out.skipped_links.append((os.fsdecode(child), os.fsdecode(target)))
    log.info("not following %s -> %s (%s)", os.fsdecode(child), os.fsdecode(target),
             "outside the crawl roots" if policy == "within" else "--follow-symlinks never")
    return False
