"""Every clustering job, one instance per RPC: the static registry the servicer runs them from.

Jobs are peers: each module holds one job over the shared modules (job.py, raw.py,
facesets.py, eras.py, identities.py, materialize.py); none imports another.
"""

from __future__ import annotations

from facesets.clustering.jobs.age_probe import AgeProbe
from facesets.clustering.jobs.age_split import AgeExtend, AgeSplit
from facesets.clustering.jobs.cluster import Cluster
from facesets.clustering.jobs.consolidate import Consolidate
from facesets.clustering.jobs.dedup import Dedup
from facesets.clustering.jobs.discover import Discover
from facesets.clustering.jobs.extend import Extend
from facesets.clustering.jobs.import_folders import ImportFolders
from facesets.clustering.jobs.refine import Refine
from facesets.clustering.jobs.route import Route

CLUSTER = Cluster()
REFINE = Refine()
EXTEND = Extend()
DEDUP = Dedup()
CONSOLIDATE = Consolidate()
ROUTE = Route()
IMPORT_FOLDERS = ImportFolders()
DISCOVER = Discover()
AGE_PROBE = AgeProbe()
AGE_SPLIT = AgeSplit()
AGE_EXTEND = AgeExtend()
