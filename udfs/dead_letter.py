"""Records for the dead-letter and late side outputs.

Both are compact JSON with sorted keys and carry where the input came from
(topic, partition, offset; null when the source does not expose them) so an
operator can find, fix and replay it.

dead letter:  reason, reason_code, detail, topic, partition, offset,
              original            the record value: UTF-8 text if it decodes,
                                  else base64 of the bytes
              original_encoding   "utf-8" or "base64"
              original_truncated  true if only the first `cap` bytes are kept
              original_bytes      the full length of the value
late:         late_by_ms, watermark, window_start, topic, partition, offset,
              event (the schema-v1 event, replayable as is)
"""

from __future__ import annotations

import base64
import json
from typing import Any

from udfs.validate import Article, reason_code

DEFAULT_CAP = 4096


def _dumps(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":"), sort_keys=True, ensure_ascii=False).encode("utf-8")


def dlq_record(
    raw: bytes,
    reason: str,
    topic: str | None,
    partition: int | None,
    offset: int | None,
    cap: int = DEFAULT_CAP,
    *,
    detail: str = "",
) -> bytes:
    """A dead-letter JSON record for a value that failed validation with `reason`."""
    truncated = len(raw) > cap
    kept = raw[:cap] if truncated else raw
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        original = base64.b64encode(kept).decode("ascii")
        encoding = "base64"
    else:
        # The whole value is valid UTF-8, so only a character split by the cap can
        # fail to decode; "ignore" drops exactly that partial tail.
        original = kept.decode("utf-8", "ignore")
        encoding = "utf-8"
    return _dumps(
        {
            "reason": reason,
            "reason_code": reason_code(reason),
            "detail": detail,
            "topic": topic,
            "partition": partition,
            "offset": offset,
            "original": original,
            "original_encoding": encoding,
            "original_truncated": truncated,
            "original_bytes": len(raw),
        }
    )


def late_record(
    article: Article,
    late_by_ms: int,
    watermark: int,
    topic: str | None,
    partition: int | None,
    offset: int | None,
    *,
    window_start: int | None = None,
) -> bytes:
    """A late-output JSON record for an article that arrived after its window's lateness."""
    return _dumps(
        {
            "late_by_ms": late_by_ms,
            "watermark": watermark,
            "window_start": window_start,
            "topic": topic,
            "partition": partition,
            "offset": offset,
            "event": article.to_event(),
        }
    )
