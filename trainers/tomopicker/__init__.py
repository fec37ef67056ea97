"""cet_pick / MiLoPYP's particle detector for cryo-ET (the refinement module), on the shared
trainers core: ``volume`` (tomograms as cet_pick loads them, the axis orders), ``targets``
(3-D Gaussian heatmaps, −1 = unlabelled), ``losses`` (nnPU focal loss, debiased contrastive
regularisation with voxel sampling, consistency), ``network`` (2-D U-Net per slice + dilated
3-D head), ``crops`` (training crops and their flipped views), ``decode`` (3-D NMS, top-K,
cut-offs), ``task``, ``train``, ``pick``, ``files`` (``cryoglean tomo-files``) and ``options``
(the declaration the table lists).
"""
