from ..probe.reconstruction import *  # noqa: F401,F403  moved to keras_skipae.probe.reconstruction; this shim goes when its importers move
