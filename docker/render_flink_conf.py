"""Write the image's Flink config: flink-conf/config.yaml with docker/flink-conf-overlay.yaml on top.

Used at image build time only (docker/Dockerfile), so the cluster tuning has one
source, flink-conf/config.yaml, exactly as for the local stack.

    python render_flink_conf.py BASE OVERLAY OUT
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml


def render(base: dict, overlay: dict) -> dict:
    """`base` updated with `overlay`; an overlay key set to null is removed from the result."""
    merged = dict(base)
    for key, value in overlay.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    return merged


def main(argv: list[str]) -> int:
    base_path, overlay_path, out_path = (Path(a) for a in argv)
    base = yaml.safe_load(base_path.read_text()) or {}
    overlay = yaml.safe_load(overlay_path.read_text()) or {}
    out_path.write_text(yaml.safe_dump(render(base, overlay), sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
