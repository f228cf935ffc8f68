"""Writes the Relocator fuzzer's seeds (Fuzz/Corpus/relocator): the input header (address, second
address, flags, size byte; see Fuzz/Relocator) before real functions' bytes from the Symbols seeds and
hand-picked forms (a Go stack check, RIP-relative loads and calls, loop/jrcxz, a switch's table)."""
import os, re, struct, subprocess

here = os.path.dirname(os.path.abspath(__file__))
out = os.path.join(here, "..", "Corpus", "relocator")
os.makedirs(out, exist_ok=True)

def seed(name, code, address=0x401000, other=0x7f00_0000_1000, flags=0x02, size=0x10):
    with open(os.path.join(out, name), "wb") as f:
        f.write(struct.pack("<QQBB", address, other, flags, size) + bytes(code))

def functions(path):
    syms = subprocess.run(["nm", "-S", "--defined-only", path], capture_output=True, text=True, check=True).stdout
    text = subprocess.run(["readelf", "-SW", path], capture_output=True, text=True, check=True).stdout
    m = re.search(r"\.text\s+PROGBITS\s+([0-9a-f]+)\s+([0-9a-f]+)\s+([0-9a-f]+)", text)
    addr, off = int(m.group(1), 16), int(m.group(2), 16)
    data = open(path, "rb").read()
    for line in syms.splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[2] in "tT":
            a, s = int(parts[0], 16), int(parts[1], 16)
            yield parts[3], a, data[off + a - addr: off + a - addr + s + 16]

symbols = os.path.join(here, "..", "Corpus", "symbols")
for name, address, code in functions(os.path.join(symbols, "types-O2-eh")):
    if name in ("dispatch", "sum", "make_nested", "take_big"):
        # The size byte's low five bits are the padding taken from the end: the 16 bytes read past it.
        seed("types-" + name, code, address=address, flags=0x02, size=0x10)
seed("go-prologue", [
    0x49, 0x3b, 0x66, 0x10,              # cmp rsp, [r14+0x10]
    0x76, 0x12,                          # jbe morestack
    0x55, 0x48, 0x89, 0xe5,              # push rbp; mov rbp, rsp
    0x48, 0x83, 0xec, 0x20,              # sub rsp, 0x20
    0x48, 0x8d, 0x05, 0x00, 0x01, 0x00, 0x00,  # lea rax, [rip+0x100]
    0x48, 0x83, 0xc4, 0x20, 0x5d, 0xc3,  # add rsp, 0x20; pop rbp; ret
    0xe8, 0x00, 0x00, 0x00, 0x00,        # call morestack
    0xeb, 0xe0,                          # jmp start
    0xcc, 0xcc, 0xcc, 0xcc,
], flags=0x22, size=0x04)
seed("riprel-forms", [
    0xf3, 0x0f, 0x1e, 0xfa,              # endbr64
    0x48, 0x81, 0xec, 0x00, 0x10, 0x00, 0x00,  # sub rsp, 0x1000
    0x66, 0xc7, 0x05, 0x10, 0x00, 0x00, 0x00, 0x01, 0x00,  # mov word [rip+0x10], 1
    0xc5, 0xf9, 0x6f, 0x05, 0x20, 0x00, 0x00, 0x00,  # vmovdqa xmm0, [rip+0x20]
    0xff, 0x15, 0x30, 0x00, 0x00, 0x00,  # call [rip+0x30]
    0xe2, 0xfe,                          # loop .
    0xe3, 0x02,                          # jrcxz +2
    0x8f, 0x05, 0x00, 0x00, 0x00, 0x00,  # pop [rip+0]
    0xff, 0x25, 0x00, 0x00, 0x00, 0x00,  # jmp [rip+0]
    0x90, 0x90, 0x90, 0x90, 0x90,
], address=0x7fff_ffff_f000, other=0x1000, flags=0x00, size=0x05)
seed("near-top", [0x55, 0x48, 0x89, 0xe5, 0x5d, 0xc3, 0x0f, 0x1f, 0x00],
     address=0xffff_ffff_ffff_fff8, other=0xffff_ffff_ffff_0000, flags=0x84, size=0x03)
