// expect: RangeError|memory|deadline exceeded
return "x".repeat(p.n)
// params: {"n": 2000000000}
