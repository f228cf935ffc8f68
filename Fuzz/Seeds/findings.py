"""Writes malformed variants of the seeds that trapped nstrace's Swift code (Fuzz/Corpus/symbols/
finding-*): replayed by every fuzz run and read by SymbolsTests, they keep the fixes fixed.

finding-symbol-at-top: `dispatch` at 0xffff_ffff_ffff_fff0 with 0x100 bytes (its end wraps: the
  landing-pad range's bounds crossed), `sum` 0xffff_ffff_ffff_fff0 bytes long (the body test in
  function(containing:) overflowed, and Int(size) in fileBytes(of:) trapped).
finding-member-past-end: `struct with_holey`'s member `h` (a struct DWARF gives no members, 4 bytes)
  moved to offset 128 of the 8-byte struct: the classifier's range of eightbytes ran backwards."""
import re, struct, subprocess, sys

def section(path, name):
    out = subprocess.run(["readelf", "-SW", path], capture_output=True, text=True, check=True).stdout
    m = re.search(r"\]\s+" + re.escape(name) + r"\s+\S+\s+([0-9a-f]+)\s+([0-9a-f]+)\s+([0-9a-f]+)\s+([0-9a-f]+)", out)
    return int(m.group(2), 16), int(m.group(3), 16), int(m.group(4), 16)  # offset, size, entsize

def symbol_at_top(src, dst):
    data = bytearray(open(src, "rb").read())
    symtab, size, entsize = section(src, ".symtab")
    strtab, _, _ = section(src, ".strtab")
    for i in range(size // entsize):
        at = symtab + i * entsize
        name_offset = struct.unpack_from("<I", data, at)[0]
        name = data[strtab + name_offset:data.index(0, strtab + name_offset)].decode()
        if name == "dispatch":
            struct.pack_into("<QQ", data, at + 8, 0xffff_ffff_ffff_fff0, 0x100)
        if name == "sum":
            struct.pack_into("<Q", data, at + 16, 0xffff_ffff_ffff_fff0)
    open(dst, "wb").write(data)

def member_past_end(src, dst):
    data = bytearray(open(src, "rb").read())
    info, _, _ = section(src, ".debug_info")
    dump = subprocess.run(["readelf", "--debug-dump=info", src], capture_output=True, text=True, check=True).stdout
    m = re.search(r"DW_AT_name\s*:.*with_holey\n(?:.*\n)*?\s*<[0-9a-f]+>\s+DW_AT_name\s*: h\n(?:.*\n)*?\s*<([0-9a-f]+)>\s+DW_AT_data_member_location: 4", dump)
    at = info + int(m.group(1), 16)
    assert data[at] == 4, "member h's location is not a data1 of 4"
    data[at] = 128
    open(dst, "wb").write(data)

corpus = sys.argv[1]
symbol_at_top(f"{corpus}/types-O1", f"{corpus}/finding-symbol-at-top")
member_past_end(f"{corpus}/types-O1-dwarf4", f"{corpus}/finding-member-past-end")
