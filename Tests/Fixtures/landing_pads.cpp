// Functions whose exceptions land in catch blocks and in cleanups (destructors run during
// unwinding): the landing pads the LSDA call-site tables name. The tests read the compiler's own
// assembly for the tables and compare; run, it prints how many exceptions each function caught, so
// the pads are known to be real. With `wait` it then stays alive for a test that reads its process.
#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <unistd.h>

struct Guard {
    int id;
    ~Guard();
};

__attribute__((noinline)) Guard::~Guard() { std::printf("guard %d released\n", id); }

__attribute__((noinline)) void lp_throw(int how) {
    if (how == 1) throw std::runtime_error("one");
    if (how == 2) throw 2;
    if (how == 3) throw "three";
}

// A typed catch.
extern "C" __attribute__((noinline)) int lp_catch_typed(int how) {
    try {
        lp_throw(how);
    } catch (const std::runtime_error &) {
        return 1;
    }
    return 0;
}

// Several handlers: one landing pad dispatching on the selector, or several.
extern "C" __attribute__((noinline)) int lp_catch_many(int how) {
    try {
        lp_throw(how);
    } catch (int value) {
        return value;
    } catch (const char *) {
        return 3;
    } catch (...) {
        return -1;
    }
    return 0;
}

// No catch at all: a cleanup that runs the destructor and resumes unwinding.
extern "C" __attribute__((noinline)) int lp_cleanup(int how) {
    Guard guard{how};
    lp_throw(how);
    return how;
}

// Cleanups inside a try, and a throw from inside a handler.
extern "C" __attribute__((noinline)) int lp_nested(int how) {
    Guard outer{10};
    try {
        Guard inner{11};
        lp_throw(how);
    } catch (int) {
        Guard handler{12};
        lp_throw(how - 1);
    }
    return 0;
}

// A handler that rethrows after a cleanup.
extern "C" __attribute__((noinline)) int lp_rethrow(int how) {
    try {
        Guard guard{20};
        lp_throw(how);
    } catch (...) {
        Guard again{21};
        throw;
    }
    return 0;
}

// Nothing to unwind: no LSDA.
extern "C" __attribute__((noinline)) int lp_plain(int x) { return x * 3 + 1; }

int main(int argc, char **argv) {
    int caught = 0;
    caught += lp_catch_typed(1);
    for (int how = 1; how <= 3; how++) caught += lp_catch_many(how) != 0;
    for (int how = 1; how <= 3; how++) {
        try {
            lp_cleanup(how);
        } catch (...) {
            caught++;
        }
    }
    try {
        lp_nested(2);
    } catch (...) {
        caught++;
    }
    try {
        lp_rethrow(3);
    } catch (const char *) {
        caught++;
    }
    std::printf("caught %d of 9 %d\n", caught, lp_plain(caught));
    // `wait`: stay alive for a test that reads the process's modules.
    if (argc > 1 && std::strcmp(argv[1], "wait") == 0) {
        std::printf("ready\n");
        std::fflush(stdout);
        pause();
    }
    return caught == 9 ? 0 : 1;
}
