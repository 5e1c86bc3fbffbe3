"""cxr.evaluation."""
