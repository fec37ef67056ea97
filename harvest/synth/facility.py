"""Generate a whole facility (micrographs + CryoSPARC and RELION projects) and read it back.

``DIR/`` after :func:`make_facility`::

    facility.json            config, ground truth, shared fates, project list
    micrographs/<key>.mrc    the simulated micrographs (projects link to these)
    cryosparc/CS-cryoglean-demo/
    relion30/  relion31/  relion40/  relion50/
    relion50_tomo/           only when requested in ``FacilityConfig.versions``

Everything is derived from ``FacilityConfig.seed``: the same config gives the same files.
"""

from __future__ import annotations

import json
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from harvest.synth.config import ALL_VERSIONS, FacilityConfig
from harvest.synth.density import make_density
from harvest.synth.micrographs import SimMicrograph, simulate_micrograph, write_mrc
from harvest.synth.scenario import Scenario, make_scenario
from harvest.synth.tomo import SimTomogram

FACILITY_FILE = "facility.json"
FORMAT_TAG = "cryoglean-demo-facility"
FORMAT_VERSION = 1
MICROGRAPH_DIR = "micrographs"

# Named random streams: adding a writer never changes what the others generate.
_STREAMS = {"density": 1, "micrographs": 2, "scenario": 3, "cryosparc": 4, "relion": 5,
            "tomo": 6}


def _rng(seed: int, stream: str, *more: int) -> np.random.Generator:
    return np.random.default_rng([seed, _STREAMS[stream], *more])


@dataclass
class Facility:
    """A generated facility and its ground truth.

    ``micrographs``: truth per micrograph (positions in pixels of ``micrographs/<key>.mrc``,
    DESIGN.md frame). ``projects``: version name -> project root directory. ``tomograms``:
    truth of the ``relion50_tomo`` project's tomograms (empty unless that version was asked
    for; positions in voxels of the tomogram files; :class:`harvest.synth.tomo.SimTomogram`).
    """

    root: Path
    config: FacilityConfig
    micrographs: list[SimMicrograph]
    projects: dict[str, Path]
    scenario: Scenario
    tomograms: list[SimTomogram] = field(default_factory=list)

    def truth_frame(self) -> pd.DataFrame:
        """All true items: columns micrograph (key), x, y (px), kind ("particle" | "junk"),
        index (row in ``SimMicrograph.particles`` / ``.junk``)."""
        it = self.scenario.items
        return it[["micrograph", "x", "y", "kind", "index"]].reset_index(drop=True)

    def expected_sets(self, project: str) -> list[dict]:
        """The particle sets a harvester should produce for one project (completed jobs only;
        the failed and the running job give none).

        Each: ``{"job", "name", "stage", "count", "class_id", "per_micrograph", "recentred",
        "is_3d"}``;
        ``per_micrograph`` maps micrograph key -> count (micrographs with >= 1 particle);
        ``recentred`` True for sets whose alignment shifts the harvester applies (2D and 3D
        classification, Select 2D, refinement: DESIGN.md, every alignment that carries a shift
        recentres), whose centres then equal the truth (< 0.01 px); False where the harvester
        keeps the stored position (picks, extraction: within 1 px per axis of the truth). Names and jobs: the
        ``EXPECTED_SETS`` tables of :mod:`harvest.synth.cryosparc` and
        :mod:`harvest.synth.relion`, :mod:`harvest.synth.tomo`.
        """
        out = []
        for job, name, stage, selection, class_id, recentred in self._set_table(project):
            rows = self._select(selection)
            counts = rows.groupby("micrograph").size()
            out.append({
                "job": job, "name": name, "stage": stage, "count": int(len(rows)),
                "class_id": class_id,
                "per_micrograph": {str(k): int(v) for k, v in counts.items() if v > 0},
                "recentred": recentred, "is_3d": "z" in rows,
            })
        return out

    def expected_positions(self, project: str, job: str, name: str) -> pd.DataFrame:
        """True items of one expected set: micrograph, x, y (truth, px), kind, index, uid;
        tomography sets add z and size_class and name the tomogram in ``micrograph`` (``index``
        is the row in ``SimTomogram.particles``)."""
        for j, n, _stage, selection, _cls, _rec in self._set_table(project):
            if (j, n) == (job, name):
                rows = self._select(selection)
                cols = (["micrograph", "x", "y", "z", "size_class"] if "z" in rows
                        else ["micrograph", "x", "y"])
                return rows[[*cols, "kind", "index", "uid"]].reset_index(drop=True)
        raise ValueError(f"no expected set {job}:{name} in project {project!r}")

    def _select(self, selection: str) -> pd.DataFrame:
        if not selection.startswith("tomo_picks"):
            return self.scenario.select(selection)
        size_class = int(selection.rsplit("_", 1)[1])  # tomo_picks_<size class>
        frames = [
            pd.DataFrame({"micrograph": t.key, "x": t.particles[:, 0], "y": t.particles[:, 1],
                          "z": t.particles[:, 2], "kind": "particle",
                          "index": np.arange(len(t.particles)),
                          "uid": np.arange(len(t.particles), dtype=np.uint64),
                          "size_class": t.classes})
            for t in self.tomograms
        ]
        rows = pd.concat(frames, ignore_index=True)
        return rows[rows["size_class"] == size_class]

    def _set_table(self, project: str):
        if project not in self.projects:
            raise ValueError(
                f"project {project!r} not in this facility; it has {', '.join(self.projects)}"
            )
        return _writer_tables()[project]


def _writer_tables() -> dict[str, tuple]:
    from harvest.synth import cryosparc, relion, tomo

    tables = {"cryosparc": cryosparc.EXPECTED_SETS, "relion50_tomo": tomo.EXPECTED_SETS}
    for v in ("relion30", "relion31", "relion40", "relion50"):
        tables[v] = relion.EXPECTED_SETS
    return tables


def _prepare(directory: Path, force: bool) -> None:
    if directory.exists() and not directory.is_dir():
        raise FileExistsError(f"{directory} exists and is not a directory; choose another path")
    if directory.is_dir() and any(directory.iterdir()):
        if not force:
            raise FileExistsError(
                f"{directory} is not empty; use an empty directory or force=True (--force) "
                f"to replace a generated facility there"
            )
        # Only what a facility consists of is removed; other files stay.
        for name in (FACILITY_FILE, MICROGRAPH_DIR, *ALL_VERSIONS):
            target = directory / name
            if target.is_symlink() or target.is_file():
                target.unlink()
            elif target.is_dir():
                shutil.rmtree(target)
    directory.mkdir(parents=True, exist_ok=True)


def _progress(iterable, total: int, desc: str, enabled: bool):
    if not enabled:
        return iterable
    from tqdm import tqdm

    return tqdm(iterable, total=total, desc=desc, file=sys.stderr,
                disable=not sys.stderr.isatty())


def make_facility(
    directory: str | Path, config: FacilityConfig | None = None, force: bool = False,
    progress: bool = False,
) -> Facility:
    """Generate a facility in ``directory`` and return it.

    Refuses a non-empty directory unless ``force`` (FileExistsError); invalid configs raise
    ValueError. ``progress`` shows a tqdm bar on a terminal.
    """
    config = (config or FacilityConfig()).validate()
    root = Path(directory).absolute()
    _prepare(root, force)

    density = make_density(config.shape, config.diameter_A, _rng(config.seed, "density"))
    micrographs: list[SimMicrograph] = []
    images: dict[str, np.ndarray] = {}
    for i in _progress(range(config.n_micrographs), config.n_micrographs, "micrographs",
                       progress):
        key = f"mic_{i + 1:04d}"
        image, truth = simulate_micrograph(
            config, _rng(config.seed, "micrographs", i), key=key, density=density,
            with_carbon=(i % 3 == 0),
        )
        truth.path = root / MICROGRAPH_DIR / f"{key}.mrc"
        write_mrc(truth.path, image, config.pixel_size)
        micrographs.append(truth)
        images[key] = image
    scenario = make_scenario(config, micrographs, _rng(config.seed, "scenario"))

    projects: dict[str, Path] = {}
    tomograms: list[SimTomogram] = []
    for version in _progress(config.versions, len(config.versions), "projects", progress):
        if version == "relion50_tomo":
            from harvest.synth.tomo import write_tomo_project

            projects[version], tomograms = write_tomo_project(
                root / version, config, _rng(config.seed, "tomo"))
            continue
        projects[version] = _write_project(version, root, config, micrographs, scenario, images)

    facility = Facility(root=root, config=config, micrographs=micrographs, projects=projects,
                        scenario=scenario, tomograms=tomograms)
    _write_json(facility)
    return facility


def _write_project(version, root, config, micrographs, scenario, images) -> Path:
    seed = config.seed
    if version == "cryosparc":
        from harvest.synth.cryosparc import write_cryosparc_project

        return write_cryosparc_project(root / "cryosparc", config, micrographs, scenario, images,
                                       _rng(seed, "cryosparc"))
    from harvest.synth.relion import write_relion_project

    index = ALL_VERSIONS.index(version)
    return write_relion_project(root / version, version, config, micrographs, scenario, images,
                                _rng(seed, "relion", index))


# ---------------------------------------------------------------------------------------------
# facility.json
# ---------------------------------------------------------------------------------------------


def _write_json(f: Facility) -> None:
    items = f.scenario.items
    mics = []
    for m in f.micrographs:
        d = m.to_dict()
        d["path"] = str(Path(MICROGRAPH_DIR) / f"{m.key}.mrc")
        mics.append(d)
    doc = {
        "format": FORMAT_TAG,
        "format_version": FORMAT_VERSION,
        "config": f.config.to_dict(),
        "micrographs": mics,
        "projects": {k: str(v.relative_to(f.root)) for k, v in f.projects.items()},
        "tomograms": [t.to_dict(f.root) for t in f.tomograms],
        "scenario": {
            "box_px": f.scenario.box_px,
            "exposure_uids": f.scenario.exposure_uids,
            "items": {c: items[c].tolist() for c in items.columns},
        },
    }
    (f.root / FACILITY_FILE).write_text(json.dumps(doc, indent=1))


def load_facility(directory: str | Path) -> Facility:
    """Read a facility written by :func:`make_facility` (its ``facility.json``)."""
    root = Path(directory).absolute()
    path = root / FACILITY_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found; generate a facility with `cryoglean demo-data {directory}`"
        )
    try:
        doc = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e}); regenerate with --force") from None
    if doc.get("format") != FORMAT_TAG:
        raise ValueError(f"{path}: not a cryoglean facility file (format {doc.get('format')!r})")
    config = FacilityConfig.from_dict(doc["config"])
    micrographs = [SimMicrograph.from_dict(d, root) for d in doc["micrographs"]]
    sc = doc["scenario"]
    items = pd.DataFrame(sc["items"])
    if "uid" in items:
        items["uid"] = np.array([int(u) for u in sc["items"]["uid"]], dtype=np.uint64)
    scenario = Scenario(items=items, exposure_uids={k: int(v) for k, v in
                                                    sc["exposure_uids"].items()},
                        box_px=int(sc["box_px"]))
    projects = {k: root / v for k, v in doc["projects"].items()}
    tomograms = [SimTomogram.from_dict(d, root) for d in doc.get("tomograms", [])]
    return Facility(root=root, config=config, micrographs=micrographs, projects=projects,
                    scenario=scenario, tomograms=tomograms)
