"""`auto | fp32 | bf16`: auto picks bf16 on CUDA and on CPUs with AVX512-BF16 or AMX, fp32 elsewhere."""

import pytest

from common.precision import choose_precision, cpu_flags

AVX2_ONLY = {"fpu", "sse2", "avx", "avx2", "fma"}
AVX512_NO_BF16 = AVX2_ONLY | {"avx512f", "avx512bw", "avx512_vnni"}
AVX512_BF16 = AVX512_NO_BF16 | {"avx512_bf16"}
SAPPHIRE_RAPIDS = AVX512_BF16 | {"amx_tile", "amx_bf16", "amx_int8"}


@pytest.mark.parametrize(
    ("device", "flags", "chosen"),
    [
        ("cpu", AVX2_ONLY, "fp32"),
        ("cpu", AVX512_NO_BF16, "fp32"),  # AVX-512 alone has no bf16 dot product
        ("cpu", AVX512_BF16, "bf16"),
        ("cpu", SAPPHIRE_RAPIDS, "bf16"),
        ("cpu", {"amx_bf16"}, "bf16"),
        ("cuda", set(), "bf16"),
        ("cuda:1", AVX2_ONLY, "bf16"),
    ],
)
def test_auto(device, flags, chosen):
    precision, why = choose_precision("auto", device, frozenset(flags))
    assert precision == chosen
    assert why.startswith("auto: ")


@pytest.mark.parametrize("requested", ["fp32", "bf16"])
def test_an_explicit_choice_wins_on_any_device(requested):
    assert choose_precision(requested, "cpu", frozenset())[0] == requested
    assert choose_precision(requested, "cuda", frozenset(SAPPHIRE_RAPIDS))[0] == requested


def test_a_bad_value_is_named():
    with pytest.raises(ValueError, match="'fp8'"):
        choose_precision("fp8", "cpu", frozenset())


def test_cpu_flags_reads_the_first_flags_line(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512_bf16\n\nprocessor\t: 1\nflags\t\t: fpu\n")
    assert cpu_flags(info) == {"fpu", "avx2", "avx512_bf16"}
    assert cpu_flags(tmp_path / "missing") == frozenset()
