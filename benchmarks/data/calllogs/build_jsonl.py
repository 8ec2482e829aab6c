"""Turns checkins-labelled.src.txt (hand-written blocks) into checkins-labelled.jsonl. No extractor is involved:
the labels are copied as written. Run from this folder: python3 build_jsonl.py"""
import json, sys

def num(text):
    if text == "-": return None
    v = float(text)
    return int(v) if v.is_integer() else v

def opt(text): return None if text == "-" else text

records, current = [], None
for raw in open("checkins-labelled.src.txt", encoding="utf-8"):
    line = raw.rstrip("\n")
    if line.startswith("#") and not line.startswith("## "): continue
    if line.startswith("## "):
        rid, part = line[3:].split()
        current = {"id": rid, "part": part, "lines": [], "medications": [], "foods": [], "symptoms": []}
        records.append(current); continue
    if current is None or not line.strip(): continue
    kind, _, rest = line.partition(": ")
    fields = [f.strip() for f in rest.split("|")]
    if kind == "M" and len(fields) == 5:
        current["medications"].append({"name": fields[0], "dose": num(fields[1]), "unit": opt(fields[2]), "frequency": opt(fields[3]), "status": fields[4]})
    elif kind == "F" and len(fields) == 4:
        current["foods"].append({"item": fields[0], "quantity": num(fields[1]), "unit": opt(fields[2]), "meal": opt(fields[3])})
    elif kind == "S" and len(fields) == 4:
        assert fields[1] in ("present", "denied"), line
        current["symptoms"].append({"name": fields[0], "present": fields[1] == "present", "severity": opt(fields[2]), "onset": opt(fields[3])})
    elif kind in ("M", "F", "S"): sys.exit(f"{current['id']}: malformed label line: {line}")
    else: current["lines"].append(line)

ids = set()
with open("checkins-labelled.jsonl", "w", encoding="utf-8") as out:
    for r in records:
        assert r["id"] not in ids, r["id"]; ids.add(r["id"])
        transcript = "\n".join(r.pop("lines"))
        out.write(json.dumps({"id": r["id"], "part": r["part"], "transcript": transcript, "expected":
            {"medications": r["medications"], "foods": r["foods"], "symptoms": r["symptoms"]}}, ensure_ascii=False) + "\n")
print(f"{len(records)} transcripts")
