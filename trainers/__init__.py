"""trainers: Lightning pickers reading exported datasets, picking, and evaluation.

``pickers`` (the table of pickers) → ``cli`` (``train``/``pick`` commands built from it);
``core/`` (picker-neutral: option declarations, devices, the dataset opened by an export's
manifest or plain folders, DataModule, base Lightning task, run driver, checkpoints, the pick
loop); ``centernet/`` (the EPicker-like picker); ``data`` (micrograph files), ``labels``
(registry I/O), ``augment`` (crops, flips, rotations moving coordinates with the image),
``evaluate`` (2D/3D Hungarian matching, P/R/F1, AUPRC, RMSE), ``plots``, ``evaluate_cli``.
"""
