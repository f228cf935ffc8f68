"""Makes a C program's DWARF say Go: DW_AT_language (DWARF 4, data1) becomes DW_LANG_Go and every
"runtimeX"/"mainX" in .debug_str becomes "runtime."/"main.", as Go spells its types and functions."""
import re, subprocess, sys

path = sys.argv[1]
data = bytearray(open(path, "rb").read())
sections = subprocess.run(["readelf", "-SW", path], capture_output=True, text=True, check=True).stdout
offset = None
for line in sections.splitlines():
    m = re.search(r"\]\s+\.debug_info\s+\S+\s+[0-9a-f]+\s+([0-9a-f]+)", line)
    if m:
        offset = int(m.group(1), 16)
info = subprocess.run(["readelf", "--debug-dump=info", path], capture_output=True, text=True, check=True).stdout
m = re.search(r"<([0-9a-f]+)>\s+DW_AT_language\s*:\s*(\d+)", info)
at = offset + int(m.group(1), 16)
assert data[at] == int(m.group(2)), "DW_AT_language is not a data1 where readelf says"
data[at] = 0x16  # DW_LANG_Go
for old, new in ((b"runtimeX", b"runtime."), (b"mainX", b"main.")):
    data = bytearray(data.replace(old, new))
open(path, "wb").write(data)
