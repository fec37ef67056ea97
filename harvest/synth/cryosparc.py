"""A generated CryoSPARC project (v4-style job.json, .cs files with CryoSPARC's dtypes).

Long module: one project of twelve jobs, written by one ``_Project`` whose methods share its
uids, tables and paths and follow the layout below job by job (plus the slot dtype tables);
split per job they would pass that state around without being any easier to read.

Layout (``DIR/cryosparc/CS-cryoglean-demo/``)::

    project.json  workspaces.json  job_manifest.json
    J1/  import_movies                 imported_movies.cs (exposures: movie_blob, mscope_params)
    J2/  patch_motion_correction_multi J2_micrographs.cs (micrograph_blob, rigid_motion)
                                       + J2_passthrough_micrographs.cs; motioncorrected/ links
    J3/  patch_ctf_estimation_multi    J3_exposures.cs (ctf incl. df1_A, df2_A, df_angle_rad,
                                       ctf_fit_to_A) + J3_passthrough_exposures.cs
    J4/  manual_picker_v2              manual_picked_particles.cs (location)
    J5/  blob_picker_gpu               picked_particles.cs (location, pick_stats),
                                       picked_micrographs.cs
    J6/  extract_micrographs_multi     extracted_particles.cs (blob, location, ctf)
                                       + J6_passthrough_particles.cs (pick_stats); extract/ stacks
    J7/  class_2D_new                  J7_000/010/020_particles.cs (blob, alignments2D)
                                       + J7_passthrough_particles.cs (location, ctf, pick_stats)
    J8/  select_2D                     particles_selected.cs, particles_excluded.cs + passthroughs
    J9/  homo_refine_new               J9_000/001/002_particles.cs (blob, alignments3D)
                                       + J9_passthrough_particles.cs
    J10/ hetero_refine                 groups particles_class_0, particles_class_1,
                                       particles_all_classes (alignments3D, alignments_class_N)
    J11/ class_2D_new                  failed, no outputs
    J12/ nonuniform_refine_new         running, first iteration only

Micrographs are relative symlinks ``J2/motioncorrected/<uid21>_<key>_patch_aligned_doseweighted
.mrc -> ../../../../micrographs/<key>.mrc``. Paths inside .cs files are relative to the project
directory, as CryoSPARC writes them. Passthrough files hold inherited slots, joined on ``uid``;
their rows are in a different order from the main file's.

Coordinates: ``location/center_{x,y}_frac = x / nx, y / ny`` (float32) of the DESIGN.md pixel
frame; ``alignments{2D,3D}/shift`` (pixels of the binned particle images, ``psize_A`` = 2 ×
micrograph pixel size) are set so that ``x_frac·nx − shift_x·psize_A/micrograph_psize_A`` is the
true centre (< 0.01 px). Shifts are computed here from the stored float32 values.

Expected particle sets (``Facility.expected_sets("cryosparc")``): see :data:`EXPECTED_SETS`;
``particles_all_classes`` of J10 is not listed (it repeats the per-class sets).
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from harvest.synth.config import FacilityConfig
from harvest.synth.micrographs import AMP_CONTRAST, CS_MM, VOLTAGE_KV, SimMicrograph, write_mrc
from harvest.synth.scenario import N_CLASSES_2D, N_CLASSES_3D, Scenario
from harvest.synth.stacks import EXTRACT_BINNING, extract_stack

PROJECT_DIR = "CS-cryoglean-demo"
PROJECT_UID = "P1"
WORKSPACE_UID = "W1"
# 2026-01-01T00:00:00Z in ms; jobs are 10 minutes apart. Fixed so files are reproducible.
EPOCH_MS = 1767225600000

# (job, set name = output group, stage, selection in the scenario, class_id, recentred)
EXPECTED_SETS: tuple[tuple[str, str, str, str, int | None, bool], ...] = (
    ("J4", "particles", "picked", "manual", None, False),
    ("J5", "particles", "picked", "auto", None, False),
    ("J6", "particles", "extracted", "extracted", None, False),
    ("J7", "particles", "classified2d", "extracted", None, True),
    ("J8", "particles_selected", "selected2d", "selected", None, True),
    ("J8", "particles_excluded", "rejected2d", "rejected", None, True),
    ("J9", "particles", "refined", "selected", None, True),
    ("J10", "particles_class_0", "classified3d", "class3d_0", 0, True),
    ("J10", "particles_class_1", "classified3d", "class3d_1", 1, True),
)

# ---------------------------------------------------------------------------------------------
# Slots as data: field -> numpy dtype (shape). Strings are sized per file (|S<longest>).
# Particle slot dtypes match cryosparc-tools tests/data/4k_dataset.cs.
# ---------------------------------------------------------------------------------------------

_ALIGN_COMMON = {
    "split": "<u4", "shift": ("<f4", (2,)), "psize_A": "<f4", "error": "<f4",
    "error_min": "<f4", "resid_pow": "<f4", "slice_pow": "<f4", "image_pow": "<f4",
    "cross_cor": "<f4", "alpha": "<f4", "alpha_min": "<f4", "weight": "<f4", "pose_ess": "<f4",
    "shift_ess": "<f4", "class_posterior": "<f4", "class": "<u4", "class_ess": "<f4",
}
SLOTS: dict[str, dict] = {
    "blob": {"path": "S", "idx": "<u4", "shape": ("<u4", (2,)), "psize_A": "<f4",
             "sign": "<f4", "import_sig": "<u8"},
    "location": {"micrograph_uid": "<u8", "exp_group_id": "<u4", "micrograph_path": "S",
                 "micrograph_shape": ("<u4", (2,)), "center_x_frac": "<f4",
                 "center_y_frac": "<f4", "min_dist_A": "<f4", "micrograph_psize_A": "<f4"},
    "ctf": {"type": "S", "exp_group_id": "<u4", "accel_kv": "<f4", "cs_mm": "<f4",
            "amp_contrast": "<f4", "df1_A": "<f4", "df2_A": "<f4", "df_angle_rad": "<f4",
            "phase_shift_rad": "<f4", "scale": "<f4", "scale_const": "<f4",
            "shift_A": ("<f4", (2,)), "tilt_A": ("<f4", (2,)), "trefoil_A": ("<f4", (2,)),
            "tetra_A": ("<f4", (4,)), "anisomag": ("<f4", (4,)), "bfactor": "<f4"},
    "pick_stats": {"ncc_score": "<f4", "power": "<f4", "template_idx": "<u4",
                   "angle_rad": "<f4"},
    "alignments2D": {**_ALIGN_COMMON, "pose": "<f4"},
    "alignments3D": {**_ALIGN_COMMON, "pose": ("<f4", (3,))},
    "movie_blob": {"path": "S", "shape": ("<u4", (3,)), "psize_A": "<f4",
                   "is_gain_corrected": "<u4", "format": "S", "has_defect_file": "<u4",
                   "import_sig": "<u8"},
    "mscope_params": {"accel_kv": "<f4", "cs_mm": "<f4", "total_dose_e_per_A2": "<f4",
                      "phase_plate": "<u4", "neg_stain": "<u4", "exp_group_id": "<u4",
                      "defect_path": "S"},
    "micrograph_blob": {"path": "S", "idx": "<u4", "shape": ("<u4", (2,)), "psize_A": "<f4",
                        "format": "S", "is_background_subtracted": "<u4", "vmin": "<f4",
                        "vmax": "<f4", "import_sig": "<u8"},
    "rigid_motion": {"type": "S", "path": "S", "idx": "<u4", "frame_start": "<u4",
                     "frame_end": "<u4", "zero_shift_frame": "<u4", "psize_A": "<f4"},
}
# Exposure CTF (Patch CTF output) adds the fit statistics.
SLOTS["ctf_exposure"] = {**SLOTS["ctf"], "ctf_fit_to_A": "<f4", "cross_corr_ctffind4": "<f4"}
SLOT_TYPES = {
    "blob": "particle.blob", "location": "particle.location", "ctf": "particle.ctf",
    "pick_stats": "particle.pick_stats", "alignments2D": "particle.alignments2D",
    "alignments3D": "particle.alignments3D", "movie_blob": "exposure.movie_blob",
    "mscope_params": "exposure.mscope_params", "micrograph_blob": "exposure.micrograph_blob",
    "rigid_motion": "exposure.motion", "ctf_exposure": "exposure.ctf",
}
N_FRAMES = 40


def _field_dtype(name: str, spec, values) -> tuple:
    if isinstance(spec, tuple):
        return (name, spec[0], spec[1])
    if spec == "S":
        values = [values] if isinstance(values, bytes) else values
        width = max([len(v) for v in values] + [1])
        return (name, f"|S{width}")
    return (name, spec)


def cs_table(uids: np.ndarray, slots: dict[str, dict[str, object]]) -> np.ndarray:
    """A structured array like CryoSPARC's: ``uid`` then ``<slot>/<field>`` for each slot.

    ``slots`` maps a slot name (a key of :data:`SLOTS`, ``ctf_exposure`` written as ``ctf``, or
    ``alignments_class_N`` written with the alignments3D fields) to ``{field: values}``; fields
    not given are zero (CryoSPARC's default for unset values). String values are bytes.
    """
    n = len(uids)
    dtype = [("uid", "<u8")]
    for slot, values in slots.items():
        spec_name = "alignments3D" if slot.startswith("alignments_class_") else slot
        written = "ctf" if slot == "ctf_exposure" else slot
        for field, spec in SLOTS[spec_name].items():
            dtype.append(_field_dtype(f"{written}/{field}", spec, values.get(field, [b""])))
    out = np.zeros(n, dtype=dtype)
    out["uid"] = uids
    for slot, values in slots.items():
        written = "ctf" if slot == "ctf_exposure" else slot
        for field, v in values.items():
            if n == 0:  # an empty selection keeps the dtype (as CryoSPARC's empty outputs do)
                continue
            out[f"{written}/{field}"] = v
    return out


def _save(path: Path, table: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        np.save(f, table, allow_pickle=False)


def _uid21(uid: int) -> str:
    return f"{uid:021d}"


class _Project:
    """Writes one CryoSPARC project: files plus the job documents that describe them."""

    def __init__(self, root: Path, config: FacilityConfig, micrographs: list[SimMicrograph],
                 scenario: Scenario, rng: np.random.Generator):
        self.root = root
        self.config = config
        self.mics = micrographs
        self.mic_by_key = {m.key: m for m in micrographs}
        self.scenario = scenario
        self.rng = rng
        self.jobs: dict[str, dict] = {}
        self.order: list[str] = []
        self.mic_psize = np.float32(config.pixel_size)
        self.particle_psize = np.float32(config.pixel_size * EXTRACT_BINNING)

    # -- job documents -------------------------------------------------------------------------

    def job(self, uid: str, job_type: str, title: str, parents: list[str],
            status: str = "completed") -> dict:
        n = int(uid[1:])
        t0 = EPOCH_MS + n * 600_000
        stamps = {"created_at": t0, "queued_at": t0 + 1000, "launched_at": t0 + 2000,
                  "started_at": t0 + 3000, "running_at": t0 + 4000}
        stamps["completed_at"] = t0 + 300_000 if status == "completed" else None
        stamps["failed_at"] = t0 + 60_000 if status == "failed" else None
        stamps["killed_at"] = None
        if status == "running":
            stamps["completed_at"] = None
        doc = {
            "uid": uid, "uid_num": n, "project_uid": PROJECT_UID, "type": job_type,
            "job_type": job_type, "title": title, "description": "",
            "status": status, "parents": list(parents), "children": [],
            "workspace_uids": [WORKSPACE_UID], "deleted": False, "version": "v4.7.1",
            "input_slot_groups": [], "output_result_groups": [], "output_results": [],
            "params_spec": {}, "errors_run": [] if status != "failed" else [
                {"message": "RuntimeError: simulated failure (cryoglean demo data)"}
            ],
        }
        for k, v in stamps.items():
            doc[k] = None if v is None else {"$date": v}
        for p in parents:
            self.jobs[p]["children"].append(uid)
        self.jobs[uid] = doc
        self.order.append(uid)
        (self.root / uid).mkdir(parents=True, exist_ok=True)
        return doc

    def connect(self, doc: dict, input_name: str, input_type: str, parent: str, group: str) -> None:
        pdoc = self.jobs[parent]
        slots = [
            {"slot_name": r["name"], "job_uid": parent, "group_name": group,
             "result_name": r["name"], "result_type": r["type"], "version": "F"}
            for r in pdoc["output_results"] if r["group_name"] == group
        ]
        doc["input_slot_groups"].append({
            "type": input_type, "name": input_name, "title": input_name.capitalize(),
            "count_min": 1, "count_max": None, "repeat_allowed": False,
            "slots": [{"name": s["slot_name"], "type": s["result_type"], "optional": False}
                      for s in slots],
            "connections": [{"job_uid": parent, "group_name": group, "slots": slots}],
        })

    def output(self, doc: dict, group: str, group_type: str,
               files: list[tuple[list[str], list[str], list[int], bool]], n: int,
               passthrough_from: str | bool = False) -> None:
        """Add an output group. ``files``: (slot names, metafiles (one per version), versions,
        passthrough) per result file; every slot of a file becomes one output result."""
        uid = doc["uid"]
        contains = []
        csg_results = {}
        for slot_names, metafiles, versions, passthrough in files:
            for slot in slot_names:
                written = "ctf" if slot == "ctf_exposure" else slot
                spec = "alignments3D" if slot.startswith("alignments_class_") else slot
                final = metafiles[0 if passthrough else -1]
                csg_results[written] = {"metafile": ">" + final.split("/", 1)[1],
                                        "num_items": n, "type": SLOT_TYPES.get(spec, "")}
                r_uid = f"{uid}-R{len(doc['output_results']) + 1}"
                contains.append(r_uid)
                doc["output_results"].append({
                    "uid": r_uid, "type": SLOT_TYPES.get(spec, f"{group_type}.{written}"),
                    "group_name": group, "name": written, "title": written,
                    "description": "",
                    "min_fields": [[f, str(np.dtype(s[0] if isinstance(s, tuple) else
                                                    ("|S1" if s == "S" else s)))]
                                   for f, s in SLOTS[spec].items()],
                    "versions": list(versions), "metafiles": list(metafiles),
                    "num_items": [n] * len(metafiles), "passthrough": passthrough,
                })
        doc["output_result_groups"].append({
            "uid": f"{uid}-G{len(doc['output_result_groups']) + 1}", "type": group_type,
            "name": group, "title": group.replace("_", " ").capitalize(), "description": "",
            "contains": contains, "passthrough": passthrough_from, "num_items": n,
            "summary": {},
        })
        self.write_csg(uid, group, group_type, csg_results)

    def write_csg(self, uid: str, group: str, group_type: str, results: dict) -> None:
        """The output group descriptor ``Jn/Jn_<group>.csg`` (YAML; '>' = relative to it)."""
        import yaml

        created = datetime.fromtimestamp(EPOCH_MS / 1000 + int(uid[1:]) * 600, tz=timezone.utc)
        doc = {
            "created": created.strftime("%Y-%m-%d %H:%M:%S.%f"),
            "group": {"description": f"{group} of {uid} (cryoglean demo data)", "name": group,
                      "title": group.replace("_", " ").capitalize(), "type": group_type},
            "results": results,
        }
        text = yaml.safe_dump(doc, default_flow_style=None, sort_keys=True)
        (self.root / uid / f"{uid}_{group}.csg").write_text(text)

    def write_documents(self) -> None:
        for uid in self.order:
            (self.root / uid / "job.json").write_text(json.dumps(self.jobs[uid], indent=2))
            log = f"cryoglean demo data: {uid} {self.jobs[uid]['type']}\n"
            (self.root / uid / "job.log").write_text(log)
        (self.root / "job_manifest.json").write_text(json.dumps({"jobs": self.order}, indent=2))
        (self.root / "project.json").write_text(json.dumps({
            "uid": PROJECT_UID, "uid_num": 1, "title": "cryoglean demo", "description":
            "Generated by cryoglean demo-data (simulated particles with known positions).",
            "project_dir": str(self.root), "owner_user_id": "cryoglean",
            "created_at": {"$date": EPOCH_MS}, "deleted": False, "archived": False,
            "detached": False, "hidden": False, "workspaces_uids": [WORKSPACE_UID],
        }, indent=2))
        (self.root / "workspaces.json").write_text(json.dumps([{
            "uid": WORKSPACE_UID, "uid_num": 1, "project_uid": PROJECT_UID,
            "title": "Demo workspace", "description": "", "workspace_type": "base",
            "deleted": False, "created_at": {"$date": EPOCH_MS},
        }], indent=2))

    # -- per-row values ------------------------------------------------------------------------

    def mic_path(self, key: str) -> str:
        uid = self.scenario.exposure_uids[key]
        return f"J2/motioncorrected/{_uid21(uid)}_{key}_patch_aligned_doseweighted.mrc"

    def exposure_slots(self, with_ctf: bool) -> tuple[np.ndarray, dict]:
        mics = self.mics
        uids = np.array([self.scenario.exposure_uids[m.key] for m in mics], dtype=np.uint64)
        px = self.config.pixel_size
        slots = {
            "movie_blob": {
                "path": [f"J1/imported/{_uid21(self.scenario.exposure_uids[m.key])}_{m.key}.mrc"
                         .encode() for m in mics],
                "shape": [[1, m.ny, m.nx] for m in mics], "psize_A": px, "format": b"MRC",
            },
            "mscope_params": {"accel_kv": VOLTAGE_KV, "cs_mm": CS_MM,
                              "total_dose_e_per_A2": 50.0, "exp_group_id": 1},
            "micrograph_blob": {
                "path": [self.mic_path(m.key).encode() for m in mics], "idx": 0,
                "shape": [[m.ny, m.nx] for m in mics], "psize_A": px, "format": b"MRC",
                "is_background_subtracted": 0, "vmin": -3.0, "vmax": 3.0,
            },
            "rigid_motion": {
                "type": b"rigid", "path": [f"J2/motion/{_uid21(self.scenario.exposure_uids[m.key])}"
                                           f"_{m.key}_traj.npy".encode() for m in mics],
                "frame_start": 0, "frame_end": N_FRAMES, "zero_shift_frame": 0, "psize_A": px,
            },
        }
        if with_ctf:
            slots["ctf_exposure"] = {
                "type": b"spline", "exp_group_id": 1, "accel_kv": VOLTAGE_KV, "cs_mm": CS_MM,
                "amp_contrast": AMP_CONTRAST, "df1_A": [m.defocus_u for m in mics],
                "df2_A": [m.defocus_v for m in mics],
                "df_angle_rad": [np.deg2rad(m.defocus_angle) for m in mics],
                "scale": 1.0, "scale_const": 0.0, "anisomag": [[1.0, 0.0, 0.0, 1.0]] * len(mics),
                "ctf_fit_to_A": [m.ctf_max_res for m in mics],
                "cross_corr_ctffind4": [m.ctf_fom for m in mics],
            }
        return uids, slots

    def particle_slots(self, rows, names: list[str], xy_cols=("auto_x", "auto_y"),
                       exact: tuple[str, ...] = (), hetero: bool = False) -> dict:
        """Slot values for the particles in ``rows`` (scenario items).

        Alignment slots in ``exact`` get shifts that recentre onto the truth; others (earlier
        iterations) are off by ~0.4 px. ``alignments_class_K`` is exact for the particles of
        class K. ``hetero``: alignments3D/class is the 3D class (else 0).
        """
        mics = [self.mic_by_key[k] for k in rows["micrograph"]]
        out: dict[str, dict] = {}
        nx = np.array([m.nx for m in mics], dtype=np.float64)
        ny = np.array([m.ny for m in mics], dtype=np.float64)
        x_frac = (rows[xy_cols[0]].to_numpy() / nx).astype(np.float32)
        y_frac = (rows[xy_cols[1]].to_numpy() / ny).astype(np.float32)
        if "location" in names:
            out["location"] = {
                "micrograph_uid": [self.scenario.exposure_uids[m.key] for m in mics],
                "exp_group_id": 1,
                "micrograph_path": [self.mic_path(m.key).encode() for m in mics],
                "micrograph_shape": [[m.ny, m.nx] for m in mics],
                "center_x_frac": x_frac, "center_y_frac": y_frac,
                "min_dist_A": self.config.diameter_A, "micrograph_psize_A": self.mic_psize,
            }
        if "pick_stats" in names:
            out["pick_stats"] = {"ncc_score": rows["auto_score"].to_numpy(),
                                 "power": 100.0 * rows["auto_score"].to_numpy(),
                                 "angle_rad": 0.0}
        if "ctf" in names:
            out["ctf"] = {
                "type": b"spline", "exp_group_id": 1, "accel_kv": VOLTAGE_KV, "cs_mm": CS_MM,
                "amp_contrast": AMP_CONTRAST, "df1_A": [m.defocus_u for m in mics],
                "df2_A": [m.defocus_v for m in mics],
                "df_angle_rad": [np.deg2rad(m.defocus_angle) for m in mics], "scale": 1.0,
                "anisomag": [[1.0, 0.0, 0.0, 1.0]] * len(mics),
            }
        if "blob" in names:
            box = self.scenario.box_px // EXTRACT_BINNING
            out["blob"] = {
                "path": [self.stack_path(m.key).encode() for m in mics],
                "idx": rows["stack_idx"].to_numpy(), "shape": [[box, box]] * len(mics),
                "psize_A": self.particle_psize, "sign": -1.0,
            }
        # Exact shifts (binned particle pixels) from the stored float32 coordinates.
        stored_x = x_frac.astype(np.float64) * nx
        stored_y = y_frac.astype(np.float64) * ny
        scale = float(self.particle_psize) / float(self.mic_psize)
        shift = np.stack([(stored_x - rows["x"].to_numpy()) / scale,
                          (stored_y - rows["y"].to_numpy()) / scale], axis=1)
        n = len(rows)
        for slot in names:
            if not slot.startswith("alignments"):
                continue
            class3d = rows["class3d"].to_numpy()
            if slot.startswith("alignments_class_"):
                k = int(slot.rsplit("_", 1)[1])
                is_exact = class3d == k
                cls = np.full(n, k)
                posterior = is_exact.astype(np.float64)
            else:
                is_exact = np.full(n, slot in exact)
                if slot == "alignments2D":
                    cls = rows["class2d"].to_numpy()
                else:
                    cls = np.maximum(class3d, 0) if hetero else np.zeros(n, dtype=int)
                posterior = np.ones(n)
            noise = self.rng.normal(scale=0.4, size=shift.shape)
            s = np.where(is_exact[:, None], shift, shift + noise)
            pose = (self.rng.uniform(-np.pi, np.pi, size=n) if slot == "alignments2D"
                    else self.rng.normal(size=(n, 3)))
            out[slot] = {
                "split": self.rng.integers(0, 2, size=n), "shift": s.astype(np.float32),
                "pose": pose, "psize_A": self.particle_psize,
                "error": self.rng.uniform(1e5, 2e5, size=n), "cross_cor": self.rng.uniform(
                    0.5, 1.5, size=n), "alpha": 1.0, "weight": 1.0,
                "class_posterior": posterior, "class": cls, "class_ess": 1.0,
            }
        return out

    def stack_path(self, key: str) -> str:
        return f"J6/extract/{_uid21(self.scenario.exposure_uids[key])}_{key}_particles.mrc"

    def shuffled(self, rows):
        return rows.iloc[self.rng.permutation(len(rows))]

    def write_particles(self, path: str, rows, names: list[str], **kw) -> None:
        rows = self.shuffled(rows)
        _save(self.root / path, cs_table(rows["uid"].to_numpy(np.uint64),
                                         self.particle_slots(rows, names, **kw)))


def _link(link: Path, target: Path) -> None:
    """Relative symlink ``link -> target`` (so a copied facility still resolves)."""
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.is_symlink() or link.exists():
        link.unlink()
    os.symlink(os.path.relpath(target, link.parent), link)


def write_cryosparc_project(
    root: Path, config: FacilityConfig, micrographs: list[SimMicrograph], scenario: Scenario,
    images: dict[str, np.ndarray], rng: np.random.Generator,
) -> Path:
    """Write the project under ``root`` (created) and return its directory.

    ``micrographs[i].path`` must be the written MRC files (the project links to them).
    """
    p = _Project(root / PROJECT_DIR, config, micrographs, scenario, rng)
    proj = p.root
    proj.mkdir(parents=True, exist_ok=True)
    ex_uids, ex = p.exposure_slots(with_ctf=True)
    n_mic = len(micrographs)
    for m in micrographs:
        uid21 = _uid21(scenario.exposure_uids[m.key])
        _link(proj / "J1" / "imported" / f"{uid21}_{m.key}.mrc", m.path)
        _link(proj / "J2" / "motioncorrected" / f"{uid21}_{m.key}_patch_aligned_doseweighted.mrc",
              m.path)
        # Rigid trajectory in pixels, (frames, 2): its path length is the total motion.
        steps = rng.normal(size=(N_FRAMES - 1, 2))
        steps *= (m.total_motion / m.pixel_size) / np.linalg.norm(steps, axis=1).sum()
        traj = np.vstack([[0.0, 0.0], np.cumsum(steps, axis=0)]).astype(np.float32)
        (proj / "J2" / "motion").mkdir(parents=True, exist_ok=True)
        np.save(proj / "J2" / "motion" / f"{uid21}_{m.key}_traj.npy", traj[None])

    def exposures(slots: list[str]) -> np.ndarray:
        return cs_table(ex_uids, {s: ex[s] for s in slots})

    # J1 import movies
    d = p.job("J1", "import_movies", "Import Movies", [])
    _save(proj / "J1/imported_movies.cs", exposures(["movie_blob", "mscope_params"]))
    p.output(d, "imported_movies", "exposure",
             [(["movie_blob", "mscope_params"], ["J1/imported_movies.cs"], [0], False)], n_mic)
    # J2 patch motion
    d = p.job("J2", "patch_motion_correction_multi", "Patch Motion Correction", ["J1"])
    p.connect(d, "movies", "exposure", "J1", "imported_movies")
    _save(proj / "J2/J2_micrographs.cs", exposures(["micrograph_blob", "rigid_motion"]))
    _save(proj / "J2/J2_passthrough_micrographs.cs", exposures(["movie_blob", "mscope_params"]))
    p.output(d, "micrographs", "exposure", [
        (["micrograph_blob", "rigid_motion"], ["J2/J2_micrographs.cs"], [0], False),
        (["movie_blob", "mscope_params"], ["J2/J2_passthrough_micrographs.cs"], [0], True),
    ], n_mic, passthrough_from="movies")
    # J3 patch CTF
    d = p.job("J3", "patch_ctf_estimation_multi", "Patch CTF Estimation", ["J2"])
    p.connect(d, "exposures", "exposure", "J2", "micrographs")
    _save(proj / "J3/J3_exposures.cs", exposures(["ctf_exposure"]))
    pt = ["movie_blob", "mscope_params", "micrograph_blob", "rigid_motion"]
    _save(proj / "J3/J3_passthrough_exposures.cs", exposures(pt))
    p.output(d, "exposures", "exposure", [
        (["ctf_exposure"], ["J3/J3_exposures.cs"], [0], False),
        (pt, ["J3/J3_passthrough_exposures.cs"], [0], True),
    ], n_mic, passthrough_from="exposures")
    all_ex = ["ctf_exposure"] + pt

    # J4 manual picker
    manual = scenario.select("manual")
    d = p.job("J4", "manual_picker_v2", "Manual Picker", ["J3"])
    p.connect(d, "micrographs", "exposure", "J3", "exposures")
    p.write_particles("J4/manual_picked_particles.cs", manual, ["location"],
                      xy_cols=("manual_x", "manual_y"))
    _save(proj / "J4/manual_picked_micrographs.cs", exposures(all_ex))
    p.output(d, "particles", "particle",
             [(["location"], ["J4/manual_picked_particles.cs"], [0], False)], len(manual))
    p.output(d, "micrographs", "exposure",
             [(all_ex, ["J4/manual_picked_micrographs.cs"], [0], False)], n_mic)

    # J5 blob picker
    auto = scenario.select("auto")
    d = p.job("J5", "blob_picker_gpu", "Blob Picker", ["J3"])
    p.connect(d, "micrographs", "exposure", "J3", "exposures")
    p.write_particles("J5/picked_particles.cs", auto, ["location", "pick_stats"])
    _save(proj / "J5/picked_micrographs.cs", exposures(all_ex))
    p.output(d, "particles", "particle",
             [(["location", "pick_stats"], ["J5/picked_particles.cs"], [0], False)], len(auto))
    p.output(d, "micrographs", "exposure",
             [(all_ex, ["J5/picked_micrographs.cs"], [0], False)], n_mic)

    # J6 extract (binned by 2), with real stacks
    extracted = scenario.select("extracted").copy()
    extracted["stack_idx"] = extracted.groupby("micrograph").cumcount().to_numpy()
    for key, rows in extracted.groupby("micrograph"):
        stack = extract_stack(images[key], rows[["auto_x", "auto_y"]].to_numpy(), scenario.box_px)
        write_mrc(proj / p.stack_path(str(key)), stack, float(p.particle_psize), stack=True)
    d = p.job("J6", "extract_micrographs_multi", "Extract From Micrographs", ["J5"])
    p.connect(d, "particles", "particle", "J5", "particles")
    p.connect(d, "micrographs", "exposure", "J5", "micrographs")
    p.write_particles("J6/extracted_particles.cs", extracted, ["blob", "location", "ctf"])
    p.write_particles("J6/J6_passthrough_particles.cs", extracted, ["pick_stats"])
    p.output(d, "particles", "particle", [
        (["blob", "location", "ctf"], ["J6/extracted_particles.cs"], [0], False),
        (["pick_stats"], ["J6/J6_passthrough_particles.cs"], [0], True),
    ], len(extracted), passthrough_from="particles")

    # J7 2D classification: three iterations, the last has the exact shifts
    d = p.job("J7", "class_2D_new", "2D Classification", ["J6"])
    p.connect(d, "particles", "particle", "J6", "particles")
    iters = [0, 10, 20]
    metafiles = [f"J7/J7_{i:03d}_particles.cs" for i in iters]
    for i, mf in zip(iters, metafiles):
        p.write_particles(mf, extracted, ["blob", "alignments2D"],
                          exact=("alignments2D",) if i == iters[-1] else ())
    p.write_particles("J7/J7_passthrough_particles.cs", extracted,
                      ["location", "ctf", "pick_stats"])
    p.output(d, "particles", "particle", [
        (["blob", "alignments2D"], metafiles, iters, False),
        (["location", "ctf", "pick_stats"], ["J7/J7_passthrough_particles.cs"], [0], True),
    ], len(extracted), passthrough_from="particles")
    d["params_spec"] = {"class2D_K": {"value": N_CLASSES_2D}}

    # J8 select 2D
    d = p.job("J8", "select_2D", "Select 2D Classes", ["J7"])
    p.connect(d, "particles", "particle", "J7", "particles")
    for group, sel in (("particles_selected", "selected"), ("particles_excluded", "rejected")):
        rows = extracted[extracted[sel]]
        main, ptf = f"J8/{group}.cs", f"J8/J8_passthrough_{group}.cs"
        p.write_particles(main, rows, ["blob", "alignments2D"], exact=("alignments2D",))
        p.write_particles(ptf, rows, ["location", "ctf", "pick_stats"])
        p.output(d, group, "particle", [
            (["blob", "alignments2D"], [main], [0], False),
            (["location", "ctf", "pick_stats"], [ptf], [0], True),
        ], len(rows), passthrough_from="particles")
    selected = extracted[extracted["selected"]]

    # J9 homogeneous refinement
    d = p.job("J9", "homo_refine_new", "Homogeneous Refinement", ["J8"])
    p.connect(d, "particles", "particle", "J8", "particles_selected")
    iters = [0, 1, 2]
    metafiles = [f"J9/J9_{i:03d}_particles.cs" for i in iters]
    for i, mf in zip(iters, metafiles):
        p.write_particles(mf, selected, ["blob", "alignments3D"],
                          exact=("alignments3D",) if i == iters[-1] else ())
    p.write_particles("J9/J9_passthrough_particles.cs", selected,
                      ["location", "ctf", "pick_stats", "alignments2D"], exact=("alignments2D",))
    p.output(d, "particles", "particle", [
        (["blob", "alignments3D"], metafiles, iters, False),
        (["location", "ctf", "pick_stats", "alignments2D"], ["J9/J9_passthrough_particles.cs"],
         [0], True),
    ], len(selected), passthrough_from="particles")

    # J10 heterogeneous refinement: 2 classes
    d = p.job("J10", "hetero_refine", "Heterogeneous Refinement", ["J9"])
    p.connect(d, "particles", "particle", "J9", "particles")
    pt_slots = ["location", "ctf", "pick_stats", "alignments2D"]
    for k in range(N_CLASSES_3D):
        rows = selected[selected["class3d"] == k]
        group = f"particles_class_{k}"
        mfs = [f"J10/J10_class_{k:02d}_00020_particles.cs",
               f"J10/J10_class_{k:02d}_final_particles.cs"]
        for j, mf in enumerate(mfs):
            p.write_particles(mf, rows, ["blob", "alignments3D"],
                              exact=("alignments3D",) if j == len(mfs) - 1 else (),
                              hetero=True)
        ptf = f"J10/J10_passthrough_{group}.cs"
        p.write_particles(ptf, rows, pt_slots, exact=("alignments2D",))
        p.output(d, group, "particle", [
            (["blob", "alignments3D"], mfs, [20, 21], False),
            (pt_slots, [ptf], [0], True),
        ], len(rows), passthrough_from="particles")
    per_class = [f"alignments_class_{k}" for k in range(N_CLASSES_3D)]
    mf = "J10/J10_all_classes_final_particles.cs"
    p.write_particles(mf, selected, ["blob", "alignments3D", *per_class],
                      exact=("alignments3D",), hetero=True)
    ptf = "J10/J10_passthrough_particles_all_classes.cs"
    p.write_particles(ptf, selected, pt_slots, exact=("alignments2D",))
    p.output(d, "particles_all_classes", "particle", [
        (["blob", "alignments3D", *per_class], [mf], [21], False),
        (pt_slots, [ptf], [0], True),
    ], len(selected), passthrough_from="particles")

    # J11 failed 2D classification: no outputs written
    d = p.job("J11", "class_2D_new", "2D Classification (failed)", ["J6"], status="failed")
    p.connect(d, "particles", "particle", "J6", "particles")
    # J12 running non-uniform refinement: only the first iteration so far
    d = p.job("J12", "nonuniform_refine_new", "Non-uniform Refinement", ["J8"], status="running")
    p.connect(d, "particles", "particle", "J8", "particles_selected")
    p.write_particles("J12/J12_000_particles.cs", selected, ["blob", "alignments3D"])
    p.output(d, "particles", "particle",
             [(["blob", "alignments3D"], ["J12/J12_000_particles.cs"], [0], False)],
             len(selected))

    p.write_documents()
    return proj
