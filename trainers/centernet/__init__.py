"""EPicker-like CenterNet picker (pickers.md §D).

``options`` (every option and its help) → ``run`` (train_centernet, pick_centernet) →
``task`` (the Lightning task: losses per mode, continual terms) over ``network`` (backbone,
neck, heads), ``targets`` (Gaussian heatmaps, offsets, sizes), ``losses``, ``decode``
(heatmap → picks, fiber linking) and ``exemplar`` (continual-learning exemplar sets).
"""
