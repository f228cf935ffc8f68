# Indirect jumps in shapes a compiler rarely shows in one place, each in its own function, for the
# jump-table decoder. The labels `<function>_case*` are the targets each table really has; a test
# reads them with nm and compares. Built as a shared library: nothing here is run.

        .text

# Two switches whose dispatch (add; jmp) was merged, as gcc's cross-jumping does: one jmp, two tables.
        .globl  jt_shared
        .type   jt_shared, @function
jt_shared:
        cmpl    $2, %esi
        je      1f
        cmpl    $2, %edi
        ja      jt_shared_default
        movl    %edi, %edi
        leaq    jt_shared_table_a(%rip), %rdx
        movslq  (%rdx,%rdi,4), %rax
        jmp     jt_shared_dispatch
1:      cmpl    $1, %edi
        ja      jt_shared_default
        movl    %edi, %edi
        leaq    jt_shared_table_b(%rip), %rdx
        movslq  (%rdx,%rdi,4), %rax
jt_shared_dispatch:
        addq    %rdx, %rax
        jmp     *%rax
jt_shared_case_a0: movl $10, %eax
        ret
jt_shared_case_a1: movl $11, %eax
        ret
jt_shared_case_a2: movl $12, %eax
        ret
jt_shared_case_b0: movl $20, %eax
        ret
jt_shared_case_b1: movl $21, %eax
        ret
jt_shared_default:
        xorl    %eax, %eax
        ret
        .size   jt_shared, .-jt_shared

# A case that enters its own dispatch sequence after the table base is set: still one table.
        .globl  jt_reentry
        .type   jt_reentry, @function
jt_reentry:
        cmpl    $1, %edi
        ja      jt_reentry_default
        movl    %edi, %edi
        leaq    jt_reentry_table(%rip), %rdx
jt_reentry_case1:
        movslq  (%rdx,%rdi,4), %rax
        addq    %rdx, %rax
        jmp     *%rax
jt_reentry_case0:
        xorl    %edi, %edi
        ret
jt_reentry_default:
        movl    $-1, %eax
        ret
        .size   jt_reentry, .-jt_reentry

# The bounds check is on a copy of the index (clang's `mov eax, edi; cmp edi, N`): three entries,
# though a fourth that lands in the function follows the table.
        .globl  jt_alias
        .type   jt_alias, @function
jt_alias:
        movl    %edi, %eax
        cmpl    $2, %edi
        ja      jt_alias_default
        movl    %eax, %ecx
        leaq    jt_alias_table(%rip), %rdx
        movslq  (%rdx,%rcx,4), %rcx
        addq    %rdx, %rcx
        jmp     *%rcx
jt_alias_case0: ret
jt_alias_case1: ret
jt_alias_case2: ret
jt_alias_default:
        ret
        .size   jt_alias, .-jt_alias

# No bounds check: the table ends where its entries stop landing in the function.
        .globl  jt_unchecked
        .type   jt_unchecked, @function
jt_unchecked:
        movl    %edi, %edi
        leaq    jt_unchecked_table(%rip), %rdx
        movslq  (%rdx,%rdi,4), %rax
        addq    %rdx, %rax
        jmp     *%rax
jt_unchecked_case0: ret
jt_unchecked_case1: ret
jt_unchecked_case2: ret
        .size   jt_unchecked, .-jt_unchecked

# Pointers loaded from the table, then jumped to; the check branches to the dispatch (jbe). A fourth
# entry that lands in the function follows the three the check allows.
        .globl  jt_pointers
        .type   jt_pointers, @function
jt_pointers:
        cmpl    $2, %edi
        jbe     1f
        ret
1:      movl    %edi, %edi
        leaq    jt_pointers_table(%rip), %rdx
        movq    (%rdx,%rdi,8), %rax
        jmp     *%rax
jt_pointers_case0: ret
jt_pointers_case1: ret
jt_pointers_case2: ret
jt_pointers_extra: ret
        .size   jt_pointers, .-jt_pointers

# A check that excludes its limit (jae): two entries, though a third that lands in the function follows.
        .globl  jt_below
        .type   jt_below, @function
jt_below:
        cmpl    $2, %edi
        jae     1f
        movl    %edi, %edi
        leaq    jt_below_table(%rip), %rdx
        movslq  (%rdx,%rdi,4), %rax
        addq    %rdx, %rax
        jmp     *%rax
jt_below_case0: ret
jt_below_case1: ret
1:      ret
        .size   jt_below, .-jt_below

# A one-entry table the compiler indexes with a constant.
        .globl  jt_single
        .type   jt_single, @function
jt_single:
        movslq  jt_single_table(%rip), %rax
        leaq    jt_single_table(%rip), %rsi
        addq    %rsi, %rax
        jmp     *%rax
jt_single_case0:
        ret
        .size   jt_single, .-jt_single

# An entry that leaves the function: unresolved.
        .globl  jt_outside
        .type   jt_outside, @function
jt_outside:
        cmpl    $1, %edi
        ja      jt_outside_case0
        movl    %edi, %edi
        leaq    jt_outside_table(%rip), %rdx
        movslq  (%rdx,%rdi,4), %rax
        addq    %rdx, %rax
        jmp     *%rax
jt_outside_case0:
        ret
        .size   jt_outside, .-jt_outside

# An entry inside an instruction: unresolved.
        .globl  jt_misaligned
        .type   jt_misaligned, @function
jt_misaligned:
        cmpl    $1, %edi
        ja      1f
        movl    %edi, %edi
        leaq    jt_misaligned_table(%rip), %rdx
        movslq  (%rdx,%rdi,4), %rax
        addq    %rdx, %rax
        jmp     *%rax
jt_misaligned_long:
        movabsq $0x1122334455667788, %rax
1:      ret
        .size   jt_misaligned, .-jt_misaligned

# Tail calls: through the GOT (of a function the library does not define, so the linker cannot
# relax the jump into a direct one), through an argument, through a vtable slot.
        .globl  jt_got
        .type   jt_got, @function
jt_got:
        jmp     *puts@GOTPCREL(%rip)
        .size   jt_got, .-jt_got

        .globl  jt_argument
        .type   jt_argument, @function
jt_argument:
        movq    %rsi, %rax
        jmp     *%rax
        .size   jt_argument, .-jt_argument

        .globl  jt_vtable
        .type   jt_vtable, @function
jt_vtable:
        movq    (%rdi), %rax
        jmp     *0x18(%rax)
        .size   jt_vtable, .-jt_vtable

# Targets no table names: unresolved.
        .globl  jt_computed
        .type   jt_computed, @function
jt_computed:
        leaq    jt_computed(%rip), %rax
        shlq    $4, %rdi
        addq    %rdi, %rax
        jmp     *%rax
        .size   jt_computed, .-jt_computed

        .globl  jt_call_result
        .type   jt_call_result, @function
jt_call_result:
        subq    $8, %rsp
        call    jt_computed
        addq    $8, %rsp
        jmp     *%rax
        .size   jt_call_result, .-jt_call_result

        .section .rodata
        .align  4
jt_shared_table_a:
        .long   jt_shared_case_a0-jt_shared_table_a
        .long   jt_shared_case_a1-jt_shared_table_a
        .long   jt_shared_case_a2-jt_shared_table_a
jt_shared_table_b:
        .long   jt_shared_case_b0-jt_shared_table_b
        .long   jt_shared_case_b1-jt_shared_table_b
jt_reentry_table:
        .long   jt_reentry_case0-jt_reentry_table
        .long   jt_reentry_case1-jt_reentry_table
jt_alias_table:
        .long   jt_alias_case0-jt_alias_table
        .long   jt_alias_case1-jt_alias_table
        .long   jt_alias_case2-jt_alias_table
        .long   jt_alias_default-jt_alias_table
jt_unchecked_table:
        .long   jt_unchecked_case0-jt_unchecked_table
        .long   jt_unchecked_case1-jt_unchecked_table
        .long   jt_unchecked_case2-jt_unchecked_table
        .long   0x7fff0000
jt_single_table:
        .long   jt_single_case0-jt_single_table
jt_outside_table:
        .long   jt_outside_case0-jt_outside_table
        .long   jt_shared-jt_outside_table
jt_misaligned_table:
        .long   jt_misaligned_long-jt_misaligned_table
        .long   jt_misaligned_long+2-jt_misaligned_table
jt_below_table:
        .long   jt_below_case0-jt_below_table
        .long   jt_below_case1-jt_below_table
        .long   jt_below_case1+1-jt_below_table

        .section .data.rel.ro, "aw"
        .align  8
jt_pointers_table:
        .quad   jt_pointers_case0
        .quad   jt_pointers_case1
        .quad   jt_pointers_case2
        .quad   jt_pointers_extra

        .section .note.GNU-stack,"",@progbits
