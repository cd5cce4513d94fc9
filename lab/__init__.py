"""facelab: a privacy-preserving face-data lab harness on synthetic faces."""

__version__ = "0.1.0"
__all__ = ["__version__"]
