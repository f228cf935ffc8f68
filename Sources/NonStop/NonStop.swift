// NonStop: the engine, the only module that touches a tracee. See design.md.
