"""models.cpu_heap_reuse: inside, a large CPU block comes from the process heap (no fresh mapping to fault
in); after the outermost use, glibc maps large blocks alone again. Off the CPU it does nothing."""

import ctypes
import platform

import pytest

from videofrom3d.models import cpu_heap_reuse

pytestmark = pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
                                reason="glibc's malloc only")

BLOCK = 64 << 20  # over glibc's largest mmap threshold (32 MB): mapped alone by default


class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                 "keepcost")]


def mapped_alone(size: int = BLOCK) -> int:
    """Bytes glibc holds in blocks mapped alone (``mallinfo2().hblkhd``) more while a ``size`` block lives."""
    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = MallInfo2
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    before = libc.mallinfo2().hblkhd
    block = libc.malloc(size)
    assert block
    try:
        return libc.mallinfo2().hblkhd - before
    finally:
        libc.free(block)


def test_large_cpu_blocks_come_from_the_heap_inside_and_are_mapped_alone_again_after():
    assert mapped_alone() >= BLOCK
    with cpu_heap_reuse("cpu"):
        assert mapped_alone() == 0
        with cpu_heap_reuse("cpu"):
            assert mapped_alone() == 0
        assert mapped_alone() == 0  # the inner exit leaves the outer one's settings
    assert mapped_alone() >= BLOCK


def test_nothing_changes_off_the_cpu():
    with cpu_heap_reuse("cuda"):
        assert mapped_alone() >= BLOCK


def test_overlapping_uses_on_two_threads_keep_the_heap_until_the_last_ends():
    import threading

    entered, release = threading.Event(), threading.Event()

    def other():
        with cpu_heap_reuse("cpu"):
            entered.set()
            release.wait(10)

    t = threading.Thread(target=other)
    with cpu_heap_reuse("cpu"):
        t.start()
        assert entered.wait(10)
    assert mapped_alone() == 0  # this thread's use ended, the other's has not
    release.set()
    t.join(10)
    assert mapped_alone() >= BLOCK
