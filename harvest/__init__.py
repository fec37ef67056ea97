"""harvest: discover CryoSPARC and RELION projects, parse them, and keep them in the catalog.

Conventions (pixel frame, units, micrograph identity, curation stages) are in
:mod:`harvest.conventions`; plain records that parsers hand to the catalog are in
:mod:`harvest.records`.
"""
