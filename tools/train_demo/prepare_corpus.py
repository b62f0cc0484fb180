#!/usr/bin/env python3
"""Dump the KJV bible (Debian package bible-kjv) and write a clean train / held-out split.

  /usr/bin/python3 tools/train_demo/prepare_corpus.py --out /tmp/kjv-work

Output (in --out, not committed):
  kjv_raw.txt     what `bible "Gen1:1-Rev22:21"` printed
  train.txt       training chapters
  heldout.txt     held-out chapters: every 50th chapter in canonical order
                  (chapter index 49, 99, ... counting from 0 = Genesis 1)
  Chapter format: a heading line "Genesis 1", then one verse per line (verse
  numbers stripped, wrapped lines joined); chapters separated by a blank line.
"""

import argparse
import os
import re
import subprocess

HELDOUT_EVERY = 50
HEADING = re.compile(r"^(\S.*\S) (\d+)$")
VERSE = re.compile(r"^\s+(\d+) (.*)$")


def parse_chapters(raw):
    """[(heading, [verse text])] from the `bible` command's output."""
    chapters, verses, prev_blank = [], None, True
    for line in raw.splitlines():
        line = line.rstrip()
        if not line:
            prev_blank = True
            continue
        m = VERSE.match(line)
        if m:
            verses.append(m.group(2).strip())
        elif prev_blank and HEADING.match(line):
            verses = []
            chapters.append((line, verses))
        else:  # continuation of a wrapped verse
            verses[-1] += " " + line.strip()
        prev_blank = False
    return chapters


def chapter_text(heading, verses):
    return heading + "\n" + "\n".join(re.sub(r"\s+", " ", v) for v in verses) + "\n"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="/tmp/kjv-work")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    raw = subprocess.run(["bible", "Gen1:1-Rev22:21"], check=True, capture_output=True,
                         text=True).stdout
    with open(os.path.join(args.out, "kjv_raw.txt"), "w") as f:
        f.write(raw)
    chapters = parse_chapters(raw)
    train, held = [], []
    for idx, (h, vs) in enumerate(chapters):
        (held if idx % HELDOUT_EVERY == HELDOUT_EVERY - 1 else train).append(chapter_text(h, vs))
    for name, chs in (("train.txt", train), ("heldout.txt", held)):
        with open(os.path.join(args.out, name), "w") as f:
            f.write("\n".join(chs))
    nv = sum(len(vs) for _, vs in chapters)
    print(f"{len(chapters)} chapters, {nv} verses; train {len(train)} chapters "
          f"({sum(map(len, train))} chars), held-out {len(held)} chapters "
          f"({sum(map(len, held))} chars): " + ", ".join(
              chapters[i][0] for i in range(HELDOUT_EVERY - 1, len(chapters), HELDOUT_EVERY)))


if __name__ == "__main__":
    main()
