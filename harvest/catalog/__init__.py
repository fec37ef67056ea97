"""The catalog: one SQLite file that holds every harvested project, job, micrograph and particle.

``Catalog(path)`` opens (creating or migrating) a catalog; ``Catalog(path, readonly=True)`` reads
one. The package's modules, each one job:

- :mod:`~harvest.catalog.store`: :class:`Catalog`, the connection and the read API (projects,
  jobs, sets, micrographs, particles, stage counts, problems) and the crawl's bookkeeping;
- :mod:`~harvest.catalog.schema`: tables, indexes, ordered migrations, :data:`SCHEMA_VERSION`;
- :mod:`~harvest.catalog.opening`: how the file is opened (read-only readers, immutable on a
  read-only share) and refused (another application's file, a damaged catalog, no write access);
- :mod:`~harvest.catalog.lock`: :func:`writer_lock`, one crawl writer at a time;
- :mod:`~harvest.catalog.writer`: :class:`ProjectWriter`, everything a crawl writes about one
  project in one transaction, and :class:`ProjectState` for incremental crawls;
- :mod:`~harvest.catalog.codec`: how particle rows are stored (integer milli-pixels, packed
  pairs, per-set score scale) and read back;
- :mod:`~harvest.catalog.external`: picks from other tools imported as a set, matched to the
  project's micrographs;
- :mod:`~harvest.catalog.sqlvalues`: Python values as SQLite parameters (:func:`db_text`).

Imports between them run one way (no circle): store → writer, external → codec, schema →
sqlvalues; lock imports none of them. Everything above is re-exported here.
"""

from harvest.catalog.codec import COORD_SCALE, DEFAULT_SCORE_SCALE, SetWriteResult
from harvest.catalog.lock import CatalogLocked, writer_lock
from harvest.catalog.schema import DATA_TABLES, MICROGRAPH_FIELDS, MIGRATIONS, SCHEMA_VERSION
from harvest.catalog.sqlvalues import db_text
from harvest.catalog.store import Catalog
from harvest.catalog.writer import ProjectState, ProjectWriter, StoredJob, stamps_equal

__all__ = [
    "COORD_SCALE",
    "DATA_TABLES",
    "DEFAULT_SCORE_SCALE",
    "MICROGRAPH_FIELDS",
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "Catalog",
    "CatalogLocked",
    "ProjectState",
    "ProjectWriter",
    "SetWriteResult",
    "StoredJob",
    "db_text",
    "stamps_equal",
    "writer_lock",
]
