"""Coded values of the review loop."""

from __future__ import annotations

from enum import StrEnum


class CuratedStatus(StrEnum):
    """Status of a landmark in the curated dataset.

    ``ok`` and ``needs_review`` come from the machine (the label dataset's statuses); the other
    three record a reviewer's decision.
    """

    OK = "ok"
    NEEDS_REVIEW = "needs_review"
    CORRECTED = "corrected"  # a reviewer moved (or placed) the landmark
    CONFIRMED = "confirmed"  # a reviewer said the position is right
    NOT_IN_VIEW = "not_in_view"  # a reviewer said the landmark is not in the image


class LabelSource(StrEnum):
    """Who decided a curated row: the machine labels or a reviewer's correction."""

    MACHINE = "machine"
    REVIEWER = "reviewer"


class ReviewAction(StrEnum):
    """One reviewer action on one landmark (one correction record each)."""

    MOVE = "move"  # new position given: corrected
    CONFIRM = "confirm"  # the shown position is right: confirmed
    ACCEPT_ALL = "accept_all"  # confirm, as part of accepting a whole image
    NOT_IN_VIEW = "not_in_view"  # no position: not_in_view
    REVERT = "revert"  # withdraw earlier decisions: the machine label counts again


#: The curated status each action leads to; ``None``: back to the machine's own status.
STATUS_AFTER: dict[ReviewAction, CuratedStatus | None] = {
    ReviewAction.MOVE: CuratedStatus.CORRECTED,
    ReviewAction.CONFIRM: CuratedStatus.CONFIRMED,
    ReviewAction.ACCEPT_ALL: CuratedStatus.CONFIRMED,
    ReviewAction.NOT_IN_VIEW: CuratedStatus.NOT_IN_VIEW,
    ReviewAction.REVERT: None,
}

#: Statuses whose landmark has a position that counts as right.
PLACED_STATUSES = (CuratedStatus.OK, CuratedStatus.CORRECTED, CuratedStatus.CONFIRMED)
