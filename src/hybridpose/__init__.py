"""hybridpose: hybrid ANN-SNN perception on event cameras (event-based 2D/3D human pose)."""

__version__ = "0.1.0"
