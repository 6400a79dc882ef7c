"""A hand-made ``.pth`` writer: the pickle opcodes ``torch.save`` writes for a state dict, and the
zip archive around them (no PyTorch needed)."""

from __future__ import annotations

import struct
import zipfile


class PickleWriter:
    """Pickle protocol 2 opcodes, enough for a torch state dict."""

    def __init__(self):
        self.out = bytearray(b"\x80\x02")  # PROTO 2

    def glob(self, module: str, name: str):
        self.out += b"c" + module.encode() + b"\n" + name.encode() + b"\n"  # GLOBAL

    def int(self, n: int):
        self.out += b"J" + struct.pack("<i", n)  # BININT

    def str(self, s: str):
        data = s.encode()
        self.out += b"X" + struct.pack("<I", len(data)) + data  # BINUNICODE

    def false(self):
        self.out += b"\x89"  # NEWFALSE

    def mark(self):
        self.out += b"("

    def tuple(self):
        self.out += b"t"  # TUPLE from the last mark

    def ints(self, values):
        self.mark()
        for v in values:
            self.int(v)
        self.tuple()

    def storage_id(self, storage_class: str, key: str, numel: int, module: str = "torch"):
        self.mark()
        self.str("storage")
        self.glob(module, storage_class)
        self.str(key)
        self.str("cpu")
        self.int(numel)
        self.tuple()
        self.out += b"Q"  # BINPERSID

    def tensor(self, storage_class, key, numel, offset, size, stride, dtype=None):
        """``_rebuild_tensor_v2(storage, offset, size, stride, False, OrderedDict())`` (or v3)."""
        self.glob("torch._utils", "_rebuild_tensor_v3" if dtype else "_rebuild_tensor_v2")
        self.mark()
        self.storage_id(storage_class, key, numel)
        self.int(offset)
        self.ints(size)
        self.ints(stride)
        self.false()
        self.ordered_dict_empty()
        if dtype:
            self.glob("torch", dtype)
        self.tuple()
        self.out += b"R"  # REDUCE

    def ordered_dict_empty(self):
        self.glob("collections", "OrderedDict")
        self.out += b")R"  # EMPTY_TUPLE, REDUCE

    def state_dict(self, items):
        """``items``: (key, callable that writes the value)."""
        self.ordered_dict_empty()
        self.mark()
        for key, write in items:
            self.str(key)
            write()
        self.out += b"u."  # SETITEMS, STOP
        return bytes(self.out)


def write_archive(path, pkl: bytes, storages: dict, top="weights", byteorder="little"):
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(f"{top}/data.pkl", pkl)
        if byteorder is not None:
            z.writestr(f"{top}/byteorder", byteorder)
        for key, raw in storages.items():
            z.writestr(f"{top}/data/{key}", raw)
        z.writestr(f"{top}/version", "3\n")
