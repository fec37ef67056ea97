"""The picker-neutral trainers core that every picker folder builds on.

``options`` (option dataclasses carrying their help, the picker declaration), ``devices``
(``--gpus`` → Trainer arguments / a torch device), ``dataset`` (labelled micrographs from an
export's manifest or from plain folders, splits), ``datamodule`` (torch datasets and the
Lightning DataModule), ``task`` (the base Lightning task), ``driver`` (run directory,
checkpoints, resume, metrics, plots), ``checkpoint`` and ``pick`` (the generic pick loop with
shards, writing picks through the format registry; imports no Lightning).

No module here names a picker or a label format.
"""

# The last validation's summary and PR curve of a run, written by ``driver`` and read by the
# report and by pipeline jobs (``cryoglean slurm value threshold``): one name for the file.
VAL_METRICS = "val_metrics.json"
