/// Prototypes of the C library's common functions, for where DWARF says nothing: glibc's string and
/// memory functions are assembly (`__strcmp_avx2` has no parameters in libc6-dbg), and a libc without
/// debuginfo has no DWARF at all. ltrace ships the same knowledge as libc.so.conf, uftrace as its
/// automatic argument specs. Only for functions of libc itself, and only where DWARF has no signature.
///
/// A parameter of type `char *` is an output buffer (its bytes at the call are garbage): it prints as a
/// pointer; `const char *` prints as a string, copied at the call. A `char *` result is a string.
enum LibcPrototypes {
    static let declarations: [String] = [
        // string.h
        "int strcmp(const char *s1, const char *s2)",
        "int strncmp(const char *s1, const char *s2, size_t n)",
        "int strcasecmp(const char *s1, const char *s2)",
        "int strncasecmp(const char *s1, const char *s2, size_t n)",
        "size_t strlen(const char *s)",
        "size_t strnlen(const char *s, size_t maxlen)",
        "char *strcpy(char *dest, const char *src)",
        "char *strncpy(char *dest, const char *src, size_t n)",
        "char *stpcpy(char *dest, const char *src)",
        "char *strcat(char *dest, const char *src)",
        "char *strncat(char *dest, const char *src, size_t n)",
        "char *strchr(const char *s, int c)",
        "char *strrchr(const char *s, int c)",
        "char *strchrnul(const char *s, int c)",
        "char *strstr(const char *haystack, const char *needle)",
        "char *strdup(const char *s)",
        "char *strndup(const char *s, size_t n)",
        "size_t strspn(const char *s, const char *accept)",
        "size_t strcspn(const char *s, const char *reject)",
        "char *strpbrk(const char *s, const char *accept)",
        "void *memcpy(void *dest, const void *src, size_t n)",
        "void *mempcpy(void *dest, const void *src, size_t n)",
        "void *memmove(void *dest, const void *src, size_t n)",
        "void *memset(void *s, int c, size_t n)",
        "int memcmp(const void *s1, const void *s2, size_t n)",
        "int bcmp(const void *s1, const void *s2, size_t n)",
        "void *memchr(const void *s, int c, size_t n)",
        "void *memrchr(const void *s, int c, size_t n)",
        "void *rawmemchr(const void *s, int c)",
        // fcntl.h, unistd.h
        "int open(const char *pathname, int flags, ...)",
        "int open64(const char *pathname, int flags, ...)",
        "int openat(int dirfd, const char *pathname, int flags, ...)",
        "int openat64(int dirfd, const char *pathname, int flags, ...)",
        "int creat(const char *pathname, mode_t mode)",
        "ssize_t read(int fd, void *buf, size_t count)",
        "ssize_t write(int fd, const void *buf, size_t count)",
        "ssize_t pread(int fd, void *buf, size_t count, off_t offset)",
        "ssize_t pwrite(int fd, const void *buf, size_t count, off_t offset)",
        "int close(int fd)",
        "off_t lseek(int fd, off_t offset, int whence)",
        "int unlink(const char *pathname)",
        "int access(const char *pathname, int mode)",
        "int chdir(const char *path)",
        "int dup(int oldfd)",
        "int dup2(int oldfd, int newfd)",
        "int pipe(int *pipefd)",
        // stdlib.h
        "void *malloc(size_t size)",
        "void free(void *ptr)",
        "void *calloc(size_t nmemb, size_t size)",
        "void *realloc(void *ptr, size_t size)",
        "void *aligned_alloc(size_t alignment, size_t size)",
        "int posix_memalign(void **memptr, size_t alignment, size_t size)",
        "char *getenv(const char *name)",
        "int setenv(const char *name, const char *value, int overwrite)",
        "int unsetenv(const char *name)",
        "int atoi(const char *nptr)",
        "long strtol(const char *nptr, char **endptr, int base)",
        "unsigned long strtoul(const char *nptr, char **endptr, int base)",
        "int system(const char *command)",
        "void exit(int status)",
        "void _exit(int status)",
        "void abort(void)",
        // stdio.h
        "FILE *fopen(const char *pathname, const char *mode)",
        "FILE *fdopen(int fd, const char *mode)",
        "int fclose(FILE *stream)",
        "int fflush(FILE *stream)",
        "size_t fread(void *ptr, size_t size, size_t nmemb, FILE *stream)",
        "size_t fwrite(const void *ptr, size_t size, size_t nmemb, FILE *stream)",
        "int fputs(const char *s, FILE *stream)",
        "char *fgets(char *s, int size, FILE *stream)",
        "int fputc(int c, FILE *stream)",
        "int fgetc(FILE *stream)",
        "int puts(const char *s)",
        "int putchar(int c)",
        "int printf(const char *format, ...)",
        "int fprintf(FILE *stream, const char *format, ...)",
        "int dprintf(int fd, const char *format, ...)",
        "int sprintf(char *str, const char *format, ...)",
        "int snprintf(char *str, size_t size, const char *format, ...)",
        "int scanf(const char *format, ...)",
        "int sscanf(const char *str, const char *format, ...)",
        "int fscanf(FILE *stream, const char *format, ...)",
        // process
        "pid_t fork(void)",
        "pid_t vfork(void)",
        "int execve(const char *pathname, char **argv, char **envp)",
        "int execv(const char *pathname, char **argv)",
        "int execvp(const char *file, char **argv)",
        "pid_t waitpid(pid_t pid, int *wstatus, int options)",
        "pid_t getpid(void)",
        "pid_t gettid(void)",
        "int kill(pid_t pid, int sig)",
        "int raise(int sig)",
        "unsigned int sleep(unsigned int seconds)",
        "int usleep(unsigned int usec)",
        // setjmp.h: these return twice (nstrace reports the return a longjmp makes, with its value)
        "int setjmp(struct __jmp_buf_tag *env)",
        "int _setjmp(struct __jmp_buf_tag *env)",
        "int __sigsetjmp(struct __jmp_buf_tag *env, int savemask)",
        "int sigsetjmp(struct __jmp_buf_tag *env, int savemask)",
        "void longjmp(struct __jmp_buf_tag *env, int val)",
        "void _longjmp(struct __jmp_buf_tag *env, int val)",
        "void siglongjmp(struct __jmp_buf_tag *env, int val)",
    ]

    /// The prototypes by function name.
    static let table: [String: Signature] = {
        var table: [String: Signature] = [:]
        for declaration in declarations {
            if let (name, signature) = parse(declaration) { table[name] = signature }
        }
        return table
    }()

    /// The prototype of the first of `names` the table has.
    static func signature(for names: [String]) -> Signature? {
        for name in names { if let signature = table[name] { return signature } }
        return nil
    }

    /// `int strcmp(const char *s1, const char *s2)` → the name and a Signature with SysV locations.
    /// Only integer-class types appear here, so each argument takes the next integer register.
    static func parse(_ declaration: String) -> (String, Signature)? {
        guard let open = declaration.firstIndex(of: "("), declaration.last == ")" else { return nil }
        let (returnName, name) = split(String(declaration[..<open]))
        let inside = declaration[declaration.index(after: open)..<declaration.index(before: declaration.endIndex)]
        var parameters: [Parameter] = []
        var variadic = false
        let registers: [Register] = [.rdi, .rsi, .rdx, .rcx, .r8, .r9]
        for piece in inside.split(separator: ",").map({ $0.trimmingCharacters(in: " ") }) where piece != "void" {
            if piece == "..." { variadic = true; continue }
            let (typeName, parameterName) = split(piece)
            guard parameters.count < registers.count, let type = type(typeName, isResult: false) else { return nil }
            parameters.append(Parameter(name: parameterName, type: type, location: .register(registers[parameters.count])))
        }
        var results: [Parameter] = []
        if returnName != "void" {
            guard let type = type(returnName, isResult: true) else { return nil }
            results = [Parameter(name: "", type: type, location: .register(.rax))]
        }
        return (name, Signature(parameters: parameters, results: results, isVariadic: variadic))
    }

    /// `const char *s1` → (`const char *`, `s1`).
    private static func split(_ text: String) -> (type: String, name: String) {
        let text = text.trimmingCharacters(in: " ")
        let start = text.lastIndex { !($0.isLetter || $0.isNumber || $0 == "_") }.map { text.index(after: $0) } ?? text.startIndex
        let type = text[..<start].trimmingCharacters(in: " ")
        return (type.hasSuffix("*") ? type.replacingStars() : type, String(text[start...]))
    }

    private static func type(_ name: String, isResult: Bool) -> ValueType? {
        switch name {
        case "int", "pid_t": return ValueType(name: name, kind: .signed, byteSize: 4)
        case "unsigned int", "mode_t": return ValueType(name: name, kind: .unsigned, byteSize: 4)
        case "long", "ssize_t", "off_t": return ValueType(name: name, kind: .signed, byteSize: 8)
        case "unsigned long", "size_t": return ValueType(name: name, kind: .unsigned, byteSize: 8)
        case "const char *": return ValueType(name: name, kind: .cString, byteSize: 8)
        case "char *": return ValueType(name: name, kind: isResult ? .cString : .pointer, byteSize: 8)
        default: return name.hasSuffix("*") ? ValueType(name: name, kind: .pointer, byteSize: 8) : nil
        }
    }
}

private extension StringProtocol {
    func trimmingCharacters(in set: Character) -> String {
        var s = Substring(self)
        while s.first == set { s.removeFirst() }
        while s.last == set { s.removeLast() }
        return String(s)
    }

    /// `char  **` → `char **`: one space before the stars, as TypeReader names pointers.
    func replacingStars() -> String {
        let stars = reversed().prefix { $0 == "*" || $0 == " " }.filter { $0 == "*" }.count
        let base = String(self).trimmingSuffix { $0 == "*" || $0 == " " }
        return base + " " + String(repeating: "*", count: stars)
    }
}

private extension String {
    func trimmingSuffix(while predicate: (Character) -> Bool) -> String {
        var s = self
        while let last = s.last, predicate(last) { s.removeLast() }
        return s
    }
}
