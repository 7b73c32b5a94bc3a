"""Precision / recall of the default rule pack on Reuters-21578 topics (earn, acq).

Runs the real command (`keynews rules test`) as a subprocess over the labeled documents, so
what is measured is what operators run. `earn` is predicted when a rule of category earnings
or capital-return matched, `acq` when a rule of category m&a matched. The documents are split
in two random halves (fixed seed) to show the figures are not tuned to one half.

    .venv/bin/python bench/rules_quality.py [--rules rules/] [--show-errors 10]
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT.parent / "shared" / "corpus" / "labeled" / "reuters21578_dev.jsonl"
LABELS: dict[str, frozenset[str]] = {
    "earn": frozenset({"earnings", "capital-return"}),
    "acq": frozenset({"m&a"}),
}
TARGETS: dict[str, tuple[float, float]] = {"earn": (0.96, 0.95), "acq": (0.90, 0.88)}


def _command() -> list[str]:
    probe = subprocess.run(
        [sys.executable, "-m", "daemon", "rules", "--help"], cwd=ROOT, capture_output=True, text=True
    )
    if probe.returncode == 0:
        return [sys.executable, "-m", "daemon", "rules", "test"]
    return [sys.executable, "-m", "daemon.cli_rules", "test"]


def _prf(tp: int, fp: int, fn: int) -> tuple[float, float, float]:
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return p, r, f


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rules", default=str(ROOT / "rules"))
    ap.add_argument("--corpus", default=str(CORPUS))
    ap.add_argument("--show-errors", type=int, default=0, help="print N false positives/negatives per label")
    args = ap.parse_args()

    docs = []
    with open(args.corpus, encoding="utf-8") as fh:
        for line in fh:
            d = json.loads(line)
            if d.get("has_topics") == "YES":
                docs.append(d)
    with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False, encoding="utf-8") as tmp:
        for d in docs:
            tmp.write(json.dumps({"id": d["newid"], "title": d.get("title", ""), "body": d.get("body", "")}) + "\n")
        tmp_path = tmp.name
    cmd = [*_command(), "--input", tmp_path, "--rules", args.rules]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    elapsed = time.perf_counter() - t0
    Path(tmp_path).unlink(missing_ok=True)
    if proc.returncode != 0:
        print(proc.stderr, file=sys.stderr)
        return proc.returncode
    predicted: dict[int, set[str]] = {}
    for line in proc.stdout.splitlines():
        rec = json.loads(line)
        predicted[int(rec["id"])] = set(rec["categories"])

    print(f"documents: {len(docs)} (has_topics=YES), command: {' '.join(cmd[1:4])}…, {elapsed:.2f}s")
    halves = {d["newid"]: random.Random(d["newid"] * 7919 + 17).random() < 0.5 for d in docs}
    ok = True
    for label, cats in LABELS.items():
        rows = []
        for part in ("all", "half A", "half B"):
            tp = fp = fn = 0
            for d in docs:
                if part != "all" and halves[d["newid"]] != (part == "half A"):
                    continue
                truth = label in d.get("topics", [])
                pred = bool(predicted.get(d["newid"], set()) & cats)
                tp += truth and pred
                fp += pred and not truth
                fn += truth and not pred
            p, r, f = _prf(tp, fp, fn)
            rows.append((part, p, r, f, tp, fp, fn))
        tp_, tr_ = TARGETS[label]
        for part, p, r, f, tp, fp, fn in rows:
            print(f"{label:5s} {part:7s} P={p:.3f} R={r:.3f} F1={f:.3f}  (tp={tp} fp={fp} fn={fn})")
        p_all, r_all = rows[0][1], rows[0][2]
        met = p_all >= tp_ and r_all >= tr_
        ok &= met
        print(f"{label:5s} target P>={tp_} R>={tr_}: {'met' if met else 'NOT met'}")
        if args.show_errors:
            fps = [d for d in docs if predicted.get(d["newid"], set()) & cats and label not in d.get("topics", [])]
            fns = [d for d in docs if not predicted.get(d["newid"], set()) & cats and label in d.get("topics", [])]
            for kind, lst in (("FP", fps), ("FN", fns)):
                for d in lst[: args.show_errors]:
                    print(
                        f"  {kind} {d['newid']} {d.get('topics')} {d.get('title', '')!r} | {d.get('body', '')[:150]!r}"
                    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
