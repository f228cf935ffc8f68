// A C++ class with a user-written copy constructor and destructor: the C++ ABI passes it by
// invisible reference (the address of a copy, in an integer register) and returns it through the
// hidden pointer, which DWARF 5 marks with DW_CC_pass_by_reference. Prints what it passed and got.
#include <cstdio>

struct Tracked {
    long id;
    double weight;
    Tracked(long i, double w) : id(i), weight(w) {}
    Tracked(const Tracked &o) : id(o.id), weight(o.weight) {}
    ~Tracked() {}
};

extern "C" __attribute__((noinline, noipa)) long ref_take(int k, Tracked t, long z) { return t.id + k + z; }
extern "C" __attribute__((noinline, noipa)) Tracked ref_make(long id) { return Tracked(id, 0.5); }

int main() {
    Tracked t(5, 1.5);
    long r = ref_take(2, t, 9);
    Tracked m = ref_make(7);
    std::printf("ref_take = %ld\nref_make = {%ld, %g}\n", r, m.id, m.weight);
}
