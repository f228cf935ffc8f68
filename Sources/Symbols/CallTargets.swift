/// What a call through the procedure linkage table or the GOT reaches: the symbol the slot is bound
/// to, and the module that defines it. The running process's slot value says it exactly once bound;
/// under lazy binding it still points back into the caller's PLT, and the name is what is known.
extension ProcessImage {
    /// The symbol a module's dynamic relocation binds the GOT slot at `slot` (a runtime address) to.
    public func symbolBound(toSlot slot: UInt64) -> String? {
        guard let module = module(containing: slot) else { return nil }
        return dynamicRelocations(in: module).slotNames[slot]
    }

    /// The function a dynamic symbol `name` resolves to: the first module, in the order they are
    /// mapped (the program, then its libraries), that defines a function of that name. An approximation
    /// of the dynamic linker's search order (which follows the link map), exact unless two modules
    /// define the same name.
    public func definition(of name: String) -> Function? {
        for module in modules {
            if let found = functions(in: module).first(where: { $0.size > 0 && $0.names.contains(name) }) { return found }
        }
        return nil
    }
}
