// expect: RangeError|memory|deadline exceeded
return new Array(p.n).fill("abcdef").join(",")
// params: {"n": 200000000}
