"""orchestrator/logs.py: libraries' logs go to the log file; the terminal keeps real problems."""

import logging
import os
import warnings

import pytest

from orchestrator import logs


@pytest.fixture
def routed(tmp_path, monkeypatch):
    """route_logs for one test; the process's logging is put back afterwards."""
    from transformers.utils import logging as hf_logging

    root = logging.getLogger()
    level, ray_propagates = root.level, logging.getLogger("ray").propagate
    monkeypatch.setenv("VLLM_CONFIGURE_LOGGING", "0")  # restored after the test
    yield lambda verbose=False: logs.route_logs(tmp_path / "logs" / "driver.log", verbose)
    for handler in logs._installed:
        root.removeHandler(handler)
        handler.close()
    logs._installed.clear()
    logs._routed.clear()
    root.setLevel(level)
    logging.captureWarnings(False)
    logging.getLogger("ray").propagate = ray_propagates
    hf_logging.enable_default_handler()
    hf_logging.disable_propagation()
    hf_logging.enable_progress_bar()


def test_library_info_goes_to_the_file_only(routed, capfd):
    log_file = routed()
    logging.getLogger("vllm.v1.engine.core").info("Initializing a V1 LLM engine")
    logging.getLogger("ray._private.worker").info("Started a local Ray instance.")
    assert capfd.readouterr().err == ""
    text = log_file.read_text()
    assert "INFO vllm.v1.engine.core: Initializing a V1 LLM engine" in text
    assert "Started a local Ray instance." in text


def test_warnings_that_signal_a_problem_stay_visible(routed, capfd):
    log_file = routed()
    vllm = logging.getLogger("vllm.model_executor.model_loader.reload.layerwise")
    vllm.warning("RotaryEmbedding: Failed to load weights")  # known: no weights to load
    logging.getLogger("vllm.v1.worker.cpu_worker").warning("libiomp is not found in LD_PRELOAD. For best")
    vllm.warning("KV cache is nearly full, preempting requests")  # not known: shown
    logging.getLogger("transformers.modeling_utils").error("weights could not be read")
    logging.getLogger("erv_grpo.reward_client").warning("reward service UNAVAILABLE; retrying")
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.warn("`reduce_op` is deprecated", FutureWarning, stacklevel=1)
        warnings.warn("tokenizer has no pad token", UserWarning, stacklevel=1)
        # A Python warning that is known noise (decoded clips are read-only arrays) stays in the file.
        warnings.warn("The given NumPy array is not writable, and PyTorch does not support non-writable "
                      "tensors. This means ...", UserWarning, stacklevel=1)  # fmt: skip
    err = capfd.readouterr().err
    assert "Failed to load weights" not in err and "LD_PRELOAD" not in err and "reduce_op" not in err
    assert "not writable" not in err
    for shown in ("preempting requests", "weights could not be read", "retrying", "no pad token"):
        assert shown in err
    text = log_file.read_text()
    for kept in ("Failed to load weights", "LD_PRELOAD", "reduce_op", "preempting requests", "not writable"):
        assert kept in text


def test_verbose_shows_everything(routed, capfd):
    routed(verbose=True)
    logging.getLogger("vllm.config.model").info("Resolved architecture: Qwen2ForCausalLM")
    logging.getLogger("vllm.x").warning("RotaryEmbedding: Failed to load weights")
    err = capfd.readouterr().err
    assert "Resolved architecture" in err and "Failed to load weights" in err


def test_quiet_streams_sends_raw_writes_to_the_file(routed, capfd):
    log_file = routed()
    with logs.quiet_streams():
        os.write(2, b"[W utils.cpp:68] Warning: NUMA binding\n")  # what C++ code writes
        os.write(1, b"Loading safetensors checkpoint shards: 100%\n")
        logging.getLogger("vllm.x").warning("a new problem")
    print("after")
    out, err = capfd.readouterr()
    assert "NUMA" not in err and "Loading safetensors" not in out
    assert "a new problem" in err and "after" in out
    text = log_file.read_text()
    assert "NUMA binding" in text and "Loading safetensors" in text


def test_ray_workers_route_through_the_setup_hook(tmp_path):
    env = logs.ray_runtime_env(tmp_path / "logs", verbose=False)
    assert env["worker_process_setup_hook"] == "orchestrator.logs.setup_ray_worker"
    assert env["env_vars"][logs.LOG_DIR_ENV] == str((tmp_path / "logs").resolve())
    assert env["env_vars"]["VLLM_CONFIGURE_LOGGING"] == "0"
