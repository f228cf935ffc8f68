// The bundled demo: a tiny order service. Four worker threads each handle a few requests; every
// request parses a line, looks up a price and applies a discount. Trace it with
//   nstrace 'demo_' -- ./demo/demo
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WORKERS 4
#define REQUESTS 3

struct order { int item; int quantity; };

__attribute__((noinline)) int demo_parse(const char *line, struct order *out) {
    return sscanf(line, "item=%d qty=%d", &out->item, &out->quantity) == 2 ? 0 : -1;
}

__attribute__((noinline)) double demo_price(int item) {
    static const double prices[] = {2.50, 4.75, 9.99, 1.20};
    return prices[item % 4];
}

__attribute__((noinline)) double demo_discount(double amount, int percent) {
    return amount * (100 - percent) / 100.0;
}

__attribute__((noinline)) double demo_handle(int worker, const char *line) {
    struct order order;
    if (demo_parse(line, &order) != 0) return -1;
    double total = demo_price(order.item) * order.quantity;
    return order.quantity >= 3 ? demo_discount(total, 10) : total;
}

static void *worker(void *arg) {
    int id = (int)(long)arg;
    double sum = 0;
    for (int i = 0; i < REQUESTS; i++) {
        char line[64];
        snprintf(line, sizeof line, "item=%d qty=%d", id + i, 1 + (id + i) % 4);
        sum += demo_handle(id, line);
    }
    return (void *)(long)(sum * 100);
}

int main(void) {
    pthread_t threads[WORKERS];
    for (long i = 0; i < WORKERS; i++) pthread_create(&threads[i], NULL, worker, (void *)i);
    long cents = 0;
    for (int i = 0; i < WORKERS; i++) {
        void *result;
        pthread_join(threads[i], &result);
        cents += (long)result;
    }
    printf("handled %d requests, revenue %ld.%02ld\n", WORKERS * REQUESTS, cents / 100, cents % 100);
    return 0;
}
