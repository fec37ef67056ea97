"""DynamicDet picker (PartiNet's detector, pickers.md §A–B), one folder on the trainers core.

``options`` (declaration, PartiNet's flags) → ``cli`` (``train dynamicdet step1|step2``,
``detect``) → ``train`` (two-step training, run files via ``report``, router calibration) and
``detect`` (routed inference, PartiNet's output files; no Lightning) over ``task`` (the
Lightning task), ``network`` (two backbones, composite connections, two anchor-free heads,
router), ``loss`` (SimOTA, CIoU/objectness, router loss), ``boxes`` (CIoU, NMS) and ``data``
(8-bit reading, letterbox, dataset yaml, training views).
"""
