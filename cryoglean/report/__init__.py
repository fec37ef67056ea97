"""``cryoglean report``: a static site of the catalog and of training runs.

``facts`` reads the catalog into plain dicts, ``svg`` draws the graph, funnel and histograms,
``thumbs`` the cached micrograph thumbnails, ``runs`` training runs and evaluations of imported
pickers, ``site`` renders ``templates/`` into the site, ``cli`` is the command.
"""

__all__ = ["ReportSummary", "build_report"]


def __getattr__(name: str):
    # lazy: `cryoglean --help` imports the command module (cli.py) without pandas
    if name in __all__:
        from cryoglean.report import site

        return getattr(site, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
