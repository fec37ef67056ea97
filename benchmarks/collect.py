"""Write ../BENCHMARKS.md: the summary below followed by every results/<name>.md, in flow order.

Run after updating a results file: ``.venv/bin/python benchmarks/collect.py``.
"""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent
ORDER = ["seams", "harvest", "crawl_scale", "cryosparc", "relion_star", "recentre", "formats",
         "export", "scale", "counts", "startup", "denoise", "centernet", "dynamicdet", "tomo_synth",
         "tomopicker", "report", "reliability"]


def main() -> None:
    summary = (HERE / "summary.md").read_text()
    parts = [summary.rstrip() + "\n"]
    names = ORDER + sorted(p.stem for p in (HERE / "results").glob("*.md") if p.stem not in ORDER)
    for name in names:
        path = HERE / "results" / f"{name}.md"
        if not path.exists():
            continue
        text = path.read_text().strip()
        # demote the file's headings one level under this document's title
        lines = ["#" + ln if ln.startswith("#") else ln for ln in text.splitlines()]
        parts.append("\n".join(lines) + "\n")
    (HERE.parent / "BENCHMARKS.md").write_text("\n\n".join(parts))
    print(f"wrote {HERE.parent / 'BENCHMARKS.md'}")


if __name__ == "__main__":
    main()
