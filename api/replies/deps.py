"""The reply drafts' process-wide parts, built from the Services (API and CLI alike)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from api.settings import Settings
from api.state import Services
from api.web.lazy import Lazy
from kb.replies.channels import channel_limits, parse_channel_limits
from kb.replies.compose import ReplyPolicy
from kb.replies.outcomes import LearntThreshold, ThresholdLearner, ThresholdPolicy
from kb.suggest.service import SuggestPolicy


def _split(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


def reply_policy(settings: Settings) -> ReplyPolicy:
    """Brand, agent, signature, handles and channel limits from settings."""
    return ReplyPolicy(
        brand_name=settings.brand_name,
        brand_name_ja=settings.brand_name_ja,
        agent_name=settings.agent_name,
        signature=settings.reply_signature,
        brand_handles=tuple(h.lstrip("@") for h in _split(settings.brand_handles)),
        channel_limits=channel_limits(parse_channel_limits(settings.channel_limits)),
    )


def threshold_policy(settings: Settings, base: float) -> ThresholdPolicy:
    """How the abstention threshold follows outcomes, around `base`."""
    return ThresholdPolicy(
        base=base,
        enabled=settings.threshold_learning,
        target_acceptance=settings.threshold_target_acceptance,
        min_outcomes=settings.threshold_min_outcomes,
        max_shift=settings.threshold_max_shift,
        window_days=settings.threshold_window_days,
    )


@dataclass
class ReplyKit:
    """What suggest-with-reply needs beyond the Services: the policy and the learnt threshold."""

    services: Services
    policy: ReplyPolicy
    learner: ThresholdLearner

    def suggest_policy(self) -> SuggestPolicy:
        """The suggest policy with the threshold learnt from outcomes."""
        return self.learner.suggest_policy(self.services.policy, self.services.session_factory)

    def threshold(self) -> LearntThreshold:
        """The learnt threshold and its evidence."""
        return self.learner.current(self.services.session_factory)


def build_reply_kit(services: Services) -> ReplyKit:
    """A ReplyKit for the process's services."""
    settings = services.settings
    return ReplyKit(
        services=services,
        policy=reply_policy(settings),
        learner=ThresholdLearner(
            threshold_policy(settings, services.policy.threshold),
            refresh_seconds=settings.threshold_refresh_seconds,
        ),
    )


_reply_kits: Lazy[ReplyKit] = Lazy("reply_kit", build_reply_kit)


async def get_reply_kit(request: Request) -> ReplyKit:
    """The app's ReplyKit, made on first use and kept (its learnt threshold lives as long)."""
    return _reply_kits.of(request)


ReplyKitDep = Annotated[ReplyKit, Depends(get_reply_kit)]
