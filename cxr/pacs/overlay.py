"""A Secondary Capture of the film with the Grad-CAM of its top findings and the warning burned
into the pixels (`cxr pacs pull --secondary-capture`), as its own series "CXR Review overlay":
a PACS viewer without SR support still shows something honest.

    >>> sc = secondary_capture(source, image, model, pred, top_k=3)   # highdicom SCImage

One tile per finding (cxr.explain.cam_maps and overlay, as `cxr predict --cam` draws them),
side by side, each labelled with the finding, its probability and call, under a banner that
says "research use only, not for diagnosis" (and, first, "OUT OF DISTRIBUTION" for such a
film). Tiles are at least TILE pixels high so that the text is legible on any film.
"""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from pydicom.dataelem import DataElement

from cxr.pacs.sr import ACCESSION, MANUFACTURER, OOD_FIRST, WARNING

TILE = 384
OVERLAY_SERIES = "CXR Review overlay"


def top_findings(model, pred, k: int) -> list[int]:
    scores = pred.calibrated if pred.calibrated is not None else pred.probs
    return [int(i) for i in np.argsort(-np.asarray(scores))[:k]]


def panel(image, model, pred, top_k: int = 3, opacity: float = 0.4) -> np.ndarray:
    """HxWx3 uint8: the banner over the top-k overlays, side by side."""
    from cxr.explain import cam_maps, overlay
    from cxr.predict import model_input

    labels = list(model.labels)
    top = top_findings(model, pred, top_k)
    x = model_input(model, image.pixels).to(next(model.parameters()).device)
    maps = cam_maps(model, x, [labels[i] for i in top], size=image.pixels.shape)
    h, w = image.pixels.shape
    scale = max(1.0, TILE / h)
    size = (round(w * scale), round(h * scale))
    font = _font(max(12, size[1] // 24))
    tiles = []
    for i in top:
        tile = Image.fromarray(overlay(image.pixels, maps[labels[i]], opacity)).resize(size)
        p = pred.calibrated[i] if pred.calibrated is not None else pred.probs[i]
        call = f", {pred.calls[i]}" if pred.calls is not None else ""
        _text(ImageDraw.Draw(tile), (4, size[1] - font.size - 8), f"{labels[i]} {p:.2f}{call}",
              font)
        tiles.append(tile)
    banner_h = 2 * font.size + 16
    out = Image.new("RGB", (size[0] * len(tiles), size[1] + banner_h), "black")
    for k, tile in enumerate(tiles):
        out.paste(tile, (k * size[0], banner_h))
    draw = ImageDraw.Draw(out)
    first = f"{OOD_FIRST}: results not reliable" if pred.ood_flag else "CXR Review (Grad-CAM)"
    _text(draw, (4, 4), first, font, "red" if pred.ood_flag else "white")
    _text(draw, (4, 8 + font.size), WARNING.upper(), font, "yellow")
    return np.asarray(out)


def secondary_capture(source, image, model, pred, top_k: int = 3,
                      keep_accession: bool = False, series_uid: str | None = None):
    import highdicom as hd
    from pydicom.uid import generate_uid

    pixels = panel(image, model, pred, top_k)
    sc = hd.sc.SCImage.from_ref_dataset(
        ref_dataset=source, pixel_array=pixels, photometric_interpretation="RGB",
        bits_allocated=8, coordinate_system="PATIENT", series_instance_uid=series_uid
        or generate_uid(), series_number=991, sop_instance_uid=generate_uid(),
        instance_number=1, manufacturer=MANUFACTURER, series_description=OVERLAY_SERIES,
        patient_orientation=("L", "F"))
    sc.BurnedInAnnotation = "YES"
    sc.ImageComments = f"{OVERLAY_SERIES}: {WARNING}"
    # an identifier: only on request (highdicom may or may not copy it; say which, here)
    # a new element: highdicom shares the source's element objects, and setting the value
    # of a shared one would change the source dataset too
    accession = str(source.get("AccessionNumber", "") or "") if keep_accession else ""
    sc[ACCESSION] = DataElement(ACCESSION, "SH", accession)
    return sc


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: a fixed bitmap font
        return ImageFont.load_default()


def _text(draw, xy, text, font, fill="white") -> None:
    draw.text(xy, text, font=font, fill=fill, stroke_width=2, stroke_fill="black")
