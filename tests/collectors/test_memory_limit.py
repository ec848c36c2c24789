from pathlib import Path

import pytest

from tornado_memory_exporter.collectors.memory_limit import MemoryLimit

GiB = 2**30
HOST = 64 * GiB


def lay_out(root: Path, files: dict[str, str]) -> MemoryLimit:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return MemoryLimit(root=root, host_total=lambda: HOST)


def test_cgroup_v2_limit_of_the_process_cgroup(tmp_path):
    limit = lay_out(
        tmp_path,
        {
            "proc/self/cgroup": "0::/kubepods/pod1/ctr\n",
            "sys/fs/cgroup/kubepods/pod1/ctr/memory.max": f"{2 * GiB}\n",
            "sys/fs/cgroup/kubepods/pod1/memory.max": "max\n",
        },
    )
    assert limit.bytes() == 2 * GiB


def test_the_tightest_ancestor_limit_wins(tmp_path):
    limit = lay_out(
        tmp_path,
        {
            "proc/self/cgroup": "0::/app/worker\n",
            "sys/fs/cgroup/app/worker/memory.max": "max\n",
            "sys/fs/cgroup/app/memory.max": f"{GiB}\n",
        },
    )
    assert limit.bytes() == GiB


def test_cgroup_namespace_reads_the_mount_root(tmp_path):
    # Inside a container the path says "/" and the limit sits at the mount root.
    limit = lay_out(
        tmp_path,
        {
            "proc/self/cgroup": "0::/\n",
            "sys/fs/cgroup/memory.max": f"{3 * GiB}\n",
        },
    )
    assert limit.bytes() == 3 * GiB


def test_cgroup_v1_memory_controller(tmp_path):
    limit = lay_out(
        tmp_path,
        {
            "proc/self/cgroup": "5:cpu,cpuacct:/x\n4:memory:/docker/abc\n0::/\n",
            "sys/fs/cgroup/memory/docker/abc/memory.limit_in_bytes": f"{512 * 2**20}\n",
        },
    )
    assert limit.bytes() == 512 * 2**20


def test_v1_unlimited_sentinel_falls_back_to_host_total(tmp_path):
    limit = lay_out(
        tmp_path,
        {
            "proc/self/cgroup": "4:memory:/\n",
            "sys/fs/cgroup/memory/memory.limit_in_bytes": "9223372036854771712\n",
        },
    )
    assert limit.bytes() == HOST


def test_hybrid_hierarchy_reads_unified_mount(tmp_path):
    limit = lay_out(
        tmp_path,
        {
            "proc/self/cgroup": "0::/svc\n",
            "sys/fs/cgroup/unified/cgroup.controllers": "memory\n",
            "sys/fs/cgroup/unified/svc/memory.max": f"{GiB}\n",
        },
    )
    assert limit.bytes() == GiB


def test_no_cgroup_files_at_all_means_host_total(tmp_path):
    assert MemoryLimit(root=tmp_path, host_total=lambda: HOST).bytes() == HOST


def test_a_read_limit_is_kept_for_the_ttl_and_a_failed_read_is_not(tmp_path):
    now = [100.0]
    reads = []
    (tmp_path / "proc/self").mkdir(parents=True)
    (tmp_path / "proc/self/cgroup").write_text("0::/\n")
    limit_file = tmp_path / "sys/fs/cgroup/memory.max"
    limit_file.parent.mkdir(parents=True)
    limit_file.write_text(f"{GiB}\n")

    def host_total():
        reads.append(now[0])
        if len(reads) == 3:
            raise OSError("meminfo unreadable")
        return HOST

    limit = MemoryLimit(root=tmp_path, host_total=host_total, ttl=60, clock=lambda: now[0])
    assert limit.bytes() == GiB
    limit_file.write_text(f"{2 * GiB}\n")
    now[0] = 159.9
    assert limit.bytes() == GiB  # kept: nothing re-read
    now[0] = 160.0
    assert limit.bytes() == 2 * GiB  # expired: re-read
    now[0] = 220.0
    with pytest.raises(OSError, match="meminfo unreadable"):
        limit.bytes()
    assert limit.bytes() == 2 * GiB  # the failure was not kept: read again at once
    assert reads == [100.0, 160.0, 220.0, 220.0]
