from ..probe.statistics import *  # noqa: F401,F403  moved to keras_skipae.probe.statistics; this shim goes when its importers move
