"""Deduplication of articles seen in several feeds or on several polls.

Keyed by `article_id`; the first copy to reach the operator wins and later copies
are dropped (counted, not dead-lettered: a duplicate is normal, not bad input).
The operator's only state is one bool per article id; expiry is Flink's state TTL,
not a decision made here, so this step stays a pure function.

Dedup runs *before* the lateness check: the first copy decides.  If the first copy
was late beyond lateness it goes to the late output, and later copies of it are
duplicates, not late (the oracle in tests/oracle.py models the same order).
"""

from __future__ import annotations

from udfs.validate import Article


def dedup_step(seen: bool, article: Article) -> tuple[bool, bool]:
    """(seen, article) -> (new_seen, emit): emit only the first copy of an article_id."""
    del article  # the decision depends on the key alone; the article is passed for symmetry with other steps
    return True, not seen
