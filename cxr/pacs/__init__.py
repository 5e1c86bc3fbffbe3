"""The PACS round trip over DICOMweb (`cxr pacs`): client, pull, watch, results as DICOM SR and
Secondary Capture, decisions back, and the viewer link the Triage page shows."""
from cxr.pacs.viewer import viewer_link

__all__ = ["viewer_link"]
