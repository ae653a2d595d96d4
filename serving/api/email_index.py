"""Look up a customer by e-mail address without keeping the addresses.

An ESP knows the recipient's address, not our customer id. :class:`EmailIndex` holds the
SHA-256 digests (32 bytes) of the normalised addresses (trimmed, lower-cased), sorted,
beside the customer id of each: a look-up hashes the normalised query and binary-searches
the digests. The raw addresses are dropped once hashed; they are never logged.
"""

from __future__ import annotations

import hashlib
import logging

import numpy as np
import pandas as pd

from features import contract as c
from serving.api.audience import normalise_email

log = logging.getLogger(__name__)


def email_digest(normalised: str) -> bytes:
    """SHA-256 digest (32 bytes) of an already normalised address."""
    return hashlib.sha256(normalised.encode("utf-8")).digest()


class EmailIndex:
    """Normalised e-mail address -> customer id.

    Parameters
    ----------
    customers : DataFrame
        ``customer_id`` and ``email`` (missing or unusable addresses are skipped). When
        two customers share an address, the first in table order is kept.
    """

    def __init__(self, customers: pd.DataFrame) -> None:
        digests: list[bytes] = []
        ids: list[str] = []
        if c.EMAIL in customers.columns:
            for cid, raw in zip(
                customers[c.CUSTOMER_ID].astype(str), customers[c.EMAIL], strict=True
            ):
                email = normalise_email(raw)
                if email is not None:
                    digests.append(email_digest(email))
                    ids.append(cid)
        keys = np.array(digests, dtype="S32")
        order = np.argsort(keys, kind="stable")
        keys = keys[order]
        first = np.r_[True, keys[1:] != keys[:-1]] if len(keys) else np.zeros(0, dtype=bool)
        self.shared = int((~first).sum())
        self._keys = keys[first]
        self._ids = np.array(ids, dtype=object)[order][first]
        if self.shared:
            log.warning("%d customer(s) share an e-mail address with another", self.shared)

    def __len__(self) -> int:
        return len(self._keys)

    def customer_id(self, email: str) -> str | None:
        """Customer id of ``email`` (normalised here), or None when unknown or unusable."""
        norm = normalise_email(email)
        if norm is None or not len(self._keys):
            return None
        key = np.array([email_digest(norm)], dtype="S32")
        at = int(np.searchsorted(self._keys, key)[0])
        if at < len(self._keys) and self._keys[at] == key[0]:
            return str(self._ids[at])
        return None


__all__ = ["EmailIndex", "email_digest"]
