"""Where the libraries' logs go: RUN_DIR/logs/, and the terminal only with --verbose.

Runs in the orchestrator (driver) process and, through Ray's `worker_process_setup_hook`, in every
Ray worker process of the job. By default the terminal shows erv-grpo's own lines (progress bar, one
line per phase, tables) and the warnings that signal a real problem; everything the libraries say
goes to files under the log folder:

- `driver.log`: the driver's Python logging (Ray, transformers, vLLM when it runs in-process,
  Python warnings);
- `worker-<pid>.log`: everything a Ray worker process writes (its Python logging and, unless
  verbose, its raw stdout/stderr: vLLM's start-up, C++ warnings, library progress bars);
- `reward_service.log`: the reward-service subprocess (orchestrator/reward_proc.py).

Where the noise came from, and what routes it here: vLLM configures its own logger to print INFO to
stdout (VLLM_CONFIGURE_LOGGING=0 leaves its records to the root logger configured here); transformers
gives its library logger a stderr handler and progress bars (sent to the root logger; bars off);
Ray's driver logger has its own handler (propagates here instead) and Ray echoes every worker's
stdout/stderr to the driver (`log_to_driver`; the workers' streams are redirected to their log file,
so only what this module lets through reaches the terminal). With verbose, records of every level
also go to the terminal (and Ray still echoes the workers).

A library WARNING stays on the terminal unless it is one of KNOWN_NOISE below (said on every start,
about a setting we chose or a CPU platform fact); ERROR and above always do. A new, unknown warning
therefore shows up rather than hides.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
from pathlib import Path

LOG_DIR_ENV = "ERV_GRPO_LOG_DIR"
VERBOSE_ENV = "ERV_GRPO_VERBOSE"
# vLLM keeps its hands off logging (records reach the root logger); read at vLLM's import.
LIBRARY_ENV = {"VLLM_CONFIGURE_LOGGING": "0"}
FILE_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
CONSOLE_FORMAT = "%(levelname)s %(name)s: %(message)s"

# Library warnings that do not signal a problem of the run (the log file keeps them).
KNOWN_NOISE = tuple(
    re.compile(p)
    for p in (
        # vLLM start-up on CPU: settings we chose (rollout/engine.py) and platform facts
        r"^The global random seed is set to",
        r"does not officially support disabling chunked prefill",  # engine.py disables it on purpose
        r"^Enforce eager set, disabling torch\.compile",
        r"^Inductor compilation was disabled by user settings",
        r"^Triton is (not installed|installed, but doesn't include CPU backend)",
        r"^Model Runner V2 requires Triton",
        r"^Reset SSM cache type",
        r"^(libtcmalloc|libiomp) is not found in LD_PRELOAD",
        r"^OMP_NUM_THREADS=\d+ is set; leaving Torch threads",
        r"^CPU backend doesn't allow to use `torch\.set_num_threads`",
        r"^Passing raw prompts to InputProcessor is deprecated",
        # vLLM's in-place reload names modules it skipped: the rotary embedding has no weights, a tied
        # LM head is the embedding. Whether the engine holds the learner's weights is checked by
        # comparing logprobs after every sync (the sync guard of issue 10, which warns on the terminal
        # itself), not by this line (ENVIRONMENT.md: "do not trust a log line").
        r"^\w+: Failed to load weights$",
        # Omni / VL policies: the tiny test models keep the full models' special-token ids in the outer
        # (talker/tts) config, which nothing here reads; CPU facts of vLLM's omni model; transformers'
        # notice of a default change in v5.22; torch's note on the read-only decoded clip arrays (the
        # processors copy them, nothing writes to them).
        r"^Model config: \w+_token_id must be `None` or an integer within the vocabulary",
        r"^Model does not support mm_device_do_normalize",
        r"^flash_attn is not available, the model may not yield the exactly same result",
        r"^Qwen2VL video processing does not apply the per-frame pixel cap",
        r"The given NumPy array is not writable, and PyTorch does not support non-writable tensors",
    )
)


OWN_LOGGERS = ("erv_grpo", "orchestrator", "policy", "rollout", "reward_service")


class _Visible(logging.Filter):
    """Terminal filter when not verbose: WARNING and above, except a library's KNOWN_NOISE and the
    deprecation notices of library code (erv-grpo's own warnings always show)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return False
        if record.levelno >= logging.ERROR or record.name.split(".")[0] in OWN_LOGGERS:
            return True
        message = record.getMessage()
        if record.name == "py.warnings" and re.search(
            r"\b(FutureWarning|DeprecationWarning|PendingDeprecationWarning)\b", message
        ):
            return False
        return not any(p.search(message) for p in KNOWN_NOISE)


class _Stderr(logging.StreamHandler):
    """Writes to whatever sys.stderr is at the time (pytest and tqdm swap it), or to `override`
    while quiet_streams() points the process's stderr at the log file."""

    override = None

    def __init__(self):
        super().__init__(sys.stderr)

    @property
    def stream(self):
        return self.override or sys.stderr

    @stream.setter
    def stream(self, _value):
        pass


_installed: list[logging.Handler] = []
_routed: dict = {}  # {"file": Path, "verbose": bool} of the last route_logs in this process


def route_logs(log_file: str | Path, verbose: bool = False, console_stream=None) -> Path:
    """Send this process's logging to `log_file` (everything from INFO) and the visible part to the
    terminal (`console_stream`, default sys.stderr). Idempotent: replaces what it installed before."""
    log_file = Path(log_file)
    log_file.parent.mkdir(parents=True, exist_ok=True)
    for key, value in LIBRARY_ENV.items():
        os.environ.setdefault(key, value)
    root = logging.getLogger()
    for handler in _installed:
        root.removeHandler(handler)
        handler.close()
    _installed.clear()
    to_file = logging.FileHandler(log_file, encoding="utf-8")
    to_file.setFormatter(logging.Formatter(FILE_FORMAT))
    console = logging.StreamHandler(console_stream) if console_stream is not None else _Stderr()
    console.setFormatter(logging.Formatter(CONSOLE_FORMAT))
    if not verbose:
        console.addFilter(_Visible())
    for handler in (to_file, console):
        root.addHandler(handler)
        _installed.append(handler)
    _routed.update(file=log_file, verbose=verbose)
    root.setLevel(logging.INFO)
    logging.captureWarnings(True)
    # Libraries that bring their own handlers: let their records reach the root logger instead (Ray
    # adds its handler at import; when that comes later, init_ray's configure_logging=False drops it;
    # vLLM configures its logger only when VLLM_CONFIGURE_LOGGING is on, i.e. before this ran).
    for name in ("ray", "vllm"):
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True
    if "transformers" in sys.modules or _importable("transformers"):
        from transformers.utils import logging as hf_logging

        hf_logging.disable_default_handler()
        hf_logging.enable_propagation()
        (hf_logging.enable_progress_bar if verbose else hf_logging.disable_progress_bar)()
    for noisy in ("httpx", "httpx2", "urllib3", "filelock"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return log_file


@contextlib.contextmanager
def quiet_streams():
    """While a library runs in this process (vLLM in `erv-grpo eval`): its raw stdout/stderr writes
    (C++ warnings, progress bars) go to the log file; the visible records still reach the terminal.
    Does nothing when verbose or when route_logs was not called."""
    if not _routed or _routed["verbose"]:
        yield
        return
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    fd = os.open(_routed["file"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    terminal = os.fdopen(os.dup(saved[1]), "w", buffering=1)
    consoles = [h for h in _installed if isinstance(h, _Stderr)]
    try:
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        for handler in consoles:
            handler.override = terminal
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        for handler in consoles:
            handler.override = None
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for f in (fd, *saved):
            os.close(f)
        terminal.close()


def _importable(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


def ray_runtime_env(log_dir: str | Path, verbose: bool) -> dict:
    """The job-level Ray runtime_env: every worker process routes its logs like the driver."""
    env = {LOG_DIR_ENV: str(Path(log_dir).resolve()), VERBOSE_ENV: "1" if verbose else "0", **LIBRARY_ENV}
    return {"env_vars": env, "worker_process_setup_hook": "orchestrator.logs.setup_ray_worker"}


def setup_ray_worker() -> None:
    """Ray's worker_process_setup_hook: route this worker's logs to LOG_DIR/worker-<pid>.log.

    Unless verbose, the process's stdout/stderr (file descriptors 1 and 2, which Ray echoes to the
    driver) are pointed at the log file too, so vLLM's start-up, C++ warnings and progress bars land
    there; the visible records go to the original stderr, which Ray still shows on the terminal.
    """
    log_dir = os.environ.get(LOG_DIR_ENV)
    if not log_dir:
        return
    verbose = os.environ.get(VERBOSE_ENV) == "1"
    log_file = Path(log_dir) / f"worker-{os.getpid()}.log"
    console = None
    if not verbose:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        sys.stdout.flush()
        sys.stderr.flush()
        console = os.fdopen(os.dup(2), "w", buffering=1)  # Ray's stderr file: echoed to the driver
        fd = os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)
    route_logs(log_file, verbose, console_stream=console)
