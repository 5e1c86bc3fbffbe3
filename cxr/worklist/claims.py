"""Reviewers' claims on cases: opening a case claims it for a few minutes so two reviewers never
work on one case unawares; the holder renews it while working; it expires by itself.

    >>> claim = wl.claim_case(12, "dr a")        # Claim(12, 'dr a', '...', mine=True)
    >>> wl.claim_case(12, "dr b").mine           # False: dr a holds it; nothing changed
    >>> wl.release_claim(12, "dr a")

A claim is advice, not a lock on decisions: another reviewer may still open the case read-only
(the page shows "being reviewed by X"), and record_decision's expected_decisions is what keeps a
decision on the case that was shown.
"""
from __future__ import annotations

from typing import NamedTuple

import sqlalchemy as sa

from cxr.worklist.schema import claims

CLAIM_MINUTES = 5


class Claim(NamedTuple):
    case_id: int
    holder: str
    expires_at: str  # ISO UTC
    mine: bool       # the reviewer asking holds it (taken or renewed by this call)


class ClaimsMixin:
    def claim_case(self, case_id: int, reviewer: str, minutes: float = CLAIM_MINUTES) -> Claim:
        """Take the claim on a case if it is unclaimed or its claim expired, renew it if
        `reviewer` holds it; otherwise return the other holder's claim (mine=False)."""
        from cxr.worklist.store import insert_ignore

        reviewer = str(reviewer).strip()
        if not reviewer:
            raise ValueError("a claim needs the reviewer's name")
        now, until = self._now(lease=True), self._now(plus_seconds=float(minutes) * 60, lease=True)
        with self._write() as con:
            self._lock_case(con, case_id)
            taken = con.execute(insert_ignore(claims, self.url.get_backend_name()).values(
                case_id=int(case_id), holder=reviewer, expires_at=until)).rowcount
            if taken == 1:
                return Claim(int(case_id), reviewer, until, True)
            holder, expires = con.execute(
                sa.select(claims.c.holder, claims.c.expires_at)
                .where(claims.c.case_id == int(case_id)).with_for_update()).one()
            if holder != reviewer and expires > now:
                return Claim(int(case_id), holder, expires, False)
            con.execute(claims.update().where(claims.c.case_id == int(case_id))
                        .values(holder=reviewer, expires_at=until))
            return Claim(int(case_id), reviewer, until, True)

    def release_claim(self, case_id: int, reviewer: str) -> None:
        """Drop `reviewer`'s claim on the case (someone else's claim is left as it is)."""
        with self._write() as con:
            con.execute(claims.delete().where(claims.c.case_id == int(case_id),
                                              claims.c.holder == str(reviewer).strip()))
