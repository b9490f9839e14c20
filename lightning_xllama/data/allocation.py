"""Allocation files: how many pairs (or what weight) each stream of a MuIT mixture gets.

``scaling allocate`` writes them (:func:`lightning_xllama.scaling.allocation.write_allocation`);
the MuIT data module reads them here, without the fitting stack (scipy, matplotlib).
"""

from __future__ import annotations

from pathlib import Path
from typing import Union

import yaml

ALLOCATION_HEADER = "# lightning_xllama allocation file\n"


def read_allocation(path: Union[str, Path]) -> dict:
    """Read and validate an allocation file; errors name the file and the stream's index."""
    try:
        document = yaml.safe_load(Path(path).read_text())
    except yaml.YAMLError as error:
        raise ValueError(f"{path}: not valid YAML: {error}") from None
    if not isinstance(document, dict) or document.get("kind") != "allocation":
        found = document.get("kind") if isinstance(document, dict) else type(document).__name__
        raise ValueError(f"{path}: expected a mapping with 'kind: allocation', found {found!r}")
    streams = document.get("streams")
    if not isinstance(streams, list) or not streams:
        raise ValueError(f"{path}: 'streams' must be a non-empty list of stream entries")
    for position, stream in enumerate(streams):
        where = f"{path}: streams[{position}]"
        if not isinstance(stream, dict):
            raise ValueError(
                f"{where}: expected a mapping (kind, lang, count or weight), got {stream!r}"
            )
        for key in ("kind", "lang"):
            if not isinstance(stream.get(key), str) or not stream[key]:
                raise ValueError(f"{where}: missing {key!r} (a non-empty string)")
        if "count" not in stream and "weight" not in stream:
            raise ValueError(f"{where}: needs a 'count' (pairs) or a 'weight'")
        count, weight = stream.get("count", 0), stream.get("weight", 0)
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise ValueError(f"{where}: count must be a non-negative whole number, got {count!r}")
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not weight >= 0:
            raise ValueError(f"{where}: weight must be a non-negative number, got {weight!r}")
    counts = [stream["count"] for stream in streams if "count" in stream]
    if "budget" in document and len(counts) == len(streams) and sum(counts) != document["budget"]:
        raise ValueError(
            f"{path}: stream counts add up to {sum(counts)}, not the budget {document['budget']}"
        )
    return document
