"""The CLI's argument-error corpus (issue 14): every command, with bad numbers, missing files,
empty folders and a catalog that is not one, answers with one ``Error:`` line and a non-zero
exit, never a traceback and never an internal error (exit 70).

The commands come from the CLI itself (groups walked down to their leaves), so a new command or
a new numeric option is in the corpus without editing this file; only its "bad inputs" line in
:data:`BAD_INPUTS` has to be written (a test fails for a command without one). Every case runs
in this process through :func:`cryoglean.cli.main`; the totals (inputs, one-line errors,
silent, crash) are printed with the test output and must be 0 silent, 0 crash.

Kinds of case:

- **numbers**: each INT/FLOAT option given ``abc``; each bounded one a value just outside its
  bounds (click refuses both before the command runs: exit 2);
- **no arguments** for every command that has required ones (exit 2);
- **bad inputs**: the command's own minimal line with a missing file, an empty folder, a file
  where a folder belongs, an empty or foreign catalog (exit 1 or 2, or the command's own
  documented code, e.g. crawl's 66 "no project found").
"""

from __future__ import annotations

import signal
import sqlite3

import click
import pytest

from cryoglean.cli import EX_SOFTWARE, cli, main

#: command path -> argument lines (placeholders: {missing} a path that does not exist, {empty}
#: an empty folder, {file} a small text file, {foreign} another application's SQLite file,
#: {emptydb} an empty catalog file, {out} a fresh output path). Each line must fail.
BAD_INPUTS: dict[str, list[str]] = {
    "demo": ["{file}"],
    "demo-data": ["{file}", "{empty} --micrographs 0"],
    "crawl": ["{missing} --db {out}.db", "{empty} --db {out}.db", "{empty} --db {empty}",
              "{empty} --db {foreign}", "{file} --db {out}.db"],
    "watch": ["{missing} --db {out}.db", "{empty} --db {foreign}"],
    "ls": ["--db {missing}", "--db {empty}", "--db {foreign}", "--db {emptydb}", "--db {file}"],
    "show": ["1 --db {missing}", "1 --db {foreign}", "1 --db {emptydb}", "nothing --db {catalog}"],
    "export": ["star --db {missing} -o {out}", "star --db {foreign} -o {out}",
               "star --db {emptydb} -o {out}", "star --db {catalog} -o {out} --project 99",
               "nosuchformat --db {catalog} -o {out}"],
    "import": ["star {missing} --db {catalog} --project 1 --name n",
               "star {empty} --db {catalog} --project 1 --name n",
               "star {file} --db {catalog} --project 1 --name n",
               "star {empty} --db {foreign} --project 1 --name n"],
    "convert": ["star thi {missing} -o {out}", "star thi {empty} -o {out}",
                "star thi {file} -o {out}"],
    "denoise": ["--source {missing} --project {out} -q", "--source {empty} --project {out} -q"],
    "star": ["--labels {missing} --images {empty} --output {out}.star",
             "--labels {empty} --images {empty} --output {out}.star"],
    "split": ["--star {missing} --images {empty} --output {out}",
              "--star {file} --images {empty} --output {out}"],
    "train centernet": ["--exp_id x --mode particle --dataset {missing} --output {out}",
                        "--exp_id x --mode particle --dataset {empty} --output {out}",
                        "--exp_id x --mode particle --data {empty} --output {out}"],
    "train dynamicdet step1": ["--data {missing}", "--data {file}"],
    "train dynamicdet step2": ["--data {missing} --weight {missing}"],
    "train tomo": ["--exp_id x --dataset {missing} --output {out}",
                   "--exp_id x --dataset {empty} --output {out}"],
    "pick centernet": ["--load_model {missing} --output {out} --data {empty}",
                       "--load_model {file} --output {out} --data {empty}"],
    "pick dynamicdet": ["--load_model {missing} --output {out} --data {empty}"],
    "pick tomo": ["--load_model {missing} --data {empty}"],
    "detect": ["--weight {missing} --source {empty}", "--weight {file} --source {missing}"],
    "evaluate": ["--picks {missing} --truth {empty} --radius 3",
                 "--picks {empty} --truth {empty}",
                 "--picks {file} --truth {file} --radius 3"],
    "tomo-files": ["-d {missing} -o {out}", "-d {empty} -o {out}"],
    "slurm pipeline": ["centernet --profile nosuchprofile -o {out}",
                       "centernet --profile cpu -o {out} --profiles-file {missing}"],
    "slurm profiles": ["--profiles-file {missing}", "--profiles-file {file}"],
    "slurm render": ["evaluate --profile cpu --set shards=[1,2]",
                     "evaluate --profile cpu --set =1", "nosuchtemplate --profile cpu",
                     "evaluate --profile cpu --profiles-file {missing}"],
    "slurm templates": [],  # no argument it reads a file or number from
    "slurm value": ["threshold {missing}", "threshold {empty}", "diameter {empty}",
                    "diameter {file}", "threshold {file}", "nosuchkind {empty}"],
    "report": ["--db {missing} -o {out}", "--db {foreign} -o {out}", "--db {emptydb} -o {out}",
               "--db {catalog} -o {out} --thumbnails -1"],
}


def _leaves() -> dict[str, click.Command]:
    ctx = click.Context(cli)
    out: dict[str, click.Command] = {}

    def walk(cmd, path):
        if isinstance(cmd, click.Group):
            for name in cmd.list_commands(ctx):
                walk(cmd.get_command(ctx, name), [*path, name])
        else:
            out[" ".join(path)] = cmd

    walk(cli, [])
    return out


def _number_cases(path: str, cmd: click.Command) -> list[list[str]]:
    cases = []
    for p in cmd.params:
        if not isinstance(p, click.Option) or p.is_flag or p.multiple or p.nargs != 1:
            continue
        t = p.type
        if not isinstance(t, (click.types.IntParamType, click.types.FloatParamType)):
            continue
        opt = max(p.opts, key=len)
        cases.append([*path.split(), opt, "abc"])
        if isinstance(t, click.types._NumberRangeBase):
            step = 1 if isinstance(t, click.types.IntParamType) else 0.5
            if t.min is not None:
                cases.append([*path.split(), opt, str(t.min - (0 if t.min_open else step))])
            if t.max is not None:
                cases.append([*path.split(), opt, str(t.max + (0 if t.max_open else step))])
    return cases


class Hang(BaseException):
    """A case ran past its time (a BaseException: the CLI's handler does not catch it)."""


def _alarm(signum, frame):
    raise Hang


class Outcome:
    SECONDS = 240  # per case (a loaded 2-core machine); everything fails before real work

    def __init__(self):
        self.rows: list[tuple[str, str, int, str]] = []  # kind, argv, exit code, verdict

    def run(self, kind: str, argv: list[str], capsys) -> None:
        capsys.readouterr()
        previous = signal.signal(signal.SIGALRM, _alarm)
        signal.alarm(self.SECONDS)
        try:
            code = main(argv)
        except Hang:
            self.rows.append((kind, " ".join(argv), -1, f"hang (over {self.SECONDS} s)"))
            return
        except BaseException as exc:  # noqa: BLE001 - a crash of the CLI itself is the finding
            self.rows.append((kind, " ".join(argv), -1, f"crash {type(exc).__name__}: {exc}"))
            return
        finally:
            signal.alarm(0)
            signal.signal(signal.SIGALRM, previous)
        out = capsys.readouterr()
        errors = [ln for ln in out.err.splitlines() if ln.startswith("Error")]
        if "Traceback" in out.err or "Traceback" in out.out:
            verdict = "crash (traceback)"
        elif code == EX_SOFTWARE or "internal error" in out.err:
            verdict = "crash (internal error: " + out.err.strip().splitlines()[-1][:200] + ")"
        elif code == 0:
            verdict = "silent (exit 0)"
        elif len(errors) != 1:
            verdict = f"not one Error line ({len(errors)}): {out.err.strip()[:300]!r}"
        elif len(errors[0]) > 600:
            verdict = "error line over 600 characters"
        else:
            verdict = "one-line"
        self.rows.append((kind, " ".join(argv), code, verdict))


@pytest.fixture(scope="module")
def places(tmp_path_factory, facility):
    from harvest.crawl import crawl

    root = tmp_path_factory.mktemp("corpus")
    (root / "empty").mkdir()
    (root / "file.txt").write_text("not what any command reads\n")
    with sqlite3.connect(root / "foreign.sqlite") as conn:
        conn.execute("CREATE TABLE accounts (name TEXT)")
    (root / "empty.db").touch()
    crawl([facility.root], root / "catalog.db", progress=False)
    return root


def test_every_command_has_a_corpus_line():
    missing = sorted(set(_leaves()) - set(BAD_INPUTS))
    assert not missing, f"add bad inputs for {missing} to BAD_INPUTS"
    assert not sorted(set(BAD_INPUTS) - set(_leaves()))


def test_cli_argument_error_corpus(places, capsys):
    try:  # the training commands' first import (minutes on a loaded machine) is no hang
        import lightning  # noqa: F401
    except ImportError:
        pass
    leaves = _leaves()
    outcome = Outcome()
    counter = iter(range(10**6))
    for path, cmd in leaves.items():
        for argv in _number_cases(path, cmd):
            outcome.run("number", argv, capsys)
        if any(p.required for p in cmd.params):
            outcome.run("no arguments", path.split(), capsys)
        for line in BAD_INPUTS[path]:
            fill = {"missing": places / "missing" / "nothing", "empty": places / "empty",
                    "file": places / "file.txt", "foreign": places / "foreign.sqlite",
                    "emptydb": places / "empty.db", "catalog": places / "catalog.db",
                    "out": places / f"out{next(counter)}"}
            argv = [*path.split(), *(w.format(**fill) for w in line.split())]
            outcome.run("bad input", argv, capsys)
    rows = outcome.rows
    bad = [r for r in rows if r[3] != "one-line"]
    kinds = sorted({r[0] for r in rows})
    totals = {k: sum(r[0] == k for r in rows) for k in kinds}
    silent = sum(r[3].startswith("silent") for r in rows)
    crash = sum(r[3].startswith("crash") for r in rows)
    hang = sum(r[3].startswith("hang") for r in rows)
    with capsys.disabled():
        print(f"\nCLI corpus: {len(leaves)} commands, {len(rows)} inputs "
              f"({', '.join(f'{v} {k}' for k, v in totals.items())}): "
              f"{len(rows) - len(bad)} one-line errors, {silent} silent, {crash} crash, "
              f"{hang} hang, {len(bad) - silent - crash - hang} other")
    assert not bad, "\n".join(f"{r[0]}: cryoglean {r[1]} -> exit {r[2]}: {r[3]}" for r in bad)
    # the two argument errors the audit found, refused by their option checks
    assert any(r[1].startswith("train centernet --batch_size 0") for r in rows)
    assert any("shards=[1,2]" in r[1] for r in rows)
