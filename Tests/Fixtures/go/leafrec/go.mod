module leafrec

go 1.19
