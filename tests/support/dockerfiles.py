"""Reads a service's Dockerfile and replays its build and entrypoint on this machine.

There is no Docker engine here, so the image itself cannot be built. What can go wrong in it
is checked instead: the build stage's `RUN` steps run as written in a fresh virtualenv (with
every absolute container path moved under a scratch directory, and the pip cache allowed), its
`COPY` steps copy the same files (minus what .dockerignore excludes), and the final stage's
`ENV`, `WORKDIR`, `ENTRYPOINT` and `CMD` start the server the container would start.

Like Docker's layer cache, a `RUN` step whose inputs (the instructions so far and the files
they copied) match an earlier replay's is not run again: its result is hard-linked in, so the
images that share their first layers (the pinned requirements) install them once per run.
"""

from __future__ import annotations

import fcntl
import fnmatch
import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Instruction:
    keyword: str
    arguments: str

    def exec_form(self) -> list[str]:
        """A JSON-array argument (`CMD ["a", "b"]`), or the shell form wrapped in `sh -c`."""
        text = self.arguments.strip()
        if text.startswith("["):
            return [str(part) for part in json.loads(text)]
        return ["/bin/sh", "-c", text]


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def last(self, keyword: str) -> Instruction | None:
        found = self.all(keyword)
        return found[-1] if found else None


@dataclass
class Dockerfile:
    path: Path
    stages: list[Stage]

    @classmethod
    def parse(cls, path: Path, build_args: dict[str, str] | None = None) -> Dockerfile:
        """As `docker build --build-arg NAME=VALUE ...` reads it: an `ARG` before the first
        `FROM` is in scope for the `FROM` lines, one inside a stage for the rest of that stage,
        and each is substituted where it is in scope (other `$VARIABLES` are left alone)."""
        given = build_args or {}
        global_args: dict[str, str] = {}
        stage_args: dict[str, str] = {}
        stages: list[Stage] = []
        for keyword, arguments in _logical_lines(path.read_text()):
            if keyword == "ARG":
                name, _, default = arguments.partition("=")
                name = name.strip()
                scope = stage_args if stages else global_args
                scope[name] = given.get(name, global_args.get(name, default.strip()))
            elif keyword == "FROM":
                words = _substitute(arguments, global_args).split()
                named = len(words) == 3 and words[1].upper() == "AS"
                stages.append(Stage(base=words[0], name=words[2] if named else None))
                stage_args = {}
            else:
                if not stages:
                    raise ValueError(f"{path}: {keyword} before FROM")
                text = _substitute(arguments, stage_args, keep_unknown=True)
                stages[-1].instructions.append(Instruction(keyword, text))
        return cls(path, stages)

    @property
    def final(self) -> Stage:
        return self.stages[-1]

    def stage(self, name: str) -> Stage:
        return next(stage for stage in self.stages if stage.name == name)


def _logical_lines(text: str) -> list[tuple[str, str]]:
    lines: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if not stripped or (stripped.startswith("#") and not pending):
            continue
        if stripped.startswith("#"):
            continue  # a comment inside a continued instruction
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        full = pending + stripped
        pending = ""
        keyword, _, arguments = full.partition(" ")
        lines.append((keyword.upper(), arguments.strip()))
    return lines


def _substitute(text: str, variables: dict[str, str], *, keep_unknown: bool = False) -> str:
    def value(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if keep_unknown and name not in variables:
            return match.group(0)
        return variables.get(name, os.environ.get(name, ""))

    return re.sub(r"\$\{(\w+)\}|\$(\w+)", value, text)


def parse_env(arguments: str) -> dict[str, str]:
    """`ENV A=1 B=2` (the `ENV A 1` legacy form too); values keep `$VAR` for the caller."""
    words = shlex.split(arguments)
    if words and "=" not in words[0]:
        return {words[0]: " ".join(words[1:])}
    return dict(word.split("=", 1) for word in words)


class Replay:
    """The image's filesystem, laid out under `root`; container paths map to `root/<path>`."""

    def __init__(self, dockerfile: Dockerfile, root: Path, context: Path = REPOSITORY) -> None:
        self.dockerfile = dockerfile
        self.root = root
        self.context = context
        self._ignored = _dockerignore(context)

    def host(self, container_path: str) -> Path:
        return self.root / container_path.lstrip("/")

    def _rewrite(self, text: str, container_paths: set[str]) -> str:
        # Longest first, so /opt/venv/bin is not rewritten as /opt/venv + /bin twice.
        for path in sorted(container_paths, key=len, reverse=True):
            text = re.sub(rf"(?<![\w/]){re.escape(path)}(?=[/:\s]|$)", str(self.host(path)), text)
        return text

    def environment(self, stage: Stage) -> dict[str, str]:
        """The stage's ENV over a minimal PATH (this interpreter first), paths rewritten."""
        env = {
            "PATH": f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin",
            "HOME": str(self.root / "home"),
            "LANG": "C.UTF-8",
        }
        for instruction in stage.all("ENV"):
            for name, raw in parse_env(instruction.arguments).items():
                env[name] = self._rewrite(_substitute(raw, env), self._container_paths())
        return env

    def _container_paths(self) -> set[str]:
        paths: set[str] = set()
        for stage in self.dockerfile.stages:
            for instruction in stage.all("WORKDIR"):
                paths.add(instruction.arguments.strip())
            for instruction in stage.all("RUN"):
                paths.update(re.findall(r"-m venv (/\S+)", instruction.arguments))
            for instruction in stage.all("COPY"):
                paths.add(shlex.split(instruction.arguments)[-1])
        return {path for path in paths if path.startswith("/")}

    def build(
        self,
        stage: Stage,
        *,
        log: Path,
        layer_cache: Path | None = None,
        use_pip_cache: bool = True,
    ) -> None:
        """Runs the stage's COPY and RUN steps in order, as `docker build` would."""
        workdir = "/"
        env: dict[str, str] = {}
        key = hashlib.sha256(stage.base.encode())
        for instruction in stage.instructions:
            key.update(f"{instruction.keyword} {instruction.arguments}\n".encode())
            if instruction.keyword == "COPY":
                key.update(self._content_digest(instruction).encode())
            if instruction.keyword == "RUN" and layer_cache is not None:
                with _Layer(layer_cache, key.hexdigest()) as layer:
                    if layer.restore_into(self.root):
                        continue
                    self._run(instruction, workdir, env, stage, use_pip_cache, log)
                    layer.save_from(self.root)
                continue
            if instruction.keyword == "ENV":
                env = self.environment(Stage(stage.base, stage.name, _up_to(stage, instruction)))
            elif instruction.keyword == "WORKDIR":
                workdir = instruction.arguments.strip()
                self.host(workdir).mkdir(parents=True, exist_ok=True)
            elif instruction.keyword == "COPY":
                self.copy(instruction, workdir)
            elif instruction.keyword == "RUN":
                self._run(instruction, workdir, env, stage, use_pip_cache, log)

    def _run(
        self,
        instruction: Instruction,
        workdir: str,
        env: dict[str, str],
        stage: Stage,
        use_pip_cache: bool,
        log: Path,
    ) -> None:
        command = self._rewrite(instruction.arguments, self._container_paths())
        run_env = dict(env) if env else self.environment(Stage(stage.base, stage.name))
        if use_pip_cache:
            # Only downloads are cached; what gets installed is the same.
            run_env.pop("PIP_NO_CACHE_DIR", None)
            command = command.replace("--no-cache-dir", "")
        self.host(workdir).mkdir(parents=True, exist_ok=True)
        with log.open("a") as out:
            out.write(f"$ {command}\n")
            out.flush()
            subprocess.run(
                ["/bin/sh", "-c", command],
                cwd=self.host(workdir),
                env=run_env,
                stdout=out,
                stderr=subprocess.STDOUT,
                check=True,
            )

    def _content_digest(self, instruction: Instruction) -> str:
        words = [w for w in shlex.split(instruction.arguments) if not w.startswith("--")]
        digest = hashlib.sha256()
        for source in words[:-1]:
            origin = self.context / source
            files = sorted(p for p in origin.rglob("*") if p.is_file()) if origin.is_dir() else []
            for path in files or [origin]:
                if path.is_file() and not self._ignore(str(path.parent), [path.name]):
                    digest.update(str(path.relative_to(self.context)).encode())
                    digest.update(path.read_bytes())
        return digest.hexdigest()

    def copy(self, instruction: Instruction, workdir: str) -> None:
        words = shlex.split(instruction.arguments)
        if any(word.startswith("--from=") for word in words):
            return  # from an earlier stage: already in place under the same root
        words = [word for word in words if not word.startswith("--")]
        *sources, destination = words
        if not destination.startswith("/"):
            destination = f"{workdir.rstrip('/')}/{destination}"
        for source in sources:
            origin = self.context / source
            target = self.host(destination)
            if origin.is_dir():
                shutil.copytree(origin, target, ignore=self._ignore, dirs_exist_ok=True)
            else:
                if destination.endswith("/") or target.is_dir():
                    target = target / origin.name
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(origin, target)

    def _ignore(self, directory: str, names: list[str]) -> set[str]:
        relative = Path(directory).relative_to(self.context)
        return {
            name
            for name in names
            if any(
                fnmatch.fnmatch(str(relative / name), pattern)
                or fnmatch.fnmatch(name, pattern.removeprefix("**/"))
                for pattern in self._ignored
            )
        }

    def command(self, stage: Stage) -> list[str]:
        """ENTRYPOINT + CMD, with the entrypoint's container path mapped to the copied file."""
        entrypoint = stage.last("ENTRYPOINT")
        cmd = stage.last("CMD")
        argv = (entrypoint.exec_form() if entrypoint else []) + (cmd.exec_form() if cmd else [])
        if argv and argv[0].startswith("/") and self.host(argv[0]).exists():
            argv[0] = str(self.host(argv[0]))
        return argv

    def workdir(self, stage: Stage) -> Path:
        last = stage.last("WORKDIR")
        path = self.host(last.arguments.strip() if last else "/")
        path.mkdir(parents=True, exist_ok=True)
        return path


class _Layer:
    """One cached RUN result: a hard-linked copy of the whole replay root after that step.

    Held under an exclusive lock, so parallel test workers build a shared layer once. Paths
    inside the layer name the root it was built in; the console scripts' shebangs are the
    only ones a later step or the server runs, so those are rewritten on restore.
    """

    def __init__(self, cache: Path, key: str) -> None:
        cache.mkdir(parents=True, exist_ok=True)
        self._path = cache / key
        self._origin = cache / f"{key}.origin"
        self._lock = (cache / f"{key}.lock").open("w")

    def __enter__(self) -> _Layer:
        fcntl.flock(self._lock, fcntl.LOCK_EX)
        return self

    def __exit__(self, *_: object) -> None:
        fcntl.flock(self._lock, fcntl.LOCK_UN)
        self._lock.close()

    def restore_into(self, root: Path) -> bool:
        if not self._origin.exists():
            return False
        shutil.rmtree(root, ignore_errors=True)
        subprocess.run(["cp", "-al", str(self._path), str(root)], check=True)
        old = self._origin.read_text()
        for script in root.glob("**/bin/*"):
            if script.is_file() and not script.is_symlink() and script.stat().st_size < 65536:
                text = script.read_bytes()
                if text.startswith(b"#!") and old.encode() in text:
                    script.unlink()  # a hard link: the layer keeps its own copy
                    script.write_bytes(text.replace(old.encode(), str(root).encode()))
                    script.chmod(0o755)
        return True

    def save_from(self, root: Path) -> None:
        shutil.rmtree(self._path, ignore_errors=True)
        subprocess.run(["cp", "-al", str(root), str(self._path)], check=True)
        self._origin.write_text(str(root))


def _up_to(stage: Stage, instruction: Instruction) -> list[Instruction]:
    index = stage.instructions.index(instruction)
    return stage.instructions[: index + 1]


def _dockerignore(context: Path) -> list[str]:
    path = context / ".dockerignore"
    if not path.exists():
        return []
    lines = (line.strip() for line in path.read_text().splitlines())
    return [line for line in lines if line and not line.startswith("#")]
