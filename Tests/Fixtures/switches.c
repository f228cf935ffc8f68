// Switch statements that compilers turn into jump tables, one shape per function: dense, offset,
// with holes, on a 64-bit and on a byte value, two in one function, in a loop, masked with no bounds
// check, and with no default at all. Each case changes `marks` in a way of its own, so no compiler
// folds the cases into a table of values. Run, it prints what the cases made of `marks`.
#include <stdio.h>
#include <stdlib.h>

static volatile long marks;

__attribute__((noinline)) void mark(int id) { marks += id; }

__attribute__((noinline)) int sw_dense(int x) {
    switch (x) {
    case 0: marks += 10; break;
    case 1: marks ^= 11; break;
    case 2: marks -= 12; break;
    case 3: marks |= 13; break;
    case 4: marks = marks * 3 + 14; break;
    case 5: marks &= ~15L; break;
    case 6: marks = (marks << 1) - 16; break;
    case 7: marks = marks / 3 + 17; break;
    default: mark(99); break;
    }
    return x + 1;
}

__attribute__((noinline)) int sw_offset(int x) {
    switch (x) {
    case 100: marks += 20; return 1;
    case 101: marks ^= 21; return 2;
    case 102: marks -= 22; return 3;
    case 103: marks |= 23; return 5;
    case 104: marks = marks * 3 + 24; return 8;
    case 105: marks &= ~25L; return 13;
    case 106: marks = (marks << 1) - 26; return 21;
    }
    return 0;
}

__attribute__((noinline)) int sw_holes(unsigned x) {
    switch (x) {
    case 0: marks = marks / 3 + 30; break;
    case 2: mark(32); break;
    case 3: marks += 33; break;
    case 5: marks ^= 35; break;
    case 6: marks -= 36; break;
    case 9: marks |= 39; break;
    case 11: marks = marks * 3 + 311; break;
    case 14: marks &= ~314L; break;
    default: return -1;
    }
    return (int)x;
}

__attribute__((noinline)) long sw_long(long x) {
    switch (x) {
    case 1: marks = (marks << 1) - 41; return 7;
    case 2: marks = marks / 3 + 42; return 6;
    case 3: mark(43); return 5;
    case 4: marks += 44; return 4;
    case 5: marks ^= 45; return 3;
    case 6: marks -= 46; return 2;
    }
    return x * 3;
}

__attribute__((noinline)) int sw_char(unsigned char c) {
    switch (c) {
    case 'a': marks |= 51; return 1;
    case 'b': marks = marks * 3 + 52; return 2;
    case 'c': marks &= ~53L; return 3;
    case 'd': marks = (marks << 1) - 54; return 4;
    case 'e': marks = marks / 3 + 55; return 5;
    case 'f': mark(56); return 6;
    case 'g': marks += 57; return 7;
    }
    return 0;
}

__attribute__((noinline)) int sw_two(int a, int b) {
    int r = 0;
    switch (a) {
    case 0: marks ^= 60; r = 3; break;
    case 1: marks -= 61; r = 5; break;
    case 2: marks |= 62; r = 7; break;
    case 3: marks = marks * 3 + 63; r = 11; break;
    case 4: marks &= ~64L; r = 13; break;
    case 5: marks = (marks << 1) - 65; r = 17; break;
    }
    switch (b) {
    case 10: marks = marks / 3 + 70; r *= 2; break;
    case 11: mark(71); r *= 3; break;
    case 12: marks += 72; r *= 5; break;
    case 13: marks ^= 73; r *= 7; break;
    case 14: marks -= 74; r *= 11; break;
    case 15: marks |= 75; r *= 13; break;
    }
    return r;
}

__attribute__((noinline)) int sw_loop(const char *program) {
    int acc = 0;
    for (const char *p = program; *p; p++) {
        switch (*p) {
        case '+': marks = marks * 3 + 80; acc++; break;
        case '-': marks &= ~81L; acc--; break;
        case '*': marks = (marks << 1) - 82; acc *= 2; break;
        case '/': marks = marks / 3 + 83; acc /= 2; break;
        case ',': mark(84); acc = 0; break;
        case '.': marks += 85; printf("%d\n", acc); break;
        case '0': marks ^= 86; acc = acc * 10; break;
        }
    }
    return acc;
}

__attribute__((noinline)) int sw_masked(unsigned x) {
    switch (x & 7) {
    case 0: marks -= 90; return 9;
    case 1: marks |= 91; return 8;
    case 2: marks = marks * 3 + 92; return 7;
    case 3: marks &= ~93L; return 6;
    case 4: marks = (marks << 1) - 94; return 5;
    case 5: marks = marks / 3 + 95; return 4;
    case 6: mark(96); return 3;
    case 7: marks += 97; return 2;
    }
    return 0;
}

enum colour { RED, ORANGE, YELLOW, GREEN, BLUE, INDIGO, VIOLET };

__attribute__((noinline)) int sw_unchecked(enum colour c) {
    switch (c) {
    case RED: marks ^= 100; return 700;
    case ORANGE: marks -= 101; return 620;
    case YELLOW: marks |= 102; return 580;
    case GREEN: marks = marks * 3 + 103; return 530;
    case BLUE: marks &= ~104L; return 470;
    case INDIGO: marks = (marks << 1) - 105; return 440;
    case VIOLET: marks = marks / 3 + 106; return 400;
    }
    __builtin_unreachable();
}

int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 20;
    long total = 0;
    for (int i = 0; i < n; i++) {
        total += sw_dense(i % 9) + sw_offset(98 + i % 10) + sw_holes((unsigned)i % 16) + sw_long(i % 8);
        total += sw_char((unsigned char)('a' + i % 8)) + sw_two(i % 7, 10 + i % 7) + sw_masked((unsigned)i);
        total += sw_unchecked((enum colour)(i % 7));
    }
    total += sw_loop("++*-,+0/");
    printf("marks %ld total %ld\n", marks, total);
    return 0;
}
