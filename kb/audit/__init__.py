"""The audit trail: who did what to which target, recorded with the change itself."""

from kb.audit.summaries import (
    draft_state,
    draft_summary,
    entry_state,
    entry_summary,
    flag_state,
    flag_summary,
    new_entries,
)
from kb.audit.trail import Actor, list_events, record_action

__all__ = [
    "Actor",
    "draft_state",
    "draft_summary",
    "entry_state",
    "entry_summary",
    "flag_state",
    "flag_summary",
    "list_events",
    "new_entries",
    "record_action",
]
