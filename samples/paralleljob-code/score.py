"""Sample entry script for samples/paralleljob.yaml (Azure ML's parallel run contract).

``init()`` runs once per process; ``run(mini_batch)`` gets a list of local file paths and returns one row
per file, which amlops appends to ``parallel_run_step.txt`` in mini-batch order.
"""

import os


def init():
    global VOWELS
    VOWELS = set("aeiou")


def run(mini_batch):
    rows = []
    for path in mini_batch:
        with open(path, encoding="utf-8") as f:
            text = f.read()
        score = sum(1 for ch in text.lower() if ch in VOWELS) / max(1, len(text))
        rows.append(f"{os.path.basename(path)} {score:.4f}")
    return rows
