"""cxr.models."""
