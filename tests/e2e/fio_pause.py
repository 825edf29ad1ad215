#!/usr/bin/env python3
"""The longest IO completion latency fio saw (the application's longest
pause), in ms, from fio's JSON output: fio_pause.py [FILE] (default stdin).

Text before the JSON (fio's own messages) is skipped. A verify_only job
issues no writes, yet fio accounts its skipped writes with meaningless
completion times (seconds longer than the job ran), so only its reads
count."""
import json
import sys

text = open(sys.argv[1]).read() if len(sys.argv) > 1 else sys.stdin.read()
job = json.loads(text[text.index("{"):])["jobs"][0]
dirs = ["read"]
if job.get("job options", {}).get("verify_only", "0") in ("0", "false"):
    dirs.append("write")
print(max(job[d]["clat_ns"]["max"] for d in dirs) // 1000000)
