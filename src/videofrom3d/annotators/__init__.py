"""Thin wrappers over estimators with local weights (``hed``: HED soft edges with a classical fallback).

Submodules are imported explicitly (``from videofrom3d.annotators.hed import make_edge_detector``) so that
importing this package costs nothing."""
