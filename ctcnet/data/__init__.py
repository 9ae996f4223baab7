"""Data: getting face images, preparing them, and turning them into training samples.

``errors`` (one hierarchy, :class:`~ctcnet.data.errors.DataError` at its root) ← ``fetch``
(downloads, checksums, archives) and ``imageio`` (decoding, square crops, PNG writes) ←
``prepare`` (CelebA, FFHQ, Helen), ``offline_faces`` (the registry face set) and
``official_weights`` (the authors' checkpoint). ``degradation`` is the reference ×8 degradation
and tensor conversion; ``datasets`` holds :class:`~ctcnet.data.datasets.FaceSRDataset`.
"""
