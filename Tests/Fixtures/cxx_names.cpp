// Names as C++ spells them: a namespace, overloads, a template, and an exception thrown through two
// traced functions. It prints how many times it called each, one line per function, its name as
// c++filt prints it: "calls<TAB>shop::check(shop::Order const&)<TAB>5".
#include <cstdio>
#include <stdexcept>

namespace shop {

struct Order {
    int id;
    int quantity;
};

static int counts[6];
static const char *const names[6] = {
    "shop::check(shop::Order const&)",
    "shop::place(shop::Order const&)",
    "shop::total(int)",
    "shop::total(double)",
    "int shop::largest<int>(int const*, int)",
    "double shop::largest<double>(double const*, int)",
};

// Throws for a negative quantity: its frame, and place's, close by unwinding.
__attribute__((noinline)) int check(const Order &order) {
    counts[0]++;
    if (order.quantity < 0) throw std::invalid_argument("negative quantity");
    return order.quantity > 0;
}

// No handler here: the exception passes through.
__attribute__((noinline)) int place(const Order &order) {
    counts[1]++;
    return check(order) ? order.id : 0;
}

// Overloads: one qualified name, told apart by their parameters.
__attribute__((noinline)) long total(int quantity) {
    counts[2]++;
    return quantity * 3L;
}

__attribute__((noinline)) double total(double weight) {
    counts[3]++;
    return weight * 1.5;
}

template <typename T>
__attribute__((noinline)) T largest(const T *items, int count) {
    counts[sizeof(T) == sizeof(int) ? 4 : 5]++;
    T best = items[0];
    for (int i = 1; i < count; i++)
        if (items[i] > best) best = items[i];
    return best;
}

}  // namespace shop

int main() {
    const shop::Order orders[] = {{1, 2}, {2, 0}, {3, 3}, {4, -1}, {5, 4}};
    int placed = 0, refused = 0;
    for (const shop::Order &order : orders) {
        try {
            if (shop::place(order)) placed++;
        } catch (const std::invalid_argument &) {
            refused++;
        }
    }
    long sum = shop::total(2) + shop::total(3) + shop::total(4);
    double weight = shop::total(2.0) + shop::total(0.5);
    const int quantities[] = {2, 7, 3};
    const double weights[] = {1.5, 0.25};
    int most = shop::largest(quantities, 3);
    double heaviest = shop::largest(weights, 2);
    std::printf("placed %d refused %d sum %ld weight %.2f most %d heaviest %.2f\n", placed, refused, sum, weight,
                most, heaviest);
    for (int i = 0; i < 6; i++) std::printf("calls\t%s\t%d\n", shop::names[i], shop::counts[i]);
    return 0;
}
