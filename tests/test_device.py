from labkit.device import cpu_has_bfloat16

ZEN4_FLAGS = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512bw avx512_bf16 avx512_vnni\n"
SKYLAKE_FLAGS = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512bw avx512_vnni\n"


def test_a_cpu_with_avx512_bf16_or_amx_counts_as_bfloat16(tmp_path):
    (tmp_path / "zen4").write_text(ZEN4_FLAGS)
    (tmp_path / "sapphire").write_text(SKYLAKE_FLAGS.replace("avx512_vnni", "avx512_vnni amx_bf16 amx_tile"))
    assert cpu_has_bfloat16(tmp_path / "zen4") and cpu_has_bfloat16(tmp_path / "sapphire")


def test_avx512_without_bf16_units_or_no_cpuinfo_does_not(tmp_path):
    (tmp_path / "skylake").write_text(SKYLAKE_FLAGS)
    (tmp_path / "model_name").write_text("model name\t: avx512_bf16 lookalike\nflags\t\t: fpu sse2\n")
    assert not cpu_has_bfloat16(tmp_path / "skylake")
    assert not cpu_has_bfloat16(tmp_path / "model_name")  # only the flags line counts
    assert not cpu_has_bfloat16(tmp_path / "missing")
