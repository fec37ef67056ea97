"""Generated test facility: simulated micrographs with known particles, and CryoSPARC and RELION
projects that record them (the embedded default of ``cryoglean demo`` and the ground of most
tests).

Set names and stages that :meth:`Facility.expected_sets` lists (the parsers use the same):

=====================  ============================  =================================  =========
package                job                           set name                           stage
=====================  ============================  =================================  =========
CryoSPARC              J4 manual_picker_v2           particles (sparse)                 picked
CryoSPARC              J5 blob_picker_gpu            particles                          picked
CryoSPARC              J6 extract_micrographs_multi  particles                          extracted
CryoSPARC              J7 class_2D_new               particles                          classified2d
CryoSPARC              J8 select_2D                  particles_selected                 selected2d
CryoSPARC              J8 select_2D                  particles_excluded                 rejected2d
CryoSPARC              J9 homo_refine_new            particles                          refined
CryoSPARC              J10 hetero_refine             particles_class_0, _1 (class 0/1)  classified3d
RELION 3.0/3.1/4/5     ManualPick/job004             coords (sparse)                    picked
RELION                 AutoPick/job005               coords                             picked
RELION                 Extract/job006                particles                          extracted
RELION                 Class2D/job007                run_it025_data                     classified2d
RELION                 Select/job008                 particles                          selected2d
RELION                 Select/job008                 rejected (parent's left-outs)      rejected2d
RELION                 Class3D/job009                class_1, class_2 (class_id 1/2)    classified3d
RELION                 Refine3D/job010               run_data                           refined
RELION 5 tomography    Picks/job003 (relion50_tomo)  particles (3D, larger species)     picked
RELION 5 tomography    Picks/job004 (relion50_tomo)  particles (3D, smaller species)    picked
=====================  ============================  =================================  =========

Not listed: CryoSPARC J10 ``particles_all_classes`` (repeats the per-class sets), the failed jobs
(CryoSPARC J11, RELION Class2D/job011) and the running CryoSPARC J12.
"""

import importlib

from harvest.synth.config import FacilityConfig

# The rest is imported on first use (PEP 562), so `cryoglean --help` and `demo-data --help`
# (which only need the config) do not import numpy/scipy.
_LAZY = {
    "Facility": "harvest.synth.facility",
    "load_facility": "harvest.synth.facility",
    "make_facility": "harvest.synth.facility",
    "SimMicrograph": "harvest.synth.micrographs",
    "simulate_micrograph": "harvest.synth.micrographs",
}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'harvest.synth' has no attribute {name!r}")


__all__ = [
    "Facility",
    "FacilityConfig",
    "SimMicrograph",
    "load_facility",
    "make_facility",
    "simulate_micrograph",
]
