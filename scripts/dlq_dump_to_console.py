"""Turn `qchem-events dlq list --json` output into kafka-console-producer input lines:
headers<TAB>key<TAB>value, headers as name\x1fvalue pairs joined by \x1e.

Like `qchem-events dlq replay`, a record keeps its own headers and its origin identity
(qchem-origin-*: the dedup key), gets its replay count bumped, and loses the failure headers
of its last attempt (they are written again if it fails again)."""

from __future__ import annotations

import base64
import json
import sys


def text(value: str | None, encoding: str | None) -> str | None:
    if value is None:
        return None
    raw = base64.b64decode(value) if encoding == "base64" else value.encode()
    decoded = raw.decode("utf-8")  # UnicodeDecodeError: not representable, skip the record
    if any(sep in decoded for sep in ("\t", "\n", "\x1e", "\x1f")):
        raise UnicodeDecodeError("utf-8", raw, 0, 1, "contains a separator character")
    return decoded


KEEP = {
    "qchem-origin-topic",
    "qchem-origin-partition",
    "qchem-origin-offset",
    "qchem-origin-timestamp-ms",
}


def replay_headers(headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    kept = [(n, v) for n, v in headers if not n.startswith("qchem-") or n in KEEP]
    counts = [v for n, v in headers if n == "qchem-replay-count"]
    previous = int(counts[-1]) if counts and counts[-1].isdigit() else 0
    return [*kept, ("qchem-replay-count", str(previous + 1)), ("qchem-replay-id", "console")]


def main(path: str) -> int:
    with open(path, encoding="utf-8") as dump:
        records = json.load(dump)
    skipped = 0
    for record in records:
        try:
            encoding = record.get("headers_encoding", "utf-8")
            pairs = [
                (n, text(v, encoding) or "")
                for n, v in record.get("headers", [])
                if not n.startswith("qchem-") or n in KEEP or n == "qchem-replay-count"
            ]
            headers = [f"{name}\x1f{value}" for name, value in replay_headers(pairs)]
            key = text(record.get("key"), record.get("key_encoding")) or ""
            value = text(record.get("value"), record.get("value_encoding")) or ""
        except (UnicodeDecodeError, ValueError):
            skipped += 1
            print(
                f"skipped {record.get('topic')}:{record.get('partition')}:"
                f"{record.get('offset')} (not text)",
                file=sys.stderr,
            )
            continue
        print("\x1e".join(headers) + "\t" + key + "\t" + value)
    print(f"{len(records) - skipped} record(s) to replay, {skipped} skipped", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
