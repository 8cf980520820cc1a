"""libnftables through ctypes: nft commands run in-process, with no fork per block.

The same library the `nft` command uses (Debian: libnftables1, installed with nftables), and
what Debian's python3-nftables binding wraps. One context per thread that uses it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import threading

NFT_CTX_DEFAULT = 0
_lib = None
_local = threading.local()


def _load():
    global _lib
    if _lib is None:
        name = ctypes.util.find_library("nftables") or "libnftables.so.1"
        lib = ctypes.CDLL(name, use_errno=True)
        lib.nft_ctx_new.restype = ctypes.c_void_p
        lib.nft_ctx_new.argtypes = [ctypes.c_uint32]
        lib.nft_ctx_buffer_output.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_buffer_error.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_get_output_buffer.restype = ctypes.c_char_p
        lib.nft_ctx_get_output_buffer.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_get_error_buffer.restype = ctypes.c_char_p
        lib.nft_ctx_get_error_buffer.argtypes = [ctypes.c_void_p]
        lib.nft_run_cmd_from_buffer.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        lib.nft_run_cmd_from_buffer.restype = ctypes.c_int
        lib.nft_ctx_output_set_flags.argtypes = [ctypes.c_void_p, ctypes.c_uint]
        lib.nft_ctx_free.argtypes = [ctypes.c_void_p]
        _lib = lib
    return _lib


def available() -> bool:
    try:
        _load()
        return True
    except OSError:
        return False


def run_script(script: str, json_output: bool = False) -> tuple[int, str, str]:
    """(return code, output, error) of an nft script, run in this process."""
    lib = _load()
    # a context holds a netlink socket of the network namespace it was made in: make a new
    # one if this thread has moved to another namespace since
    netns = os.stat("/proc/thread-self/ns/net").st_ino
    ctx = getattr(_local, "ctx", None)
    if ctx is None or _local.netns != netns:
        if ctx is not None:
            lib.nft_ctx_free(ctx)
        ctx = lib.nft_ctx_new(NFT_CTX_DEFAULT)
        lib.nft_ctx_buffer_output(ctx)
        lib.nft_ctx_buffer_error(ctx)
        _local.ctx, _local.netns = ctx, netns
    lib.nft_ctx_output_set_flags(ctx, 1 << 4 if json_output else 0)  # NFT_CTX_OUTPUT_JSON
    rc = lib.nft_run_cmd_from_buffer(ctx, script.encode())
    out = (lib.nft_ctx_get_output_buffer(ctx) or b"").decode(errors="replace")
    err = (lib.nft_ctx_get_error_buffer(ctx) or b"").decode(errors="replace")
    return rc, out, err
