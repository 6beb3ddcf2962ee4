"""Run a student's own ``network.py`` in a sandbox; the trusted parent keeps the labels and the metric.

The course's TA imports the student's ``network/network.py`` and calls ``load_model(MODEL_PATH)``.
Here that happens in a child process (:mod:`labkit.grading.sandbox_child`) started under
bubblewrap (``bwrap``, Debian package ``bubblewrap``):

- a new mount namespace whose root is empty: only the system (``/usr``, a few ``/etc`` files), the
  Python environment and labkit are bound read-only; the submission is a *copy* at ``/submission``
  (read-only: ``network.py``'s folder, ``.py`` files only, and the weights file); ``/scratch`` and
  ``/tmp`` are private size-capped tmpfs. Labels, the TA's files and other submissions are not in
  the view (``hide=`` also masks paths inside bound folders);
- no network (a new network namespace: loopback only), new pid/ipc/uts namespaces, a new session,
  no capabilities; run as root, the child drops to ``sandbox_uid`` (nobody) so that the process
  limit holds (the kernel exempts uid 0 from RLIMIT_NPROC);
- limits: address space (RLIMIT_AS), CPU seconds (RLIMIT_CPU), processes (RLIMIT_NPROC, set inside
  the sandbox), file size (RLIMIT_FSIZE), no core files, and a wall-clock timeout that kills the
  whole process group (the pid namespace takes every descendant with it).

Without bwrap (Colab, a container without user namespaces) the child runs with the limits only
and every result says ``isolation: "limits-only"``. The child receives image batches and returns
logits over two pipes of its own (:mod:`labkit.grading.sandbox_wire`: a length-prefixed JSON header
+ raw float32 bytes, never a pickle); the student's prints go to a capped log that is never parsed. MACs and size are measured
in the child with labkit's counters (``labkit.profile``), captured before the student's code is
imported and fingerprinted before and after.

Two classes: :class:`SandboxProcess` is the child process (staged copy, bubblewrap command, limits,
timeouts, why it ended); :class:`SandboxedModel` is the model in it (the ready handshake with its
measurements, ``predict``, and what the child's error frames mean for the student).

Example (a TA's check; ``images`` an (N, 3, H, W) float32 array)::

    with SandboxedModel("student/network/network.py", "student/model_task1.pth",
                        input_size=(1, 3, 256, 512)) as model:
        logits = model.predict(images)          # (N, C, H, W) float32, computed in the sandbox
    result = model.result                       # isolation, sha256, MACs, size, peak memory, ...
"""
from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from labkit.download import sha256sum
from labkit.grading.exits import EXIT_ENVIRONMENT, EXIT_INVALID, EnvironmentProblem
from labkit.grading.limits import DEFAULT_MEMORY_BYTES
from labkit.grading.network_faults import clean, explain
from labkit.grading.sandbox_budget import gpu_device_args
from labkit.grading.sandbox_wire import DETAIL_CHARS, receive, send
from labkit.torch_file import FileRefused, MiB, _mib

TRUST_BOUNDARY = (
    "Trusted: this grading process (it keeps the labels and computes the metric from the logits the "
    "sandbox returns). Untrusted: everything in the sandbox — network.py, load_model, the forward pass, "
    "and the MACs/size counted there with labkit's counters, which were loaded before network.py and "
    "fingerprinted before and after; code that defeats the fingerprint could still report other numbers, "
    "so a TA should read the network.py of a ranked Task 2 entry.")
SANDBOX_ROOT_FILES = ("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/localtime",
                      "/etc/nsswitch.conf", "/etc/passwd", "/etc/group")


@dataclass
class SandboxConfig:
    """Limits of one sandboxed run. The defaults are the floors: a check sizes threads, CPU seconds, wall
    clock and processes to its test set and cores (:mod:`labkit.grading.sandbox_budget`)."""
    memory_bytes: int = DEFAULT_MEMORY_BYTES   # address space; torch alone reserves ~3.1 GiB; not with gpu
    cpu_seconds: int = 1800                    # RLIMIT_CPU: all threads together
    timeout_s: float = 3600.0                  # wall clock for the whole run
    start_timeout_s: float = 300.0             # import + load_model + measuring
    max_processes: int = 64                    # tasks (threads count) of the sandbox user
    max_file_bytes: int = 64 * MiB             # any one file the child writes, its log included
    scratch_bytes: int = 256 * MiB             # size of /scratch and of /tmp in the sandbox
    max_network_files: int = 200               # .py files copied from network.py's folder
    threads: int = 1
    gpu: bool = False                          # --sandbox-gpu: NVIDIA device nodes bound, the child uses CUDA
    sandbox_uid: int = 65534                   # uid the child runs as when the grader is root
    hide: tuple = ()                           # paths masked inside the sandbox even if under a bound folder
    isolation: str = "auto"                    # "auto", "bubblewrap" (required) or "limits-only"
    log_tail_bytes: int = 4000


@dataclass
class SandboxResult:
    """What the parent knows about one run; ``exit_code`` 0 while all went well."""
    isolation: str
    trust_boundary: str
    network_sha256: str
    model_sha256: str
    exit_code: int = 0
    message: str = ""
    macs: int | None = None
    size_bytes: int | None = None
    params: int | None = None
    quantized: bool | None = None
    peak_rss_kb: int | None = None
    seconds: float = 0.0
    limits: dict = field(default_factory=dict)
    log_tail: str = ""
    details: dict = field(default_factory=dict)   # a failure's particulars for --json: {"load_errors": ...}

    def to_dict(self) -> dict:
        return asdict(self)


@lru_cache(maxsize=1)
def isolation_available() -> dict:
    """Which isolation this machine gives: ``{"isolation": "bubblewrap" | "limits-only", "detail": ...}``.

    Starts ``bwrap`` once with the sandbox's namespaces (cached); ``labkit doctor`` can report it.

    Example:
        >>> isolation_available()["isolation"] in ("bubblewrap", "limits-only")
        True
    """
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        return {"isolation": "limits-only", "detail": "bwrap not found; install it: apt-get install -y "
                "bubblewrap (student code then runs with resource limits only, no isolation)"}
    command = [bwrap, *_namespace_flags(), "--ro-bind", "/usr", "/usr", *_usr_links(), "--proc", "/proc",
               "--dev", "/dev", "--", "/bin/true"]
    try:
        run = subprocess.run(command, capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as error:
        return {"isolation": "limits-only", "detail": f"bwrap does not start here ({error})"}
    if run.returncode != 0:
        reason = run.stderr.decode(errors="replace").strip()[:200]
        return {"isolation": "limits-only", "detail": f"bwrap does not start here ({reason}); user "
                "namespaces may be disabled (sysctl kernel.unprivileged_userns_clone / "
                "user.max_user_namespaces)"}
    drop = "drops root to the sandbox uid" if os.geteuid() == 0 else "in a user namespace"
    return {"isolation": "bubblewrap", "detail": f"{bwrap}: no network, private mounts, {drop}"}


def _namespace_flags() -> list[str]:
    flags = ["--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts", "--unshare-cgroup-try",
             "--die-with-parent", "--new-session"]
    if os.geteuid() != 0:
        flags.insert(0, "--unshare-user")
    return flags


def _usr_links() -> list[str]:
    """/bin, /lib, ... as on this machine: symlinks into /usr (merged /usr) or read-only binds."""
    args = []
    for name in ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
        if os.path.islink(name):
            args += ["--symlink", os.readlink(name), name]
        elif os.path.isdir(name):
            args += ["--ro-bind", name, name]
    return args


def _python_paths() -> list[str]:
    """Folders the child's Python needs: its prefixes, sys.path entries and labkit itself."""
    import labkit
    wanted = [sys.prefix, sys.base_prefix, os.path.dirname(os.path.realpath(sys.executable)),
              str(Path(labkit.__file__).resolve().parent)]
    # Only package folders from sys.path: never the current folder or a user's PYTHONPATH project.
    wanted += [p for p in sys.path if os.path.isabs(p) and os.path.isdir(p)
               and os.path.basename(p.rstrip("/")) in ("site-packages", "dist-packages")]
    kept = []
    for path in sorted({os.path.realpath(p) for p in wanted}, key=len):
        if path.startswith("/usr/") or path == "/usr":
            continue
        if not any(path == k or path.startswith(k + "/") for k in kept):
            kept.append(path)
    return kept


def _stage(network: Path, model_path: Path, config: SandboxConfig) -> tuple[Path, Path, Path]:
    """Copy network.py's folder (.py files only) and the weights into a fresh world-readable folder."""
    staging = Path(tempfile.mkdtemp(prefix="labkit-sandbox-"))
    os.chmod(staging, 0o755)
    submission = staging / "submission"
    target_network = submission / network.parent.name
    target_network.mkdir(parents=True)
    copied = 0
    for source in sorted(network.parent.rglob("*.py")):
        relative = source.relative_to(network.parent)
        if source.is_symlink() or not source.is_file() or len(relative.parts) > 4 or "__pycache__" in relative.parts:
            continue
        copied += 1
        if copied > config.max_network_files:
            raise FileRefused(f"{network.parent.name}/ holds over {config.max_network_files} .py files; hand in "
                              "network.py and the modules it imports")
        destination = target_network / relative
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, destination)
    target_model = submission / model_path.name
    shutil.copyfile(model_path, target_model)
    for folder, dirs, files in os.walk(submission):
        os.chmod(folder, 0o755)
        for name in files:
            os.chmod(os.path.join(folder, name), 0o644)
    return staging, target_network / network.name, target_model


def _preexec(config: SandboxConfig, nproc_outside: int | None):
    def apply():
        # CUDA reserves far more address space than it uses: with gpu no cap, not even the check's own soft one
        hard = resource.getrlimit(resource.RLIMIT_AS)[1]
        resource.setrlimit(resource.RLIMIT_AS, (hard, hard) if config.gpu else (config.memory_bytes,) * 2)
        resource.setrlimit(resource.RLIMIT_CPU, (config.cpu_seconds, config.cpu_seconds + 5))
        resource.setrlimit(resource.RLIMIT_FSIZE, (config.max_file_bytes, config.max_file_bytes))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        if nproc_outside is not None:
            resource.setrlimit(resource.RLIMIT_NPROC, (nproc_outside, nproc_outside))
    return apply


def _processes_of_this_user() -> int:
    uid = os.getuid()
    return sum(1 for entry in os.scandir("/proc") if entry.name.isdigit() and _owner(entry.path) == uid)


def _owner(path: str) -> int | None:
    try:
        return os.stat(path).st_uid
    except OSError:
        return None


class SandboxProcess:
    """The sandbox's child process: its staged copy, command, limits and pipes, and why it ended.

    Knows processes, not models: :meth:`launch` starts ``python -m labkit.grading.sandbox_child`` (in
    bubblewrap, or with limits only), :meth:`_frame` reads one :mod:`~labkit.grading.sandbox_wire`
    frame under a deadline or records why none came (wall clock, CPU time, file size, a crash, a
    malformed frame), :meth:`close` reaps the child with its peak memory and log tail. ``result``
    (:class:`SandboxResult`) holds the first failure; :class:`SandboxedModel` says what frames mean.
    """

    def __init__(self, network, model_path, config: SandboxConfig | None = None):
        self.network, self.model_path = Path(network), Path(model_path)
        self.config = config or SandboxConfig()
        self.child = None
        self.result = None

    def launch(self, child_config: dict) -> None:
        """Check and stage the files, then start the child with ``child_config`` plus paths, limits and fds."""
        for path, what in ((self.network, "network.py"), (self.model_path, "weights file")):
            if not path.is_file():
                raise FileRefused(f"{path.name}: the {what} is missing or not a file; hand in "
                                  "network/network.py and the weights file beside it")
        chosen = self._isolation()
        self.result = SandboxResult(chosen, TRUST_BOUNDARY, sha256sum(self.network), sha256sum(self.model_path),
                                    limits={k: v for k, v in asdict(self.config).items() if k != "hide"})
        self._started = time.monotonic()
        self.staging, network, model = _stage(self.network, self.model_path, self.config)
        self.log_path = self.staging / "child.log"
        child_config = {"network": str(network), "model": str(model), **child_config,
                        "threads": self.config.threads, "max_processes": self.config.max_processes,
                        "device": "cuda" if self.config.gpu else "cpu"}
        request_read, self.request_fd = os.pipe()
        self.answer_fd, answer_write = os.pipe()
        child_config.update(request_fd=request_read, answer_fd=answer_write)
        command, cwd, nproc_outside = self._command(chosen, child_config, network, model)
        log = open(self.log_path, "wb")
        try:
            self.child = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=log, cwd=cwd,
                                          env=self._env(), pass_fds=(request_read, answer_write),
                                          start_new_session=True, preexec_fn=_preexec(self.config, nproc_outside))
        except OSError as error:
            raise EnvironmentProblem(f"cannot start the sandbox ({error})") from None
        finally:
            log.close()
            os.close(request_read)
            os.close(answer_write)
        self._killer = threading.Timer(self.config.timeout_s, self._kill)
        self._killer.start()

    def close(self) -> SandboxResult | None:
        if self.child is None:
            return self.result
        try:
            os.close(self.request_fd)   # EOF: the child's loop ends
        except OSError:
            pass
        if not self._reap(timeout_s=10):
            self._kill(quiet=True)
            self._reap(timeout_s=10)
        try:
            os.killpg(self.child.pid, 9)   # limits-only: what the child forked lives on in its group
        except (ProcessLookupError, PermissionError):
            pass
        self._killer.cancel()
        os.close(self.answer_fd)
        self.result.seconds = round(time.monotonic() - self._started, 3)
        self.result.log_tail = self._log_tail()
        shutil.rmtree(self.staging, ignore_errors=True)
        self.child = None
        return self.result

    def _isolation(self) -> str:
        wanted = self.config.isolation
        if wanted == "limits-only":
            return wanted
        available = isolation_available()
        if available["isolation"] != "bubblewrap" and wanted == "bubblewrap":
            raise EnvironmentProblem(f"bubblewrap isolation was required but {available['detail']}")
        return available["isolation"]

    def _env(self) -> dict:
        import labkit
        env = {"PATH": "/usr/bin:/bin", "HOME": "/scratch", "TMPDIR": "/tmp", "LANG": "C.UTF-8",
               "OMP_NUM_THREADS": str(self.config.threads), "MKL_NUM_THREADS": str(self.config.threads),
               "PYTHONDONTWRITEBYTECODE": "1", "PYTHONNOUSERSITE": "1", "LABKIT_SANDBOX": "1",
               "CUDA_VISIBLE_DEVICES": "", "NO_ALBUMENTATIONS_UPDATE": "1",
               "PYTHONPATH": str(Path(labkit.__file__).resolve().parent.parent)}
        if self.config.gpu:   # the grader's own choice of GPUs, if it made one
            env.pop("CUDA_VISIBLE_DEVICES")
            env.update({k: v for k, v in os.environ.items() if k == "CUDA_VISIBLE_DEVICES" and v})
        return env

    def _command(self, isolation: str, child_config: dict, network: Path, model: Path):
        python = [sys.executable, "-s", "-B", "-m", "labkit.grading.sandbox_child"]
        if isolation == "limits-only":
            scratch = self.staging / "scratch"
            scratch.mkdir()
            nproc = None if os.geteuid() == 0 else _processes_of_this_user() + self.config.max_processes
            child_config["max_processes"] = None   # counted with the user's other processes: set outside
            return python + [json.dumps(child_config)], str(network.parent.parent), nproc
        submission = network.parent.parent
        inside = {"network": f"/submission/{network.relative_to(submission)}", "model": f"/submission/{model.name}"}
        child_config = {**child_config, **inside}
        args = ["bwrap", *_namespace_flags(), "--ro-bind", "/usr", "/usr", *_usr_links()]
        for path in SANDBOX_ROOT_FILES:
            args += ["--ro-bind-try", path, path]
        # The private /tmp first: binds below come on top of it, so a kit or venv under /tmp stays visible.
        args += ["--size", str(self.config.scratch_bytes), "--perms", "1777", "--tmpfs", "/tmp"]
        binds = _python_paths()
        # Folders above the binds, made traversable (bwrap would create them 0700 for root only).
        for parent in sorted({str(p) for b in binds for p in Path(b).parents if str(p) != "/"}, key=len):
            args += ["--perms", "0755", "--dir", parent]
        for path in binds:
            args += ["--ro-bind", path, path]
        args += ["--ro-bind", str(submission), "/submission",
                 "--size", str(self.config.scratch_bytes), "--perms", "1777", "--tmpfs", "/scratch",
                 "--proc", "/proc", "--dev", "/dev", "--chdir", "/submission"]
        if self.config.gpu:   # the NVIDIA device nodes, read-write; nothing else
            args += gpu_device_args()
        for path in self.config.hide:
            path = os.path.realpath(path)
            args += ["--tmpfs", path] if os.path.isdir(path) else ["--ro-bind-try", "/dev/null", path]
        if os.geteuid() == 0:
            setpriv = shutil.which("setpriv")
            if setpriv is None:
                raise EnvironmentProblem("running as root needs setpriv (util-linux) to drop to the sandbox uid")
            uid = str(self.config.sandbox_uid)
            args += ["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID", "--", setpriv, f"--reuid={uid}",
                     f"--regid={uid}", "--clear-groups", "--inh-caps=-all"]
        else:
            args += ["--cap-drop", "ALL", "--"]
        return args + python + [json.dumps(child_config)], None, None

    def _kill(self, quiet: bool = False):
        if self.child is not None and self.child.returncode is None:
            if not quiet and self.result.exit_code == 0:
                self._timed_out = True
            try:
                os.killpg(self.child.pid, 9)
            except (ProcessLookupError, PermissionError):
                pass

    def _frame(self, *, timeout_s: float, max_payload: int):
        """One frame from the child, or None after recording why there is none."""
        try:
            return receive(self.answer_fd, max_payload=max_payload, timeout_s=timeout_s)
        except TimeoutError:
            self._kill()
            self._fail(EXIT_INVALID, f"your network did not answer within {timeout_s:.0f} s (wall clock); it was "
                                     "stopped")
        except EOFError:
            self._explain_exit()
        except ValueError:
            self._kill()
            self._fail(EXIT_INVALID, "the network process broke the grading protocol (its answer was malformed); "
                                     "do not write to the grader's pipes")
        return None

    def _reap(self, *, timeout_s: float) -> bool:
        """Wait for the child (os.wait4: its peak memory comes with it); False if still running."""
        if self.child.returncode is not None:
            return True
        deadline = time.monotonic() + timeout_s
        while True:
            pid, status, usage = os.wait4(self.child.pid, os.WNOHANG)
            if pid:
                self.child.returncode = os.waitstatus_to_exitcode(status)
                self.result.peak_rss_kb = usage.ru_maxrss
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)

    def _explain_exit(self):
        self._reap(timeout_s=5)
        code = self.child.returncode
        if getattr(self, "_timed_out", False):
            why = f"your network did not finish within {self.config.timeout_s:.0f} s (wall clock); it was stopped"
        elif code in (-24, 128 + 24):
            why = f"your network used more than {self.config.cpu_seconds} s of CPU time; it was stopped"
        elif code in (-25, 128 + 25):
            why = f"your network wrote a file larger than {_mib(self.config.max_file_bytes)}; it was stopped"
        elif code is not None and code < 0:
            why = f"the network process crashed (signal {-code}), e.g. out of memory or a native crash"
        else:
            log = self._log_tail()
            if "bwrap:" in log and "labkit" not in log:
                self._fail(EXIT_ENVIRONMENT, f"the sandbox did not start: {log.strip()[-300:]}")
                return
            why = f"the network process ended (exit code {code}) before answering"
        self._fail(EXIT_INVALID, why)

    def _fail(self, exit_code: int, message: str):
        if self.result.exit_code == 0:
            self.result.exit_code, self.result.message = exit_code, message

    def _log_tail(self) -> str:
        try:
            with open(self.log_path, "rb") as handle:
                handle.seek(max(0, self.log_path.stat().st_size - self.config.log_tail_bytes))
                return handle.read().decode("utf-8", "replace")
        except OSError:
            return ""


class SandboxedModel(SandboxProcess):
    """A student's model running in a sandboxed child; use as a context manager (see module docstring).

    Args:
        network: path of the student's ``network.py`` (defines ``load_model(path)``).
        model_path: the weights file handed to ``load_model``.
        input_size: the (1, 3, H, W) input MACs are counted on (the course: (1, 3, 256, 512)).
        config: limits and isolation (:class:`SandboxConfig`).
        max_classes: largest channel count accepted in the returned logits.
    """

    def __init__(self, network, model_path, *, input_size=(1, 3, 256, 512), config: SandboxConfig | None = None,
                 max_classes: int = 256):
        super().__init__(network, model_path, config)
        self.input_size, self.max_classes = tuple(input_size), max_classes

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def start(self) -> SandboxResult:
        """Start the child and wait for its ready frame: the model loaded, its MACs/size/params measured."""
        self.launch({"input_size": list(self.input_size)})
        ready = self._answer(timeout_s=self.config.start_timeout_s)
        if ready is None:
            return self.result
        header, _ = ready
        if header.get("op") == "ready":
            fields = {"macs": int, "size_bytes": int, "params": int, "quantized": bool}
            if not all(isinstance(header.get(k), t) for k, t in fields.items()) or min(
                    header["macs"], header["size_bytes"], header["params"]) < 0:
                self._fail(EXIT_INVALID, "the network process sent a malformed answer; was it tampered with?")
            elif header.get("tampered") is not False:
                self._fail(EXIT_INVALID, "your network.py changed labkit's MAC/size counters (labkit.profile) or "
                                         "torch's module-call machinery; graders measure with the originals — "
                                         "remove the patching")
            else:
                for key in fields:
                    setattr(self.result, key, header[key])
        return self.result

    def predict(self, images: np.ndarray) -> np.ndarray:
        """(N, 3, H, W) float32 images -> (N, C, H, W) float32 logits from the sandboxed model.

        Raises FileRefused (the model's fault: exit 2) when the child fails, times out or answers
        anything but logits of the right shape.
        """
        if self.result is None or self.result.exit_code != 0:
            raise FileRefused(self.result.message if self.result else "the sandbox was not started")
        images = np.ascontiguousarray(images, dtype=np.float32)
        if images.ndim != 4:
            raise ValueError(f"images must be (N, C, H, W), got shape {images.shape}")
        try:
            send(self.request_fd, {"op": "predict", "shape": list(images.shape)}, images.tobytes())
        except OSError:
            pass   # the child is gone; _answer says why
        n, _, height, width = images.shape
        answer = self._answer(timeout_s=self.config.timeout_s, max_payload=n * self.max_classes * height * width * 4)
        if answer is None:
            raise FileRefused(self.result.message)
        header, payload = answer
        shape = header.get("shape")
        if (header.get("op") != "logits" or not isinstance(shape, list) or len(shape) != 4
                or not all(isinstance(v, int) for v in shape) or shape[0] != n or shape[2:] != [height, width]
                or not 1 <= shape[1] <= self.max_classes or len(payload) != 4 * int(np.prod(shape))):
            self._fail(EXIT_INVALID, f"your model returned output of shape {shape}; expected logits of shape "
                                     f"({n}, classes, {height}, {width}) for a ({n}, 3, {height}, {width}) batch")
            raise FileRefused(self.result.message)
        logits = np.frombuffer(payload, dtype=np.float32).reshape(shape)
        if not np.isfinite(logits).all():
            self._fail(EXIT_INVALID, "your model returned NaN or Inf logits")
            raise FileRefused(self.result.message)
        return logits

    def _answer(self, *, timeout_s: float, max_payload: int = 1 << 20):
        """The child's next answer, or None after recording why there is none (an error frame explained)."""
        frame = self._frame(timeout_s=timeout_s, max_payload=max_payload)
        if frame is None:
            return None
        header, payload = frame
        if header.get("op") == "error":
            stage = {"import": "importing network.py", "load_model": "load_model(path)",
                     "measure": "counting MACs/size (one forward pass)", "forward": "the forward pass"}
            message = str(header.get("message", ""))[:300]
            if header.get("stage") == "device":   # CUDA unusable in the sandbox: the grader's machine
                self._fail(EXIT_ENVIRONMENT, f"--sandbox-gpu: CUDA does not work in the sandbox: {message}")
            elif message == "out of memory":
                self._fail(EXIT_INVALID, f"your network ran out of memory in {stage.get(header.get('stage'), 'it')} "
                                         f"(the cap is {_mib(self.config.memory_bytes)} of address space)")
            elif message == "file too large":
                self._fail(EXIT_INVALID, f"your network wrote a file larger than {_mib(self.config.max_file_bytes)} "
                                         f"in {stage.get(header.get('stage'), 'it')}; it was stopped")
            else:  # torch's text, explained (key lists, INT8 faults) or its first line without the dispatcher's tail
                detail = str(header.get("detail") or message)[:DETAIL_CHARS]
                explained = explain(detail)
                text, details = explained if explained else (clean(detail, limit=600), {})
                where = header.get("where")
                if isinstance(where, str) and where:   # the line of the student's code it came from
                    text += f"\n  at {where[:300]}" if "\n" in text else f" (at {where[:300]})"
                self._fail(EXIT_INVALID, f"{stage.get(header.get('stage'), 'your network')} failed: {text}")
                self.result.details = details
            return None
        return header, payload
