// A Go fixture for nstrace: goroutines that migrate between threads, a recursion deep enough to grow
// (and so copy) goroutine stacks, panics recovered by deferred functions, a spinning goroutine the
// runtime must preempt with SIGURG, and a long-running HTTP server. Each mode prints its own ground
// truth.
//
//	goworkers work GOROUTINES CALLS   print "calls main.work N" etc. and "results ok"
//	goworkers serve                   print "ready port N", then "tick N ok=M" every 50 ms; "BAD" on a wrong answer
package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

//go:noinline
func work(i int, tag string) int {
	return i*2 + len(tag)
}

// recurse keeps a sizeable frame so that a few hundred levels outgrow the goroutine's first stack.
//
//go:noinline
func recurse(depth int) int {
	var pad [256]byte
	pad[depth%256] = byte(depth)
	if depth == 0 {
		return int(pad[0])
	}
	return recurse(depth-1) + 1 + int(pad[depth%256]) - int(byte(depth))
}

//go:noinline
func mayPanic(i int) int {
	if i%4 == 0 {
		panic(fmt.Sprintf("boom %d", i))
	}
	return i
}

//go:noinline
func guarded(i int) (result int, panicked bool) {
	runtime.Gosched() // the call may go on, and return, on another thread than the one it began on
	defer func() {
		if recover() != nil {
			result, panicked = -1, true
		}
	}()
	return mayPanic(i), false
}

//go:noinline
func sum(xs []int) (int, error) {
	total := 0
	for _, x := range xs {
		total += x
	}
	return total, nil
}

func runWork(goroutines, calls int) {
	const depth = 300
	var workCalls, recurseCalls, panicCalls, panics, guardedCalls, wrong atomic.Int64
	var wg sync.WaitGroup
	for g := 0; g < goroutines; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < calls; i++ {
				if work(i, "go") != i*2+2 {
					wrong.Add(1)
				}
				workCalls.Add(1)
				runtime.Gosched() // let the goroutine move to another thread
				if i%20 == 0 {
					if recurse(depth) != depth {
						wrong.Add(1)
					}
					recurseCalls.Add(depth + 1)
				}
				r, p := guarded(i)
				guardedCalls.Add(1)
				panicCalls.Add(1)
				if p {
					panics.Add(1)
					if i%4 != 0 {
						wrong.Add(1)
					}
				} else if r != i {
					wrong.Add(1)
				}
			}
		}(g)
	}
	// A goroutine that never calls anything for a while: only an asynchronous preemption (SIGURG)
	// can take its thread away.
	wg.Add(1)
	go func() {
		defer wg.Done()
		start := time.Now()
		x := 0
		for time.Since(start) < 60*time.Millisecond {
			for j := 0; j < 1_000_000; j++ {
				x += j
			}
		}
		if x == 42 {
			fmt.Println("unlikely")
		}
	}()
	wg.Wait()
	if s, err := sum([]int{1, 2, 3}); s != 6 || err != nil {
		wrong.Add(1)
	}
	fmt.Printf("calls main.work %d\n", workCalls.Load())
	fmt.Printf("calls main.recurse %d\n", recurseCalls.Load())
	fmt.Printf("calls main.mayPanic %d\n", panicCalls.Load())
	fmt.Printf("calls main.guarded %d\n", guardedCalls.Load())
	fmt.Printf("calls main.sum 1\n")
	fmt.Printf("panics %d\n", panics.Load())
	if wrong.Load() == 0 {
		fmt.Println("results ok")
	} else {
		fmt.Printf("results wrong %d\n", wrong.Load())
		os.Exit(1)
	}
}

//go:noinline
func compute(n int) int {
	total := 0
	for i := 1; i <= n; i++ {
		total += i
	}
	return total
}

func serve() {
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Println("listen:", err)
		os.Exit(1)
	}
	http.HandleFunc("/compute", func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		fmt.Fprint(w, compute(n))
	})
	go http.Serve(listener, nil)
	port := listener.Addr().(*net.TCPAddr).Port
	var ok atomic.Int64
	for c := 0; c < 4; c++ {
		go func(c int) {
			client := &http.Client{Timeout: 5 * time.Second}
			for i := 0; ; i++ {
				n := 100 + (i+c)%50
				resp, err := client.Get(fmt.Sprintf("http://127.0.0.1:%d/compute?n=%d", port, n))
				if err != nil {
					fmt.Println("BAD request:", err)
					os.Exit(1)
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if string(body) != strconv.Itoa(n*(n+1)/2) {
					fmt.Println("BAD answer:", string(body))
					os.Exit(1)
				}
				ok.Add(1)
			}
		}(c)
	}
	fmt.Printf("ready port %d\n", port)
	for tick := 0; ; tick++ {
		time.Sleep(50 * time.Millisecond)
		fmt.Printf("tick %d ok=%d\n", tick, ok.Load())
	}
}

func main() {
	if len(os.Args) >= 4 && os.Args[1] == "work" {
		goroutines, _ := strconv.Atoi(os.Args[2])
		calls, _ := strconv.Atoi(os.Args[3])
		runWork(goroutines, calls)
		return
	}
	if len(os.Args) >= 2 && os.Args[1] == "serve" {
		serve()
	}
	fmt.Println("usage: goworkers work GOROUTINES CALLS | serve")
	os.Exit(2)
}
