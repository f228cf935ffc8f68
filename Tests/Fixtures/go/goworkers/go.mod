module nstrace.test/goworkers

go 1.19
