from ..probe.plots import *  # noqa: F401,F403  moved to keras_skipae.probe.plots; this shim goes when its importers move
