"""``cryoglean report``: a static site of the catalog and of training runs.

``facts`` reads the catalog into plain dicts, ``svg`` draws the graph, funnel and histograms,
``thumbs`` the cached micrograph thumbnails, ``runs`` training runs and evaluations of imported
pickers, ``site`` renders ``templates/`` into the site, ``cli`` is the command.
"""

from cryoglean.report.site import ReportSummary, build_report

__all__ = ["ReportSummary", "build_report"]
