// Relocator: what to run instead of an instruction under a breakpoint. See design.md.
