"""Online consent changes and erasures applied on top of a batch rule context.

``POST /v1/events`` records ``consent_update`` events and ``DELETE /v1/customers/{id}``
erasures in the state store (:mod:`serving.state`); both must count on the very next
recommendation call, long before the next batch context is built. :func:`online_view`
reads them for the recipients of one call and returns what the rules should see:

- a context whose consent flags carry the online values (a shallow copy, with only the
  consent arrays copied, and only when a recipient's online consent differs);
- the recipients with every erased customer replaced by a placeholder id that no context
  knows, so an erased customer gets exactly the unknown-recipient answer (the placement's
  popular fallback, or ``unknown_customer`` on a channel that needs consent).

:meth:`OnlineView.restore` puts the real ids back into the results.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np

from features import contract as c
from serving.context import RecContext
from serving.next_best_offer import RecipientResult
from serving.state import ConsentOverride

#: Placeholder ids of erased recipients start with this (NUL: never a real customer id).
ERASED_PREFIX = "\x00erased-"
#: Recipient id that no context knows: asked for the unknown-recipient answer.
UNKNOWN_RECIPIENT = "\x00unknown-recipient"


@runtime_checkable
class OnlineControls(Protocol):
    """The part of a state store that holds consent changes and erasures."""

    def erased(self, customer_ids: Sequence[str] | None = None) -> set[str]:
        """Erased customers among ``customer_ids`` (None: all)."""
        ...

    def consent_overrides(
        self, customer_ids: Sequence[str] | None = None
    ) -> dict[str, ConsentOverride]:
        """Consent recorded online per customer (None: all)."""
        ...


@dataclass(frozen=True)
class OnlineView:
    """Recipients and context of one call with online consent and erasures applied.

    Attributes
    ----------
    customer_ids : list of str
        Recipients in input order, erased ones replaced by placeholders.
    context : RecContext
        The batch context, or a copy with online consent flags.
    original : dict of str to str
        Placeholder -> real customer id.
    """

    customer_ids: list[str]
    context: RecContext
    original: dict[str, str] = field(default_factory=dict)

    def restore(self, results: list[RecipientResult]) -> list[RecipientResult]:
        """``results`` with the real customer ids in place of the placeholders."""
        if not self.original:
            return results
        return [
            dataclasses.replace(r, customer_id=self.original[r.customer_id])
            if r.customer_id in self.original
            else r
            for r in results
        ]


def consent_context(context: RecContext, overrides: dict[str, ConsentOverride]) -> RecContext:
    """``context`` with the online consent of ``overrides`` (itself when nothing changes).

    Parameters
    ----------
    context : RecContext
    overrides : dict of str to ConsentOverride
        Customer id -> consent recorded online (``None`` for a channel: keep the batch flag).

    Returns
    -------
    RecContext
        A shallow copy whose ``consent`` arrays are copies with the online values, or
        ``context`` unchanged when no known customer's flag differs.
    """
    if not overrides:
        return context
    ids = list(overrides)
    codes = context.customer_codes(ids)
    changed: dict[str, np.ndarray] = {}
    for col in (c.CONSENT_EMAIL, c.CONSENT_ADS):
        flags = context.consent[col]
        for cid, code in zip(ids, codes, strict=True):
            value = getattr(overrides[cid], col)
            if code < 0 or value is None or bool(flags[code]) == value:
                continue
            if col not in changed:
                changed[col] = flags.copy()
            changed[col][code] = value
    if not changed:
        return context
    view = copy.copy(context)
    view.consent = {**context.consent, **changed}
    return view


def online_view(
    customer_ids: Sequence[str], context: RecContext, state: object | None
) -> OnlineView:
    """Apply the online consent changes and erasures of ``state`` to one call.

    Parameters
    ----------
    customer_ids : sequence of str
        Recipients of the call.
    context : RecContext
        Batch rule context.
    state : object or None
        A state store; without :class:`OnlineControls` methods nothing is applied.

    Returns
    -------
    OnlineView
    """
    ids = [str(x) for x in customer_ids]
    if not isinstance(state, OnlineControls):
        return OnlineView(ids, context)
    erased = state.erased(ids)
    original: dict[str, str] = {}
    if erased:
        placeholder = {cid: f"{ERASED_PREFIX}{k}" for k, cid in enumerate(sorted(erased))}
        original = {v: k for k, v in placeholder.items()}
        ids = [placeholder.get(cid, cid) for cid in ids]
    overrides = state.consent_overrides([i for i in ids if i not in original])
    return OnlineView(ids, consent_context(context, overrides), original)


__all__ = [
    "UNKNOWN_RECIPIENT",
    "ERASED_PREFIX",
    "OnlineControls",
    "OnlineView",
    "consent_context",
    "online_view",
]
