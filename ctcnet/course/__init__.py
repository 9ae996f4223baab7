"""Helpers for the CTCNet course (the Jupyter Book in ``book/``), kept apart from the library.

Nothing in the core library (model, data, training, evaluation, upscaling, CLI) or in
``ctcnet.analysis`` imports this package: the imports run course -> analysis -> core.
Its modules need the ``book`` extra (matplotlib, ipywidgets, ...):

* :mod:`ctcnet.course.book`: the chapters' shared set-up (mode banner, faces, the shipped model);
* :mod:`ctcnet.course.figures`: data-flow tracing and drawing for the architecture chapters;
* :mod:`ctcnet.course.schematic`: the schematic of any one module, drawn from its forward pass
  (its layout engine is the private :mod:`ctcnet.course._dataflow`);
* :mod:`ctcnet.course.plotting`: figures for the analysis chapters;
* :mod:`ctcnet.course.explorer`: the chapter-15 interactive explorer.
"""
