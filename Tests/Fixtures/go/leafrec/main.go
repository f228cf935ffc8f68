// A function that calls itself, as in delve's `dlv trace --follow-calls` test (its fixture leafrec):
// A(5, 5) = 5 * 4 * 3 * 2 * 1. B calls it and fmt, to follow calls into the runtime and a package.
package main

import "fmt"

//go:noinline
func A(i int, n int) int {
	if n == 1 {
		return i
	}
	return i * A(i-1, n-1)
}

//go:noinline
func B() int { return A(5, 5) + len(fmt.Sprint(7)) }

func main() {
	fmt.Println("A(5, 5) =", A(5, 5))
	fmt.Println("B() =", B())
}
