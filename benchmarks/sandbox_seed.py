"""Benchmark: what a local sandbox's repository costs, seeded from a pack of the host mirror
(app/sandbox/seed.py) against a `git clone --no-local` of the mirror (what every sandbox paid before).

Makes a synthetic repository (`--files` text files of about 4 KB), serves it as a mirror would hold
it, then creates `--sandboxes` sandboxes one after another through the real host-side code (the
first one also writes the pack of the mirror's state) and, for comparison, as many plain
`git clone --no-local` + checkout copies of the same mirror. Prints wall time and CPU (this process
and its git children) per sandbox for both.

    python benchmarks/sandbox_seed.py [--files 3000] [--sandboxes 5]
"""
from __future__ import annotations

import argparse
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _cpu() -> float:
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def _repository(path: Path, files: int) -> None:
    rnd = random.Random(1)
    words = ["".join(rnd.choice("abcdefghij") for _ in range(6)) for _ in range(5000)]
    for n in range(files):
        f = path / f"pkg{n // 50}" / f"m{n % 50}.py"
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text("\n".join(" ".join(rnd.choice(words) for _ in range(12)) for _ in range(60)))
    git = ["git", "-C", str(path), "-c", "user.name=b", "-c", "user.email=b@example.com"]
    subprocess.run(["git", "init", "-q", "-b", "main", str(path)], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "one"], check=True)


def _measure(label: str, count: int, make) -> None:
    wall, cpu = time.perf_counter(), _cpu()
    for i in range(count):
        make(i)
    wall, cpu = time.perf_counter() - wall, _cpu() - cpu
    print(f"{label:34s} {wall / count:6.2f} s wall, {cpu / count:6.2f} CPU-s per sandbox")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=3000)
    ap.add_argument("--sandboxes", type=int, default=5)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="omoi-bench-seed-"))
    os.environ["OMOI_MIRROR_DIR"] = str(tmp / "mirrors")
    try:
        from app.sandbox.base import split_repo_url
        from app.sandbox.clone import Mirror, host_clone

        _repository(tmp / "source", args.files)
        url = "https://github.invalid/bench/seed.git"  # never reached: the mirror holds the commit
        mirror = Mirror(url)
        subprocess.run(["git", "clone", "-q", "--mirror", str(tmp / "source"), str(mirror.path)], check=True)
        head = subprocess.run(["git", "-C", str(mirror.path), "rev-parse", "main"], capture_output=True, text=True,
                              check=True).stdout.strip()
        size = sum(f.stat().st_size for f in mirror.path.rglob("*") if f.is_file()) >> 20
        print(f"repository: {args.files} files, mirror {size} MB; {args.sandboxes} sandboxes each way")

        def seeded(i: int) -> None:
            root = tmp / f"seeded-{i}"
            (root / "home").mkdir(parents=True)
            host_clone(split_repo_url(url), head, root / "work", root / "home")
            shutil.rmtree(root)

        def cloned(i: int) -> None:
            root = tmp / f"cloned-{i}"
            subprocess.run(["git", "clone", "-q", "--no-checkout", "--no-hardlinks", "--no-local", str(mirror.path),
                            str(root)], check=True)
            subprocess.run(["git", "-C", str(root), "checkout", "-q", "--detach", head], check=True)
            shutil.rmtree(root)

        _measure("git clone --no-local (before)", args.sandboxes, cloned)
        _measure("seeded from the mirror's pack", args.sandboxes, seeded)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
