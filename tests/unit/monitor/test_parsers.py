"""Parsers on output captured from real machines (this one and busybox variants)."""

from __future__ import annotations

from pathlib import Path

import pytest

from otto.monitor.parsers import (
    CORE_METRICS,
    DEFAULT_PARSERS,
    FREE_PARSERS,
    MetricParser,
    Parsed,
    Sample,
    counter_delta,
    gauge_parser,
    is_whole_disk,
    parse_df,
    parse_diskstats,
    parse_free_bytes,
    parse_free_kib,
    parse_loadavg,
    parse_meminfo,
    parse_net_dev,
    parse_proc_stat,
)

DATA = Path(__file__).parent / "data"


def text(name: str) -> str:
    return (DATA / name).read_text()


def two_readings(parser: MetricParser, first: str, second: str, dt: float = 1.0) -> Parsed:
    """Parse ``first`` at t=10, then ``second`` dt seconds later with the first as previous."""
    before = parser(text(first), 10.0, None)
    return parser(text(second), 10.0 + dt, Sample(10.0, before.counters))


def meminfo_kib(name: str) -> dict[str, int]:
    fields = {}
    for line in text(name).splitlines():
        key, _, rest = line.partition(":")
        fields[key] = int(rest.split()[0])
    return fields


# --- counters -----------------------------------------------------------------------------


def test_counter_delta_handles_growth_wrap_and_reset() -> None:
    assert counter_delta(150, 100) == 50
    assert counter_delta(100, 100) == 0
    assert counter_delta(32704, 4_294_900_000) == 100_000  # 32-bit wrap
    assert counter_delta(5, (1 << 64) - 10) == 15  # 64-bit wrap
    assert counter_delta(1_000, 5_000_000_000) is None  # 64-bit counter reset by a reboot
    assert counter_delta(1_000, 300_000_000) is None  # too far back for a 32-bit wrap


# --- /proc/stat ----------------------------------------------------------------------------


def test_first_proc_stat_reading_has_counters_but_no_percent() -> None:
    parsed = parse_proc_stat(text("proc_stat_1.txt"), 0.0, None)
    assert parsed.metrics == {}
    assert {"cpu.total", "cpu.idle", "cpu0.total", "cpu1.idle"} <= set(parsed.counters)


def test_proc_stat_total_and_per_core_percent() -> None:
    parsed = two_readings(parse_proc_stat, "proc_stat_4core_1.txt", "proc_stat_4core_2.txt")
    # total: +400 user +100 system +1200 idle +100 iowait -> 500 busy of 1800
    assert parsed.metrics["cpu.percent"] == pytest.approx(100 * 500 / 1800)
    assert parsed.metrics["cpu.percent[cpu0]"] == pytest.approx(100 * 125 / 425)
    assert parsed.metrics["cpu.percent[cpu3]"] == pytest.approx(100 * 125 / 525)
    assert len([m for m in parsed.metrics if m.startswith("cpu.percent[")]) == 4


def test_proc_stat_captured_here_gives_percentages_in_range() -> None:
    parsed = two_readings(parse_proc_stat, "proc_stat_1.txt", "proc_stat_2.txt")
    assert set(parsed.metrics) == {"cpu.percent", "cpu.percent[cpu0]", "cpu.percent[cpu1]"}
    assert all(0.0 <= v <= 100.0 for v in parsed.metrics.values())


def test_proc_stat_after_reboot_gives_no_percent_then_recovers() -> None:
    after = two_readings(parse_proc_stat, "proc_stat_4core_2.txt", "proc_stat_rebooted.txt")
    assert after.metrics == {}
    again = parse_proc_stat(
        text("proc_stat_4core_1.txt"), 12.0, Sample(11.0, after.counters)
    )  # counters far above the rebooted ones: a plain increase
    assert 0.0 <= again.metrics["cpu.percent"] <= 100.0


def test_proc_stat_iowait_going_backwards_is_clamped() -> None:
    first = "cpu  100 0 100 1000 50 0 0 0 0 0\n"
    second = "cpu  100 0 100 1010 40 0 0 0 0 0\n"  # idle +10, iowait -10: total unchanged
    third = "cpu  110 0 100 1020 30 0 0 0 0 0\n"  # user +10, idle +10, iowait -10
    p1 = parse_proc_stat(first, 0.0, None)
    assert parse_proc_stat(second, 1.0, Sample(0.0, p1.counters)).metrics == {}
    p2 = parse_proc_stat(second, 1.0, Sample(0.0, p1.counters))
    p3 = parse_proc_stat(third, 2.0, Sample(1.0, p2.counters))
    assert p3.metrics["cpu.percent"] == 100.0


# --- memory ---------------------------------------------------------------------------------


def test_meminfo_used_is_total_minus_available() -> None:
    kib = meminfo_kib("meminfo.txt")
    metrics = parse_meminfo(text("meminfo.txt"), 0.0, None).metrics
    assert metrics["mem.total_bytes"] == kib["MemTotal"] * 1024
    assert metrics["mem.used_bytes"] == (kib["MemTotal"] - kib["MemAvailable"]) * 1024
    assert metrics["mem.percent"] == pytest.approx(
        100 * (kib["MemTotal"] - kib["MemAvailable"]) / kib["MemTotal"]
    )
    assert metrics["swap.used_bytes"] == (kib["SwapTotal"] - kib["SwapFree"]) * 1024


def test_meminfo_of_a_kernel_without_memavailable() -> None:
    metrics = parse_meminfo(text("meminfo_old_kernel.txt"), 0.0, None).metrics
    available = 22840 + 31164 + 312316 + 33012  # free + buffers + cached + reclaimable slab
    assert metrics["mem.used_bytes"] == (514392 - available) * 1024
    assert metrics["swap.used_bytes"] == (1048568 - 1046200) * 1024
    assert metrics["swap.total_bytes"] == 1048568 * 1024


def test_free_b_of_procps_matches_its_available_column() -> None:
    mem = text("free_b.txt").splitlines()[1].split()
    metrics = parse_free_bytes(text("free_b.txt"), 0.0, None).metrics
    assert metrics["mem.total_bytes"] == int(mem[1])
    assert metrics["mem.used_bytes"] == int(mem[1]) - int(mem[6])


@pytest.mark.parametrize(
    ("name", "parser", "total", "used", "swap_total"),
    [
        ("busybox_free_b.txt", parse_free_bytes, None, None, 0),
        ("busybox_free.txt", parse_free_kib, None, None, 0),
        ("busybox_free_old.txt", parse_free_kib, 255820 * 1024, 139648 * 1024, 0),
        ("busybox_free_old_cached.txt", parse_free_kib, 124668 * 1024, 27176 * 1024, 131068 * 1024),
        ("procps3_free_b.txt", parse_free_bytes, 8254558208, 2552676352, 2147479552),
    ],
)
def test_free_variants(
    name: str, parser: MetricParser, total: int | None, used: int | None, swap_total: int
) -> None:
    metrics = parser(text(name), 0.0, None).metrics
    if total is None:  # captured here: check against the row itself
        unit = 1 if parser is parse_free_bytes else 1024
        row = [int(v) * unit for v in text(name).splitlines()[1].split()[1:]]
        total, used = row[0], row[0] - row[5]
    assert metrics["mem.total_bytes"] == total
    assert metrics["mem.used_bytes"] == used
    assert metrics["swap.total_bytes"] == swap_total
    assert 0.0 < metrics["mem.percent"] < 100.0


def test_free_parsers_are_offered_for_hosts_without_meminfo() -> None:
    assert FREE_PARSERS["free -b"] is parse_free_bytes
    assert FREE_PARSERS["free"] is parse_free_kib
    assert parse_free_kib("", 0.0, None).metrics == {}


# --- load ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["loadavg.txt", "busybox_loadavg.txt"])
def test_loadavg(name: str) -> None:
    fields = text(name).split()
    metrics = parse_loadavg(text(name), 0.0, None).metrics
    assert metrics["load.1m"] == float(fields[0])
    assert metrics["load.15m"] == float(fields[2])
    assert metrics["procs.total"] == float(fields[3].split("/")[1])
    assert parse_loadavg("", 0.0, None).metrics == {}


# --- network ------------------------------------------------------------------------------


def test_net_dev_rates_with_32bit_wrap_and_lo_left_out_of_the_total() -> None:
    metrics = two_readings(parse_net_dev, "net_dev_old_1.txt", "net_dev_old_2.txt", 2.0).metrics
    assert metrics["net.rx_bytes_per_s[eth0]"] == 50_000.0  # wrapped at 2**32
    assert metrics["net.tx_bytes_per_s[eth0]"] == 50_000.0
    assert metrics["net.rx_bytes_per_s[lo]"] == 5_000.0
    assert metrics["net.rx_bytes_per_s"] == 50_000.0
    assert metrics["net.tx_bytes_per_s"] == 50_000.0
    assert metrics["net.rx_bytes_per_s[wlan0]"] == 0.0


def test_net_dev_captured_here() -> None:
    metrics = two_readings(parse_net_dev, "net_dev_1.txt", "net_dev_2.txt").metrics
    assert {"net.rx_bytes_per_s", "net.tx_bytes_per_s", "net.rx_bytes_per_s[eth0]"} <= set(metrics)
    assert all(v >= 0 for v in metrics.values())


def test_net_dev_reset_interface_gives_no_rate_and_counts_nothing() -> None:
    header = text("net_dev_1.txt").splitlines()[:2]
    line = "  eth0: {} 10 0 0 0 0 0 0 {} 10 0 0 0 0 0 0"
    before = "\n".join([*header, line.format(9_000_000_000, 9_000_000_000)])
    after = "\n".join([*header, line.format(4_000, 5_000)])
    first = parse_net_dev(before, 0.0, None)
    assert first.metrics == {}
    metrics = parse_net_dev(after, 5.0, Sample(0.0, first.counters)).metrics
    assert "net.rx_bytes_per_s[eth0]" not in metrics
    assert metrics["net.rx_bytes_per_s"] == 0.0


# --- disks ------------------------------------------------------------------------------------


def test_whole_disks_are_told_from_partitions_and_virtual_devices() -> None:
    for disk in ("sda", "sdaa", "vda", "xvdb", "nvme0n1", "nvme1n10", "mmcblk0", "hdc"):
        assert is_whole_disk(disk), disk
    for other in ("sda1", "vda2", "nvme0n1p1", "mmcblk0p1", "mmcblk0boot0", "dm-0", "md0"):
        assert not is_whole_disk(other), other
    for other in ("loop0", "zram0", "ram1", "sr0", "nbd3"):
        assert not is_whole_disk(other), other


def test_diskstats_whole_disks_only() -> None:
    metrics = two_readings(parse_diskstats, "diskstats_server_1.txt", "diskstats_server_2.txt")
    disks = {m.split("[")[1][:-1] for m in metrics.metrics if "[" in m}
    assert disks == {"sda", "sdb", "nvme0n1", "mmcblk0"}
    assert metrics.metrics["disk.read_bytes_per_s[sda]"] == 1000 * 512
    assert metrics.metrics["disk.write_bytes_per_s[nvme0n1]"] == 20000 * 512
    assert metrics.metrics["disk.read_bytes_per_s"] == (1000 + 10000) * 512
    assert metrics.metrics["disk.write_bytes_per_s"] == (10000 + 20000) * 512


def test_diskstats_captured_here() -> None:
    metrics = two_readings(parse_diskstats, "diskstats_1.txt", "diskstats_2.txt").metrics
    assert set(metrics) == {
        "disk.read_bytes_per_s",
        "disk.write_bytes_per_s",
        "disk.read_bytes_per_s[vda]",
        "disk.write_bytes_per_s[vda]",
    }
    assert metrics["disk.write_bytes_per_s"] > 0  # the capture wrote 64 MiB between readings


# --- df -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["df_P.txt", "busybox_df_P.txt"])
def test_df_root_used_percent(name: str) -> None:
    root = next(line.split() for line in text(name).splitlines() if line.endswith(" /"))
    used, available = int(root[2]), int(root[3])
    metrics = parse_df(text(name), 0.0, None).metrics
    assert metrics["disk.used_percent"] == pytest.approx(100 * used / (used + available))
    assert metrics["disk.used_percent[/]"] == metrics["disk.used_percent"]
    # df's own Capacity column is the same share rounded (up, for GNU)
    assert abs(metrics["disk.used_percent"] - int(root[4].rstrip("%"))) < 1.0


def test_df_mount_points_with_spaces_and_filesystems_without_blocks() -> None:
    metrics = parse_df(text("df_P_spaces.txt"), 0.0, None).metrics
    assert metrics["disk.used_percent[/mnt/My Share]"] == pytest.approx(
        100 * 959312576 / (959312576 + 962383168)
    )
    assert "disk.used_percent[/proc-like]" not in metrics
    assert metrics["disk.used_percent"] == pytest.approx(100 * 38211112 / (38211112 + 10494964))


def test_df_busybox_wrapped_line() -> None:
    metrics = parse_df(text("busybox_df_wrapped.txt"), 0.0, None).metrics
    assert metrics["disk.used_percent[/data]"] == pytest.approx(100 * 512000 / 963200)
    assert set(metrics) == {
        "disk.used_percent",
        "disk.used_percent[/]",
        "disk.used_percent[/dev]",
        "disk.used_percent[/data]",
    }


# --- the table ------------------------------------------------------------------------------------


def test_default_parsers_over_two_captured_rounds_give_the_contract_metrics() -> None:
    files = {
        "cat /proc/stat": ("proc_stat_1.txt", "proc_stat_2.txt"),
        "cat /proc/meminfo": ("meminfo.txt", "meminfo.txt"),
        "cat /proc/loadavg": ("loadavg.txt", "loadavg.txt"),
        "cat /proc/net/dev": ("net_dev_1.txt", "net_dev_2.txt"),
        "cat /proc/diskstats": ("diskstats_1.txt", "diskstats_2.txt"),
        "df -P": ("df_P.txt", "df_P.txt"),
    }
    assert set(files) == set(DEFAULT_PARSERS)
    metrics: dict[str, float] = {}
    for command, (first, second) in files.items():
        metrics.update(two_readings(DEFAULT_PARSERS[command], first, second).metrics)
    for name in CORE_METRICS:
        assert name in metrics, name


def test_gauge_parser_wraps_a_plain_function() -> None:
    def gpu(output: str) -> dict[str, float]:
        return {"gpu.percent": float(output.strip())}

    parser = gauge_parser(gpu)
    assert parser("42\n", 0.0, None) == Parsed({"gpu.percent": 42.0})
    assert parser.__name__ == "gpu"  # type: ignore[attr-defined]
