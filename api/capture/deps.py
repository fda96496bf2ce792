"""The capture's process-wide parts, built from the Services (API and CLI alike)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from api.state import Services
from api.web.lazy import Lazy
from kb.capture.ingest import Capture, CapturePolicy, QuestionVectors

# Filing a thread under the wrong FAQ teaches the index a wrong phrasing and hides a content
# gap, with no editor in between; a missed match only costs a draft that an editor merges
# (and later look-alikes then follow the merge). So capture asks for more confidence than a
# suggestion does; 0.8 was chosen on StackFAQ (docs/capture.md, "Covered or not").
MIN_COVER_THRESHOLD = 0.8


def capture_policy(services: Services, *, cover_threshold: float | None = None) -> CapturePolicy:
    """The capture thresholds (the suggest threshold, or stricter: MIN_COVER_THRESHOLD) and
    the site's public URLs."""
    if cover_threshold is None:
        cover_threshold = max(services.policy.threshold, MIN_COVER_THRESHOLD)
    return CapturePolicy(cover_threshold=cover_threshold, public_origins=public_origins(services))


def public_origins(services: Services) -> tuple[str, ...]:
    """The site's public URLs: FAQLOOP_BASE_URL and FAQLOOP_PUBLIC_ORIGINS."""
    s = services.settings
    listed = [s.base_url, *s.public_origins.split(",")]
    return tuple(dict.fromkeys(o.strip() for o in listed if o.strip()))


def build_capture(services: Services, *, policy: CapturePolicy | None = None) -> Capture:
    """A Capture over the process's index, confidence model and embedding model."""
    return Capture(
        index=services.index,
        calibration=services.calibration,
        vectors=QuestionVectors(services.embedder),
        policy=policy or capture_policy(services),
        secret=services.settings.pseudonym_secret,
    )


_captures: Lazy[Capture] = Lazy("capture", build_capture)


def get_capture(request: Request) -> Capture:
    """The app's Capture, made on first use and kept (its vector cache lives as long)."""
    return _captures.of(request)


CaptureDep = Annotated[Capture, Depends(get_capture)]
