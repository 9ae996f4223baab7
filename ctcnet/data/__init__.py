"""Data: getting face images, preparing them, and turning them into training samples.

``fetch`` (downloads, checksums, archives) and ``imageio`` (decoding, square crops, PNG writes) ←
``prepare`` (CelebA, FFHQ, Helen) and ``offline_faces`` (the registry face set). ``degradation``
is the reference ×8 degradation and augmentation, ``augment`` a stronger augmentation;
``datasets`` holds :class:`~ctcnet.data.datasets.FaceSRDataset`. Errors are those of
:mod:`ctcnet.errors` (:class:`~ctcnet.errors.DataError` and its kinds); tensors are made by
:mod:`ctcnet.pixels`. Nothing here imports the model code above it.
"""
