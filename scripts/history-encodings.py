#!/usr/bin/env python3
"""Sizes of a history.db's events under other encodings (docs/performance.md, "Execution history").

    scripts/history-encodings.py HOME/history.db

Reads every history block, puts `$ref`/`$edit` payloads back inline, and compresses with the
`zstd` command at level 1, as the writer does: each block whole (the stored layout), and each
execution's segment on its own (a block per execution and commit), with and without the payload
references. Needs the `zstd` command; takes one to three minutes for 10,000 events.
"""
import json
import os
import sqlite3
import subprocess
import sys
import tempfile


def compressed_size(chunks):
    """Total size of each chunk compressed on its own with `zstd -1`."""
    with tempfile.TemporaryDirectory() as d:
        for i, chunk in enumerate(chunks):
            with open(f"{d}/{i}", "wb") as f:
                f.write(chunk)
        subprocess.run(f"cd {d} && ls | xargs zstd -1 -q --rm -f", shell=True, check=True)
        return sum(os.path.getsize(f"{d}/{f}") for f in os.listdir(d))


def inline(arn, line, payloads):
    """The event line with its payload references resolved (payloads: (arn, id) -> details)."""
    event = json.loads(line)
    details = event[5]
    if isinstance(details, dict):
        for field in ("input", "output", "parameters"):
            value = details.get(field)
            if isinstance(value, dict) and ("$ref" in value or "$edit" in value):
                target = value.get("$ref") or value["$edit"]
                text = payloads[(arn, target["event"])][target["field"]]
                if "$edit" in value:
                    b = text.encode()
                    keep_end = len(b) - target["keepEnd"]
                    text = (b[: target["keepStart"]] + target["text"].encode() + b[keep_end:]).decode()
                details[field] = text
        payloads[(arn, event[0])] = details
    return json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"


def main(path):
    db = sqlite3.connect(path)
    segments = {}
    for arn, block, start, length in db.execute(
        "SELECT arn, block, start, length FROM sfn_history_segments ORDER BY block, start"
    ):
        segments.setdefault(block, []).append((arn, start, length))
    payloads = {}
    stored, blocks, segs = 0, {"refs": [], "inline": []}, {"refs": [], "inline": []}
    for block, data in db.execute("SELECT id, data FROM sfn_history_blocks ORDER BY id"):
        stored += len(data)
        raw = subprocess.run(["zstd", "-d", "-c"], input=data, capture_output=True, check=True).stdout
        refs_block, inline_block = [], []
        for arn, start, length in segments.get(block, []):
            lines = [l + b"\n" for l in raw[start : start + length].split(b"\n") if l]
            segs["refs"].append(b"".join(lines))
            segs["inline"].append(b"".join(inline(arn, l, payloads) for l in lines))
            refs_block.append(segs["refs"][-1])
            inline_block.append(segs["inline"][-1])
        blocks["refs"].append(b"".join(refs_block))
        blocks["inline"].append(b"".join(inline_block))
    mb = lambda n: f"{n / 1e6:.1f} MB"
    print(f"history.db {mb(os.path.getsize(path))}; blocks as stored {mb(stored)}")
    for form in ("refs", "inline"):
        raw = sum(len(b) for b in blocks[form])
        print(
            f"{form}: {mb(raw)} of lines; zstd -1 per block {mb(compressed_size(blocks[form]))}, "
            f"per execution segment {mb(compressed_size(segs[form]))}"
        )


if __name__ == "__main__":
    main(sys.argv[1])
