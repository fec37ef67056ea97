"""trainers: Lightning pickers reading exported datasets, picking, and evaluation.

``data`` (micrographs + registry labels → samples at the network input scale, DataModule),
``augment`` (crops, flips, rotations moving coordinates with the image), ``base`` (the one
Lightning task pickers subclass, and the run driver), ``evaluate`` (Hungarian matching,
P/R/F1, AUPRC, RMSE), ``plots``, ``labels`` (registry I/O), ``cli`` / ``evaluate_cli``
(commands), ``centernet/`` (the EPicker-like picker).
"""
