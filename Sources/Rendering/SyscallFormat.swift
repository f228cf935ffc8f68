import NonStop

/// A syscall as strace writes it — `openat(AT_FDCWD, "/etc/x", O_RDONLY) = -1 ENOENT (No such file or
/// directory)` — and as a JSON Lines event's fields; shared by the renderers.
extension Output {
    func syscallText(_ call: SyscallEvent) {
        append(call.name)
        byte(UInt8(ascii: "("))
        for (i, argument) in call.arguments.enumerated() {
            if i > 0 { append(", " as StaticString) }
            syscallText(argument.value)
        }
        append(") = " as StaticString)
        if !call.returns {
            byte(UInt8(ascii: "?"))
        } else if call.errno != 0 {
            append("-1 " as StaticString)
            append(errnoName(call.errno))
            append(" (" as StaticString)
            append(errnoMessage(call.errno))
            byte(UInt8(ascii: ")"))
        } else if call.resultIsAddress {
            hex(UInt64(bitPattern: call.result))
        } else {
            decimal(call.result)
        }
    }

    private func syscallText(_ value: SyscallValue) {
        switch value {
        case .signed(let v): decimal(v)
        case .unsigned(let v): decimal(v)
        case .hex(let v): hex(v)
        case .octal(let v): octal(v)
        case .string(let bytes, let truncated):
            byte(UInt8(ascii: "\""))
            bytes.withUnsafeBytes { escaped($0, quote: UInt8(ascii: "\"")) }
            byte(UInt8(ascii: "\""))
            if truncated { append("..." as StaticString) }
        case .symbol(let name): append(name)
        }
    }

    /// 0644; 0 alone for no bits.
    private func octal(_ v: UInt64) {
        append("0" + (v == 0 ? "" : String(v, radix: 8)))
    }

    /// `,"name":…,"nr":…,"args":[{"name":…,"value":…}],"retval":…[,"errno":…]`: what a syscall event
    /// has beyond the fields every event has. exit and exit_group have no `retval`.
    func syscallJSON(_ call: SyscallEvent) {
        append(",\"name\":" as StaticString)
        jsonString(call.name)
        append(",\"nr\":" as StaticString)
        decimal(call.number)
        append(",\"args\":[" as StaticString)
        for (i, argument) in call.arguments.enumerated() {
            if i > 0 { byte(UInt8(ascii: ",")) }
            append("{\"name\":" as StaticString)
            jsonString(argument.name)
            append(",\"value\":" as StaticString)
            switch argument.value {
            case .signed(let v): decimal(v)
            case .unsigned(let v): decimal(v)
            case .hex(let v): jsonHex(v)
            case .octal(let v): jsonString("0" + (v == 0 ? "" : String(v, radix: 8)))
            case .string(let bytes, let truncated):
                bytes.withUnsafeBytes { jsonString($0, suffix: truncated ? "..." : "") }
            case .symbol(let name): jsonString(name)
            }
            byte(UInt8(ascii: "}"))
        }
        byte(UInt8(ascii: "]"))
        guard call.returns else { return }
        append(",\"retval\":" as StaticString)
        if call.resultIsAddress && call.errno == 0 { jsonHex(UInt64(bitPattern: call.result)) } else { decimal(call.result) }
        if call.errno != 0 {
            append(",\"errno\":" as StaticString)
            jsonString(errnoName(call.errno))
        }
    }
}
