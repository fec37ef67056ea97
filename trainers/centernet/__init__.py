"""EPicker-like CenterNet picker (pickers.md §D), one folder on the trainers core.

``options`` (its declaration: every option with its help, entry points) → ``train``
(train_centernet) and ``pick`` (pick_centernet; no Lightning) → ``view`` (EPicker's 1024-wide
equalised image) and ``task`` (the Lightning task: losses per mode, continual terms) over
``network`` (backbone, neck, heads), ``targets`` (Gaussian heatmaps, offsets, sizes),
``losses``, ``decode`` (heatmap → picks, fiber linking) and ``exemplar`` (continual-learning
exemplar sets).
"""
