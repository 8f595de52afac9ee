"""RewardServiceConfig: YAML file + CLI flags on top, unknown keys rejected, transport limits consistent."""

import argparse

import pytest

from orchestrator.cli import main
from reward_service.server.cli import add_serve_options
from reward_service.server.config import RewardServiceConfig, load_service_config
from reward_service.transport import grpc_client_options, grpc_server_options


def parse(argv):
    parser = argparse.ArgumentParser()
    add_serve_options(parser)
    return parser.parse_args(argv)


def test_yaml_then_flags(tiny_erv_dir, tmp_path):
    config_file = tmp_path / "reward.yaml"
    config_file.write_text(
        f"model_dir: {tiny_erv_dir}\ngrpc_port: 6000\nmax_wait_ms: 7.5\nsentence_cache_size: 10\n"
    )
    config = load_service_config(parse(["--config", str(config_file), "--grpc-port", "6001"]))
    assert config.grpc_port == 6001  # the flag wins over the file
    assert config.max_wait_ms == 7.5 and config.sentence_cache_size == 10
    assert (
        config.host == "127.0.0.1" and config.http_port == 8000 and config.drain_seconds == 30.0
    )  # defaults


@pytest.mark.parametrize(
    ("yaml_text", "message"),
    [
        ("max_wait_msec: 3\n", "max_wait_msec: Extra inputs are not permitted"),
        ("grpc_port: 70000\n", "grpc_port: Input should be less than or equal to 65535"),
        ("tls_cert: /x.pem\n", "tls_cert and tls_key must be given together"),
        ("- a\n- b\n", "must hold a mapping"),
        ("format_weight: -0.5\n", "format_weight: Input should be greater than or equal to 0"),
        ("explanation_weight: .nan\n", "explanation_weight: Input should be a finite number"),
    ],
)
def test_bad_config_is_one_clear_line(tiny_erv_dir, tmp_path, yaml_text, message):
    config_file = tmp_path / "bad.yaml"
    config_file.write_text(yaml_text)
    with pytest.raises(SystemExit) as err:  # through the CLI, which prints the one line
        main(["reward", "serve", "--config", str(config_file), "--model-dir", str(tiny_erv_dir)])
    assert str(err.value).startswith("erv-grpo: error:") and message in str(err.value)


def test_every_field_is_documented():
    for name, field in RewardServiceConfig.model_fields.items():
        assert field.description, name


def test_client_and_server_transport_limits_agree():
    server, client = dict(grpc_server_options()), dict(grpc_client_options())
    for key in ("grpc.max_receive_message_length", "grpc.max_send_message_length"):
        assert server[key] == client[key]
    # the server must tolerate the client's keepalive pings, or it would close the connection (GOAWAY)
    assert client["grpc.keepalive_time_ms"] >= server["grpc.http2.min_ping_interval_without_data_ms"]
    assert server["grpc.keepalive_permit_without_calls"] == client["grpc.keepalive_permit_without_calls"] == 1
