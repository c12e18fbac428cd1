"""Tests for app/cpus.py: a container's CPU quota caps the CPUs the service sizes its threads by."""

import pytest

from app.cpus import affinity_cpus, cgroup_cpu_quota, usable_cpus


@pytest.mark.parametrize(
    ("text", "quota"),
    [("200000 100000\n", 2.0), ("150000 100000", 1.5), ("max 100000\n", None), ("5 0", None), ("junk", None)],
)
def test_cgroup_v2_quota(tmp_path, text, quota):
    (tmp_path / "cpu.max").write_text(text)
    assert cgroup_cpu_quota(tmp_path) == quota


def test_cgroup_v1_quota(tmp_path):
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("50000\n")
    assert cgroup_cpu_quota(tmp_path) == 0.5
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")  # v1's "no limit"
    assert cgroup_cpu_quota(tmp_path) is None


def test_no_cgroup_files_means_no_cap(tmp_path):
    assert cgroup_cpu_quota(tmp_path) is None
    assert usable_cpus(tmp_path) == affinity_cpus()


def test_a_quota_caps_the_cpus_and_rounds_a_fraction_up(tmp_path):
    (tmp_path / "cpu.max").write_text("50000 100000")  # half a CPU still gets one thread
    assert usable_cpus(tmp_path) == 1
    (tmp_path / "cpu.max").write_text(f"{150000 * affinity_cpus()} 100000")  # more than the host has
    assert usable_cpus(tmp_path) == affinity_cpus()
