"""The documentation's commands work as written (README.md and docs/*.md).

Convention. A fenced code block whose opening line is directly preceded by the line

    <!-- runnable -->           is checked and then run here at tiny scale;
    <!-- runnable: check -->    is checked only (it needs data, a network or hours).

Every ```bash block of README.md and docs/*.md must carry one of the two markers; ```python
blocks may carry `<!-- runnable -->` (run as a script). Lines of a bash block are joined at
trailing backslashes, `# ...` comments are dropped, `&&` separates commands.

What "checked" means, per command:
- `s4dm-jax [train|evaluate] ...` and `python -m s4dm_jax.main ...`: the subcommand is chosen by
  the program's own argparse parser (`s4dm_jax.main.build_parser`), then the flags are parsed
  by absl with the program's flags and ml_collections' `--config` flag: the config file and
  preset load, and every `--config.a.b=value` override names a field and has the right type.
  Run: the same command line with tiny overrides appended (`TINY`: 2 steps, small model, 1
  short evaluation episode) and the workdir moved under a temporary folder, through
  `train_and_evaluate` in this process, as `s4dm_jax.main.main` calls it.
- `s4dm-jax collect|train-policy ...` and `python -m s4dm_jax.data.collect ...`: parsed by the
  same parser; `--policy` / `--expert-policy` must exist unless an earlier command of the page
  writes them (a path under runs/). Run: with `--steps 300 --ref-episodes 2 --no-progress` and
  `--root` a temporary Minari store, one per page (also MINARI_DATASETS_PATH while the page's
  commands run, so that a training command after it reads that dataset), through
  `collect.run_command`.
- `python experiments/NAME.py ...`: the script exists and its own argparse parser accepts the
  flags (stopped right after parsing, before any work). Run: in a subprocess, as written plus
  the script's `TINY_SCRIPTS` arguments (e.g. the report goes to a temporary folder).
- `pip install -e .[EXTRA]`: every extra exists in pyproject.toml. `python3 -m venv`, `.`,
  `pytest`, `tensorboard`: shell syntax only (`bash -n`). Anything else fails: a new kind of
  command in the docs needs a checker here.
Commands quoted inline in the prose (`pip install ...`, `python experiments/...`, `s4dm-jax
...`) are checked too: extras, scripts and their flags, subcommands, and complete command
lines as above. Relative links must name files and headings of this repository.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import importlib.util
import inspect
import io
import os
import re
import shlex
import subprocess
import sys
import tomllib

import jax
import pytest
from absl import flags
from ml_collections import config_flags

from s4dm_jax import argparsing
from s4dm_jax import main as cli
from s4dm_jax.data import collect
from s4dm_jax.train.compile_cache import default_cache_dir, enable_compilation_cache
from s4dm_jax.train.trainer import train_and_evaluate

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = ["README.md"] + sorted(os.path.join("docs", name) for name in
                              os.listdir(os.path.join(ROOT, "docs")) if name.endswith(".md"))
MARKERS = {"<!-- runnable -->": "run", "<!-- runnable: check -->": "check"}
# Appended to a documented train/evaluate command for its tiny run (the last value of a flag
# wins, so these override the documented ones); model sizes per model name.
TINY = ["--config.num_steps=2", "--config.steps_per_call=1", "--config.log_every=1",
        "--config.checkpoint_every=2", "--config.optim.warmup_steps=1", "--config.batch_size=4",
        "--config.eval.episodes=1", "--config.eval.max_episode_steps=10", "--progress=false"]
TINY_MODEL = {
    "s4dm": ["--config.model.d_model=8", "--config.model.n_layers=1",
             "--config.model.ssm.d_state=4"],
    "dt": ["--config.model.d_model=16", "--config.model.n_layers=1",
           "--config.model.context_len=4"],
    "mamba": ["--config.model.d_model=16", "--config.model.n_layers=1",
              "--config.model.context_len=4"],
    "bc": ["--config.model.hidden_dims=(16, 16)"],
}
TINY_COLLECT = ["--steps", "300", "--ref-episodes", "2", "--no-progress"]
SYNTAX_ONLY = (["python3", "-m", "venv"], ["."], ["source"], ["pytest"], ["tensorboard"])
# Appended to a documented experiments/ command for its run ({tmp}: the tests' folder).
TINY_SCRIPTS = {"experiments/report.py": ["--out", "{tmp}/report", "--reps", "50"]}


class DocCommandError(Exception):
    """A documented command that does not parse, or names a file that does not exist."""


@dataclasses.dataclass(frozen=True)
class Block:
    """A fenced block: its file, line, language, marker mode ("run", "check" or None), text."""
    path: str
    line: int
    lang: str
    mode: str | None
    text: str

    @property
    def name(self) -> str:
        return f"{self.path}:{self.line}"


def extract_blocks(path: str, text: str) -> list[Block]:
    """Every fenced block of a markdown text, with the marker on the line before its fence."""
    blocks, lines, i = [], text.splitlines(), 0
    while i < len(lines):
        fence = re.match(r"^```(\w*)\s*$", lines[i])
        if not fence:
            i += 1
            continue
        end = next((j for j in range(i + 1, len(lines)) if lines[j].startswith("```")), None)
        if end is None:
            raise DocCommandError(f"{path}:{i + 1}: unclosed code fence")
        mode = MARKERS.get(lines[i - 1].strip()) if i > 0 else None
        blocks.append(Block(path, i + 1, fence.group(1), mode, "\n".join(lines[i + 1:end])))
        i = end + 1
    return blocks


def shell_commands(script: str) -> list[list[str]]:
    """The commands of a bash block as argv lists (continuations joined, comments dropped,
    `&&` splits, leading VAR=value assignments dropped)."""
    commands = []
    for line in script.replace("\\\n", " ").splitlines():
        words, current = shlex.split(line, comments=True), []
        for word in [*words, "&&"]:
            if word != "&&":
                current.append(word)
                continue
            while current and re.match(r"^[A-Za-z_]\w*=", current[0]):
                current.pop(0)
            if current:
                commands.append(current)
            current = []
    return commands


def command_kind(argv: list[str]) -> tuple[str, list[str]]:
    """(kind, arguments): kind is "cli" (arguments as `s4dm-jax` takes them), "experiment"
    (script path first), "pip", "syntax" or "unknown"."""
    if argv[0] == "s4dm-jax":
        return "cli", argv[1:]
    if argv[:3] == ["python", "-m", "s4dm_jax.main"]:
        return "cli", argv[3:]
    if argv[:3] == ["python", "-m", "s4dm_jax.data.collect"]:
        rest = argv[3:]
        return "cli", rest if rest[:1] and rest[0] in collect.COMMANDS else ["collect", *rest]
    if argv[0] == "python" and len(argv) > 1 and argv[1].startswith("experiments/"):
        return "experiment", argv[1:]
    if argv[0] == "pip":
        return "pip", argv[1:]
    if any(argv[:len(prefix)] == prefix for prefix in SYNTAX_ONLY):
        return "syntax", argv
    return "unknown", argv


# ----------------------------------------------------------------------- checkers


def parse_absl(args: list[str]) -> flags.FlagValues:
    """Parse `train`/`evaluate` options as `s4dm_jax.main.run` does, into fresh flag values
    holding the program's flags and its `--config` flag; the config file is loaded."""
    module = next(name for name, defined in cli.FLAGS.flags_by_module_dict().items()
                  if any(flag.name == "workdir" for flag in defined))
    values = flags.FlagValues()
    for flag in cli.FLAGS.flags_by_module_dict()[module]:
        if flag.name != "config":
            values[flag.name] = copy.deepcopy(flag)
    argv = ["s4dm-jax", *args]
    if not any(re.match(r"--?config(=|$)", word) for word in args):
        argv.insert(1, f"--config={cli._DEFAULT_CONFIG}")
    config_flags.DEFINE_config_file("config", None, "", flag_values=values, lock_config=True,
                                    sys_argv=argv)
    try:
        rest = values(argv)
        values.config.get("preset")  # a config file's load error is raised on first access
    except Exception as e:  # flags.Error, or ml_collections' AttributeError/OSError/ValueError
        raise DocCommandError(cli.flag_error_message(e)) from e
    if len(rest) > 1:
        raise DocCommandError(f"unexpected arguments: {rest[1:]}")
    return values


@contextlib.contextmanager
def parse_errors_raise():
    """argparse usage errors (of the package's parsers and plain ones) raise DocCommandError
    instead of printing and exiting."""
    def error(self, message):
        raise DocCommandError(f"{self.prog}: {message}")

    saved = [(cls, cls.__dict__["error"]) for cls in (argparse.ArgumentParser,
                                                      argparsing.ArgumentParser)]
    for cls, _ in saved:
        cls.error = error
    try:
        yield
    finally:
        for cls, method in saved:
            cls.error = method


def parse_cli(args: list[str]) -> tuple[argparse.Namespace, list[str]]:
    """The subcommand and its options, parsed by the program's own parser: (namespace, the
    options absl parses for train/evaluate)."""
    if not args or (args[0].startswith("-") and args[0] not in ("-h", "--help")):
        args = ["train", *args]
    with parse_errors_raise():
        namespace, rest = cli.build_parser().parse_known_args(args)
    if namespace.command not in cli.ABSL_COMMANDS and rest:
        raise DocCommandError(f"s4dm-jax {shlex.join(args)}: unrecognized arguments {rest}")
    return namespace, rest


def check_paths(namespace: argparse.Namespace) -> None:
    """Policy paths of collect/train-policy exist (paths under runs/ are written by an
    earlier command of the page)."""
    for option in ("policy", "expert_policy", "replay"):
        path = getattr(namespace, option, None)
        if path and not path.startswith("runs/") and not os.path.exists(os.path.join(ROOT, path)):
            raise DocCommandError(f"--{option.replace('_', '-')} {path}: no such path")


def check_cli(args: list[str]) -> tuple[argparse.Namespace, flags.FlagValues | None]:
    """Check an `s4dm-jax` command line; returns its parsed subcommand and absl flags (a
    `--help` is run: it must print and exit with status 0)."""
    if any(word in ("-h", "--help", "--helpfull") for word in args):
        with contextlib.redirect_stdout(io.StringIO()) as out, pytest.raises(SystemExit) as stop:
            cli.run(args)
        if stop.value.code not in (0, None) or "usage:" not in out.getvalue():
            raise DocCommandError(f"s4dm-jax {shlex.join(args)}: exit status {stop.value.code}")
        return None, None
    namespace, rest = parse_cli(args)
    if namespace.command in cli.ABSL_COMMANDS:
        return namespace, parse_absl(rest)
    check_paths(namespace)
    return namespace, None


class _Parsed(Exception):
    """Raised by the patched ArgumentParser.parse_args once a script's flags are parsed."""


def check_experiment(args: list[str], monkeypatch) -> argparse.Namespace:
    """A script in experiments/ exists and its own parser accepts `args` (stopped right after
    parsing)."""
    script = os.path.join(ROOT, args[0])
    if not os.path.isfile(script):
        raise DocCommandError(f"{args[0]}: no such script")
    monkeypatch.syspath_prepend(os.path.dirname(script))
    spec = importlib.util.spec_from_file_location(f"doc_{os.path.basename(script)[:-3]}", script)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # dataclasses look their module up
    spec.loader.exec_module(module)
    parse = argparse.ArgumentParser.parse_args

    def parse_then_stop(self, args=None, namespace=None):
        with parse_errors_raise():
            raise _Parsed(parse(self, args, namespace))

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", parse_then_stop)
    monkeypatch.setattr(sys, "argv", [script, *args[1:]])
    takes_argv = bool(inspect.signature(module.main).parameters)
    try:
        module.main(args[1:]) if takes_argv else module.main()
    except _Parsed as parsed:
        return parsed.args[0]
    finally:
        monkeypatch.undo()
    raise DocCommandError(f"{args[0]}: main() returned without parsing its arguments")


def check_pip(args: list[str]) -> None:
    """`pip install -e .[a,b]`: every extra is declared in pyproject.toml."""
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        extras = set(tomllib.load(f)["project"].get("optional-dependencies", {}))
    for word in args:
        match = re.fullmatch(r"\.(?:\[([\w,\s-]+)\])?", word)
        if match and match.group(1):
            unknown = {e.strip() for e in match.group(1).split(",")} - extras
            if unknown:
                raise DocCommandError(f"pip extra {sorted(unknown)} not in pyproject.toml "
                                      f"(extras: {sorted(extras)})")


def check_syntax(script: str) -> None:
    """bash -n on a block."""
    done = subprocess.run(["bash", "-n"], input=script, capture_output=True, text=True)
    if done.returncode:
        raise DocCommandError(f"shell syntax: {done.stderr.strip()}")


def check_command(argv: list[str], monkeypatch):
    """Check one command; returns (kind, its parsed form)."""
    kind, args = command_kind(argv)
    if kind == "cli":
        return kind, check_cli(args)
    if kind == "experiment":
        return kind, check_experiment(args, monkeypatch)
    if kind == "pip":
        return kind, check_pip(args)
    if kind == "unknown":
        raise DocCommandError(f"no checker for `{shlex.join(argv)}`: add one to tests/test_docs.py")
    return kind, None


def check_block(block: Block, monkeypatch) -> list:
    """Check every command of a bash block; returns [(argv, kind, parsed)]."""
    check_syntax(block.text)
    checked = []
    for argv in shell_commands(block.text):
        try:
            checked.append((argv, *check_command(argv, monkeypatch)))
        except DocCommandError as e:
            raise DocCommandError(f"{block.name}: {e}") from e
    return checked


# ----------------------------------------------------------------------- tiny runs


def run_cli_tiny(args: list[str], workroot: str) -> None:
    """Run a checked `s4dm-jax` command at tiny scale in `workroot` (datasets go to the Minari
    store MINARI_DATASETS_PATH)."""
    namespace, values = check_cli(args)
    if namespace is None:  # --help: already run by the check
        return
    if values is None:  # collect / train-policy
        tiny, _ = parse_cli([*args, *TINY_COLLECT, "--root", os.environ["MINARI_DATASETS_PATH"]])
        assert collect.run_command(tiny, "s4dm-jax " + shlex.join(args))
        return
    workdir = os.path.join(workroot, values.workdir.lstrip("/"))
    _, rest = parse_cli(args)
    evaluate = ["--evaluate_only"] if namespace.command == "evaluate" else []  # as cli.run
    tiny = parse_absl([*rest, *TINY, *TINY_MODEL[values.config.model.name],
                       f"--workdir={workdir}", *evaluate])
    results = train_and_evaluate(tiny.config, tiny.workdir, show_progress=tiny.progress,
                                 evaluate_only=tiny.evaluate_only)
    assert os.path.isfile(os.path.join(workdir, "results.json")) and results


def run_block(block: Block, checked: list, workroot: str) -> None:
    """Run a checked bash block's project commands at tiny scale."""
    for argv, kind, _ in checked:
        if kind == "cli":
            run_cli_tiny(command_kind(argv)[1], workroot)
        elif kind == "experiment":
            tiny = [word.format(tmp=workroot) for word in TINY_SCRIPTS.get(argv[1], [])]
            done = subprocess.run([sys.executable, *argv[1:], *tiny], cwd=ROOT,
                                  capture_output=True, text=True, timeout=120)
            assert done.returncode == 0, f"{block.name}: {shlex.join(argv)}\n{done.stderr[-2000:]}"


def all_blocks() -> list[Block]:
    blocks = []
    for path in DOCS:
        with open(os.path.join(ROOT, path)) as f:
            blocks += extract_blocks(path, f.read())
    return blocks


BLOCKS = [b for b in all_blocks() if b.mode is not None]


CACHE_OPTIONS = ("jax_enable_compilation_cache", "jax_compilation_cache_dir",
                 "jax_persistent_cache_min_compile_time_secs",
                 "jax_persistent_cache_min_entry_size_bytes")


@pytest.fixture(scope="module")
def workroot(tmp_path_factory):
    """One folder for every page's runs, so that an `evaluate` finds the run its page trained.
    The tiny runs use the compilation cache as `s4dm_jax.main` does (the option is restored
    afterwards); it only changes how long a second run takes."""
    saved = {name: getattr(jax.config, name) for name in CACHE_OPTIONS}
    enable_compilation_cache(default_cache_dir())
    yield str(tmp_path_factory.mktemp("doc_runs"))
    for name, value in saved.items():
        jax.config.update(name, value)


@pytest.mark.parametrize("block", BLOCKS, ids=lambda b: b.name)
def test_documented_block(block, workroot, monkeypatch):
    if block.lang == "python":
        assert block.mode == "run", f"{block.name}: a python block is only ever run"
        done = subprocess.run([sys.executable, "-c", block.text], cwd=ROOT, capture_output=True,
                              text=True, timeout=120)
        assert done.returncode == 0, f"{block.name}\n{done.stderr[-3000:]}"
        return
    assert block.lang == "bash", f"{block.name}: marked block of language {block.lang!r}"
    checked = check_block(block, monkeypatch)
    assert checked, f"{block.name}: a marked block without commands"
    if block.mode == "run":  # one Minari store per page: two pages may make the same dataset id
        monkeypatch.setenv("MINARI_DATASETS_PATH",
                           os.path.join(workroot, "minari", block.path.replace(os.sep, "_")))
        run_block(block, checked, workroot)


def test_every_shell_block_is_marked():
    unmarked = [b.name for b in all_blocks() if b.lang in ("bash", "sh") and b.mode is None]
    assert not unmarked, f"bash blocks without a runnable marker: {unmarked}"


def test_readme_keeps_the_ci_test_command():
    with open(os.path.join(ROOT, ".ci", "run")) as f:
        ci = f.read().split("# --- README test command (keep in sync with README.md) ---\n")[1]
    command = ci.strip().splitlines()[0]
    readme_commands = [" && ".join(shlex.join(c) for c in shell_commands(b.text))
                       for b in all_blocks() if b.path == "README.md" and b.mode == "run"]
    assert any(c.endswith(" && ".join(shlex.join(x) for x in shell_commands(command)))
               for c in readme_commands), command


INLINE = re.compile(r"`((?:s4dm-jax|python -m s4dm_jax\.|python experiments/|pip install)[^`]*)`")


def check_inline(span: str, monkeypatch) -> None:
    """An inline `command` of the prose: pip extras exist, a script exists and parses its
    flags, an `s4dm-jax` subcommand exists; a complete command line (no `...`, no CAPITAL
    placeholder) is checked like a block's."""
    argv = shlex.split(span)
    kind, args = command_kind(argv)
    placeholder = "..." in span or re.search(r"\b[A-Z]{2,}\b|\[", span)
    if kind == "pip":
        check_pip(args)
    elif kind == "experiment":
        check_experiment(args, monkeypatch)
    elif kind == "cli" and args and not args[0].startswith("-"):
        words = args[0].strip("[]")
        if words not in (*cli.ABSL_COMMANDS, *collect.COMMANDS) and not words.isupper():
            raise DocCommandError(f"`{span}`: no subcommand {words!r}")
        if not placeholder and len(args) > 1:
            check_cli(args)


def test_inline_commands(monkeypatch):
    """The commands quoted inline in the prose name real extras, scripts and subcommands."""
    bad = []
    for path in DOCS:
        with open(os.path.join(ROOT, path)) as f:
            for span in INLINE.findall(f.read()):
                try:
                    check_inline(span, monkeypatch)
                except DocCommandError as e:
                    bad.append(f"{path}: {e}")
    assert not bad, bad


def github_anchor(heading: str) -> str:
    """GitHub's anchor of a markdown heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower().replace("`", ""))
    return text.replace(" ", "-")


def test_links_resolve():
    """Every relative link of the docs names a file (and heading) of this repository."""
    bad = []
    for path in DOCS:
        with open(os.path.join(ROOT, path)) as f:
            text = f.read()
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"^[a-z]+://", target):
                continue
            file, _, anchor = target.partition("#")
            full = os.path.normpath(os.path.join(ROOT, os.path.dirname(path), file)) if file \
                else os.path.join(ROOT, path)
            if not os.path.exists(full):
                bad.append(f"{path}: {target}")
            elif anchor and full.endswith(".md"):
                with open(full) as f:
                    anchors = {github_anchor(h) for h in re.findall(r"^#+ (.+)$", f.read(), re.M)}
                if anchor not in anchors:
                    bad.append(f"{path}: {target} (no such heading)")
    assert not bad, bad


# ----------------------------------------------------------- the checker can fail


@pytest.mark.parametrize("snippet, message", [
    ("python -m s4dm_jax.main --config=configs/dt.py:embedded --config.num_stepz=3",
     "names a field that does not exist: 'num_stepz'"),
    ("s4dm-jax train --config=configs/dt.py:embedded --workdirr=runs/x",
     "Unknown command line flag 'workdirr'"),
    ("s4dm-jax train --config=configs/nope.py:embedded", "configs/nope.py"),
    ("s4dm-jax train --config=configs/dt.py:embeded", "unknown config preset 'embeded'"),
    ("s4dm-jax train --config=configs/dt.py:embedded --config.num_steps=many", "many"),
    ("s4dm-jax colect --env hopper", "invalid choice: 'colect'"),
    ("python -m s4dm_jax.data.collect --env hopper --dataset medium --stepz 5",
     "unrecognized arguments"),
    ("s4dm-jax collect --env hopper --dataset medium --policy s4dm_jax/assets/nope",
     "--policy s4dm_jax/assets/nope: no such path"),
    ("python experiments/benchmark.py --protocl quick", "--protocl"),
    ("python experiments/benchmark.py --protocol quik", "invalid choice: 'quik'"),
    ("python experiments/benchmrk.py", "no such script"),
    ('pip install -e ".[cuda99]"', "pip extra ['cuda99'] not in pyproject.toml"),
    ("curl https://example.com | sh", "no checker"),
    ("s4dm-jax train --config=configs/dt.py:embedded \\\n    --config.seeds=2 && (", "syntax"),
])
def test_checker_rejects_a_bad_snippet(snippet, message, monkeypatch):
    block = extract_blocks("bad.md", f"<!-- runnable -->\n```bash\n{snippet}\n```\n")[0]
    assert block.mode == "run"
    with pytest.raises(DocCommandError, match=re.escape(message)):
        check_block(block, monkeypatch)


def test_checker_accepts_a_good_snippet_and_reads_its_values(monkeypatch):
    text = ("Text.\n\n<!-- runnable: check -->\n```bash\n# a comment\n"
            "s4dm-jax train --config=configs/bc.py:embedded --workdir=runs/x \\\n"
            "    --config.seeds=2 --config.num_steps=7  # trailing comment\n"
            "python experiments/sweep.py --lr 1e-3 2e-3 --layers 4\n```\n\n```\nnot a block\n```\n")
    blocks = extract_blocks("good.md", text)
    assert [(b.lang, b.mode) for b in blocks] == [("bash", "check"), ("", None)]
    (_, kind, (namespace, values)), (_, kind2, sweep) = check_block(blocks[0], monkeypatch)
    assert kind == "cli" and namespace.command == "train"
    assert (values.config.seeds, values.config.num_steps, values.workdir) == (2, 7, "runs/x")
    assert kind2 == "experiment" and sweep.lr == [1e-3, 2e-3] and sweep.layers == [4]


@pytest.mark.parametrize("span, message", [
    ('pip install -e ".[cuda99]"', "cuda99"),
    ("python experiments/report.py --protocl quick", "--protocl"),
    ("s4dm-jax trian", "no subcommand 'trian'"),
    ("s4dm-jax train --config=configs/dt.py:embedded --config.num_stepz=3", "num_stepz"),
])
def test_inline_checker_rejects_a_bad_span(span, message, monkeypatch):
    with pytest.raises(DocCommandError, match=re.escape(message)):
        check_inline(span, monkeypatch)


def test_shell_commands_split():
    assert shell_commands("A=1 b c && d 'e f' # g\n# h\nx \\\n  y") == [
        ["b", "c"], ["d", "e f"], ["x", "y"]]
