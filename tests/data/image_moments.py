"""Shape measurements the transform tests share (a helper module, not a test file)."""
import numpy as np


def orientation(x: np.ndarray) -> float:
    """Angle in degrees of the principal axis of the pixels brighter than 0.3 (image moments)."""
    ys, xs = np.nonzero(x > 0.3)
    w = x[ys, xs]
    xs, ys = xs - np.average(xs, weights=w), ys - np.average(ys, weights=w)
    mu20, mu02, mu11 = (np.average(v, weights=w) for v in (xs * xs, ys * ys, xs * ys))
    return float(np.degrees(0.5 * np.arctan2(2 * mu11, mu20 - mu02)))
