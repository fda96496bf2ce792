"""The capture's process-wide parts, built from the Services (API and CLI alike)."""

from __future__ import annotations

import threading
from typing import Annotated

from fastapi import Depends, Request

from api.state import Services
from kb.capture.ingest import Capture, CapturePolicy, QuestionVectors

# Filing a thread under the wrong FAQ teaches the index a wrong phrasing and hides a content
# gap, with no editor in between; a missed match only costs a draft that an editor merges
# (and later look-alikes then follow the merge). So capture asks for more confidence than a
# suggestion does. Measured on StackFAQ (README, "Knowledge capture"): at 0.8, 92 % of the
# covered threads were on the right topic and 3 % of the gap threads were wrongly covered
# (at 0.5: 79 % and 16 %), and MRR@10 after publishing was the highest.
MIN_COVER_THRESHOLD = 0.8

_lock = threading.Lock()


def capture_policy(services: Services, *, cover_threshold: float | None = None) -> CapturePolicy:
    """The capture thresholds: the suggest threshold, or stricter (MIN_COVER_THRESHOLD)."""
    if cover_threshold is None:
        cover_threshold = max(services.policy.threshold, MIN_COVER_THRESHOLD)
    return CapturePolicy(cover_threshold=cover_threshold)


def build_capture(services: Services, *, policy: CapturePolicy | None = None) -> Capture:
    """A Capture over the process's index, confidence model and embedding model."""
    return Capture(
        index=services.index,
        calibration=services.calibration,
        vectors=QuestionVectors(services.embedder),
        policy=policy or capture_policy(services),
        secret=services.settings.pseudonym_secret,
    )


def get_capture(request: Request) -> Capture:
    """The app's Capture, made on first use and kept (its vector cache lives as long)."""
    state = request.app.state
    capture: Capture | None = getattr(state, "capture", None)
    if capture is None or capture.index is not state.services.index:
        with _lock:
            capture = getattr(state, "capture", None)
            if capture is None or capture.index is not state.services.index:
                capture = build_capture(state.services)
                state.capture = capture
    return capture


CaptureDep = Annotated[Capture, Depends(get_capture)]
