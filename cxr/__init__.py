"""CXR Review: multi-label chest X-ray classification of the 14 ChestX-ray14 findings.

A research and teaching tool, not a medical device: never use it for diagnosis.
"""
from cxr.labels import FINDINGS, NUM_CLASSES

__version__ = "0.1.0"
__all__ = ["FINDINGS", "NUM_CLASSES", "__version__"]
