from ..probe.features import *  # noqa: F401,F403  moved to keras_skipae.probe.features; this shim goes when its importers move
